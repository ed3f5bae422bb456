//! Mode `serviceAccount`: in-cluster callers send a projected ServiceAccount token
//! (`Authorization: Bearer`), the Kubernetes API server reviews it (TokenReview), and the
//! entry point's `allowed` list says which ServiceAccounts may call.
//!
//! Why TokenReview and not the cluster's OIDC JWKS: a bound token is revoked the moment its pod
//! or ServiceAccount is deleted, which only the API server knows (a JWKS check would accept the
//! token until it expires); the API server checks the audience itself; and the sidecar needs no
//! reachable issuer, discovery or key rotation — only a token of its own and RBAC for
//! `tokenreviews.create`, which the operator renders.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Uri, header};
use http_body_util::Full;
use moka::Expiry;
use moka::future::Cache;
use serde::Deserialize;
use sluice_proxy_config::ServiceAccountAuth;

use super::credential::{self, MAX_CREDENTIAL_BYTES};
use super::outbound::{CALL_TIMEOUT, CallError, ClientSource};
use super::store::Store;
use super::watch::{Content, Parsed, Source, Watched};
use super::{Counters, Failure, Provider, digest};
use crate::request::Identity;

/// Largest TokenReview answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Most reviewed tokens remembered.
const MAX_CACHED: u64 = 10_000;
/// Most groups taken from a review.
const MAX_GROUPS: usize = 64;

/// A compiled `serviceAccount` mode.
pub struct ServiceAccounts {
    reviewer: Arc<Reviewer>,
    /// `(namespace, name)`; `None` for `namespace/*`.
    allowed: Vec<(String, Option<String>)>,
}

impl ServiceAccounts {
    pub fn new(settings: &ServiceAccountAuth, store: &Store) -> Self {
        let allowed = settings
            .allowed
            .iter()
            .filter_map(|a| {
                let (ns, name) = a.split_once('/')?;
                Some((ns.to_owned(), (name != "*").then(|| name.to_owned())))
            })
            .collect();
        Self {
            reviewer: Reviewer::shared(settings, store),
            allowed,
        }
    }

    /// `system:serviceaccount:<namespace>:<name>`, when the API server vouches for the token,
    /// for this audience, and the ServiceAccount is allowed.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        counters: &Counters,
    ) -> Result<Identity, Failure> {
        let token = credential::bearer(headers)?.ok_or(Failure::Missing)?;
        let identity = self.reviewer.review(token, counters).await?;
        if self.allows(&identity.name) {
            Ok(identity)
        } else {
            Err(Failure::NotAllowed)
        }
    }

    fn allows(&self, username: &str) -> bool {
        let Some((ns, name)) = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
        else {
            return false;
        };
        self.allowed
            .iter()
            .any(|(a_ns, a_name)| a_ns == ns && a_name.as_deref().is_none_or(|n| n == name))
    }
}

/// TokenReview calls and their cache.
struct Reviewer {
    /// `<apiServer>/apis/authentication.k8s.io/v1/tokenreviews`.
    url: Option<Uri>,
    audience: String,
    /// `Bearer <the sidecar's own token>`, re-read as the kubelet rotates it.
    own_token: Arc<Watched<HeaderValue>>,
    client: ClientSource,
    cache_ttl: Duration,
    cache: Cache<[u8; 32], Reviewed>,
}

/// A review and how long it may be reused.
#[derive(Clone)]
struct Reviewed {
    result: Result<Identity, Failure>,
    ttl: Duration,
}

