//! MCP's Streamable HTTP transport at `/mcp`, as the sidecar reaches it on loopback: POST a
//! message (a request is answered with an SSE stream that ends with its response; anything
//! else with 202), GET the session's stream of server messages, DELETE to end the session. An
//! `initialize` without `Mcp-Session-Id` opens a session, and with it a process.
//!
//! Every refusal is an HTTP status with a JSON-RPC error body, as MCP clients expect.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::bridge::{Bridge, Refused};
use crate::jsonrpc::{self, Kind, Message};
use crate::session::{NotTaken, Waiter};
use crate::sse::EventStream;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

const MCP_PATH: &str = "/mcp";
const SESSION_HEADER: &str = "mcp-session-id";

/// Answers one request.
pub async fn handle(bridge: Arc<Bridge>, request: Request<Incoming>) -> Response<Body> {
    if request.uri().path() != MCP_PATH {
        return refusal(
            StatusCode::NOT_FOUND,
            None,
            jsonrpc::INVALID_REQUEST,
            "not found: the MCP endpoint is /mcp",
        );
    }
    let session_id = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match *request.method() {
        Method::POST => post(bridge, session_id, request).await,
        Method::GET => get(&bridge, session_id.as_deref()),
        Method::DELETE => delete(&bridge, session_id.as_deref()),
        _ => {
            let mut response = refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                jsonrpc::INVALID_REQUEST,
                "method not allowed: use POST, GET or DELETE",
            );
            response.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("GET, POST, DELETE"),
            );
            response
        }
    }
}

async fn post(
    bridge: Arc<Bridge>,
    session_id: Option<String>,
    request: Request<Incoming>,
) -> Response<Body> {
    let body = match Limited::new(request.into_body(), bridge.max_message_bytes())
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            let status = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return refusal(
                status,
                None,
                jsonrpc::INVALID_REQUEST,
                &format!("cannot read the body: {e}"),
            );
        }
    };
    let message = match Message::parse(&body) {
        Ok(message) => message,
        Err(why) => return refusal(StatusCode::BAD_REQUEST, None, why.code(), &why.to_string()),
    };
    let request_id = match &message.kind {
        Kind::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    let Some(session_id) = session_id else {
        return match &message.kind {
            Kind::Request { method, .. } if method == "initialize" => open(&bridge, &message).await,
            Kind::Request { .. } => sessionless(&bridge, message).await,
            _ => match bridge.running_sessionless() {
                Some(shared) => match shared.send_other(&message).await {
                    Ok(()) => empty(StatusCode::ACCEPTED),
                    Err(not_taken) => not_taken_refusal(not_taken, None),
                },
                None => refusal(
                    StatusCode::BAD_REQUEST,
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "no Mcp-Session-Id, and no sessionless request is being served",
                ),
            },
        };
    };
    let Some(session) = bridge.session(&session_id) else {
        return refusal(
            StatusCode::NOT_FOUND,
            request_id.as_ref(),
            jsonrpc::INVALID_REQUEST,
            "no such session (it ended); start a new one with initialize",
        );
    };
    session.touch();
    if request_id.is_none() {
        return match session.send_other(&message).await {
            Ok(()) => empty(StatusCode::ACCEPTED),
            Err(not_taken) => not_taken_refusal(not_taken, None),
        };
    }
    let (caller, stream) = EventStream::channel(bridge.limits.stream_buffer);
    match session.send_request(&message, Waiter::Caller(caller)).await {
        Ok(()) => events(stream, None),
        Err(not_taken) => not_taken_refusal(not_taken, request_id.as_ref()),
    }
}

