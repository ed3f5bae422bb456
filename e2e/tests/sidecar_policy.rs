//! Tool policy and rate limits end to end: the sluice-proxy binary in front of a real MCP server
//! (Python MCP SDK 2.x, event-stream and JSON replies), driven by the SDK's own client in legacy
//! and auto modes; and two sidecar processes sharing one global budget in a real Redis, which is
//! then killed (fail-closed: the client sees an error) and restarted (calls pass again).
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::peers::{self, python_script};
use sluice_e2e::process::run_ok;
use sluice_e2e::{Process, Redis, free_port, http, sluice_proxy};

const START: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const ALICE: &str = "alice-key-0123456789abcdef";
const BOB: &str = "bob-key-0123456789abcdef0";

/// The policy MCP server (`e2e/py/policy/server.py`) on a free port.
fn mcp_server(json_replies: bool) -> (Process, u16) {
    let port = free_port().unwrap();
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("policy/server.py").unwrap())
        .args(["--port", &port.to_string()]);
    if json_replies {
        command.arg("--json");
    }
    let mut server = Process::spawn("policy MCP server", command).unwrap();
    server.wait_for_port(port, START).unwrap();
    (server, port)
}

/// The sidecar with `config` (written into `dir`), listening on its entry and admin ports.
fn sidecar(dir: &Path, name: &str, config: &str, port: u16, admin: u16) -> Process {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(sluice_proxy().unwrap());
    command.arg("--config").arg(&path).env_remove("RUST_LOG");
    let mut proxy = Process::spawn(name, command).unwrap();
    proxy.wait_for_port(port, START).unwrap();
    proxy
        .wait_for_http_ok(&format!("http://127.0.0.1:{admin}/healthz"), START)
        .unwrap();
    proxy
}

/// A config: API keys for alice and bob from `keys`, `pha_passphrase_*` denied, and `limits`
/// (YAML lines under the entry point); `top` at the top level.
fn config(upstream: u16, port: u16, admin: u16, keys: &Path, top: &str, limits: &str) -> String {
    format!(
        "upstream:\n  url: http://127.0.0.1:{upstream}\nadmin:\n  listen: 127.0.0.1:{admin}\n{top}entryPoints:\n  - name: main\n    listen: 127.0.0.1:{port}\n    auth:\n      mode: apiKey\n      keysDir: {}\n    tools:\n      deny: [\"pha_passphrase_*\"]\n{limits}",
        keys.display()
    )
}

fn keys(dir: &Path) -> std::path::PathBuf {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("alice"), ALICE).unwrap();
    std::fs::write(keys.join("bob"), BOB).unwrap();
    keys
}

/// Runs the SDK client (`e2e/py/policy/client.py`) and returns its report.
fn client(port: u16, mode: &str, key: Option<&str>, calls: &[&str]) -> Value {
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("policy/client.py").unwrap())
        .args(["--url", &format!("http://127.0.0.1:{port}/mcp")])
        .args(["--mode", mode]);
    if let Some(key) = key {
        command.args(["--header", &format!("Authorization: Bearer {key}")]);
    }
    for call in calls {
        command.args(["--call", call]);
    }
    let output = run_ok(&mut command, CLIENT_TIMEOUT).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("client report is not JSON ({e}): {text}"))
}

const TASK: &str = "pha_task_get:{\"task_id\":7}";
const PASSPHRASE: &str = "pha_passphrase_get:{\"passphrase_id\":1}";
const WHOAMI: &str = "pha_user_whoami";

fn assert_ok(call: &Value, text: &str) {
    assert_eq!(call["ok"], true, "{call}");
    assert_eq!(call["is_error"], false, "{call}");
    assert_eq!(call["text"], text, "{call}");
}

/// A `pha_user_whoami` call that named `user` (Conduit's `{"success": true, "user": {...}}`).
fn assert_whoami(call: &Value, user: &str) {
    assert_eq!(call["ok"], true, "{call}");
    let result: Value = serde_json::from_str(call["text"].as_str().unwrap()).unwrap();
    assert_eq!(result["user"]["userName"], user, "{call}");
}

fn assert_refused(call: &Value, code: i64, says: &str) {
    assert_eq!(call["ok"], false, "{call}");
    assert_eq!(call["code"], code, "{call}");
    assert!(call["error"].as_str().unwrap().contains(says), "{call}");
}

