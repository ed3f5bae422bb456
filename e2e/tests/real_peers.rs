//! sluice-proxy in front of real MCP servers, driven by the Python MCP SDK 2.x client
//! (`e2e/py/peers/client.py`) in `legacy` and `auto` (2026-07-28) modes, through a sidecar with
//! every policy on but permissive ([`Sidecar::permissive`]). Servers: the SDK 2.x `MCPServer`
//! stateful and stateless, fastmcp 3.x on the SDK 1.x (what Conduit runs on) stateful and
//! stateless (`e2e/py/peers/server.py`), and `@modelcontextprotocol/server-everything`.
//!
//! For each, the client connects (initialize, or `server/discover` in auto mode), lists the
//! tools, calls one, calls one that streams progress before its answer (an SSE reply), closes
//! (a session is DELETEd) and probes the ended session. Everything the user sees, and the
//! wire as the client saw it (methods, statuses, content types, whether a session id came
//! back), must be the same through the sidecar as straight against the server. The sidecar's
//! own upstream check (`/upstream`) must see the server the client sees (name, version,
//! revision, tools) and leave no session open on it.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::peers::{self, Venv, python_script};
use sluice_e2e::process::run_ok;
use sluice_e2e::wait::{Probe, wait_until};
use sluice_e2e::{Process, ServerEverything, Sidecar, free_port, http};

const START: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Only stops hangs: the sidecar checks its upstream at start, and every 10 s after.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running upstream MCP server.
enum Upstream {
    Python(Process, u16),
    Everything(ServerEverything),
}

impl Upstream {
    /// `e2e/py/peers/server.py` under the Python of `venv`.
    fn python(venv: Venv, stateless: bool) -> Self {
        let port = free_port().unwrap();
        let mut command = Command::new(venv.python().unwrap());
        command
            .arg(python_script("peers/server.py").unwrap())
            .args(["--port", &port.to_string()])
            // fastmcp would otherwise ask PyPI for updates at start.
            .env("FASTMCP_CHECK_FOR_UPDATES", "off");
        if stateless {
            command.arg("--stateless");
        }
        let mut server = Process::spawn(&format!("{venv:?} MCP server"), command).unwrap();
        server.wait_for_port(port, START).unwrap();
        Upstream::Python(server, port)
    }

    fn port(&self) -> u16 {
        match self {
            Upstream::Python(_, port) => *port,
            Upstream::Everything(server) => server.port(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port())
    }

    fn ensure_running(&mut self) {
        match self {
            Upstream::Python(process, _) => process.ensure_running().unwrap(),
            Upstream::Everything(server) => server.process().ensure_running().unwrap(),
        }
    }
}

/// The tool calls of a run: a plain one and one answered with a progress stream.
struct Calls {
    call: &'static str,
    stream: &'static str,
    /// The least time the streamed call takes (the tool sleeps between its steps).
    stream_takes: Duration,
}

const PYTHON_CALLS: Calls = Calls {
    call: r#"echo:{"text":"hi"}"#,
    // Three steps of 20 ms.
    stream: r#"count:{"steps":3}"#,
    stream_takes: Duration::from_millis(60),
};
const EVERYTHING_CALLS: Calls = Calls {
    call: r#"echo:{"message":"hi"}"#,
    stream: r#"trigger-long-running-operation:{"duration":0.3,"steps":3}"#,
    stream_takes: Duration::from_millis(300),
};

/// Runs the SDK client against `url` and returns its report, the wire sorted (the SDK opens its
/// GET stream concurrently, so its place among the other requests varies).
fn client(url: &str, mode: &str, calls: &Calls) -> Value {
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("peers/client.py").unwrap())
        .args(["--url", url, "--mode", mode])
        .args(["--header", Sidecar::AUTHORIZATION])
        .args(["--call", calls.call, "--stream", calls.stream]);
    let output = run_ok(&mut command, CLIENT_TIMEOUT).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let mut report: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("client report is not JSON ({e}): {text}"));
    let wire = report["wire"].as_array_mut().unwrap();
    wire.sort_by_key(|entry| entry.to_string());
    report
}