impl Reviewer {
    fn shared(settings: &ServiceAccountAuth, store: &Store) -> Arc<Self> {
        let tr = &settings.token_review;
        let key = format!("token-review:{:?}:{:?}", settings.audience, tr);
        store.shared(key, || {
            let own_token = store.watched(
                format!("service-account-token:{}", tr.token_file.display()),
                || {
                    Watched::new(
                        "ServiceAccount token",
                        Source::File(tr.token_file.clone()),
                        own_token,
                    )
                },
            );
            let api = tr.api_server.trim_end_matches('/');
            Self {
                url: format!("{api}/apis/authentication.k8s.io/v1/tokenreviews")
                    .parse()
                    .ok(),
                audience: settings.audience.clone(),
                own_token,
                client: ClientSource::new(store, Some(&tr.ca_file), false),
                cache_ttl: tr.cache_ttl.get(),
                cache: Cache::builder()
                    .max_capacity(MAX_CACHED)
                    .expire_after(OwnTtl)
                    .build(),
            }
        })
    }

    /// The token's identity, reviewed once per token while the review is fresh.
    async fn review(&self, token: &str, counters: &Counters) -> Result<Identity, Failure> {
        // Projected tokens are JWTs: anything else is refused without asking.
        let exp = unverified_exp(token).ok_or(Failure::Malformed)?;
        let entry = self
            .cache
            .entry(digest(token))
            .or_try_insert_with(async {
                let _admitted = counters.lookups.admit().map_err(|_| CallError::Throttled)?;
                let result = self.call(token).await;
                if let Err(e) = result {
                    counters.provider_error(Provider::TokenReview, e);
                }
                result.map(|result| Reviewed {
                    result,
                    ttl: self.ttl(exp),
                })
            })
            .await
            .map_err(|e| match *e {
                CallError::Throttled => Failure::Throttled,
                _ => Failure::Unavailable,
            })?;
        entry.into_value().result
    }

    /// `cacheTtl`, but never past the token's `exp`. The claim is read without checking the
    /// signature: it only shortens how long the API server's answer is reused.
    fn ttl(&self, exp: Option<u64>) -> Duration {
        let Some(exp) = exp else {
            return self.cache_ttl;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.cache_ttl
            .min(Duration::from_secs(exp.saturating_sub(now)))
    }

    async fn call(&self, token: &str) -> Result<Result<Identity, Failure>, CallError> {
        let url = self.url.clone().ok_or(CallError::Connect)?;
        let own = self.own_token.current().ok_or(CallError::Unconfigured)?;
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": { "token": token, "audiences": [self.audience] },
        });
        let req = Request::post(url)
            .header(header::AUTHORIZATION, HeaderValue::clone(&own))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|_| CallError::Malformed)?;
        let (status, answer) = self
            .client
            .call(req, CALL_TIMEOUT, MAX_ANSWER_BYTES)
            .await?;
        if !status.is_success() {
            // 401/403: the sidecar's own token or its RBAC; nobody can be reviewed.
            tracing::warn!(
                status = status.as_u16(),
                "the API server refused a TokenReview"
            );
            return Err(CallError::Status);
        }
        status_of(&answer, &self.audience)
    }
}

/// The review in a TokenReview answer.
fn status_of(answer: &[u8], audience: &str) -> Result<Result<Identity, Failure>, CallError> {
    #[derive(Deserialize)]
    struct Answer {
        status: Status,
    }
    #[derive(Deserialize)]
    struct Status {
        #[serde(default)]
        authenticated: bool,
        #[serde(default)]
        user: Option<User>,
        #[serde(default)]
        audiences: Vec<String>,
    }
    #[derive(Deserialize)]
    struct User {
        #[serde(default)]
        username: String,
        #[serde(default)]
        groups: Vec<String>,
    }
    let answer: Answer = serde_json::from_slice(answer).map_err(|_| CallError::Malformed)?;
    let status = answer.status;
    if !status.authenticated {
        return Ok(Err(Failure::Invalid));
    }
    if !status.audiences.iter().any(|a| a == audience) {
        return Ok(Err(Failure::Audience));
    }
    let user = status.user.ok_or(CallError::Malformed)?;
    if user.username.is_empty() || user.username.chars().any(char::is_control) {
        return Err(CallError::Malformed);
    }
    let groups: Vec<Arc<str>> = user
        .groups
        .into_iter()
        .take(MAX_GROUPS)
        .map(Arc::from)
        .collect();
    Ok(Ok(Identity {
        name: Arc::from(user.username),
        groups: groups.into(),
    }))
}

