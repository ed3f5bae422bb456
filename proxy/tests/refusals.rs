//! What the proxy answers itself: limits, malformed or contradictory MCP, foreign origins, and
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]
//! upstream failures — each a status plus a JSON-RPC error carrying the request's id.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn bodies_over_the_limit_get_413_before_anything_goes_upstream() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "maxBodyBytes: 100")).await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#,
        "x".repeat(200)
    );

    // Declared length: refused up front.
    let reply = send(post(&sluice.url("/mcp")).body(body(&big)).unwrap()).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.rpc_code(), -32600);

    // Chunked: counted as it arrives.
    let chunked = format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let answer = raw(sluice.addr(), chunked.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("-32600"), "{answer}");

    // Chunked under the limit: forwarded whole, with its length.
    let small = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let chunked = format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n10\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        &small[..16],
        small.len() - 16,
        &small[16..]
    );
    assert!(
        raw(sluice.addr(), chunked.as_bytes())
            .await
            .starts_with("HTTP/1.1 200")
    );
    let seen = upstream.next().await;
    assert_eq!(seen.body, small.as_bytes());
    assert_eq!(
        seen.headers["content-length"],
        small.len().to_string().as_str()
    );
    assert!(seen.headers.get("transfer-encoding").is_none());

    // Under the limit: forwarded.
    let small = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    assert_eq!(
        send(post(&sluice.url("/mcp")).body(body(small)).unwrap())
            .await
            .status,
        200
    );
    assert_eq!(upstream.next().await.body, small.as_bytes());
    assert!(
        !upstream.saw_any(),
        "an oversized body reached the upstream"
    );
}

#[tokio::test]
async fn oversized_or_overcrowded_heads_get_431() {
    let mut upstream = Upstream::ok().await;
    let top = "limits:\n  maxHeaderBytes: 2048\n  maxHeaders: 16";
    let sluice = Sluice::start(&config(upstream.addr, top, "")).await;

    // Over our limit, under hyper's buffer: our 431 with a JSON-RPC body.
    let req = Request::get(sluice.url("/mcp"))
        .header("x-big", "a".repeat(3000))
        .body(Full::default())
        .unwrap();
    let reply = send(req).await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(reply.rpc_code(), -32600);

    // Far over: refused while reading the head.
    let huge = format!(
        "GET /mcp HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert!(
        raw(sluice.addr(), huge.as_bytes())
            .await
            .starts_with("HTTP/1.1 431")
    );

    // Too many header fields.
    let many: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();
    let crowded = format!("GET /mcp HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    assert!(
        raw(sluice.addr(), crowded.as_bytes())
            .await
            .starts_with("HTTP/1.1 431")
    );

    assert!(!upstream.saw_any());
    assert_eq!(get(&sluice.url("/mcp")).await.status, 200);
    upstream.next().await;
}

