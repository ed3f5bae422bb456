//! The audit trail as its own stream: the admin listener's `GET /events` (readers see allowed
//! and denied calls with their fields and nothing else, filters hold, keep-alives on a quiet
//! stream, a stuck reader costs the calls nothing and its missed events are counted), and
//! `log.audit.sink: file` (audit lines in the file, none among stdout's lines).
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;

/// `/events` switched on: `support::config` puts its `top` lines right after `admin.listen`, so
/// an indented line joins the admin section.
const EVENTS_ON: &str = "  auditEvents: true";

/// Planted in every call's arguments: it must never reach an event.
const ARGUMENT: &str = "hunter2-SENTINEL-argument";

fn call(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"password":"{ARGUMENT}"}}}}}}"#
    )
}

/// A reader of `/events`: its events' JSON, and whether a keep-alive comment came.
struct Events {
    body: Incoming,
    text: String,
    keep_alives: usize,
}

impl Events {
    async fn open(sluice: &Sluice, query: &str) -> Self {
        let url = sluice.admin(&format!("/events{query}"));
        let response = within(
            "the event stream's head",
            client().request(Request::get(url).body(Full::default()).unwrap()),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.into_body(),
            text: String::new(),
            keep_alives: 0,
        }
    }

    /// The next block of the stream (an event or a comment), bounded.
    async fn block(&mut self) -> String {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block = self.text[..end].to_owned();
                self.text.drain(..end + 2);
                return block;
            }
            let frame = within("an event", self.body.frame())
                .await
                .expect("the stream ended")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// The next event, keep-alive comments counted and skipped.
    async fn next(&mut self) -> Value {
        loop {
            let block = self.block().await;
            if block.starts_with(':') {
                self.keep_alives += 1;
                continue;
            }
            assert!(!block.contains(ARGUMENT), "{block}");
            let data = block.strip_prefix("data: ").expect("one data line");
            assert!(!data.contains('\n'), "{block}");
            return serde_json::from_str(data).unwrap();
        }
    }
}

async fn rpc(sluice: &Sluice, body_text: &str) -> Reply {
    send(post(&sluice.url("/mcp")).body(body(body_text)).unwrap()).await
}

#[tokio::test]
async fn readers_see_allowed_and_denied_calls_with_their_fields_as_filtered() {
    let upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        &format!("{EVENTS_ON}\nstreaming:\n  keepAlive: 200ms"),
        "tools:\n  deny: [\"pha_passphrase_*\"]",
    ))
    .await;
    let mut all = Events::open(&sluice, "").await;
    let mut denied = Events::open(&sluice, "?decision=denied&entry_point=main").await;
    let mut elsewhere = Events::open(&sluice, "?entry_point=public").await;

    let allowed = rpc(&sluice, &call("pha_task_get")).await;
    assert_eq!(allowed.status, 200);
    let refused = rpc(&sluice, &call("pha_passphrase_get")).await;
    assert_eq!(refused.status, 403);
    // Not a tools/call: no audit event.
    let list = rpc(&sluice, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
    assert_eq!(list.status, 200);

    let first = all.next().await;
    assert_eq!(first["entry_point"], "main");
    assert_eq!(first["tool"], "pha_task_get");
    assert_eq!(first["decision"], "allowed");
    assert_eq!(first["status"], 200);
    assert_eq!(first["client_address"], "127.0.0.1");
    assert_eq!(
        first["request_id"].as_str(),
        allowed.header("x-request-id"),
        "{first}"
    );
    assert!(first["latency_us"].is_u64(), "{first}");
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    // Auth mode none names everyone `anonymous`; no rule, not a batch: those are absent.
    assert_eq!(first["identity"], "anonymous");
    for absent in ["rule", "batch"] {
        assert!(first.get(absent).is_none(), "{first}");
    }
    let second = all.next().await;
    assert_eq!(
        (&second["tool"], &second["decision"], &second["status"]),
        (&"pha_passphrase_get".into(), &"denied".into(), &403.into())
    );
    assert_eq!(
        second["request_id"].as_str(),
        refused.header("x-request-id")
    );

    let only = denied.next().await;
    assert_eq!(
        (&only["tool"], &only["decision"]),
        (&second["tool"], &second["decision"])
    );
    // Nothing for another entry point: only keep-alives, on a stream that stays quiet.
    let block = elsewhere.block().await;
    assert_eq!(block, ": keep-alive");
    // The next things on the other streams are keep-alives too, not a third event.
    assert_eq!(denied.block().await, ": keep-alive");
    assert_eq!(all.block().await, ": keep-alive");

    // A filter it cannot honour is refused, not ignored.
    for query in ["?decision=maybe", "?tool=pha_task_get"] {
        let reply = get(&sluice.admin(&format!("/events{query}"))).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text());
    }
    // The readers come and go; at most 16 read at once.
    drop((all, denied, elsewhere));
    let mut readers = Vec::new();
    for _ in 0..16 {
        readers.push(Events::open(&sluice, "").await);
    }
    let reply = get(&sluice.admin("/events")).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    readers.pop();
    drop(Events::open(&sluice, "").await);
}

