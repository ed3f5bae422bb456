//! Authentication: each entry point's mode, compiled once per config generation, names the
//! caller or refuses the request — before its body is read and before anything reaches the
//! upstream.
//!
//! The request path only reads what was compiled: counters are created up front, caches and
//! key sets sit behind lock-free loads (arc-swap, moka), and whatever is shared with other
//! generations comes from the [`Store`].

pub mod api_key;
pub mod challenge;
pub mod client_certificate;
pub mod credential;
pub mod jwks;
pub mod jwt;
mod jwt_ring;
pub mod lookups;
pub mod oauth;
pub mod outbound;
pub mod phabricator;
pub mod service_account;
pub mod store;
pub mod upstream_identity;
pub mod watch;
pub mod whoami;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use percent_encoding::percent_decode_str;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::pki_types::CertificateDer;
use sluice_proxy_config::{Auth, EntryPoint, ProxyConfig};

pub use store::Store;

use crate::discovery::{Public, Site, Via};
use crate::errors::Refusal;
use crate::forward::Upstream;
use crate::metrics::{AuthFailureLabels, EntryResultLabels, Metrics, ProviderErrorLabels};
use crate::request::Identity;
use challenge::Challenges;
use outbound::CallError;
use upstream_identity::Unknown;

/// Why a caller was refused; also the `reason` label of `sluice_auth_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No credential came.
    Missing,
    /// A credential header came more than once, or two kinds of credential came.
    Ambiguous,
    /// The credential is longer than [`credential::MAX_CREDENTIAL_BYTES`].
    Oversized,
    /// The credential is not visible ASCII or not in the form the mode expects.
    Malformed,
    /// A well-formed credential that is not (or no longer) valid.
    Invalid,
    /// A token whose `exp` has passed (beyond the clock skew).
    Expired,
    /// A token whose `nbf` has not come (beyond the clock skew).
    NotYetValid,
    /// A token from another issuer.
    Issuer,
    /// A token meant for another audience.
    Audience,
    /// A token signed with an algorithm the entry point does not accept (`none`, HMAC, …).
    Algorithm,
    /// A token signed with a key the issuer does not publish (or of the wrong type).
    UnknownKey,
    /// An authenticated caller this entry point does not allow.
    NotAllowed,
    /// An authenticated caller without an upstream token of its own.
    NoUpstreamToken,
    /// The credential cannot be checked now (Phabricator, the API server or the issuer did
    /// not answer, or the keys never loaded).
    Unavailable,
    /// The credential is not known yet and the entry point's bound on identity lookups is
    /// reached ([`lookups`]).
    Throttled,
    /// A verified client certificate that names nobody: no URI subject alternative name and
    /// no subject common name ([`client_certificate`]).
    NoIdentity,
}

impl Failure {
    /// What the caller is told.
    pub fn message(self) -> &'static str {
        match self {
            Failure::Missing => "authentication required",
            Failure::Ambiguous => {
                "a credential header is repeated, or more than one credential was sent"
            }
            Failure::Oversized => "the credential is longer than 4096 bytes",
            Failure::Malformed => "the credential is malformed",
            Failure::Invalid => "the credential is not valid",
            Failure::Expired => "the token has expired",
            Failure::NotYetValid => "the token is not valid yet",
            Failure::Issuer => "the token comes from another issuer",
            Failure::Audience => "the token is meant for another audience",
            Failure::Algorithm => "the token's signing algorithm is not accepted",
            Failure::UnknownKey => "the token's signing key is unknown",
            Failure::NotAllowed => "this caller may not use this entry point",
            Failure::NoUpstreamToken => "no upstream credential is configured for this caller",
            Failure::Unavailable => "the credential cannot be verified now; retry later",
            Failure::Throttled => "too many credentials are being verified right now; retry later",
            Failure::NoIdentity => {
                "the client certificate names no identity (no URI subject alternative name, no subject common name)"
            }
        }
    }

    /// Every failure, in label order.
    pub const ALL: [Failure; 16] = [
        Failure::Missing,
        Failure::Ambiguous,
        Failure::Oversized,
        Failure::Malformed,
        Failure::Invalid,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::Issuer,
        Failure::Audience,
        Failure::Algorithm,
        Failure::UnknownKey,
        Failure::NotAllowed,
        Failure::NoUpstreamToken,
        Failure::Unavailable,
        Failure::Throttled,
        Failure::NoIdentity,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Ambiguous => "ambiguous",
            Failure::Oversized => "oversized",
            Failure::Malformed => "malformed",
            Failure::Invalid => "invalid",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::Issuer => "wrong_issuer",
            Failure::Audience => "wrong_audience",
            Failure::Algorithm => "algorithm",
            Failure::UnknownKey => "unknown_key",
            Failure::NotAllowed => "not_allowed",
            Failure::NoUpstreamToken => "no_upstream_token",
            Failure::Unavailable => "unavailable",
            Failure::Throttled => "throttled",
            Failure::NoIdentity => "no_identity",
        }
    }
}