#[tokio::test]
async fn slow_heads_are_cut_but_quiet_keep_alive_connections_stay() {
    let upstream = Upstream::ok().await;
    let top = "timeouts:\n  headerRead: 300ms\n  idle: 60s";
    let sluice = Sluice::start(&config(upstream.addr, top, "")).await;

    // Slowloris: half a head, then nothing. The proxy closes the connection.
    let answer = raw(sluice.addr(), b"GET /mcp HTTP/1.1\r\nhost: x\r\n").await;
    assert_eq!(answer, "", "expected a silent close");
    // Nothing at all after connecting: the same.
    assert_eq!(raw(sluice.addr(), b"").await, "");

    // A keep-alive connection quiet for several header-read timeouts is still usable.
    let tcp = tokio::net::TcpStream::connect(sluice.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = || {
        Request::get("/mcp")
            .header("host", "x")
            .body(Full::<bytes::Bytes>::default())
            .unwrap()
    };
    assert_eq!(
        within("first", sender.send_request(req()))
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    within("the connection", sender.ready())
        .await
        .expect("the idle connection was closed");
    assert_eq!(
        within("second", sender.send_request(req()))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let upstream = Upstream::ok().await;
    let top = "timeouts:\n  headerRead: 10s\n  idle: 300ms";
    let sluice = Sluice::start(&config(upstream.addr, top, "")).await;
    let mut tcp = tokio::net::TcpStream::connect(sluice.addr()).await.unwrap();
    tcp.write_all(b"GET /mcp HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    within("the idle connection to close", tcp.read_to_end(&mut out))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn malformed_json_gets_400_with_a_parse_error() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    for bad in ["{", "", "{\"id\":1} trailing", "\u{0}"] {
        let reply = send(post(&sluice.url("/mcp")).body(body(bad)).unwrap()).await;
        assert_eq!(reply.status, 400, "{bad:?}");
        assert_eq!(reply.rpc_code(), -32700, "{bad:?}");
        assert!(reply.json()["id"].is_null());
    }
    let bomb = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{}{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    assert_eq!(
        send(post(&sluice.url("/mcp")).body(body(&bomb)).unwrap())
            .await
            .rpc_code(),
        -32700
    );
    let reply = send(
        post(&sluice.url("/mcp"))
            .body(body(r#"{"jsonrpc":"2.0","id":9}"#))
            .unwrap(),
    )
    .await;
    assert_eq!((reply.status.as_u16(), reply.rpc_code()), (400, -32600));
    assert!(!upstream.saw_any());
}

#[tokio::test]
async fn mcp_headers_must_match_the_body() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    let modern = |method: Option<&str>, name: Option<&str>| {
        let mut req = post(&sluice.url("/mcp")).header("mcp-protocol-version", "2026-07-28");
        if let Some(m) = method {
            req = req.header("mcp-method", m);
        }
        if let Some(n) = name {
            req = req.header("mcp-name", n);
        }
        req.header("mcp-param-region", "eu")
            .body(body(TOOLS_CALL))
            .unwrap()
    };
    for (method, name) in [
        (None, Some("pha_task_get")),
        (Some("tools/call"), None),
        (Some("tools/list"), Some("pha_task_get")),
        (Some("tools/call"), Some("pha_passphrase_get")),
    ] {
        let reply = send(modern(method, name)).await;
        assert_eq!(reply.status, 400, "{method:?} {name:?}");
        assert_eq!(reply.rpc_code(), -32020);
        assert_eq!(reply.json()["id"], 42, "the refusal carries the request id");
    }
    assert!(!upstream.saw_any());

    let reply = send(modern(Some("tools/call"), Some("pha_task_get"))).await;
    assert_eq!(reply.status, 200);
    let seen = upstream.next().await;
    assert_eq!(seen.headers["mcp-param-region"], "eu");
    assert_eq!(seen.headers["mcp-name"], "pha_task_get");

    // Legacy revisions may omit the headers, but never contradict the body.
    let legacy = post(&sluice.url("/mcp"))
        .header("mcp-name", "pha_user_whoami")
        .body(body(TOOLS_CALL))
        .unwrap();
    assert_eq!(send(legacy).await.rpc_code(), -32020);
    assert!(!upstream.saw_any());
}

#[tokio::test]
async fn batches_are_inspected_item_by_item() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    let hidden = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"nme":"x"}}]"#;
    let reply = send(post(&sluice.url("/mcp")).body(body(hidden)).unwrap()).await;
    assert_eq!((reply.status.as_u16(), reply.rpc_code()), (400, -32602));
    assert!(
        reply.json()["id"].is_null(),
        "a batch refusal names no single id"
    );

    let modern = post(&sluice.url("/mcp"))
        .header("mcp-protocol-version", "2026-07-28")
        .body(body(&format!("[{TOOLS_CALL}]")))
        .unwrap();
    assert_eq!(send(modern).await.rpc_code(), -32600);
    assert!(!upstream.saw_any());

    let fine =
        format!(r#"[{TOOLS_CALL},{{"jsonrpc":"2.0","method":"notifications/initialized"}}]"#);
    assert_eq!(
        send(post(&sluice.url("/mcp")).body(body(&fine)).unwrap())
            .await
            .status,
        200
    );
    assert_eq!(upstream.next().await.body, fine.as_bytes());
}

#[tokio::test]
async fn foreign_origins_get_403() {
    let mut upstream = Upstream::ok().await;
    let entry = "publicUrl: https://phab.example.com\nallowedOrigins: [\"http://localhost:6274\"]";
    let sluice = Sluice::start(&config(upstream.addr, "", entry)).await;
    let with_origin = |o: &str| {
        post(&sluice.url("/mcp"))
            .header("origin", o)
            .body(body(TOOLS_CALL))
            .unwrap()
    };

    for bad in ["https://evil.example", "null", "http://phab.example.com"] {
        let reply = send(with_origin(bad)).await;
        assert_eq!(reply.status, 403, "{bad}");
        assert_eq!(reply.rpc_code(), -32600);
    }
    // DNS rebinding: the page is same-origin with the Host it rebinds; still refused.
    let rebound = post(&sluice.url("/mcp"))
        .header("origin", format!("http://{}", sluice.addr()))
        .body(body(TOOLS_CALL))
        .unwrap();
    assert_eq!(send(rebound).await.status, 403);
    assert!(!upstream.saw_any());

    for good in ["https://phab.example.com", "http://localhost:6274"] {
        assert_eq!(send(with_origin(good)).await.status, 200, "{good}");
        upstream.next().await;
    }
    assert_eq!(
        send(post(&sluice.url("/mcp")).body(body(TOOLS_CALL)).unwrap())
            .await
            .status,
        200
    );
}

async fn upstream_failure(sluice: &Sluice) -> Reply {
    send(post(&sluice.url("/mcp")).body(body(TOOLS_CALL)).unwrap()).await
}

#[tokio::test]
async fn a_refusing_upstream_gives_503_with_the_id() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let sluice = Sluice::start(&config(addr, "", "")).await;
    let reply = upstream_failure(&sluice).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(
        (reply.json()["id"].as_i64(), reply.rpc_code()),
        (Some(42), -32603)
    );
    let metric = "sluice_upstream_errors_total{entry_point=\"main\",kind=\"connect_refused\"}";
    assert_eq!(sluice.metric(metric).await, Some(1.0));
}

#[tokio::test]
async fn an_upstream_that_hangs_up_gives_502_with_the_id() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            // Closes without a response.
        }
    });
    let sluice = Sluice::start(&config(addr, "", "")).await;
    let reply = upstream_failure(&sluice).await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        (reply.json()["id"].as_i64(), reply.rpc_code()),
        (Some(42), -32603)
    );
}

