//! Policy of one entry point: who may call, which tools, how often, with whose credentials.
//!
//! The same type serves `McpServer.spec.policy` (the server's own in-cluster Service) and
//! `McpRoute.spec.policy` (each route's entry point). The sidecar enforces it; the operator
//! only translates it into sidecar configuration.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::refs::{SecretKeyRef, SecretRef};
use crate::server::CaBundle;

/// A duration as the sidecar reads it: whole numbers with units, e.g. `90s` or `1h30m`.
pub(crate) const DURATION: &str = r"^([0-9]+(ms|s|m|h))+$";

/// The rule a list of CIDRs (`trustedProxies`, `networkPolicy.egressDestinations`) is checked
/// with: each item an IPv4 CIDR (no leading zeros) or an IPv6 one in hex groups, each with a
/// prefix length in range. A regular expression, not CEL's `isCIDR()`: that arrived in
/// Kubernetes 1.31 (for new rules), and a CRD whose rule does not compile cannot be installed
/// on 1.30. Whatever it admits, the sidecar's `parse_cidr` reads the same (a test in the
/// operator checks them against each other), and the API server accepts in a NetworkPolicy's
/// `ipBlock.cidr`. Host bits are not checked: `10.0.0.1/8` passes.
pub(crate) const CIDRS_RULE: &str = concat!(
    "self.all(c, c.matches('^",
    "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    "/(3[0-2]|[12]?[0-9])$') || c.matches('^(",
    "([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}",
    "|([0-9a-fA-F]{1,4}:){1,7}:",
    "|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    "|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}",
    "|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}",
    "|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}",
    "|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}",
    "|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}",
    "|:((:[0-9a-fA-F]{1,4}){1,7}|:)",
    ")/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$'))",
);

/// Who may call an entry point, which tools they may use, how often, and with whose
/// Phabricator credentials the sidecar calls Conduit on their behalf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// How callers authenticate to this entry point.
    #[serde(default)]
    pub authentication: Authentication,

    /// Phabricator credentials the sidecar sends to Conduit (as `X-PHABRICATOR-TOKEN`) instead
    /// of anything the caller sent. Needed when callers authenticate with something other than
    /// their own Phabricator token (API keys, ServiceAccounts, JWTs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_token: Option<UpstreamToken>,

    /// Which tools (and optionally resources and prompts) callers may use.
    #[serde(default)]
    pub tools: ToolPolicy,

    /// Rate limits. Every rule applies; a request over any of them gets HTTP 429 with
    /// `Retry-After`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = kube::core::Rule::new("self.all(r, self.exists_one(o, o.name == r.name))").message("rate limit names must be unique"))]
    pub rate_limits: Vec<RateLimit>,

    /// Largest request body accepted, in bytes (1 KiB to 64 MiB). Larger requests get HTTP 413
    /// before anything reaches Conduit. Defaults to 1 MiB.
    #[serde(default = "default_max_body_bytes")]
    #[schemars(range(min = 1024, max = 67108864))]
    pub max_body_bytes: i64,

    /// Browser origins (`scheme://host[:port]`) allowed to call this entry point, besides the
    /// entry point's own public origin. A request with any other `Origin` header gets HTTP 403
    /// (DNS-rebinding protection). Requests without `Origin` (non-browser clients) are not
    /// affected. Pages on an allowed origin may call from the browser: their CORS preflights are
    /// answered without credentials, and every answer lets them read it (`Mcp-Session-Id` and
    /// `WWW-Authenticate` included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 256)))]
    #[x_kube(validation = kube::core::Rule::new(r"self.all(o, o.matches('^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$'))").message("each allowed origin must be scheme://host[:port], without a path"))]
    pub allowed_origins: Vec<String>,

    /// Proxies in front of this entry point whose word on the caller's address is believed, as
    /// CIDRs: typically the Ingress controller's pod CIDR (e.g. `10.244.0.0/16`) or the load
    /// balancer's addresses. For a request from one of them, the caller is the right-most
    /// address in `X-Forwarded-For` (without it, RFC 7239 `Forwarded: for=`) that is not itself
    /// listed; an entry naming no address (`unknown`, garbage) stops the search at the last
    /// listed proxy. Rate limits `by: [clientAddress]` count that address, the logs show it,
    /// and Conduit gets the received `X-Forwarded-For` with the proxy appended. For a request
    /// from any other address those headers are ignored: the caller is that address, and
    /// Conduit sees it alone. Any address listed can speak for any caller, so list only
    /// proxies. Empty (the default): nobody is trusted, and behind an Ingress every caller has
    /// the controller's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 43)))]
    #[x_kube(validation = kube::core::Rule::new(CIDRS_RULE).message("each trusted proxy must be an IPv4 or IPv6 CIDR, such as 10.0.0.0/8 or fd00::/8"))]
    pub trusted_proxies: Vec<String>,
}