/// An identity provider, for `sluice_identity_provider_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Whoami,
    /// The upstream's `pha_user_whoami` tool (mode `oauth`).
    Upstream,
    TokenReview,
    Jwks,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl Provider {
    fn label(self) -> &'static str {
        match self {
            Provider::Whoami => "whoami",
            Provider::Upstream => "upstream",
            Provider::TokenReview => "token_review",
            Provider::Jwks => "jwks",
        }
    }
}

/// An entry point's authentication metrics, created once per generation.
pub struct Counters {
    entry_point: Arc<str>,
    failures: [Counter; Failure::ALL.len()],
    pub whoami_hits: Counter,
    pub whoami_misses: Counter,
    pub jwks_fetched: Counter,
    pub jwks_failed: Counter,
    /// The entry point's bound on calls to identity providers.
    pub lookups: lookups::Lookups,
    provider_errors: Family<ProviderErrorLabels, Counter>,
}

impl Counters {
    fn new(entry_point: &Arc<str>, metrics: &Metrics, config: &ProxyConfig) -> Self {
        let result = |family: &Family<EntryResultLabels, Counter>, result| {
            family
                .get_or_create(&EntryResultLabels {
                    entry_point: entry_point.clone(),
                    result,
                })
                .clone()
        };
        let reason = |family: &Family<AuthFailureLabels, Counter>, reason| {
            family
                .get_or_create(&AuthFailureLabels {
                    entry_point: entry_point.clone(),
                    reason,
                })
                .clone()
        };
        Self {
            entry_point: entry_point.clone(),
            failures: Failure::ALL.map(|f| reason(&metrics.auth.auth_failures, f.label())),
            whoami_hits: result(&metrics.auth.whoami_cache, "hit"),
            whoami_misses: result(&metrics.auth.whoami_cache, "miss"),
            jwks_fetched: result(&metrics.auth.jwks_refreshes, "ok"),
            jwks_failed: result(&metrics.auth.jwks_refreshes, "failed"),
            lookups: lookups::Lookups::new(&config.limits.identity_lookups),
            provider_errors: metrics.auth.identity_provider_errors.clone(),
        }
    }

    /// Counts a failed call to an identity provider (rare: the family lookup is fine here). A
    /// call the bound kept from being made is no provider's failure: it counts as `throttled`
    /// in the auth failures.
    pub fn provider_error(&self, provider: Provider, error: CallError) {
        if error == CallError::Throttled {
            return;
        }
        self.provider_errors
            .get_or_create(&ProviderErrorLabels {
                entry_point: self.entry_point.clone(),
                provider: provider.label(),
                kind: error.label(),
            })
            .inc();
    }
}

/// An entry point's compiled mode.
enum Mode {
    None(Identity),
    PhabricatorToken(phabricator::PhabricatorToken),
    ApiKey(api_key::ApiKeys),
    ServiceAccount(service_account::ServiceAccounts),
    Jwt(jwt::Jwt),
    OAuth(oauth::OAuth),
    /// The verified client certificate names the caller.
    ClientCertificate,
}

