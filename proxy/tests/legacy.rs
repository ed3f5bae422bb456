//! The legacy HTTP+SSE transport, bridged by the sidecar to a Streamable HTTP upstream: the
//! upstream session the client's `initialize` opened carries every later message (and never
//! one the caller names), answers of every shape reach the stream, refusals and upstream
//! failures too (as JSON-RPC errors for the request's id, behind a 202), and the upstream
//! session ends with the stream. The real SDK clients and servers are in e2e/tests/legacy_sse.rs.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::pin::Pin;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use support::*;

/// An upstream speaking Streamable HTTP with sessions, as the SDKs do (only what the bridge
/// uses): `initialize` opens session `up-1`; tools answer as their name says.
async fn upstream() -> Upstream {
    Upstream::start(|seen| {
        let message: Value = serde_json::from_slice(&seen.body).unwrap_or_default();
        let id = message["id"].clone();
        let answer = match (&seen.method, message["method"].as_str()) {
            (&Method::DELETE, _) => json_status(StatusCode::OK, String::new(), None),
            // The server's own stream, in the session it gave: what it says outside requests.
            (&Method::GET, _) if seen.headers.get("mcp-session-id").is_some_and(|s| s == "up-1") => {
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(full(
                        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n",
                    ))
                    .unwrap()
            }
            (&Method::GET, _) => json_status(StatusCode::METHOD_NOT_ALLOWED, String::new(), None),
            (_, Some("initialize")) => json_status(
                StatusCode::OK,
                json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2024-11-05",
                    "capabilities":{},"serverInfo":{"name":"up","version":"1"}}})
                .to_string(),
                Some("up-1"),
            ),
            (_, Some("notifications/initialized")) => {
                json_status(StatusCode::ACCEPTED, String::new(), None)
            }
            (_, Some("tools/call")) => match message["params"]["name"].as_str() {
                Some("broken") => Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .header("content-type", "text/html")
                    .body(full("<html>oops</html>"))
                    .unwrap(),
                Some("refused") => json_status(
                    StatusCode::BAD_REQUEST,
                    json!({"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,
                        "message":"Bad Request: No valid session ID provided"}})
                    .to_string(),
                    None,
                ),
                Some("streamed") => {
                    let progress = json!({"jsonrpc":"2.0","method":"notifications/progress",
                        "params":{"progressToken":1,"progress":1,"total":2}});
                    let result = json!({"jsonrpc":"2.0","id":id,"result":{"content":[
                        {"type":"text","text":"done"}]}});
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(full(format!(
                            "event: message\r\ndata: {progress}\r\n\r\nid: 7\ndata: {result}\n\n"
                        )))
                        .unwrap()
                }
                name => json_status(
                    StatusCode::OK,
                    json!({"jsonrpc":"2.0","id":id,"result":{"content":[
                        {"type":"text","text":format!("called {}", name.unwrap_or("?"))}]}})
                    .to_string(),
                    None,
                ),
            },
            _ => json_status(StatusCode::ACCEPTED, String::new(), None),
        };
        async move { answer }
    })
    .await
}

fn json_status(status: StatusCode, body: String, session: Option<&str>) -> Response<Body> {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(session) = session {
        response = response.header("mcp-session-id", session);
    }
    response.body(full(body)).unwrap()
}

/// A legacy client's event stream.
struct Stream {
    body: Pin<Box<Incoming>>,
    buffer: String,
}

impl Stream {
    async fn open(sluice: &Sluice, path: &str) -> (Self, String) {
        let response = within(
            "the legacy stream",
            client().request(
                Request::get(sluice.url(path))
                    .body(Full::default())
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = Self {
            body: Box::pin(response.into_body()),
            buffer: String::new(),
        };
        let (kind, endpoint) = stream.next_event().await;
        assert_eq!(kind, "endpoint");
        (stream, endpoint)
    }

    /// The next event's type and data (keep-alive comments skipped).
    async fn next_event(&mut self) -> (String, String) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let mut kind = String::from("message");
                let mut data = Vec::new();
                for line in event.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    }
                }
                if !data.is_empty() {
                    return (kind, data.join("\n"));
                }
                continue;
            }
            let frame = within("a legacy event", self.body.frame())
                .await
                .expect("the stream ended")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    async fn next_message(&mut self) -> Value {
        let (kind, data) = self.next_event().await;
        assert_eq!(kind, "message");
        serde_json::from_str(&data).unwrap()
    }
}

