//! Whose an OAuth bearer is, asked of the upstream itself. Conduit's OAuth proxy (FastMCP's
//! `OAuthProxy`) hands out reference tokens of its own that name no user and that Phabricator
//! never issued; only Conduit maps one to the Phabricator user behind it. So the sidecar calls
//! Conduit's `pha_user_whoami` tool over loopback with the caller's own bearer — the token goes
//! nowhere the caller's request would not have taken it — once per token: the answer is kept
//! for the TTL, keyed by the token's SHA-256, and concurrent requests with one token share one
//! question (single flight). Refusals and failures are never kept.
//!
//! The question is an MCP exchange like any client's: a `tools/call` (after `initialize` and
//! with the session closed again when the upstream keeps sessions), answered as JSON or as an
//! event stream, whose result Conduit writes as `{"success": true, "user": {...}}`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use moka::future::Cache;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sluice_proxy_config::Sessions;

use super::outbound::CallError;
use super::store::Store;
use super::{Counters, Provider, digest};
use crate::forward::Upstream;
use crate::request::Identity;

/// The tool that names the caller (Conduit's; it calls Phabricator's `user.whoami`).
const WHOAMI_TOOL: &str = "pha_user_whoami";
/// Conduit's MCP endpoint on loopback.
const MCP_PATH: &str = "/mcp";
/// Largest answer read, in bytes (a whoami answer is well under 4 KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The revision the sidecar's own `initialize` asks for (Conduit's SDK speaks it).
const PROTOCOL_VERSION: &str = "2025-06-18";

static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
static MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Why the upstream named no user.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Unknown {
    /// The upstream refused the bearer (401, or 403 for a missing scope); its challenges are
    /// what the caller gets.
    #[error("the upstream refused the token ({status})")]
    Refused {
        status: StatusCode,
        challenges: Vec<HeaderValue>,
    },
    /// The upstream could not say (down, slow, an error, an answer without a user).
    #[error("the upstream could not say whose the token is: {0}")]
    Unavailable(CallError),
}

/// Asks the upstream, and remembers its answers.
pub struct UpstreamIdentity {
    sessions: Sessions,
    timeout: Duration,
    cache: Cache<[u8; 32], Identity>,
}

impl UpstreamIdentity {
    /// The instance for these settings, shared with every entry point (and config generation)
    /// that has the same, so a reload keeps what is known.
    pub fn shared(
        store: &Store,
        sessions: Sessions,
        ttl: Duration,
        timeout: Duration,
        max_entries: u64,
    ) -> Arc<Self> {
        let key = format!("upstream-identity:{sessions:?}:{ttl:?}:{timeout:?}:{max_entries}");
        store.shared(key, || Self {
            sessions,
            timeout,
            cache: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
        })
    }

    /// Whose `token` is: remembered, or asked of `upstream` once for every request asking
    /// about the same token meanwhile.
    pub async fn ask(
        &self,
        token: &str,
        upstream: &Upstream,
        counters: &Counters,
    ) -> Result<Identity, Unknown> {
        let entry = self
            .cache
            .entry(digest(token))
            .or_try_insert_with(async {
                counters.whoami_misses.inc();
                let _admitted = counters
                    .lookups
                    .admit()
                    .map_err(|_| Unknown::Unavailable(CallError::Throttled))?;
                let answer = tokio::time::timeout(self.timeout, self.question(token, upstream))
                    .await
                    .unwrap_or(Err(Unknown::Unavailable(CallError::Timeout)));
                if let Err(Unknown::Unavailable(e)) = &answer {
                    counters.provider_error(Provider::Upstream, *e);
                }
                answer
            })
            .await
            .map_err(|e| (*e).clone())?;
        if !entry.is_fresh() {
            counters.whoami_hits.inc();
        }
        Ok(entry.into_value())
    }

    /// Forgets what is known of `token` (the upstream has just refused it).
    pub async fn forget(&self, token_digest: &[u8; 32]) {
        self.cache.invalidate(token_digest).await;
    }

    async fn question(&self, token: &str, upstream: &Upstream) -> Result<Identity, Unknown> {
        let call = Exchange { token, upstream };
        match self.sessions {
            Sessions::Stateless => call.whoami(None).await,
            Sessions::Stateful => {
                let session = call.initialize().await?;
                let answer = call.whoami(Some(&session)).await;
                // Best effort: a session left behind expires with the upstream's own timeout.
                call.end(&session).await;
                answer
            }
        }
    }
}