/// Who is calling, as far as the request head tells.
#[derive(Debug)]
pub enum Caller {
    /// Nobody yet: the public paths of Conduit's OAuth flow, which clients reach before they
    /// hold a token (mode `oauth`).
    Nobody,
    /// Established from the head.
    Known(Identity),
    /// A bearer only the upstream can name (mode `oauth`), by its SHA-256.
    Bearer([u8; 32]),
}

/// How an entry point authenticates callers.
pub struct Authenticator {
    mode: Mode,
    /// The challenges of an entry point whose metadata URL is fixed (or that serves none).
    challenges: Challenges,
    /// That fixed metadata URL.
    metadata: Option<String>,
    /// The path prefix of an entry point known by the URL its caller used (mode `oauth`
    /// without a public URL): its challenges name metadata under that URL.
    caller_prefix: Option<Box<str>>,
    scopes: Vec<String>,
    /// What a refused caller is told to send.
    hint: &'static str,
    counters: Counters,
}

impl Authenticator {
    /// Compiles `ep`'s mode; caches, clients and watched Secrets come from `store`.
    pub fn new(
        ep: &EntryPoint,
        config: &ProxyConfig,
        entry_point: &Arc<str>,
        metrics: &Metrics,
        store: &Store,
    ) -> Self {
        let api = config.phabricator.as_ref();
        let mode = match &ep.auth {
            Auth::None => Mode::None(Identity::named("anonymous")),
            Auth::PhabricatorToken(p) => {
                Mode::PhabricatorToken(phabricator::PhabricatorToken::new(p, api, store))
            }
            Auth::ApiKey(a) => Mode::ApiKey(api_key::ApiKeys::new(&a.keys_dir, store)),
            Auth::ServiceAccount(s) => {
                Mode::ServiceAccount(service_account::ServiceAccounts::new(s, store))
            }
            Auth::Jwt(j) => Mode::Jwt(jwt::Jwt::new(j, store)),
            Auth::OAuth(o) => Mode::OAuth(oauth::OAuth::new(o, config.upstream.sessions, store)),
            Auth::ClientCertificate => Mode::ClientCertificate,
        };
        let scopes = match (&ep.auth, &ep.discovery) {
            (Auth::Jwt(j), _) if !j.scopes.is_empty() => j.scopes.clone(),
            (_, Some(d)) => d.scopes.clone(),
            _ => Vec::new(),
        };
        // Named only where a document is served (mode oauth, or `discovery` configured): a
        // client told to look elsewhere would find nothing.
        let metadata = Site::new(ep, None).resource_metadata_url();
        let caller_prefix = (matches!(ep.auth, Auth::OAuth(_)) && ep.public_url.is_none())
            .then(|| ep.path_prefix.as_str().into());
        // `X-PHABRICATOR-TOKEN` is no bearer token: a `Bearer` challenge would send an
        // OAuth-capable client into a login that cannot work.
        let challenges = match ep.auth {
            Auth::PhabricatorToken(_) => Challenges::header_token(),
            Auth::ClientCertificate => Challenges::client_certificate(),
            _ => Challenges::new(metadata.as_deref(), &scopes),
        };
        Self {
            mode,
            challenges,
            metadata,
            caller_prefix,
            scopes,
            hint: hint(&ep.auth),
            counters: Counters::new(entry_point, metrics, config),
        }
    }

    /// Whether callers are told apart (every mode but `none`, whose callers are all
    /// `anonymous`).
    pub fn names_callers(&self) -> bool {
        !matches!(self.mode, Mode::None(_))
    }

    /// Whether the entry point is in mode `oauth` (Conduit runs its OAuth flow behind it).
    pub fn is_oauth(&self) -> bool {
        matches!(self.mode, Mode::OAuth(_))
    }