/// What a user of each mode sees from this server, beyond "the same as directly".
struct Expect {
    /// The protocol revision the client ends up speaking, per mode (legacy, auto).
    protocol: [&'static str; 2],
    /// Whether the server hands out sessions (in legacy-protocol runs).
    sessions: bool,
    /// The status of a request with the ended session's id.
    after_close: u16,
    call_text: &'static str,
    stream_text: &'static str,
}

/// Runs both modes directly and through a sidecar, compares, and checks `expect`.
fn compare(mut upstream: Upstream, calls: &Calls, expect: &Expect) {
    let mut sidecar = Sidecar::permissive(upstream.port()).unwrap();
    let mut legacy = Value::Null;
    for (mode, protocol) in ["legacy", "auto"].into_iter().zip(expect.protocol) {
        let direct = client(&upstream.url(), mode, calls);
        let proxied = client(&sidecar.url(), mode, calls);
        assert_eq!(direct, proxied, "mode {mode}: direct and proxied differ");
        if mode == "legacy" {
            legacy = direct.clone();
        }

        let what = format!("mode {mode}: {direct:#}");
        assert!(direct.get("connect_error").is_none(), "{what}");
        assert_eq!(direct["protocol_version"], protocol, "{what}");
        assert_eq!(
            direct["call"],
            json!({"is_error": false, "text": expect.call_text}),
            "{what}"
        );
        assert_eq!(
            direct["stream"],
            json!({"is_error": false, "text": expect.stream_text,
                   "progress": [[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]}),
            "{what}"
        );
        let wire = direct["wire"].as_array().unwrap();
        let streamed = wire
            .iter()
            .any(|e| e["rpc"] == "tools/call" && e["type"] == "text/event-stream");
        assert!(
            streamed,
            "no tools/call answered with an event stream: {what}"
        );
        let deleted = wire.iter().find(|e| e["method"] == "DELETE");
        if expect.sessions && protocol != "2026-07-28" {
            assert_eq!(deleted.unwrap()["status"], 200, "{what}");
            assert_eq!(direct["after_close"], expect.after_close, "{what}");
        } else {
            // 2026-07-28 has no sessions, and a stateless server hands out none.
            assert!(deleted.is_none(), "{what}");
            assert!(wire.iter().all(|e| e["session"] == false), "{what}");
            assert_eq!(direct["after_close"], Value::Null, "{what}");
        }
        if protocol == "2026-07-28" {
            assert!(!wire.iter().any(|e| e["method"] == "GET"), "{what}");
            assert!(
                wire.iter()
                    .any(|e| e["rpc"] == "server/discover" && e["status"] == 200)
            );
            assert!(!wire.iter().any(|e| e["rpc"] == "initialize"), "{what}");
        } else if mode == "auto" {
            // A server without 2026-07-28 refuses server/discover; the SDK falls back.
            assert!(
                wire.iter()
                    .any(|e| e["rpc"] == "server/discover" && e["status"] == 400),
                "{what}"
            );
        }
    }
    // The sidecar's policies saw every call, as the authenticated caller.
    let is_allowed = |e: &&serde_json::Value| e["decision"] == "allowed" && e["identity"] == "e2e";
    let audited =
        sidecar.audit_events_until(|events| events.iter().filter(is_allowed).count() >= 4);
    let allowed = audited.iter().filter(is_allowed).count();
    assert_eq!(
        allowed, 4,
        "two calls per proxied run, one run per mode: {audited:#?}"
    );
    // The streamed call's answer is an event stream whose head comes before the tool is done:
    // its access line (and latency) count the call's whole time, not the time to the head.
    let stream_tool = calls.stream.split(':').next().unwrap();
    let streamed =
        |line: &&Value| line["mcp_method"] == "tools/call" && line["tool"] == stream_tool;
    let access = sidecar.log_lines_until("sluice::access", |lines| {
        lines.iter().filter(streamed).count() >= 2
    });
    let latencies: Vec<u64> = access
        .iter()
        .filter(streamed)
        .map(|line| line["latency_us"].as_u64().unwrap())
        .collect();
    assert_eq!(
        latencies.len(),
        2,
        "one streamed call per proxied run: {access:#?}"
    );
    let least = u64::try_from(calls.stream_takes.as_micros()).unwrap();
    assert!(
        latencies.iter().all(|&us| us >= least),
        "the streamed calls took at least {least} µs; their access lines say {latencies:?} µs"
    );
    the_check_sees_what_the_client_sees(&sidecar, &legacy, &upstream);
    sidecar.process().ensure_running().unwrap();
    upstream.ensure_running();
}

/// The sidecar's upstream check (`GET /upstream`) reports the server as the SDK client saw it
/// in legacy mode straight against the server (`legacy`), and leaves no session open on it:
/// a Python server, stateful or not, holds none once the clients closed theirs.
fn the_check_sees_what_the_client_sees(sidecar: &Sidecar, legacy: &Value, upstream: &Upstream) {
    let report = wait_until(
        "the sidecar's check to find the upstream answering",
        PATIENCE,
        || {
            let report = sidecar.admin_get("/upstream")?.json()?;
            Ok(if report["answering"] == true {
                Probe::Ready(report)
            } else {
                Probe::NotYet(report.to_string())
            })
        },
    )
    .unwrap();
    println!("/upstream: {report}");
    let what = format!("/upstream: {report:#}\nthe SDK client: {legacy:#}");
    assert_eq!(
        report["serverInfo"]["name"], legacy["server_name"],
        "{what}"
    );
    assert_eq!(
        report["serverInfo"]["version"], legacy["server_version"],
        "{what}"
    );
    assert_eq!(
        report["protocolVersion"], legacy["protocol_version"],
        "{what}"
    );
    assert_eq!(
        report["tools"],
        json!(legacy["tools"].as_array().unwrap().len()),
        "{what}"
    );
    assert_eq!(report["behindOAuth"], false, "{what}");
    if let Upstream::Python(_, port) = upstream {
        // A check may be under way (a session open for a few milliseconds): look again.
        wait_until("no session left open on the server", PATIENCE, || {
            let sessions = http::get(&format!("http://127.0.0.1:{port}/sessions"), &[])?.json()?;
            Ok(if sessions["open"] == 0 {
                Probe::Ready(())
            } else {
                Probe::NotYet(sessions.to_string())
            })
        })
        .unwrap();
    }
}

const PYTHON_EXPECT: Expect = Expect {
    protocol: ["2025-11-25", "2026-07-28"],
    sessions: true,
    after_close: 404,
    call_text: "echo: hi",
    stream_text: "counted to 3",
};

#[test]
fn sdk2_server_stateful() {
    compare(
        Upstream::python(Venv::Mcp2, false),
        &PYTHON_CALLS,
        &PYTHON_EXPECT,
    );
}

#[test]
fn sdk2_server_stateless() {
    let expect = Expect {
        sessions: false,
        ..PYTHON_EXPECT
    };
    compare(Upstream::python(Venv::Mcp2, true), &PYTHON_CALLS, &expect);
}

/// fastmcp 3.x on the SDK 1.x has no 2026-07-28: the auto-mode client falls back to 2025-11-25.
#[test]
fn fastmcp_sdk1_server_stateful() {
    let expect = Expect {
        protocol: ["2025-11-25", "2025-11-25"],
        ..PYTHON_EXPECT
    };
    compare(Upstream::python(Venv::Mcp1, false), &PYTHON_CALLS, &expect);
}

#[test]
fn fastmcp_sdk1_server_stateless() {
    let expect = Expect {
        protocol: ["2025-11-25", "2025-11-25"],
        sessions: false,
        ..PYTHON_EXPECT
    };
    compare(Upstream::python(Venv::Mcp1, true), &PYTHON_CALLS, &expect);
}

/// server-everything has no 2026-07-28 either, and answers an ended session with 400 (not the
/// 404 the spec asks for) — directly too; the sidecar passes it on unchanged.
#[test]
fn server_everything() {
    let expect = Expect {
        protocol: ["2025-11-25", "2025-11-25"],
        sessions: true,
        after_close: 400,
        call_text: "Echo: hi",
        stream_text: "Long running operation completed. Duration: 0.3 seconds, Steps: 3.",
    };
    let upstream = Upstream::Everything(ServerEverything::start().unwrap());
    compare(upstream, &EVERYTHING_CALLS, &expect);
}
