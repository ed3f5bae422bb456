//! Authentication: each entry point's mode, compiled once per config generation, names the
//! caller or refuses the request — before its body is read and before anything reaches the
//! upstream.
//!
//! The request path only reads what was compiled: counters are created up front, caches and
//! key sets sit behind lock-free loads (arc-swap, moka), and whatever is shared with other
//! generations comes from the [`Store`].

pub mod api_key;
pub mod challenge;
pub mod credential;
pub mod jwks;
pub mod jwt;
mod jwt_ring;
pub mod oauth;
pub mod outbound;
pub mod phabricator;
pub mod service_account;
pub mod store;
pub mod watch;
pub mod whoami;

use std::fmt::Write as _;
use std::sync::Arc;

use http::HeaderMap;
use percent_encoding::percent_decode_str;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sluice_proxy_config::{Auth, EntryPoint, ProxyConfig};

pub use store::Store;

use crate::errors::Refusal;
use crate::identity::Identity;
use crate::metrics::{AuthFailureLabels, EntryResultLabels, Metrics, ProviderErrorLabels};
use challenge::Challenges;
use outbound::CallError;

/// Why a caller was refused; also the `reason` label of `sluice_auth_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No credential came.
    #[error("authentication required")]
    Missing,
    /// A credential header came more than once, or two kinds of credential came.
    #[error("a credential header is repeated, or more than one credential was sent")]
    Ambiguous,
    /// The credential is longer than [`credential::MAX_CREDENTIAL_BYTES`].
    #[error("the credential is longer than 4096 bytes")]
    Oversized,
    /// The credential is not visible ASCII or not in the form the mode expects.
    #[error("the credential is malformed")]
    Malformed,
    /// A well-formed credential that is not (or no longer) valid.
    #[error("the credential is not valid")]
    Invalid,
    /// A token whose `exp` has passed (beyond the clock skew).
    #[error("the token has expired")]
    Expired,
    /// A token whose `nbf` has not come (beyond the clock skew).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A token from another issuer.
    #[error("the token comes from another issuer")]
    Issuer,
    /// A token meant for another audience.
    #[error("the token is meant for another audience")]
    Audience,
    /// A token signed with an algorithm the entry point does not accept (`none`, HMAC, …).
    #[error("the token's signing algorithm is not accepted")]
    Algorithm,
    /// A token signed with a key the issuer does not publish (or of the wrong type).
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// An authenticated caller this entry point does not allow.
    #[error("this caller may not use this entry point")]
    NotAllowed,
    /// An authenticated caller without an upstream token of its own.
    #[error("no upstream credential is configured for this caller")]
    NoUpstreamToken,
    /// The credential cannot be checked now (Phabricator, the API server or the issuer did
    /// not answer, or the keys never loaded).
    #[error("the credential cannot be verified now; retry later")]
    Unavailable,
}

impl Failure {
    /// Every failure, in label order.
    pub const ALL: [Failure; 14] = [
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
        }
    }
}

/// An identity provider, for `sluice_identity_provider_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Whoami,
    TokenReview,
    Jwks,
}

impl Provider {
    fn label(self) -> &'static str {
        match self {
            Provider::Whoami => "whoami",
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
    pub fallback_refused: Counter,
    pub fallback_unavailable: Counter,
    provider_errors: Family<ProviderErrorLabels, Counter>,
}

impl Counters {
    fn new(entry_point: &Arc<str>, metrics: &Metrics) -> Self {
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
            fallback_refused: reason(&metrics.auth.oauth_identity_fallbacks, "refused"),
            fallback_unavailable: reason(&metrics.auth.oauth_identity_fallbacks, "unavailable"),
            provider_errors: metrics.auth.identity_provider_errors.clone(),
        }
    }

    /// Counts a failed call to an identity provider (rare: the family lookup is fine here).
    pub fn provider_error(&self, provider: Provider, error: CallError) {
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
}

/// How an entry point authenticates callers.
pub struct Authenticator {
    mode: Mode,
    challenges: Challenges,
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
            Auth::OAuth(o) => Mode::OAuth(oauth::OAuth::new(o, api, store)),
        };
        let scopes = match (&ep.auth, &ep.discovery) {
            (Auth::Jwt(j), _) if !j.scopes.is_empty() => j.scopes.as_slice(),
            (_, Some(d)) => d.scopes.as_slice(),
            _ => &[],
        };
        // Named only where a document is served (mode oauth, or `discovery` configured): a
        // client told to look elsewhere would find nothing.
        let metadata = crate::discovery::Site::new(ep).resource_metadata_url();
        Self {
            mode,
            challenges: Challenges::new(metadata.as_deref(), scopes),
            counters: Counters::new(entry_point, metrics),
        }
    }

    /// Who is calling. `None` only for the paths of Conduit's OAuth flow in mode `oauth`,
    /// which clients reach before they hold a token. `path` is the upstream path.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Option<Identity>, Refusal> {
        let result = match &self.mode {
            Mode::None(anonymous) => Ok(anonymous.clone()),
            Mode::PhabricatorToken(p) => p.authenticate(headers, &self.counters).await,
            Mode::ApiKey(a) => a.authenticate(headers),
            Mode::ServiceAccount(s) => s.authenticate(headers, &self.counters).await,
            Mode::Jwt(j) => j.authenticate(headers, &self.counters).await,
            Mode::OAuth(_) if is_oauth_flow(path) => return Ok(None),
            Mode::OAuth(o) => o.authenticate(headers, &self.counters).await,
        };
        result.map(Some).map_err(|f| self.refuse(f))
    }

    /// Counts `failure` and turns it into the refusal the caller gets.
    pub fn refuse(&self, failure: Failure) -> Refusal {
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
        match failure {
            Failure::NotAllowed | Failure::NoUpstreamToken => Refusal::Forbidden(failure),
            Failure::Unavailable => Refusal::AuthUnavailable,
            _ => Refusal::Unauthenticated {
                failure,
                challenge: self.challenges.for_failure(failure).clone(),
            },
        }
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
        assert_eq!(Failure::ALL.len(), 14);
        let labels: std::collections::HashSet<_> = Failure::ALL.iter().map(|f| f.label()).collect();
        assert_eq!(labels.len(), Failure::ALL.len());
    }
}