    /// Who is calling, as far as the head (and the connection's verified client certificate,
    /// `client_certificate`) tells: refused here, a caller goes no further (its body is never
    /// read). `path` is the upstream path.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client_certificate: Option<&CertificateDer<'_>>,
        path: &str,
        via: Via<'_>,
    ) -> Result<Caller, Refusal> {
        let result = match &self.mode {
            Mode::None(anonymous) => Ok(anonymous.clone()),
            Mode::PhabricatorToken(p) => p.authenticate(headers, &self.counters).await,
            Mode::ApiKey(a) => a.authenticate(headers),
            Mode::ServiceAccount(s) => s.authenticate(headers, &self.counters).await,
            Mode::Jwt(j) => j.authenticate(headers, &self.counters).await,
            Mode::ClientCertificate => client_certificate::authenticate(client_certificate),
            Mode::OAuth(_) if is_oauth_flow(path) => return Ok(Caller::Nobody),
            Mode::OAuth(_) => {
                return oauth::OAuth::bearer(headers)
                    .map(Caller::Bearer)
                    .map_err(|f| self.refuse(f, via));
            }
        };
        result.map(Caller::Known).map_err(|f| self.refuse(f, via))
    }

    /// The caller's identity once its body is read: for a bearer of mode `oauth`, the user
    /// the upstream names (a refusal then carries the request's id); `None` for nobody.
    pub async fn identify(
        &self,
        caller: &Caller,
        headers: &HeaderMap,
        upstream: &Upstream,
        via: Via<'_>,
    ) -> Result<Option<Identity>, Refusal> {
        let (Caller::Bearer(_), Mode::OAuth(oauth)) = (caller, &self.mode) else {
            return Ok(match caller {
                Caller::Known(identity) => Some(identity.clone()),
                Caller::Nobody | Caller::Bearer(_) => None,
            });
        };
        match oauth.identify(headers, upstream, &self.counters).await {
            Ok(identity) => Ok(Some(identity)),
            Err(Unknown::Refused { status, challenges }) => {
                self.count(Failure::Invalid);
                // The upstream's own challenges, pointed at the metadata this caller can reach.
                let metadata = self.metadata_url(via);
                let challenges = challenges
                    .into_iter()
                    .map(|c| match (&metadata, c.to_str()) {
                        (Some(url), Ok(text)) => crate::discovery::challenge::rewrite(text, url)
                            .and_then(|t| HeaderValue::from_str(&t).ok())
                            .unwrap_or(c),
                        _ => c,
                    })
                    .collect();
                Err(Refusal::TokenRefused { status, challenges })
            }
            Err(Unknown::Unavailable(CallError::Throttled)) => {
                Err(self.refuse(Failure::Throttled, via))
            }
            Err(Unknown::Unavailable(_)) => Err(self.refuse(Failure::Unavailable, via)),
        }
    }

    /// The upstream refused `caller`'s credential after all: what was learned of it is
    /// forgotten, so the next request asks again.
    pub async fn upstream_refused(&self, caller: &Caller) {
        if let (Caller::Bearer(bearer), Mode::OAuth(oauth)) = (caller, &self.mode) {
            oauth.forget(bearer).await;
        }
    }

    /// Counts `failure` and turns it into the refusal the caller gets, whose challenge names
    /// the metadata of the URL the caller used (`via`).
    pub fn refuse(&self, failure: Failure, via: Via<'_>) -> Refusal {
        self.count(failure);
        match failure {
            Failure::NotAllowed | Failure::NoUpstreamToken => Refusal::Forbidden {
                reason: failure.message(),
            },
            Failure::Unavailable | Failure::Throttled => Refusal::AuthUnavailable,
            _ => Refusal::Unauthenticated {
                reason: failure.message(),
                challenge: self.challenges(via).for_failure(failure).clone(),
                hint: match failure {
                    Failure::Missing | Failure::Malformed | Failure::Ambiguous => self.hint,
                    _ => "",
                },
            },
        }
    }

    fn count(&self, failure: Failure) {
        if let Some(c) = Failure::ALL
            .iter()
            .position(|f| *f == failure)
            .and_then(|i| self.counters.failures.get(i))
        {
            c.inc();
        }
        tracing::debug!(
            entry_point = &*self.counters.entry_point,
            reason = failure.label(),
            "caller refused"
        );
    }

    fn challenges(&self, via: Via<'_>) -> Cow<'_, Challenges> {
        if self.caller_prefix.is_none() {
            return Cow::Borrowed(&self.challenges);
        }
        let metadata = self.metadata_url(via);
        Cow::Owned(Challenges::new(metadata.as_deref(), &self.scopes))
    }

    /// Where the entry point's protected-resource metadata lives for a caller that came `via`.
    fn metadata_url(&self, via: Via<'_>) -> Option<Cow<'_, str>> {
        match (&self.caller_prefix, via.host) {
            (None, _) => self.metadata.as_deref().map(Cow::Borrowed),
            (Some(prefix), Some(host)) => Public::of_caller(via.scheme, host, prefix)
                .map(|p| Cow::Owned(p.resource_metadata_url())),
            (Some(_), None) => None,
        }
    }
}

/// What a caller refused for a missing or malformed credential is told to send.
fn hint(auth: &Auth) -> &'static str {
    match auth {
        Auth::PhabricatorToken(_) => {
            "; send your Phabricator API token in the X-PHABRICATOR-TOKEN header"
        }
        Auth::ApiKey(_) => "; send your API key as Authorization: Bearer <key> or in X-API-Key",
        Auth::ServiceAccount(_) => {
            "; send a Kubernetes ServiceAccount token as Authorization: Bearer <token>"
        }
        Auth::Jwt(_) => "; send a token of the configured issuer as Authorization: Bearer <token>",
        Auth::OAuth(_) => "; sign in with OAuth (WWW-Authenticate names the metadata)",
        Auth::ClientCertificate => {
            "; connect with TLS presenting a client certificate issued by this entry point's client CA"
        }
        Auth::None => "",
    }
}