/// Sends `n` calls over `workers` pooled connections; all must succeed.
async fn calls(url: &str, n: usize, workers: usize) -> Duration {
    let client = client();
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.spawn(async move {
            for _ in (w..n).step_by(workers) {
                let req = post(&url)
                    .body(Full::new(Bytes::from(call("pha_task_get"))))
                    .unwrap();
                let reply = send_with(&client, req).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    started.elapsed()
}

/// Opens `/events` on a connection with a tiny receive window and never reads past the head.
async fn stuck_reader(admin: SocketAddr) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(admin).await.unwrap();
    tcp.write_all(b"GET /events HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 512];
    let n = within("the head", tcp.read(&mut head)).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp
}

#[tokio::test]
async fn a_stuck_reader_slows_no_call_and_its_missed_events_are_counted() {
    const CALLS: usize = 10_000;
    const WORKERS: usize = 8;
    let upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, EVENTS_ON, "")).await;
    let url = sluice.url("/mcp");

    let without = calls(&url, CALLS, WORKERS).await;
    assert_eq!(
        sluice.metric("sluice_audit_events_dropped_total").await,
        Some(0.0)
    );

    let stuck = stuck_reader(sluice.proxy.admin_addr().unwrap()).await;
    let stuck_alone = calls(&url, CALLS, WORKERS).await;
    let dropped_alone = sluice
        .metric("sluice_audit_events_dropped_total")
        .await
        .unwrap();
    // A reader that keeps up, beside it, misses nothing (it runs on the test's one thread,
    // so its reading shows in the time of this round).
    let mut live = Events::open(&sluice, "?entry_point=main&decision=allowed").await;
    let reading = tokio::spawn(async move {
        for _ in 0..CALLS {
            let event = live.next().await;
            assert_eq!(event["decision"], "allowed");
        }
    });
    let with_live = calls(&url, CALLS, WORKERS).await;
    within("the live reader", reading).await.unwrap();
    let dropped = sluice
        .metric("sluice_audit_events_dropped_total")
        .await
        .unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{CALLS} calls over {WORKERS} connections: {:.0} ms without readers, {:.0} ms with a stuck reader ({dropped_alone} events dropped), {:.0} ms with the stuck reader and a live one ({dropped} dropped in all)",
        ms(without),
        ms(stuck_alone),
        ms(with_live),
    );
    assert!(dropped_alone > 0.0, "{dropped_alone}");
    // The stuck reader misses each event of the last round it would have got (its queue and
    // socket are full); the live reader none of them.
    assert_eq!(dropped, dropped_alone + CALLS as f64);
    drop(stuck);
}

#[tokio::test]
async fn a_file_sink_gets_the_audit_lines_and_stdout_none_of_them() {
    let upstream = Upstream::ok().await;
    for format in ["json", "text"] {
        let dir = tempfile::tempdir().unwrap();
        // Created by the sidecar; moved away between the calls, as a rotation does.
        let audit = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let (port, admin) = (free_port(), free_port());
        let yaml = format!(
            "upstream:\n  url: http://{}\nadmin:\n  listen: 127.0.0.1:{admin}\nshutdown:\n  drainDelay: 0s\n  gracePeriod: 5s\nlog:\n  level: info\n  format: {format}\n  audit:\n    sink: file\n    path: {}\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:{port}\n    auth:\n      mode: none\n    tools:\n      deny: [\"pha_passphrase_*\"]\n",
            upstream.addr,
            audit.display()
        );
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let url = format!("http://127.0.0.1:{port}/mcp");
        let ((), stdout, _) = run_binary(&path, &[port, admin], async || {
            let reply = send(post(&url).body(body(&call("pha_task_get"))).unwrap()).await;
            assert_eq!(reply.status, 200);
            eventually("the first audit line", async || audit.exists()).await;
            std::fs::rename(&audit, &rotated).unwrap();
            let reply = send(post(&url).body(body(&call("pha_passphrase_get"))).unwrap()).await;
            assert_eq!(reply.status, 403);
        })
        .await;

        let lines = |path: &std::path::Path| -> Vec<Value> {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
                .collect()
        };
        let events: Vec<Value> = lines(&rotated).into_iter().chain(lines(&audit)).collect();
        let seen: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e["tool"].as_str().unwrap(), e["decision"].as_str().unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                ("pha_task_get", "allowed"),
                ("pha_passphrase_get", "denied")
            ],
            "{format}: {events:#?}"
        );
        for e in &events {
            assert_eq!(
                (&e["stream"], &e["target"]),
                (&"audit".into(), &"audit".into())
            );
            assert!(!e.to_string().contains(ARGUMENT));
        }
        // stdout has the access lines of both calls, and no audit line.
        let access = stdout
            .lines()
            .filter(|l| l.contains("sluice::access") && l.contains("/mcp"))
            .count();
        assert!(access >= 2, "{format}: {stdout}");
        // Only an audit line has a decision.
        assert!(!stdout.contains("decision"), "{format}: {stdout}");
        if format == "json" {
            for l in stdout.lines() {
                let line: Value = serde_json::from_str(l).unwrap();
                assert_ne!(line["target"], "audit", "{l}");
            }
        }
    }
}

#[tokio::test]
async fn the_stream_is_off_unless_switched_on() {
    let upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    let reply = get(&sluice.admin("/events")).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert!(
        reply.text().contains("admin.auditEvents"),
        "{}",
        reply.text()
    );
}