/// An MCP session the sidecar opened for its question.
struct Session {
    id: HeaderValue,
    version: HeaderValue,
}

/// The requests of one question, with the caller's bearer.
struct Exchange<'a> {
    token: &'a str,
    upstream: &'a Upstream,
}

impl Exchange<'_> {
    /// `initialize`, then `notifications/initialized`: the session the call goes in.
    async fn initialize(&self) -> Result<Session, Unknown> {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "sluice-proxy", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let response = self.post(&body, None).await?;
        let id = response
            .headers()
            .get(&MCP_SESSION_ID)
            .cloned()
            .ok_or(Unknown::Unavailable(CallError::Malformed))?;
        let result = reply_result(&read(response).await?, 1)?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
            .ok_or(Unknown::Unavailable(CallError::Malformed))?;
        let session = Session { id, version };
        let initialized =
            serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self.post(&initialized, Some(&session)).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(Unknown::Unavailable(CallError::Status));
        }
        Ok(session)
    }

    /// The `pha_user_whoami` call and the user in its result.
    async fn whoami(&self, session: Option<&Session>) -> Result<Identity, Unknown> {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": WHOAMI_TOOL, "arguments": {}},
        });
        let response = self.post(&body, session).await?;
        let result = reply_result(&read(response).await?, 2)?;
        user(&result)
    }

    /// Closes the session (DELETE).
    async fn end(&self, session: &Session) {
        let request = self
            .request(Method::DELETE, Some(session))
            .body(Full::new(Bytes::new()));
        if let Ok(request) = request {
            let _ = self.upstream.send(request).await;
        }
    }

    /// POSTs `message`; a refusal of the bearer, or any status but 200 and 202, ends the
    /// question.
    async fn post(
        &self,
        message: &Value,
        session: Option<&Session>,
    ) -> Result<Response<Incoming>, Unknown> {
        let request = self
            .request(Method::POST, session)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(message.to_string())))
            .map_err(|_| Unknown::Unavailable(CallError::Malformed))?;
        let response = self
            .upstream
            .send(request)
            .await
            .map_err(|_| Unknown::Unavailable(CallError::Connect))?;
        match response.status() {
            StatusCode::OK | StatusCode::ACCEPTED => Ok(response),
            status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(Unknown::Refused {
                status,
                challenges: response
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .cloned()
                    .collect(),
            }),
            _ => Err(Unknown::Unavailable(CallError::Status)),
        }
    }

    fn request(&self, method: Method, session: Option<&Session>) -> http::request::Builder {
        let authority = self.upstream.authority();
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{authority}{MCP_PATH}"))
            .header(header::HOST, authority)
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(session) = session {
            builder = builder
                .header(&MCP_SESSION_ID, session.id.clone())
                .header(&MCP_PROTOCOL_VERSION, session.version.clone());
        }
        builder
    }
}

/// The whole body of an answer, bounded in size.
async fn read(response: Response<Incoming>) -> Result<Answer, Unknown> {
    let event_stream = crate::sse::is_event_stream(response.headers());
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|_| Unknown::Unavailable(CallError::TooLarge))?
        .to_bytes();
    Ok(Answer { event_stream, body })
}

/// An answer's body and whether it is an event stream.
struct Answer {
    event_stream: bool,
    body: Bytes,
}

/// The `result` of the JSON-RPC response with `id` in `answer` (a JSON body, or one of the
/// stream's events).
fn reply_result(answer: &Answer, id: u64) -> Result<Value, Unknown> {
    #[derive(Deserialize)]
    struct Reply<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        result: Option<Value>,
        error: Option<Value>,
    }
    let malformed = Unknown::Unavailable(CallError::Malformed);
    let text = std::str::from_utf8(&answer.body).map_err(|_| malformed.clone())?;
    let messages: Vec<String> = if answer.event_stream {
        crate::sse::event_data(text)
    } else {
        vec![text.to_owned()]
    };
    for message in &messages {
        let Ok(reply) = serde_json::from_str::<Reply<'_>>(message) else {
            continue;
        };
        if reply.id.map(RawValue::get) != Some(id.to_string().as_str()) {
            continue;
        }
        return match (reply.result, reply.error) {
            (Some(result), None) => Ok(result),
            _ => Err(Unknown::Unavailable(CallError::ErrorCode)),
        };
    }
    Err(malformed)
}