#[tokio::test]
async fn a_silent_upstream_gives_504_with_the_id() {
    let upstream = Upstream::start(|_| std::future::pending()).await;
    let top = "timeouts:\n  upstreamFirstByte: 300ms";
    let sluice = Sluice::start(&config(upstream.addr, top, "")).await;
    let reply = upstream_failure(&sluice).await;
    assert_eq!(reply.status, 504);
    assert_eq!(
        (reply.json()["id"].as_i64(), reply.rpc_code()),
        (Some(42), -32001)
    );
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_get_503() {
    let (release_tx, release) = tokio::sync::oneshot::channel::<()>();
    let release = Arc::new(Mutex::new(Some(release)));
    let upstream = Upstream::start(move |_| {
        let release = release.lock().unwrap().take();
        async move {
            if let Some(r) = release {
                let _ = r.await;
            }
            json(StatusCode::OK, "{}")
        }
    })
    .await;
    let sluice =
        Arc::new(Sluice::start(&config(upstream.addr, "limits:\n  maxInFlight: 1", "")).await);
    let first = tokio::spawn({
        let url = sluice.url("/mcp");
        async move { send(post(&url).body(body(TOOLS_CALL)).unwrap()).await }
    });
    let gauge = "sluice_in_flight_requests{entry_point=\"main\"}";
    eventually("the first request to be in flight", async || {
        sluice.metric(gauge).await == Some(1.0)
    })
    .await;
    let reply = send(post(&sluice.url("/mcp")).body(body(TOOLS_CALL)).unwrap()).await;
    assert_eq!((reply.status.as_u16(), reply.rpc_code()), (503, -32603));
    release_tx.send(()).unwrap();
    assert_eq!(
        within("the first request", first).await.unwrap().status,
        200
    );
    eventually("the place to be given back", async || {
        sluice.metric(gauge).await == Some(0.0)
    })
    .await;
}