/// Paths of Conduit's OAuth flow and its discovery documents, compared after
/// percent-decoding (as the upstream routes) and never with dot segments.
fn is_oauth_flow(path: &str) -> bool {
    const FLOW: [&str; 6] = [
        "/authorize",
        "/consent",
        "/token",
        "/register",
        "/auth/callback",
        "/revoke",
    ];
    const DISCOVERY: [&str; 3] = [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ];
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    if decoded.split('/').any(|s| s == "." || s == "..") {
        return false;
    }
    FLOW.contains(&decoded.as_ref())
        || DISCOVERY.iter().any(|d| {
            decoded
                .strip_prefix(d)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// The SHA-256 of a token: what caches are keyed by, so no token is kept.
pub fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The first 12 hex digits of a token's SHA-256: a stable name for it that reveals nothing.
pub fn short_id(token: &str) -> String {
    let mut out = String::with_capacity(12);
    for b in &digest(token)[..6] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_flow_paths() {
        for public in [
            "/token",
            "/%74oken",
            "/register",
            "/auth/callback",
            "/.well-known/oauth-protected-resource/ai/mcp",
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration/ai",
        ] {
            assert!(is_oauth_flow(public), "{public}");
        }
        for guarded in [
            "/mcp",
            "/mcp/",
            "/token/",
            "/tokens",
            "/.well-known/oauth-protected-resourcex",
            "/.well-known/oauth-protected-resource/../../mcp",
            "/.well-known/oauth-authorization-server/%2e%2e/mcp",
            "/",
        ] {
            assert!(!is_oauth_flow(guarded), "{guarded}");
        }
    }

    #[test]
    fn short_ids_are_sha256_prefixes() {
        // sha256("abc") = ba7816bf8f01cfea…
        assert_eq!(short_id("abc"), "ba7816bf8f01");
        assert_eq!(Failure::ALL.len(), 16);
        let labels: std::collections::HashSet<_> = Failure::ALL.iter().map(|f| f.label()).collect();
        assert_eq!(labels.len(), Failure::ALL.len());
    }
}