/// A request without a session (MCP's stateless revisions, e.g. `server/discover`): served by
/// the one shared process, under an alias so callers' ids cannot collide.
async fn sessionless(bridge: &Arc<Bridge>, request: Message) -> Response<Body> {
    let id = match &request.kind {
        Kind::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    let shared = match bridge.sessionless() {
        Ok(shared) => shared,
        Err(refused) => return refused_refusal(refused, id.as_ref()),
    };
    let (caller, stream) = EventStream::channel(bridge.limits.stream_buffer);
    match shared
        .send_request_as(request, bridge.alias(), Waiter::Caller(caller))
        .await
    {
        Ok(()) => events(stream, None),
        Err(not_taken) => not_taken_refusal(not_taken, id.as_ref()),
    }
}

async fn open(bridge: &Arc<Bridge>, initialize: &Message) -> Response<Body> {
    let id = match &initialize.kind {
        Kind::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    let (caller, stream) = EventStream::channel(bridge.limits.stream_buffer);
    match bridge.open(initialize, caller).await {
        Ok(session) => events(stream, Some(&session.id)),
        Err(refused) => refused_refusal(refused, id.as_ref()),
    }
}

fn refused_refusal(refused: Refused, id: Option<&serde_json::Value>) -> Response<Body> {
    match refused {
        Refused::Full(count) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            jsonrpc::INTERNAL_ERROR,
            &format!(
                "the bridge runs {count} server processes, its --max-processes; end a session or try later"
            ),
        ),
        Refused::BackingOff(left) => {
            let mut response = refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                jsonrpc::INTERNAL_ERROR,
                &format!(
                    "the MCP server crashed lately; no process starts for {} ms",
                    left.as_millis()
                ),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(left.as_secs().max(1)));
            response
        }
        Refused::Start(e) => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            id,
            jsonrpc::INTERNAL_ERROR,
            &format!("cannot start the MCP server: {e}"),
        ),
        Refused::ShuttingDown => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            id,
            jsonrpc::INTERNAL_ERROR,
            "the bridge is shutting down",
        ),
    }
}

fn get(bridge: &Bridge, session_id: Option<&str>) -> Response<Body> {
    let Some(session) = session_id.and_then(|id| bridge.session(id)) else {
        let status = if session_id.is_some() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        return refusal(
            status,
            None,
            jsonrpc::INVALID_REQUEST,
            "GET needs the Mcp-Session-Id of a live session",
        );
    };
    let (listener, stream) = EventStream::channel(bridge.limits.stream_buffer);
    session.listen(listener);
    events(stream, None)
}

fn delete(bridge: &Bridge, session_id: Option<&str>) -> Response<Body> {
    match session_id {
        Some(id) if bridge.close(id) => empty(StatusCode::OK),
        Some(_) => refusal(
            StatusCode::NOT_FOUND,
            None,
            jsonrpc::INVALID_REQUEST,
            "no such session",
        ),
        None => refusal(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "DELETE needs an Mcp-Session-Id",
        ),
    }
}

fn not_taken_refusal(not_taken: NotTaken, id: Option<&serde_json::Value>) -> Response<Body> {
    match not_taken {
        NotTaken::DuplicateId => refusal(
            StatusCode::BAD_REQUEST,
            id,
            jsonrpc::INVALID_REQUEST,
            "a request with this id is still waiting for its response",
        ),
        NotTaken::NoProcess(crate::session::Phase::Restarting) => {
            let mut response = refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                jsonrpc::INTERNAL_ERROR,
                "the MCP server's process is being restarted; try again shortly",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        NotTaken::NoProcess(_) => refusal(
            StatusCode::NOT_FOUND,
            id,
            jsonrpc::INVALID_REQUEST,
            "the session ended; start a new one with initialize",
        ),
    }
}

fn events(stream: EventStream, session_id: Option<&str>) -> Response<Body> {
    let mut response = Response::new(stream.boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    if let Some(id) = session_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert(SESSION_HEADER, id);
    }
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *response.status_mut() = status;
    response
}

fn refusal(
    status: StatusCode,
    id: Option<&serde_json::Value>,
    code: i64,
    message: &str,
) -> Response<Body> {
    let mut response =
        Response::new(Full::new(Bytes::from(jsonrpc::error(id, code, message))).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