/// The user a `pha_user_whoami` result names: Conduit's `{"success": true, "user": {...}}`, as
/// structured content or as the text of its first content block.
fn user(result: &Value) -> Result<Identity, Unknown> {
    let unavailable = |e| Err(Unknown::Unavailable(e));
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return unavailable(CallError::ErrorCode);
    }
    let structured = match result.get("structuredContent") {
        Some(Value::Object(_)) => result["structuredContent"].clone(),
        _ => result
            .get("content")
            .and_then(|c| c.get(0))
            .and_then(|block| block.get("text"))
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null),
    };
    if structured.get("success").and_then(Value::as_bool) != Some(true) {
        // Conduit's own error report (HTTP 200): its code says what failed, never the token.
        let code = structured
            .get("error_code")
            .and_then(Value::as_str)
            .unwrap_or("none");
        let code: String = code.chars().take(64).collect();
        tracing::warn!(error_code = %code, "{WHOAMI_TOOL} did not name the caller");
        return unavailable(CallError::ErrorCode);
    }
    // `user` since Conduit 0.2; its earlier releases let the decorator wrap it as `result`.
    let found = structured.get("user").or_else(|| structured.get("result"));
    match found
        .and_then(|u| u.get("userName"))
        .and_then(Value::as_str)
    {
        Some(name) if super::whoami::is_user_name(name) => Ok(Identity::named(name)),
        _ => unavailable(CallError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(event_stream: bool, body: &str) -> Answer {
        Answer {
            event_stream,
            body: Bytes::from(body.to_owned()),
        }
    }

    const ALICE: &str = r#"{"content":[{"type":"text","text":"{\"success\": true, \"user\": {\"phid\": \"PHID-USER-a\", \"userName\": \"alice\"}}"}],"structuredContent":{"success":true,"user":{"phid":"PHID-USER-a","userName":"alice"}},"isError":false}"#;

    fn name(r: Result<Identity, Unknown>) -> String {
        match r {
            Ok(i) => i.name.to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn the_reply_is_found_by_id_in_json_or_in_a_stream() {
        let json = format!(r#"{{"jsonrpc":"2.0","id":2,"result":{ALICE}}}"#);
        let r = reply_result(&answer(false, &json), 2).unwrap();
        assert_eq!(name(user(&r)), "alice");
        let stream = format!(
            "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\r\n\r\n: keep-alive\r\nevent: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{ALICE}}}\r\n\r\n"
        );
        let r = reply_result(&answer(true, &stream), 2).unwrap();
        assert_eq!(name(user(&r)), "alice");
        // Another id, an error, garbage: no user.
        assert!(reply_result(&answer(false, &json), 1).is_err());
        let error = r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"Unknown tool"}}"#;
        assert!(matches!(
            reply_result(&answer(false, error), 2),
            Err(Unknown::Unavailable(CallError::ErrorCode))
        ));
        assert!(reply_result(&answer(true, "data: {not json\n\n"), 2).is_err());
    }

    #[test]
    fn only_a_successful_result_with_a_user_name_names_the_caller() {
        let from_text: Value = serde_json::from_str(
            r#"{"content":[{"type":"text","text":"{\"success\": true, \"user\": {\"userName\": \"bob\"}}"}]}"#,
        )
        .unwrap();
        assert_eq!(name(user(&from_text)), "bob");
        let wrapped: Value = serde_json::from_str(
            r#"{"structuredContent":{"success":true,"result":{"userName":"carol"}}}"#,
        )
        .unwrap();
        assert_eq!(name(user(&wrapped)), "carol");
        for bad in [
            r#"{"structuredContent":{"success":false,"error":"no token","error_code":"VALIDATION_ERROR"}}"#,
            r#"{"structuredContent":{"success":true,"user":{"userName":""}}}"#,
            r#"{"structuredContent":{"success":true,"user":{"userName":"a\nb"}}}"#,
            r#"{"structuredContent":{"success":true,"profile":{"userName":"alice"}}}"#,
            r#"{"content":[{"type":"text","text":"hello"}],"isError":true}"#,
            r#"{"content":[]}"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(user(&v).is_err(), "{bad}");
        }
    }
}
