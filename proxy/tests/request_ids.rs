//! Request ids: a caller's well-formed `X-Request-Id` is kept, anything else replaced by one of
//! the proxy's; the upstream receives exactly that one, and every answer carries it back —
//! forwarded answers, refusals decided from the head or from the body, and the legacy
//! transport's 202. (That the access and audit lines name it: policy_audit.rs.)
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use http::StatusCode;
use support::*;

async fn call(sluice: &Sluice, path: &str, request_id: Option<&str>, body_text: &str) -> Reply {
    let mut request = post(&sluice.url(path));
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    send(request.body(body(body_text)).unwrap()).await
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn the_upstream_and_the_caller_see_the_same_id() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;

    let kept = "0b5d1a7e-7c3f-4b8e-9a51-3f1c2d4e5f60";
    let reply = call(&sluice, "/mcp", Some(kept), TOOLS_CALL).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-request-id"), Some(kept));
    let seen = upstream.next().await;
    assert_eq!(seen.headers.get_all("x-request-id").iter().count(), 1);
    assert_eq!(seen.headers["x-request-id"], kept);

    for sent in [None, Some("not well formed"), Some(&*"x".repeat(200))] {
        let reply = call(&sluice, "/mcp", sent, TOOLS_CALL).await;
        let id = reply.header("x-request-id").unwrap().to_owned();
        assert!(is_generated(&id), "{sent:?} → {id}");
        let seen = upstream.next().await;
        assert_eq!(seen.headers.get_all("x-request-id").iter().count(), 1);
        assert_eq!(seen.headers["x-request-id"], id.as_str());
    }
    let a = call(&sluice, "/mcp", None, TOOLS_CALL).await;
    let b = call(&sluice, "/mcp", None, TOOLS_CALL).await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test]
async fn refusals_carry_the_id_too() {
    let upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "pathPrefix: /ai\ntools:\n  deny: [\"pha_task_*\"]",
    ))
    .await;
    // Decided from the body (the tool policy), from the head (not under the prefix), and a
    // body that is not JSON.
    for (path, text, status) in [
        ("/ai/mcp", TOOLS_CALL, StatusCode::FORBIDDEN),
        ("/other/mcp", TOOLS_CALL, StatusCode::NOT_FOUND),
        ("/ai/mcp", "{not json", StatusCode::BAD_REQUEST),
    ] {
        let reply = call(&sluice, path, Some("req-7"), text).await;
        assert_eq!(reply.status, status, "{path} {}", reply.text());
        assert_eq!(reply.header("x-request-id"), Some("req-7"), "{path}");
        let reply = call(&sluice, path, None, text).await;
        assert!(is_generated(reply.header("x-request-id").unwrap()));
    }
    // The legacy transport's POST to a session nobody opened.
    let reply = call(
        &sluice,
        "/ai/messages/?session_id=00112233445566778899aabbccddeeff",
        Some("req-8"),
        TOOLS_CALL,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("x-request-id"), Some("req-8"));
}