// Written out, not derived: a derived Default would set `maxBodyBytes` to 0, and an absent
// `spec.policy` (whose schema default is this value) would then refuse every request.
impl Default for Policy {
    fn default() -> Self {
        Self {
            authentication: Authentication::default(),
            upstream_token: None,
            tools: ToolPolicy::default(),
            rate_limits: Vec::new(),
            max_body_bytes: default_max_body_bytes(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

fn default_max_body_bytes() -> i64 {
    crate::defaults::MAX_BODY_BYTES
}

// === Authentication ===

/// How callers authenticate. Exactly the settings block of the chosen mode may be present.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.apiKey) == (has(self.mode) && self.mode == 'apiKey')").message("authentication.apiKey must be set exactly when mode is apiKey"))]
#[x_kube(validation = kube::core::Rule::new("has(self.serviceAccount) == (has(self.mode) && self.mode == 'serviceAccount')").message("authentication.serviceAccount must be set exactly when mode is serviceAccount"))]
#[x_kube(validation = kube::core::Rule::new("has(self.jwt) == (has(self.mode) && self.mode == 'jwt')").message("authentication.jwt must be set exactly when mode is jwt"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.phabricatorToken) || !has(self.mode) || self.mode == 'phabricatorToken'").message("authentication.phabricatorToken is only valid with mode phabricatorToken"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.oauth) || !has(self.mode) || self.mode == 'oauth'").message("authentication.oauth is only valid with mode oauth"))]
pub struct Authentication {
    /// The authentication mode: `phabricatorToken` (callers send their own Phabricator API
    /// token in `X-PHABRICATOR-TOKEN`), `apiKey` (keys from a Secret), `serviceAccount`
    /// (in-cluster callers present a projected Kubernetes ServiceAccount token), `jwt` (OIDC
    /// bearer tokens from an identity provider), `oauth` (Conduit's own OAuth flow; the bearer
    /// is checked upstream), `clientCertificate` (the certificate the caller presented in
    /// mutual TLS, which needs `tls.clientCa`: the caller is its first URI subject alternative
    /// name, such as a SPIFFE ID `spiffe://cluster.local/ns/x/sa/y`, else its subject common
    /// name) or `none` (anyone; for development only, marks the server Degraded).
    /// Defaults to `phabricatorToken` when the server's `auth.mode` is `headerToken`, and to
    /// `oauth` when it is `oauth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AuthMode>,

    /// Settings for mode `phabricatorToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phabricator_token: Option<PhabricatorTokenAuth>,

    /// Settings for mode `apiKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,

    /// Settings for mode `serviceAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountAuth>,

    /// Settings for mode `jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,

    /// Settings for mode `oauth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthPassThroughAuth>,
}

/// An authentication mode; see `authentication.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuthMode {
    PhabricatorToken,
    ApiKey,
    ServiceAccount,
    Jwt,
    #[serde(rename = "oauth")]
    OAuth,
    ClientCertificate,
    None,
}

/// The CEL rule of McpServer and McpRoute specs: mode `clientCertificate` needs a client CA.
pub(crate) const CLIENT_CERTIFICATE_NEEDS_CA: &str = "!has(self.policy) || !has(self.policy.authentication) || !has(self.policy.authentication.mode) || self.policy.authentication.mode != 'clientCertificate' || (has(self.tls) && has(self.tls.clientCa))";
/// Its message.
pub(crate) const CLIENT_CERTIFICATE_NEEDS_CA_MESSAGE: &str = "policy.authentication.mode clientCertificate needs tls.clientCa: the CA bundle client certificates must chain to";

/// Mode `phabricatorToken`: the caller's own Phabricator API token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhabricatorTokenAuth {
    /// Check each token with Phabricator's `user.whoami` before letting the request through.
    /// Without it, only the token's form is checked (`api-` and 28 more characters) and a bad
    /// token fails inside the tool call. With it, the caller's identity is the Phabricator user
    /// name, which per-user tool rules and rate limits can use.
    #[serde(default)]
    pub verify: bool,
    /// How long a token Phabricator accepted is trusted without asking again.
    #[serde(default = "default_cache_ttl")]
    #[schemars(regex(pattern = DURATION))]
    pub cache_ttl: String,
    /// How long a token Phabricator refused is refused without asking again.
    #[serde(default = "default_negative_cache_ttl")]
    #[schemars(regex(pattern = DURATION))]
    pub negative_cache_ttl: String,
}

impl Default for PhabricatorTokenAuth {
    fn default() -> Self {
        Self {
            verify: false,
            cache_ttl: default_cache_ttl(),
            negative_cache_ttl: default_negative_cache_ttl(),
        }
    }
}

fn default_cache_ttl() -> String {
    "5m".into()
}

fn default_negative_cache_ttl() -> String {
    "30s".into()
}

/// Mode `apiKey`: static keys, each naming a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// A Secret whose keys are client names and whose values are their API keys (at least 16
    /// characters). Callers send a key as `Authorization: Bearer <key>` or `X-API-Key: <key>`;
    /// the client name becomes their identity. Changes to the Secret apply without a restart.
    pub secret_ref: SecretRef,
}

/// Mode `serviceAccount`: in-cluster callers present a projected ServiceAccount token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountAuth {
    /// The audience callers' tokens must be minted for (a projected token volume's
    /// `audience`). Defaults to the entry point's in-cluster URL, e.g.
    /// `http://phabricator-mcp.tools.svc`. A token for another audience is refused, and the
    /// caller's token is never forwarded to Conduit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub audience: Option<String>,
    /// ServiceAccounts allowed to call, as `namespace/name`; `namespace/*` allows every
    /// ServiceAccount of a namespace. Tokens are checked with the Kubernetes TokenReview API,
    /// so a token whose pod or ServiceAccount was deleted stops working at once.
    #[schemars(length(min = 1, max = 64), inner(length(max = 317)))]
    #[x_kube(validation = kube::core::Rule::new(r"self.all(s, s.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?/([*]|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$'))").message("each allowed ServiceAccount must be namespace/name or namespace/*"))]
    pub allowed: Vec<String>,
}

