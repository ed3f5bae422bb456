//! Conduit in OAuth mode, in process: its MCP endpoint names the Phabricator user behind each
//! bearer it issued through `pha_user_whoami` (answered as an event stream, in Conduit's result
//! shape `{"success": true, "user": {...}}`), refuses any other bearer with FastMCP's 401
//! challenge, and answers every other request 200 (its OAuth flow's paths without a bearer).
//!
//! Where it differs from the real one (which the e2e tests run: FastMCP's `OAuthProxy`): no
//! OAuth flow, no Phabricator behind it, its bearers are whatever the test registers, and it
//! can be switched to failing or slow. Like the real one it checks the bearer on every request,
//! refuses requests without a session in stateful mode, and ends sessions on DELETE.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Response, StatusCode};

use super::{Body, Seen, Upstream, full};

/// FastMCP's challenge for a bearer it does not know (its metadata URL is its own idea of its
/// public URL, which the sidecar must replace).
pub const CHALLENGE: &str = r#"Bearer error="invalid_token", error_description="Authentication required", resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp""#;

#[derive(Default)]
struct State {
    /// Bearer → Phabricator user name.
    users: Mutex<HashMap<String, String>>,
    stateful: bool,
    sessions: Mutex<HashSet<String>>,
    next_session: AtomicUsize,
    /// Every request answered 500.
    failing: AtomicBool,
    /// Requests without a bearer answered 200, as Conduit in header-token mode would.
    header_tokens: AtomicBool,
    /// How long each `pha_user_whoami` takes.
    whoami_delay: Mutex<Duration>,
    whoami_calls: AtomicUsize,
}

/// The stand-in and its switches.
pub struct Conduit {
    pub upstream: Upstream,
    state: Arc<State>,
}

impl Conduit {
    /// A stateless Conduit (its default).
    pub async fn start() -> Self {
        Self::with(false).await
    }

    /// A Conduit run with `--no-stateless`.
    pub async fn stateful() -> Self {
        Self::with(true).await
    }

    async fn with(stateful: bool) -> Self {
        let state = Arc::new(State {
            stateful,
            ..State::default()
        });
        let handler_state = state.clone();
        let upstream = Upstream::start(move |seen| {
            let delay = if is_whoami(&seen.body) {
                *handler_state.whoami_delay.lock().unwrap()
            } else {
                Duration::ZERO
            };
            let response = answer(&handler_state, seen);
            async move {
                tokio::time::sleep(delay).await;
                response
            }
        })
        .await;
        Self { upstream, state }
    }

    /// Registers `bearer` as a token Conduit issued to Phabricator user `user`.
    pub fn issue(&self, bearer: &str, user: &str) {
        self.state
            .users
            .lock()
            .unwrap()
            .insert(bearer.to_owned(), user.to_owned());
    }

    /// Forgets `bearer` (its mapping lost, as after a restart without its state).
    pub fn revoke(&self, bearer: &str) {
        self.state.users.lock().unwrap().remove(bearer);
    }

    /// Also answers requests without a bearer (for a sidecar whose other entry points front
    /// Conduit in header-token mode).
    pub fn also_header_tokens(&self) {
        self.state.header_tokens.store(true, Ordering::SeqCst);
    }

    /// Makes every request fail with 500 (or stop failing).
    pub fn fail(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// Makes `pha_user_whoami` take `delay`.
    pub fn slow_whoami(&self, delay: Duration) {
        *self.state.whoami_delay.lock().unwrap() = delay;
    }

    /// How many `pha_user_whoami` calls it answered (or was asked, when failing).
    pub fn whoami_calls(&self) -> usize {
        self.state.whoami_calls.load(Ordering::SeqCst)
    }

    /// Sessions opened and not ended.
    pub fn open_sessions(&self) -> usize {
        self.state.sessions.lock().unwrap().len()
    }

    /// The next request the sidecar forwarded for a caller (its own questions skipped).
    pub async fn next_forwarded(&mut self) -> Seen {
        loop {
            let seen = self.upstream.next().await;
            if !is_own_question(&seen) {
                return seen;
            }
        }
    }
}

/// Whether `seen` is one of the sidecar's own requests: a `pha_user_whoami` call or the
/// session around it.
pub fn is_own_question(seen: &Seen) -> bool {
    seen.method == Method::DELETE
        || is_whoami(&seen.body)
        || std::str::from_utf8(&seen.body).is_ok_and(|b| {
            b.contains(r#""clientInfo":{"name":"sluice-proxy""#)
                || b.contains("notifications/initialized")
        })
}

fn is_whoami(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok_and(|b| b.contains(r#""name":"pha_user_whoami""#))
}

/// The response to `seen`.
fn answer(state: &State, seen: &Seen) -> Response<Body> {
    let body = &seen.body;
    if is_whoami(body) {
        state.whoami_calls.fetch_add(1, Ordering::SeqCst);
    }
    if state.failing.load(Ordering::SeqCst) {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "boom");
    }
    let bearer = seen
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let header_token = bearer.is_empty() && state.header_tokens.load(Ordering::SeqCst);
    if seen.uri.path() != "/mcp" || header_token {
        // The OAuth flow's routes take no bearer.
        return plain(StatusCode::OK, "");
    }
    let Some(user) = state.users.lock().unwrap().get(bearer).cloned() else {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", CHALLENGE)
            .header("content-type", "application/json")
            .body(full(
                r#"{"error": "invalid_token", "error_description": "Authentication required"}"#,
            ))
            .unwrap();
    };
    let session = seen
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok());
    let text = String::from_utf8_lossy(body).into_owned();
    if seen.method == Method::DELETE {
        let ended = session.is_some_and(|s| state.sessions.lock().unwrap().remove(s));
        let status = if ended {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        return plain(status, "");
    }
    if state.stateful && text.contains(r#""method":"initialize""#) {
        let id = format!(
            "session-{}",
            state.next_session.fetch_add(1, Ordering::SeqCst)
        );
        state.sessions.lock().unwrap().insert(id.clone());
        let reply = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"Conduit","version":"1"}}}"#;
        return Response::builder()
            .header("content-type", "text/event-stream")
            .header("mcp-session-id", id)
            .body(full(format!("event: message\r\ndata: {reply}\r\n\r\n")))
            .unwrap();
    }
    if state.stateful && !session.is_some_and(|s| state.sessions.lock().unwrap().contains(s)) {
        return plain(StatusCode::BAD_REQUEST, "Bad Request: Missing session ID");
    }
    if text.contains("notifications/") {
        return plain(StatusCode::ACCEPTED, "");
    }
    if is_whoami(body) {
        let user_json = serde_json::json!({
            "phid": format!("PHID-USER-{user}"),
            "userName": user,
            "realName": user,
        });
        let structured = serde_json::json!({"success": true, "user": user_json});
        let reply = serde_json::json!({
            "jsonrpc": "2.0",
            "id": serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"],
            "result": {
                "content": [{"type": "text", "text": structured.to_string()}],
                "structuredContent": structured,
                "isError": false,
            },
        });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(full(format!("event: message\r\ndata: {reply}\r\n\r\n")))
            .unwrap();
    }
    Response::builder()
        .header("content-type", "application/json")
        .body(full(r#"{"jsonrpc":"2.0","id":42,"result":{}}"#))
        .unwrap()
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(full(text.to_owned()))
        .unwrap()
}
