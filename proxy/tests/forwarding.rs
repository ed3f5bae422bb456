//! What reaches the upstream and what comes back: paths, headers, protocols, cancellation.

mod support;

use std::sync::{Arc, Mutex};

use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn the_prefix_is_stripped_and_restored_in_location_and_cookies() {
    let mut upstream = Upstream::start(|seen| {
        let path = seen.uri.path().to_owned();
        async move {
            match path.as_str() {
                "/login" => http::Response::builder()
                    .status(302)
                    .header("location", "/consent?x=1")
                    .header("set-cookie", "s=1; Path=/; HttpOnly")
                    .header("set-cookie", "t=2; path=/auth; Secure")
                    .body(full(""))
                    .unwrap(),
                _ => json(StatusCode::OK, "{}"),
            }
        }
    })
    .await;
    let sluice = Sluice::start(&config(upstream.addr, "", "pathPrefix: /ai")).await;

    let reply = get(&sluice.url("/ai/login?next=%2F")).await;
    assert_eq!(upstream.next().await.uri, "/login?next=%2F");
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("location"), Some("/ai/consent?x=1"));
    let cookies: Vec<_> = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        ["s=1; Path=/ai; HttpOnly", "t=2; Path=/ai/auth; Secure"]
    );

    assert_eq!(get(&sluice.url("/ai")).await.status, 200);
    assert_eq!(upstream.next().await.uri, "/");

    // Outside the prefix: refused here, never forwarded.
    let reply = get(&sluice.url("/aix/mcp")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.rpc_code(), -32600);
    let reply = get(&sluice.url("/mcp")).await;
    assert_eq!(reply.status, 404);
    assert!(!upstream.saw_any());
}

#[tokio::test]
async fn callers_mcp_goes_to_the_upstreams_mcp_path_and_other_paths_stay() {
    let mut upstream = Upstream::ok().await;
    let yaml = config(upstream.addr, "", "pathPrefix: /ai").replacen(
        "upstream:\n",
        "upstream:\n  mcpPath: /api/v1/mcp\n",
        1,
    );
    let sluice = Sluice::start(&yaml).await;

    let reply = send(
        post(&sluice.url("/ai/mcp?x=1"))
            .body(body(TOOLS_CALL))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.next().await.uri, "/api/v1/mcp?x=1");
    assert_eq!(get(&sluice.url("/ai/mcp")).await.status, 200);
    assert_eq!(upstream.next().await.uri, "/api/v1/mcp");
    // Only the MCP endpoint moves.
    assert_eq!(get(&sluice.url("/ai/authorize?a=b")).await.status, 200);
    assert_eq!(upstream.next().await.uri, "/authorize?a=b");
    assert_eq!(get(&sluice.url("/ai/mcpx")).await.status, 200);
    assert_eq!(upstream.next().await.uri, "/mcpx");
    // The check asks the same endpoint.
    let report = get(&sluice.admin("/upstream")).await.json();
    assert!(
        report
            .to_string()
            .contains(&format!("http://{}/api/v1/mcp", upstream.addr)),
        "{report}"
    );
}

#[tokio::test]
async fn mcp_slash_is_normalised_and_absolute_redirects_are_rebased() {
    // Like Conduit: `/mcp/` redirects to an absolute http URL built from Host.
    let mut upstream = Upstream::start(|seen| {
        let path = seen.uri.path().to_owned();
        let host = seen.headers["host"].to_str().unwrap().to_owned();
        async move {
            let redirect = |to: &str| {
                http::Response::builder()
                    .status(307)
                    .header("location", format!("http://{host}{to}"))
                    .body(full(""))
                    .unwrap()
            };
            match path.as_str() {
                "/mcp/" => redirect("/mcp"),
                "/old" => redirect("/new?a=b"),
                _ => json(StatusCode::OK, r#"{"jsonrpc":"2.0","id":42,"result":{}}"#),
            }
        }
    })
    .await;
    let entry = "pathPrefix: /ai\npublicUrl: https://phab.example.com/ai";
    let sluice = Sluice::start(&config(upstream.addr, "", entry)).await;

    let reply = send(
        post(&sluice.url("/ai/mcp/"))
            .body(body(TOOLS_CALL))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(upstream.next().await.uri, "/mcp");

    let reply = get(&sluice.url("/ai/old")).await;
    assert_eq!(reply.status, 307);
    assert_eq!(
        reply.header("location"),
        Some("https://phab.example.com/ai/new?a=b")
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_forwarded_headers_set() {
    let mut upstream = Upstream::start(|_| async {
        http::Response::builder()
            .header("content-type", "application/json")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "1")
            .header("x-kept", "yes")
            .body(full("{}"))
            .unwrap()
    })
    .await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    let req = post(&sluice.url("/mcp"))
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "spoofed.example")
        .header("mcp-session-id", "session-1")
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-param-region", "=?base64?w7xiZXI=?=")
        .body(body(TOOLS_CALL))
        .unwrap();
    let reply = send(req).await;
    assert_eq!(reply.status, 200);
    for gone in ["keep-alive", "proxy-authenticate", "x-upstream-hop"] {
        assert!(
            reply.headers.get(gone).is_none(),
            "{gone} reached the caller"
        );
    }
    assert_eq!(reply.header("x-kept"), Some("yes"));

    let seen = upstream.next().await;
    for gone in ["x-drop-me", "keep-alive", "te", "proxy-authorization"] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone} reached the upstream"
        );
    }
    let h = |name: &str| seen.headers[name].to_str().unwrap().to_owned();
    // The entry point trusts no proxy: what the caller claimed is replaced by its address.
    assert_eq!(h("x-forwarded-for"), "127.0.0.1");
    assert_eq!(h("x-forwarded-proto"), "http");
    assert_eq!(h("x-forwarded-host"), sluice.addr().to_string());
    assert_eq!(
        h("host"),
        upstream.addr.to_string(),
        "the upstream is addressed by its own name"
    );
    assert_eq!(h("mcp-session-id"), "session-1");
    assert_eq!(h("mcp-protocol-version"), "2025-06-18");
    assert_eq!(h("mcp-param-region"), "=?base64?w7xiZXI=?=");
    assert_eq!(seen.body, TOOLS_CALL.as_bytes());
}

