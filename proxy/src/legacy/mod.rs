//! MCP's 2024-11-05 HTTP+SSE transport, served by the sidecar itself and bridged to the
//! upstream's Streamable HTTP endpoint, so one pod serves clients of both generations under
//! one policy while the upstream runs the modern transport only.
//!
//! `GET <prefix>/sse` opens a session ([`Sessions::open`]): an event stream whose first event
//! (`endpoint`) names `<prefix>/messages/?session_id=<id>`. The client POSTs each message
//! there; the request path treats it like any MCP POST (authentication, inspection, tool
//! policy, rate limits) and hands it to the session ([`Session::relay`]), which sends it to
//! the upstream's `/mcp` in the upstream session the client's `initialize` opened, and puts
//! every message of the answer (a JSON body or an event stream: progress, server requests,
//! the response) on the legacy stream as a `message` event. The POST itself answers 202
//! at once, as the legacy transport's servers do: a client that waits for its POST to finish
//! before sending the next could otherwise never answer a server request made during a call.
//! A refusal of an owner's message (policy, rate limit, upstream failure) is a JSON-RPC error
//! for its id on the stream, behind the same 202.
//!
//! Sessions are bound to the caller that opened them (identity, or address where the entry
//! point names nobody) and to their entry point; any other POST to the id is answered like an
//! unknown id. Ids are 128 random bits. A session ends when its stream closes (the client
//! left, it was idle `legacySse.idleTimeout`, or the sidecar stops): its exchanges in flight
//! are dropped and the upstream session is DELETEd.

mod relay;
mod session;
mod stream;

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode};

use crate::body::ResponseBody;

pub use session::{Exchange, Owner, Session, Sessions, Turn};

/// The upstream's Streamable HTTP endpoint, where legacy messages go.
pub const UPSTREAM_PATH: &str = "/mcp";

static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// What a legacy client's request is for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /sse`: open a session.
    Open,
    /// `POST /messages/?session_id=…`: a message for a session (`None`: no id given).
    Message(Option<&'a str>),
}

/// The legacy request `method` and the upstream-relative `path` make, if any.
pub fn route<'a>(method: &Method, path: &'a PathAndQuery) -> Option<Route<'a>> {
    match (method, path.path()) {
        (&Method::GET, "/sse") => Some(Route::Open),
        (&Method::POST, "/messages/" | "/messages") => Some(Route::Message(
            path.query()
                .into_iter()
                .flat_map(|q| q.split('&'))
                .find_map(|pair| pair.strip_prefix("session_id="))
                .filter(|id| !id.is_empty()),
        )),
        _ => None,
    }
}

/// Readies a legacy message's headers for the upstream's Streamable HTTP endpoint: what it
/// requires the client to accept, JSON, and this session's upstream id — never one the
/// caller sent, which could name another caller's upstream session.
pub fn prepare_request(headers: &mut HeaderMap, turn: &Turn) {
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(&MCP_SESSION_ID);
    headers.remove("last-event-id");
    if let Some(id) = turn.upstream_session() {
        headers.insert(MCP_SESSION_ID.clone(), id.clone());
    }
}

/// The POST's answer once its message is the session's to deliver.
pub fn accepted() -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(b"Accepted")));
    *response.status_mut() = StatusCode::ACCEPTED;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// How long the sidecar waits for the upstream to end a session it DELETEs.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &'static str) -> Option<Route<'static>> {
        let path: &'static PathAndQuery = Box::leak(Box::new(PathAndQuery::from_static(path)));
        route(&method, path)
    }

    #[test]
    fn only_the_two_legacy_paths_with_their_methods() {
        assert_eq!(r(Method::GET, "/sse"), Some(Route::Open));
        assert_eq!(
            r(Method::POST, "/messages/?session_id=ab12"),
            Some(Route::Message(Some("ab12")))
        );
        assert_eq!(
            r(Method::POST, "/messages?x=1&session_id=ab12"),
            Some(Route::Message(Some("ab12")))
        );
        assert_eq!(r(Method::POST, "/messages/"), Some(Route::Message(None)));
        assert_eq!(
            r(Method::POST, "/messages/?session_id="),
            Some(Route::Message(None))
        );
        assert_eq!(r(Method::POST, "/sse"), None);
        assert_eq!(r(Method::GET, "/messages/"), None);
        assert_eq!(r(Method::GET, "/sse/"), None);
        assert_eq!(r(Method::POST, "/mcp"), None);
        assert_eq!(r(Method::DELETE, "/sse"), None);
    }
}