/// Mode `jwt`: OIDC bearer tokens from an identity provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuth {
    /// The token issuer (`iss`), an https URL.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^https://[^/?#\\s]+(/[^?#\\s]*)?$')").message("jwt.issuer must be an https URL"))]
    pub issuer: String,
    /// Accepted audiences (`aud`); a token must carry at least one of them.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 512)))]
    pub audiences: Vec<String>,
    /// Where the issuer's signing keys are published. Defaults to the `jwks_uri` of the
    /// issuer's `/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^https?://[^/?#\\s]+(/[^#\\s]*)?$')").message("jwt.jwksUrl must be an http(s) URL"))]
    pub jwks_url: Option<String>,
    /// Accepted signature algorithms. Symmetric algorithms and `none` are not offered: a
    /// public key must never verify an HMAC.
    #[serde(default = "default_algorithms")]
    #[schemars(length(min = 1))]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Tolerated clock difference when checking `exp` and `nbf`.
    #[serde(default = "default_clock_skew")]
    #[schemars(regex(pattern = DURATION))]
    pub clock_skew: String,
    /// The claim that names the caller.
    #[serde(default = "default_identity_claim")]
    #[schemars(length(min = 1, max = 64))]
    pub identity_claim: String,
    /// A claim holding the caller's groups (a list of strings), for group-based tool rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub groups_claim: Option<String>,
    /// Scopes advertised in the entry point's OAuth protected-resource document and in 401
    /// challenges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// A CA bundle (PEM) the sidecar trusts, besides the public roots, when it fetches the
    /// issuer's OpenID configuration and keys: for an issuer with an internal CA (Keycloak or
    /// Dex in the cluster). From a ConfigMap or a Secret; a change reaches the sidecar
    /// without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
}

/// A JWT signature algorithm with a public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum JwtAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

fn default_algorithms() -> Vec<JwtAlgorithm> {
    vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256]
}

fn default_clock_skew() -> String {
    "60s".into()
}

fn default_identity_claim() -> String {
    "sub".into()
}

/// Mode `oauth`: Conduit's OAuth-proxy flow. A bearer token is required; Conduit validates it,
/// and names the Phabricator user behind it: the sidecar asks Conduit (its `pha_user_whoami`
/// tool, with the caller's own token, over the pod's loopback), so tool rules by identity,
/// per-user rate limits and the audit trail act on the user. The token goes nowhere else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuthPassThroughAuth {
    /// How long the sidecar remembers which Phabricator user a bearer belongs to. A token
    /// Conduit refuses is never remembered, and is forgotten as soon as Conduit refuses it.
    #[serde(default = "default_cache_ttl")]
    #[schemars(regex(pattern = DURATION))]
    pub identity_cache_ttl: String,
}

impl Default for OAuthPassThroughAuth {
    fn default() -> Self {
        Self {
            identity_cache_ttl: default_cache_ttl(),
        }
    }
}

// === Upstream credentials ===

/// The Phabricator token the sidecar sends upstream. Exactly one source must be set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.secretKeyRef) != has(self.perIdentitySecretRef)").message("upstreamToken needs exactly one of secretKeyRef or perIdentitySecretRef"))]
pub struct UpstreamToken {
    /// One token (a bot account's) for every caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A token per caller: a Secret key holding a JSON object that maps identities (e.g.
    /// `system:serviceaccount:agents:triage`, or an API-key client name) to Phabricator tokens.
    /// A caller without an entry is refused with HTTP 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_identity_secret_ref: Option<SecretKeyRef>,
}