#[test]
fn the_sdk_client_sees_filtered_tools_refusals_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    // Two calls per caller per hour.
    let limits = "    rateLimits:\n      - name: per-caller\n        by: [identity]\n        requests: 2\n        period: 1h\n";
    for json_replies in [false, true] {
        let (_server, upstream) = mcp_server(json_replies);
        let (port, admin) = (free_port().unwrap(), free_port().unwrap());
        let name = if json_replies {
            "sidecar-json"
        } else {
            "sidecar-sse"
        };
        let _proxy = sidecar(
            dir.path(),
            name,
            &config(upstream, port, admin, &keys, "", limits),
            port,
            admin,
        );
        // Each SDK mode as its own caller, so each has its own budget.
        for (mode, key) in [("legacy", ALICE), ("auto", BOB)] {
            let what = format!("{name}, mode {mode}");
            let report = client(port, mode, Some(key), &[TASK, PASSPHRASE, WHOAMI, TASK]);
            assert_eq!(
                report["tools"],
                json!(["pha_task_get", "pha_user_whoami"]),
                "{what}: {report}"
            );
            let calls = report["calls"].as_array().unwrap();
            assert_ok(&calls[0], "T7: fix the build");
            assert_refused(&calls[1], -32003, "pha_passphrase_get is not allowed");
            assert_whoami(&calls[2], "alice");
            assert_refused(&calls[3], -32004, "rate limit per-caller exceeded");
        }
        // Without a key the SDK cannot even connect.
        let report = client(port, "legacy", None, &[TASK]);
        assert!(report["connect_error"].is_object(), "{report}");
        // The denied tool keeps its name in the metric: the upstream listed it.
        let metrics = http::get(&format!("http://127.0.0.1:{admin}/metrics"), &[]).unwrap();
        assert!(
            metrics.body.contains(
                "sluice_policy_denials_total{entry_point=\"main\",kind=\"tool\",name=\"pha_passphrase_get\",reason=\"denied\"} 2"
            ),
            "{}",
            metrics.body
        );
    }
}

/// Waits until the sidecar's Redis connection is up (without spending budget).
fn until_connected(admin: u16) {
    let url = format!("http://127.0.0.1:{admin}/metrics");
    let deadline = std::time::Instant::now() + START;
    while !http::get(&url, &[])
        .unwrap()
        .body
        .contains("sluice_redis_connected 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sidecar did not connect to Redis"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_sidecars_share_a_global_budget_and_fail_closed_without_redis() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let mut redis = Redis::start().unwrap();
    let redis_port = redis.port();
    let (_server, upstream) = mcp_server(false);
    let top = format!(
        "redis:\n  address: 127.0.0.1:{redis_port}\n  failMode: closed\n  keyPrefix: e2e/\n"
    );
    let limits = "    rateLimits:\n      - name: global\n        requests: 3\n        period: 1h\n        scope: global\n";
    let ports: Vec<(u16, u16)> = (0..2)
        .map(|_| (free_port().unwrap(), free_port().unwrap()))
        .collect();
    let mut sidecars: Vec<Process> = ports
        .iter()
        .enumerate()
        .map(|(i, &(port, admin))| {
            sidecar(
                dir.path(),
                &format!("sidecar-{i}"),
                &config(upstream, port, admin, &keys, &top, limits),
                port,
                admin,
            )
        })
        .collect();
    for &(_, admin) in &ports {
        until_connected(admin);
    }
    let (a, b) = (ports[0].0, ports[1].0);

    // Three calls in all, through either sidecar; the fourth is refused by the other one.
    let report = client(a, "legacy", Some(ALICE), &[TASK, WHOAMI]);
    assert_ok(&report["calls"][0], "T7: fix the build");
    assert_whoami(&report["calls"][1], "alice");
    let report = client(b, "legacy", Some(BOB), &[TASK, TASK]);
    assert_ok(&report["calls"][0], "T7: fix the build");
    assert_refused(&report["calls"][1], -32004, "rate limit global exceeded");

    // Redis gone: fail-closed refuses what it cannot count, and says so in its log.
    redis.process().kill().unwrap();
    let report = client(a, "legacy", Some(ALICE), &[TASK]);
    assert_refused(&report["calls"][0], -32603, "rate limits cannot be checked");
    sidecars[0]
        .wait_for_output("\"reason\":\"RedisUnavailable\"", START)
        .unwrap();

    // Redis back (empty): calls pass again.
    let _redis = Redis::start_on(redis_port).unwrap();
    until_connected(ports[0].1);
    let report = client(a, "legacy", Some(ALICE), &[TASK]);
    assert_ok(&report["calls"][0], "T7: fix the build");
    sidecars[0]
        .wait_for_output("Redis for global rate limits is reachable again", START)
        .unwrap();
    for s in &mut sidecars {
        s.ensure_running().unwrap();
    }
}
