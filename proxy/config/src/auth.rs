//! How an entry point authenticates callers.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// One authentication mode per entry point, chosen by `mode`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "mode", rename_all = "camelCase", deny_unknown_fields)]
pub enum Auth {
    /// `X-PHABRICATOR-TOKEN` required and well-formed; optionally verified with `user.whoami`.
    PhabricatorToken(PhabricatorTokenAuth),
    /// Static API keys from a mounted Secret.
    ApiKey(ApiKeyAuth),
    /// Projected Kubernetes ServiceAccount tokens, checked by TokenReview.
    ServiceAccount(ServiceAccountAuth),
    /// OIDC JWTs checked against the issuer's JWKS.
    Jwt(JwtAuth),
    /// Conduit's OAuth-proxy mode: a bearer is required, the upstream validates it.
    #[serde(rename = "oauth")]
    OAuth(OAuthAuth),
    /// The client certificate verified by mutual TLS (needs `tls.clientCaFile`): the caller
    /// is the certificate's first URI subject alternative name (a SPIFFE ID such as
    /// `spiffe://cluster.local/ns/x/sa/y`), else its subject common name; a certificate with
    /// neither is refused.
    ClientCertificate,
    /// No authentication (development only).
    None,
}

impl Auth {
    /// The mode's name as written in the config.
    pub fn mode_name(&self) -> &'static str {
        match self {
            Auth::PhabricatorToken(_) => "phabricatorToken",
            Auth::ApiKey(_) => "apiKey",
            Auth::ServiceAccount(_) => "serviceAccount",
            Auth::Jwt(_) => "jwt",
            Auth::OAuth(_) => "oauth",
            Auth::ClientCertificate => "clientCertificate",
            Auth::None => "none",
        }
    }
}

/// Settings of mode `phabricatorToken`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhabricatorTokenAuth {
    /// Verify tokens with `user.whoami` (needs the top-level `phabricator`). Absent: only the
    /// token's form is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<WhoamiCache>,
}

/// Caching of `user.whoami` answers, keyed by a hash of the token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WhoamiCache {
    /// How long an accepted token is trusted.
    #[serde(default = "default_ttl")]
    pub cache_ttl: Duration,
    /// How long a refused token stays refused.
    #[serde(default = "default_negative_ttl")]
    pub negative_cache_ttl: Duration,
    /// Most cached tokens.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

impl Default for WhoamiCache {
    fn default() -> Self {
        Self {
            cache_ttl: default_ttl(),
            negative_cache_ttl: default_negative_ttl(),
            max_entries: default_max_entries(),
        }
    }
}

fn default_ttl() -> Duration {
    Duration::from_secs(300)
}

fn default_negative_ttl() -> Duration {
    Duration::from_secs(30)
}

fn default_max_entries() -> usize {
    10_000
}

/// Settings of mode `apiKey`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// A directory (a mounted Secret) with one file per client: the file name is the client's
    /// name, its content the key. Re-read when it changes.
    pub keys_dir: PathBuf,
}

/// Settings of mode `serviceAccount`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountAuth {
    /// The audience callers' tokens must carry.
    pub audience: String,
    /// Allowed ServiceAccounts: `namespace/name` or `namespace/*`.
    pub allowed: Vec<String>,
    /// How tokens are checked.
    #[serde(default)]
    pub token_review: TokenReview,
}

/// The Kubernetes TokenReview API, as the sidecar calls it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenReview {
    /// The API server.
    #[serde(default = "default_api_server")]
    pub api_server: String,
    /// The sidecar's own token (projected, audience the API server).
    #[serde(default = "default_token_file")]
    pub token_file: PathBuf,
    /// The API server's CA.
    #[serde(default = "default_ca_file")]
    pub ca_file: PathBuf,
    /// How long a reviewed token's answer is reused (never past the token's expiry).
    #[serde(default = "default_review_ttl")]
    pub cache_ttl: Duration,
}

impl Default for TokenReview {
    fn default() -> Self {
        Self {
            api_server: default_api_server(),
            token_file: default_token_file(),
            ca_file: default_ca_file(),
            cache_ttl: default_review_ttl(),
        }
    }
}

fn default_api_server() -> String {
    "https://kubernetes.default.svc".into()
}

fn default_token_file() -> PathBuf {
    "/var/run/secrets/kubernetes.io/serviceaccount/token".into()
}

fn default_ca_file() -> PathBuf {
    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".into()
}

fn default_review_ttl() -> Duration {
    Duration::from_secs(60)
}

/// Settings of mode `jwt`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuth {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values (at least one must be present in the token).
    pub audiences: Vec<String>,
    /// Where the signing keys are. Absent: the issuer's OpenID configuration says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Accepted algorithms (asymmetric only).
    pub algorithms: Vec<JwtAlgorithm>,
    /// Tolerated clock skew for `exp` and `nbf`.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: Duration,
    /// The claim naming the caller.
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
    /// A claim listing the caller's groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// Shortest time between two JWKS fetches triggered by an unknown `kid`.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh: Duration,
    /// Scopes to advertise in challenges and protected-resource metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// A CA bundle (PEM) trusted besides the public roots for the issuer's OpenID
    /// configuration and JWKS (an issuer with an internal CA); re-read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}

fn default_identity_claim() -> String {
    "sub".into()
}

fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(30)
}

/// An asymmetric JWT algorithm. `none` and HMAC are deliberately absent.
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

/// Settings of mode `oauth`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuthAuth {
    /// How long the bearer → Phabricator user mapping is remembered. The upstream's OAuth
    /// proxy names the user: the sidecar asks it with the caller's own bearer (Conduit's
    /// `pha_user_whoami` tool, over loopback); the bearer never goes anywhere else.
    #[serde(default = "default_ttl")]
    pub identity_cache_ttl: Duration,
    /// How long that question may take (Conduit asks Phabricator in turn); over it the caller
    /// gets 503 and nothing is remembered.
    #[serde(default = "default_identity_timeout")]
    pub identity_timeout: Duration,
}

impl Default for OAuthAuth {
    fn default() -> Self {
        Self {
            identity_cache_ttl: default_ttl(),
            identity_timeout: default_identity_timeout(),
        }
    }
}

fn default_identity_timeout() -> Duration {
    Duration::from_secs(10)
}