// === Tools ===

/// Which tools callers may use. Patterns match whole names; `*` matches any run of
/// characters and `?` one character. A denied `tools/call` gets HTTP 403 and never reaches
/// Conduit, and `tools/list` replies only show what the caller may call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolPolicy {
    /// Tools callers may call. Empty: every tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 128)))]
    #[x_kube(validation = kube::core::Rule::new(r"self.all(p, p.matches('^[A-Za-z0-9_./*?-]{1,128}$'))").message("tool patterns may use letters, digits, _ . / - and the wildcards * and ?"))]
    pub allow: Vec<String>,
    /// Tools nobody may call, even if allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 128)))]
    #[x_kube(validation = kube::core::Rule::new(r"self.all(p, p.matches('^[A-Za-z0-9_./*?-]{1,128}$'))").message("tool patterns may use letters, digits, _ . / - and the wildcards * and ?"))]
    pub deny: Vec<String>,
    /// Rules for particular callers. The first rule whose identities or groups match the
    /// caller replaces `allow` and `deny` above for that caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<ToolRule>,
    /// Resource URIs (`resources/read`, `resources/list`) callers may use. Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<NameFilter>,
    /// Prompt names (`prompts/get`, `prompts/list`) callers may use. Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<NameFilter>,
}

/// Tool lists for particular callers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(has(self.identities) && self.identities.size() > 0) || (has(self.groups) && self.groups.size() > 0)").message("a tool rule needs identities or groups"))]
pub struct ToolRule {
    /// Caller identities this rule applies to (patterns, e.g. `system:serviceaccount:ci:*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 317)))]
    pub identities: Vec<String>,
    /// Caller groups (from a JWT groups claim) this rule applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub groups: Vec<String>,
    /// Tools these callers may call. Empty: every tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 128)))]
    #[x_kube(validation = kube::core::Rule::new(r"self.all(p, p.matches('^[A-Za-z0-9_./*?-]{1,128}$'))").message("tool patterns may use letters, digits, _ . / - and the wildcards * and ?"))]
    pub allow: Vec<String>,
    /// Tools these callers may not call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 128)))]
    #[x_kube(validation = kube::core::Rule::new(r"self.all(p, p.matches('^[A-Za-z0-9_./*?-]{1,128}$'))").message("tool patterns may use letters, digits, _ . / - and the wildcards * and ?"))]
    pub deny: Vec<String>,
}

/// Allow and deny patterns over names or URIs (`*` any run, `?` one character).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameFilter {
    /// Allowed names. Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 512)))]
    pub allow: Vec<String>,
    /// Refused names, even if allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 512)))]
    pub deny: Vec<String>,
}

// === Rate limits ===

/// A rate limit: a token bucket (GCRA) per distinct key. The bucket is always per entry
/// point; `by` splits it further.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Name of the rule, shown in metrics and logs.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// What the bucket is keyed by, combined: `identity` (the authenticated caller), `tool`
    /// (the tool, resource or prompt name), `clientAddress` (the caller's IP). Empty: one
    /// bucket for the whole entry point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, self.exists_one(o, o == k))").message("rate limit keys must not repeat"))]
    pub by: Vec<RateLimitKey>,
    /// Requests allowed per `period`, on average.
    #[schemars(range(min = 1, max = 1000000))]
    pub requests: i32,
    /// The period `requests` are counted over.
    #[serde(default = "default_period")]
    #[schemars(regex(pattern = DURATION))]
    pub period: String,
    /// Requests allowed at once after a quiet spell. Defaults to `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub burst: Option<i32>,
    /// JSON-RPC methods that count. Defaults to `tools/call`.
    #[serde(default = "default_methods")]
    #[schemars(length(min = 1, max = 32))]
    pub methods: Vec<String>,
    /// Only requests for these tools (patterns) count. Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 128)))]
    #[x_kube(validation = kube::core::Rule::new(r"self.all(p, p.matches('^[A-Za-z0-9_./*?-]{1,128}$'))").message("tool patterns may use letters, digits, _ . / - and the wildcards * and ?"))]
    pub tools: Vec<String>,
    /// `local`: each pod counts on its own. `global`: all replicas share one budget in Redis
    /// (needs the server's `spec.redis`).
    #[serde(default)]
    pub scope: RateLimitScope,
}

/// A part of a rate-limit key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitKey {
    Identity,
    Tool,
    ClientAddress,
}

/// Where a rate limit is counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitScope {
    #[default]
    Local,
    Global,
}

fn default_period() -> String {
    "1m".into()
}

fn default_methods() -> Vec<String> {
    vec!["tools/call".into()]
}