/// `Some(exp)` of a JWT-shaped token (`Some(None)` without the claim), `None` if it is not one.
fn unverified_exp(token: &str) -> Option<Option<u64>> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    #[derive(Deserialize)]
    struct Claims {
        #[serde(default)]
        exp: Option<f64>,
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    // A float or negative `exp` is bad, not a reason to cache forever.
    Some(claims.exp.map(|e| if e > 0.0 { e as u64 } else { 0 }))
}

/// The sidecar's own token file: one token, as `Bearer <token>`.
fn own_token(content: Content) -> Result<Parsed<HeaderValue>, String> {
    let Content::File(bytes) = content else {
        return Err("is a directory".into());
    };
    let token = String::from_utf8_lossy(&bytes);
    let token = token.trim_matches(|c: char| c.is_ascii_whitespace());
    if token.is_empty() || token.len() > 2 * MAX_CREDENTIAL_BYTES {
        return Err("does not hold a token".into());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token is not visible ASCII".to_string())?;
    value.set_sensitive(true);
    Ok(Parsed::clean(value))
}

/// Each review carries its own lifetime.
struct OwnTtl;

#[expect(
    clippy::disallowed_types,
    reason = "moka's Expiry trait names std's Instant"
)]
impl Expiry<[u8; 32], Reviewed> for OwnTtl {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        v: &Reviewed,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn exp_is_read_from_jwt_shaped_tokens_only() {
        assert_eq!(
            unverified_exp(&jwt(r#"{"exp":1700000000}"#)),
            Some(Some(1_700_000_000))
        );
        assert_eq!(unverified_exp(&jwt(r#"{"sub":"x"}"#)), Some(None));
        assert_eq!(unverified_exp(&jwt(r#"{"exp":-5}"#)), Some(Some(0)));
        assert_eq!(unverified_exp("opaque-token"), None);
        assert_eq!(unverified_exp("a.b.c.d"), None);
        assert_eq!(unverified_exp(&jwt("not json")), None);
    }

    #[test]
    fn reviews() {
        let ok = br#"{"status":{"authenticated":true,"user":{"username":"system:serviceaccount:ci:runner","groups":["system:serviceaccounts"]},"audiences":["sluice"]}}"#;
        let id = status_of(ok, "sluice").unwrap().unwrap();
        assert_eq!(&*id.name, "system:serviceaccount:ci:runner");
        assert_eq!(&*id.groups[0], "system:serviceaccounts");
        assert_eq!(
            status_of(ok, "other").unwrap().unwrap_err(),
            Failure::Audience
        );
        let no = br#"{"status":{"authenticated":false,"error":"token expired"}}"#;
        assert_eq!(
            status_of(no, "sluice").unwrap().unwrap_err(),
            Failure::Invalid
        );
        assert!(status_of(b"{}", "sluice").is_err());
    }

    #[test]
    fn allowed_lists_names_and_namespaces() {
        let sa = |allowed: &[&str]| {
            let store = Store::default();
            ServiceAccounts::new(
                &ServiceAccountAuth {
                    audience: "a".into(),
                    allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
                    token_review: Default::default(),
                },
                &store,
            )
        };
        let s = sa(&["ci/runner", "tools/*"]);
        assert!(s.allows("system:serviceaccount:ci:runner"));
        assert!(!s.allows("system:serviceaccount:ci:other"));
        assert!(s.allows("system:serviceaccount:tools:anything"));
        assert!(!s.allows("system:serviceaccount:toolsx:a"));
        assert!(!s.allows("system:node:ci:runner"));
        assert!(!s.allows("kubernetes-admin"));
    }
}
