//! Phabricator's `user.whoami`: whose a token is, asked once per token and remembered, keyed by
//! the token's SHA-256. Concurrent requests with one token share one call (single flight).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::Full;
use moka::Expiry;
use moka::future::Cache;
use serde::Deserialize;
use sluice_proxy_config::PhabricatorApi;

use super::outbound::{CallError, ClientSource};
use super::store::Store;
use super::{Counters, Provider, digest};
use crate::request::Identity;

/// Largest `user.whoami` answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Conduit error codes that mean "this token is not good", as opposed to "Phabricator failed".
const REFUSED: [&str; 5] = [
    "ERR-INVALID-AUTH",
    "ERR-INVALID-SESSION",
    "ERR-USER-DISABLED",
    "ERR-USER-NOACCESS",
    "ERR-OAUTH-ACCESS",
];

/// What Phabricator said about a token.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// The token is `userName`'s.
    User(Identity),
    /// The token is not (or no longer) good.
    Refused,
}

/// How long verdicts are remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttls {
    pub accepted: Duration,
    pub refused: Duration,
    pub max_entries: u64,
}

/// `user.whoami` with its cache.
pub struct Whoami {
    client: ClientSource,
    /// `<phabricator.url>user.whoami`; `None` if that is not a URI (refused by validation).
    url: Option<Uri>,
    timeout: Duration,
    cache: Cache<[u8; 32], Verdict>,
}

impl Whoami {
    /// The instance for these settings, shared with every entry point that has the same.
    pub fn shared(store: &Store, api: &PhabricatorApi, ttls: Ttls) -> Arc<Self> {
        let key = format!("whoami:{api:?}:{ttls:?}");
        store.shared(key, || Self {
            client: ClientSource::new(store, api.ca_file.as_deref(), api.insecure_skip_verify),
            url: format!("{}user.whoami", api.url).parse().ok(),
            timeout: api.timeout.get(),
            cache: Cache::builder()
                .max_capacity(ttls.max_entries)
                .expire_after(ByVerdict(ttls))
                .build(),
        })
    }

    /// Whose `token` is: from the cache, or from one call shared by every request asking
    /// about the same token meanwhile. An error means Phabricator could not say.
    pub async fn ask(&self, token: &str, counters: &Counters) -> Result<Verdict, CallError> {
        let entry = self
            .cache
            .entry(digest(token))
            .or_try_insert_with(async {
                counters.whoami_misses.inc();
                let _admitted = counters.lookups.admit().map_err(|_| CallError::Throttled)?;
                let verdict = self.call(token).await;
                if let Err(e) = verdict {
                    counters.provider_error(Provider::Whoami, e);
                }
                verdict
            })
            .await
            .map_err(|e| *e)?;
        if !entry.is_fresh() {
            counters.whoami_hits.inc();
        }
        Ok(entry.into_value())
    }

    async fn call(&self, token: &str) -> Result<Verdict, CallError> {
        let url = self.url.clone().ok_or(CallError::Connect)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("api.token", token)
            .finish();
        // Never compressed: Conduit's API refuses compressed bodies.
        let req = Request::post(url)
            .header(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|_| CallError::Malformed)?;
        let (status, body) = self
            .client
            .call(req, self.timeout, MAX_ANSWER_BYTES)
            .await?;
        if status != StatusCode::OK {
            return Err(CallError::Status);
        }
        verdict(&body)
    }
}

/// The verdict in a Conduit API envelope: `{"result": …, "error_code": …, "error_info": …}`.
/// `error_info` is never read: Phabricator quotes the token in some of its messages.
fn verdict(body: &[u8]) -> Result<Verdict, CallError> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        result: Option<User>,
        #[serde(default)]
        error_code: Option<String>,
    }
    #[derive(Deserialize)]
    struct User {
        #[serde(rename = "userName")]
        user_name: String,
    }
    let envelope: Envelope = serde_json::from_slice(body).map_err(|_| CallError::Malformed)?;
    match (envelope.error_code, envelope.result) {
        (Some(code), _) if REFUSED.contains(&code.as_str()) => Ok(Verdict::Refused),
        (Some(code), _) => {
            let code: String = code.chars().take(64).collect();
            tracing::warn!(error_code = %code, "user.whoami answered an unexpected error");
            Err(CallError::ErrorCode)
        }
        (None, Some(user)) if is_user_name(&user.user_name) => {
            Ok(Verdict::User(Identity::named(user.user_name)))
        }
        (None, _) => Err(CallError::Malformed),
    }
}

/// A name fit for logs, metrics keys and rules.
pub(super) fn is_user_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(char::is_control)
}

/// Accepted tokens live for one TTL, refused ones for another.
struct ByVerdict(Ttls);

#[expect(
    clippy::disallowed_types,
    reason = "moka's Expiry trait names std's Instant"
)]
impl Expiry<[u8; 32], Verdict> for ByVerdict {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        v: &Verdict,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(match v {
            Verdict::User(_) => self.0.accepted,
            Verdict::Refused => self.0.refused,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        let ok = br#"{"result":{"phid":"PHID-USER-1","userName":"alice","realName":"A"},"error_code":null,"error_info":null}"#;
        assert!(matches!(verdict(ok), Ok(Verdict::User(i)) if &*i.name == "alice"));
        let refused = br#"{"result":null,"error_code":"ERR-INVALID-AUTH","error_info":"API token \"api-x\" is invalid."}"#;
        assert!(matches!(verdict(refused), Ok(Verdict::Refused)));
        let core =
            br#"{"result":null,"error_code":"ERR-CONDUIT-CORE","error_info":"database down"}"#;
        assert_eq!(verdict(core).unwrap_err(), CallError::ErrorCode);
        for bad in [
            &br#"{"result":null,"error_code":null}"#[..],
            br#"{"result":{"userName":""},"error_code":null}"#,
            br#"{"result":{"userName":"a\nb"},"error_code":null}"#,
            br#"{"result":[],"error_code":null}"#,
            b"<html>",
        ] {
            assert_eq!(
                verdict(bad).unwrap_err(),
                CallError::Malformed,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