async fn post_message(
    sluice: &Sluice,
    endpoint: &str,
    message: Value,
    extra: &[(&str, &str)],
) -> Reply {
    let mut request =
        Request::post(sluice.url(endpoint)).header("content-type", "application/json");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    send(
        request
            .body(Full::new(Bytes::from(message.to_string())))
            .unwrap(),
    )
    .await
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

/// The next request the upstream saw that was not the sidecar's own GET.
async fn next_message_seen(upstream: &mut Upstream) -> Seen {
    loop {
        let seen = upstream.next().await;
        if seen.method != Method::GET {
            return seen;
        }
    }
}

#[tokio::test]
async fn messages_travel_in_the_upstream_session_initialize_opened_and_it_ends_with_the_stream() {
    let mut upstream = upstream().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "pathPrefix: /ai")).await;
    let (mut stream, endpoint) = Stream::open(&sluice, "/ai/sse").await;
    assert!(
        endpoint.starts_with("/ai/messages/?session_id="),
        "{endpoint}"
    );

    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    // Before the upstream named a session, one the caller names does not go either.
    let reply = post_message(&sluice, &endpoint, init, &[("mcp-session-id", "up-2")]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    assert_eq!(
        stream.next_message().await["result"]["serverInfo"]["name"],
        "up"
    );
    let seen = next_message_seen(&mut upstream).await;
    assert_eq!(seen.uri.path(), "/mcp");
    assert_eq!(
        seen.uri.query(),
        None,
        "the legacy session id stays with the sidecar"
    );
    assert_eq!(
        seen.headers["accept"],
        "application/json, text/event-stream"
    );
    assert!(seen.headers.get("mcp-session-id").is_none());

    let reply = post_message(
        &sluice,
        &endpoint,
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(
        next_message_seen(&mut upstream).await.headers["mcp-session-id"],
        "up-1"
    );
    // Then the sidecar listens on the server's own stream, and what it says comes along.
    assert_eq!(
        stream.next_message().await["method"],
        "notifications/tools/list_changed"
    );

    // A session id the caller names is never the one that goes upstream.
    let reply = post_message(
        &sluice,
        &endpoint,
        call(1, "echo"),
        &[("mcp-session-id", "up-2")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let answer = stream.next_message().await;
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["content"][0]["text"], "called echo");
    assert_eq!(
        next_message_seen(&mut upstream).await.headers["mcp-session-id"],
        "up-1"
    );

    drop(stream);
    let delete = next_message_seen(&mut upstream).await;
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(delete.headers["mcp-session-id"], "up-1");
    assert_eq!(delete.uri.path(), "/mcp");
    eventually("the session to be gone", async || {
        post_message(&sluice, &endpoint, call(2, "echo"), &[])
            .await
            .status
            == StatusCode::NOT_FOUND
    })
    .await;
}

#[tokio::test]
async fn answers_of_every_shape_and_every_refusal_arrive_on_the_stream_for_their_id() {
    let upstream = upstream().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  deny: [\"secret\"]\nrateLimits:\n  - name: once\n    by: [clientAddress]\n    requests: 1\n    period: 1h\n    methods: [tools/call]\n    tools: [\"limited\"]",
    ))
    .await;
    let (mut stream, endpoint) = Stream::open(&sluice, "/sse").await;
    assert!(endpoint.starts_with("/messages/?session_id="), "{endpoint}");

    async fn expect(sluice: &Sluice, endpoint: &str, stream: &mut Stream, message: Value) -> Value {
        let reply = post_message(sluice, endpoint, message, &[]).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
        stream.next_message().await
    }
    let s = &mut stream;
    // An event stream: the progress notification, then the answer.
    let progress = expect(&sluice, &endpoint, s, call(1, "streamed")).await;
    assert_eq!(progress["method"], "notifications/progress");
    let answer = s.next_message().await;
    assert_eq!(
        (
            answer["id"].clone(),
            answer["result"]["content"][0]["text"].clone()
        ),
        (json!(1), json!("done"))
    );
    // The policy, the rate limit and the upstream's failures: errors for the request's id.
    let denied = expect(&sluice, &endpoint, s, call(2, "secret")).await;
    assert_eq!(
        (denied["id"].clone(), denied["error"]["code"].clone()),
        (json!(2), json!(-32003))
    );
    let first = expect(&sluice, &endpoint, s, call(3, "limited")).await;
    assert_eq!(first["result"]["content"][0]["text"], "called limited");
    let limited = expect(&sluice, &endpoint, s, call(4, "limited")).await;
    assert_eq!(
        (limited["id"].clone(), limited["error"]["code"].clone()),
        (json!(4), json!(-32004))
    );
    let broken = expect(&sluice, &endpoint, s, call(5, "broken")).await;
    assert_eq!(broken["id"], 5);
    assert_eq!(
        broken["error"]["message"],
        "the upstream answered HTTP 500 Internal Server Error"
    );
    let refused = expect(&sluice, &endpoint, s, call(6, "refused")).await;
    assert_eq!(
        refused["id"], 6,
        "the upstream's error, for the request's id: {refused}"
    );
    assert_eq!(
        refused["error"]["message"],
        "Bad Request: No valid session ID provided"
    );
}