#[tokio::test]
async fn a_public_url_sets_forwarded_proto_and_host() {
    let mut upstream = Upstream::ok().await;
    let entry = "pathPrefix: /ai\npublicUrl: https://phab.example.com/ai";
    let sluice = Sluice::start(&config(upstream.addr, "", entry)).await;
    send(post(&sluice.url("/ai/mcp")).body(body(TOOLS_CALL)).unwrap()).await;
    let seen = upstream.next().await;
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-host"], "phab.example.com");
}

#[tokio::test]
async fn get_streams_and_delete_pass_through_without_bodies() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;

    let req = Request::get(sluice.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", "s1")
        .header("last-event-id", "ev-17")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(req).await.status, 200);
    let seen = upstream.next().await;
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.headers["last-event-id"], "ev-17");
    assert_eq!(seen.headers["mcp-session-id"], "s1");

    let req = Request::delete(sluice.url("/mcp"))
        .header("mcp-session-id", "s1")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(req).await.status, 200);
    let seen = upstream.next().await;
    assert_eq!(seen.method, "DELETE");
    assert_eq!(seen.headers["mcp-session-id"], "s1");

    // A body on anything but POST would go uninspected: refused, and nothing goes upstream.
    for method in ["DELETE", "GET"] {
        let req = Request::builder()
            .method(method)
            .uri(sluice.url("/mcp"))
            .body(body(TOOLS_CALL))
            .unwrap();
        let reply = send(req).await;
        assert_eq!(
            (reply.status.as_u16(), reply.rpc_code()),
            (400, -32600),
            "{method}"
        );
    }
    assert!(!upstream.saw_any());
}

#[tokio::test]
async fn oauth_form_paths_are_inspected_like_any_post_outside_mode_oauth() {
    // Mode oauth passes its flow's form posts (auth_oauth.rs); every other entry point has no
    // OAuth flow behind it, so a POST there is JSON-RPC, inspected and held to the policy.
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    for path in [
        "/token",
        "/register",
        "/authorize",
        "/consent",
        "/auth/callback",
        "/revoke",
    ] {
        let req = Request::post(sluice.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body("grant_type=authorization_code&code=x"))
            .unwrap();
        let reply = send(req).await;
        assert_eq!(
            (reply.status.as_u16(), reply.rpc_code()),
            (400, -32700),
            "{path}"
        );
    }
    assert!(!upstream.saw_any());
}

#[tokio::test]
async fn h2c_prior_knowledge_is_forwarded_as_http1() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    let req = post(&sluice.url("/mcp"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(body(TOOLS_CALL))
        .unwrap();
    let reply = send_with(&h2c_client(), req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, http::Version::HTTP_2);
    let seen = upstream.next().await;
    assert_eq!(seen.headers["host"], upstream.addr.to_string().as_str());
    // h2's :authority stands in for Host.
    assert_eq!(
        seen.headers["x-forwarded-host"],
        sluice.addr().to_string().as_str()
    );
    assert_eq!(seen.headers["cookie"], "a=1; b=2");
    assert_eq!(seen.body, TOOLS_CALL.as_bytes());
}

#[tokio::test]
async fn a_caller_that_disconnects_cancels_its_upstream_request() {
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let (cancelled_tx, cancelled) = tokio::sync::oneshot::channel::<()>();
    let slots = Arc::new(Mutex::new((Some(started_tx), Some(cancelled_tx))));
    let upstream = Upstream::start(move |_| {
        let mut slots = slots.lock().unwrap();
        let (started, cancelled) = (slots.0.take(), slots.1.take());
        async move {
            let _signal = DropSignal(cancelled);
            if let Some(s) = started {
                let _ = s.send(());
            }
            std::future::pending::<()>().await;
            unreachable!()
        }
    })
    .await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;

    let mut tcp = tokio::net::TcpStream::connect(sluice.addr()).await.unwrap();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{TOOLS_CALL}",
        TOOLS_CALL.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    within("the upstream to start the request", started)
        .await
        .unwrap();
    drop(tcp);
    within("the upstream request to be cancelled", cancelled)
        .await
        .unwrap();
}
