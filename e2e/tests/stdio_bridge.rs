//! stdio MCP servers behind `sluice-bridge` and the sidecar, as a stdio McpServer's pod runs
//! them, against the same servers spoken to directly over stdio by the SDK's own stdio client.
//!
//! Peers: server-everything in stdio mode (Node 22), the Python SDK 2.x stdio servers
//! `e2e/py/stdio/server.py` (well-behaved tools, and tools that crash the process, print garbage
//! to stdout or flood it) and the conformance fixture `e2e/py/conformance/server.py --stdio`;
//! the Python SDK 2.x client (`e2e/py/peers/client.py`, legacy and auto modes); the official
//! conformance suite for the tables.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::conformance;
use sluice_e2e::http::{self, HttpResponse, MCP_ACCEPT};
use sluice_e2e::peers::{self, python_script};
use sluice_e2e::process::run_ok;
use sluice_e2e::procstat::{Memory, mib};
use sluice_e2e::wait::{Probe, wait_until};
use sluice_e2e::{Bridge, Sidecar};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);

/// The Python SDK stdio server with misbehaving tools.
fn python_server() -> Vec<OsString> {
    vec![
        peers::python_mcp2().unwrap().into(),
        python_script("stdio/server.py").unwrap().into(),
    ]
}

/// server-everything in stdio mode.
fn everything_server() -> Vec<OsString> {
    vec![
        peers::node22().unwrap().into(),
        peers::server_everything_cli().unwrap().into(),
        "stdio".into(),
    ]
}

/// The SDK client's report (`e2e/py/peers/client.py`) over stdio (`target` a command line) or
/// Streamable HTTP (`target` a URL, through the sidecar with its credential).
fn client(target: Target<'_>, mode: &str, call: &str, stream: &str) -> Value {
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command.arg(python_script("peers/client.py").unwrap());
    match target {
        Target::Stdio(server) => {
            let line: Vec<String> = server
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            command.args(["--stdio", &serde_json::to_string(&line).unwrap()]);
        }
        Target::Url(url) => {
            command.args(["--url", url, "--header", Sidecar::AUTHORIZATION]);
        }
    }
    command
        .args(["--mode", mode, "--call", call, "--stream", stream])
        .args(["--timeout", "40"]);
    let output = run_ok(&mut command, CLIENT_TIMEOUT).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("client report is not JSON ({e}): {text}"))
}

#[derive(Clone, Copy)]
enum Target<'a> {
    Stdio(&'a [OsString]),
    Url(&'a str),
}

/// What a user of the SDK sees: the same over stdio and through bridge and sidecar.
const SEEN: [&str; 6] = [
    "protocol_version",
    "server_name",
    "server_version",
    "tools",
    "call",
    "stream",
];

#[test]
fn sdk_clients_see_through_the_bridge_and_the_sidecar_what_they_see_over_stdio() {
    let cases: [(&str, Vec<OsString>, &str, &str); 2] = [
        (
            "python-sdk",
            python_server(),
            r#"echo:{"text":"hi"}"#,
            r#"count:{"steps":3}"#,
        ),
        (
            "server-everything",
            everything_server(),
            r#"echo:{"message":"hi"}"#,
            r#"trigger-long-running-operation:{"duration":0.3,"steps":3}"#,
        ),
    ];
    for (name, server, call, stream) in &cases {
        let bridge = Bridge::start(&[], server).unwrap();
        let sidecar = Sidecar::permissive(bridge.port()).unwrap();
        for mode in ["legacy", "auto"] {
            // Two callers at once through the bridge: their ids (and, sessionless, their
            // progress tokens) are the same numbers, and must not meet.
            let (direct, bridged, other) = std::thread::scope(|scope| {
                let direct = scope.spawn(|| client(Target::Stdio(server), mode, call, stream));
                let other = scope.spawn(|| client(Target::Url(&sidecar.url()), mode, call, stream));
                let bridged = client(Target::Url(&sidecar.url()), mode, call, stream);
                (direct.join().unwrap(), bridged, other.join().unwrap())
            });
            println!(
                "{name} {mode}\n  stdio:   {direct}\n  bridged: {bridged}\n  other:   {other}"
            );
            for field in SEEN {
                assert_eq!(
                    direct[field], other[field],
                    "{name} {mode}, the other caller: {field}"
                );
            }
            assert!(direct.get("connect_error").is_none(), "{direct:#}");
            assert!(
                direct["stream"]["progress"].as_array().unwrap().len() == 3,
                "the streaming call reports progress: {direct:#}"
            );
            for field in SEEN {
                assert_eq!(direct[field], bridged[field], "{name} {mode}: {field}");
            }
            // Over HTTP the session the client opened is gone once it closed (DELETE); a
            // sessionless (stateless revision) client had none.
            let wire = bridged["wire"].as_array().unwrap();
            if wire.iter().any(|w| w["session"] == true) {
                assert_eq!(bridged["after_close"], 404, "{bridged:#}");
            }
        }
    }
}

/// An MCP session opened by hand through `url`, with the sidecar's credential.
struct Session {
    url: String,
    id: String,
}

impl Session {
    fn open(url: &str) -> Self {
        let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "stdio-bridge-test", "version": "1"}}});
        let response = http::post_json(url, &initialize, &Self::headers(None))
            .unwrap()
            .expect_status(200)
            .unwrap();
        let id = response.header("mcp-session-id").unwrap().to_owned();
        let session = Self {
            url: url.to_owned(),
            id,
        };
        http::post_json(
            url,
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            &Self::headers(Some(&session.id)),
        )
        .unwrap()
        .expect_status(202)
        .unwrap();
        session
    }

    fn headers(session: Option<&str>) -> Vec<(&'static str, &str)> {
        let (name, value) = Sidecar::AUTHORIZATION.split_once(": ").unwrap();
        let mut headers = vec![("accept", MCP_ACCEPT), (name, value)];
        if let Some(session) = session {
            headers.push(("mcp-session-id", session));
            headers.push(("mcp-protocol-version", "2025-11-25"));
        }
        headers
    }

    fn call(&self, id: u64, tool: &str, arguments: Value) -> HttpResponse {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        http::post_json(&self.url, &request, &Self::headers(Some(&self.id))).unwrap()
    }
}

/// The JSON-RPC messages of an event-stream body.
fn messages(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap_or_else(|e| panic!("not JSON ({e}): {data}")))
        .collect()
}

/// The text of a tools/call result in an event-stream body, or the error.
fn answer(response: &HttpResponse) -> Result<String, Value> {
    let last = messages(&response.body)
        .pop()
        .ok_or_else(|| json!({"status": response.status, "body": response.body}))?;
    match last.get("result") {
        Some(result) => Ok(result["content"][0]["text"].as_str().unwrap().to_owned()),
        None => Err(last),
    }
}

#[test]
fn a_server_that_crashes_mid_call_fails_the_call_comes_back_and_readiness_follows() {
    // A backoff long enough that the sidecar's checks, every second, see it.
    let mut bridge = Bridge::start(&["--restart-backoff", "8s"], &python_server()).unwrap();
    let sidecar = Sidecar::permissive_checking(bridge.port(), "1s", "900ms", 1).unwrap();
    let ready = |want: bool| {
        wait_until("the sidecar's readiness", WAIT, || {
            let status = sidecar.admin_get("/readyz")?.status;
            Ok(if (status == 200) == want {
                Probe::Ready(status)
            } else {
                Probe::NotYet(format!("/readyz {status}"))
            })
        })
        .unwrap()
    };
    ready(true);
    let session = Session::open(&sidecar.url());
    let first_pid = answer(&session.call(1, "whoami", json!({}))).unwrap();
    // A second caller: a process of its own, untouched by the first one's crash.
    let other = Session::open(&sidecar.url());
    let other_pid = answer(&other.call(1, "whoami", json!({}))).unwrap();
    assert_ne!(first_pid, other_pid, "each session has its own process");

    // The call in flight gets a JSON-RPC error, not a hung or broken stream.
    let crashed = session.call(2, "crash", json!({"code": 3}));
    assert_eq!(crashed.status, 200, "{}", crashed.body);
    let error = answer(&crashed).unwrap_err();
    assert_eq!(error["id"], 2, "{error}");
    assert_eq!(error["error"]["code"], -32603, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("exited") && message.contains("restarted"),
        "{message}"
    );

    // The other session's process still answers, within the backoff.
    assert_eq!(
        answer(&other.call(2, "whoami", json!({}))).unwrap(),
        other_pid
    );
    // While the bridge backs off, the pod is not ready; the same session waits meanwhile.
    ready(false);
    let waiting = session.call(3, "whoami", json!({}));
    assert_eq!(waiting.status, 503, "{}", waiting.body);
    assert_eq!(
        waiting.json().unwrap()["error"]["code"],
        -32603,
        "{}",
        waiting.body
    );

    // The process comes back for the same session (its initialize replayed), then readiness.
    let second_pid = wait_until("the session's process to come back", WAIT, || {
        let response = session.call(4, "whoami", json!({}));
        Ok(match answer(&response) {
            Ok(pid) => Probe::Ready(pid),
            Err(e) => Probe::NotYet(e.to_string()),
        })
    })
    .unwrap();
    assert_ne!(first_pid, second_pid, "a new process answers");
    ready(true);
    assert_eq!(
        answer(&session.call(5, "echo", json!({"text": "again"}))).unwrap(),
        "again"
    );

    // The server's stderr reached the log, marked with its session.
    let stderr = bridge.server_stderr();
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("crashing on purpose with status 3")),
        "{stderr:#?}"
    );
    let log = bridge.process().stderr();
    assert!(
        log.contains("restarting it for its session after the backoff"),
        "{log}"
    );
    bridge.process().ensure_running().unwrap();
}

#[test]
fn garbage_on_stdout_is_dropped_and_logged_and_a_flood_costs_bounded_memory() {
    let mut bridge = Bridge::start(&["--max-message-bytes", "1048576"], &python_server()).unwrap();
    let sidecar = Sidecar::permissive(bridge.port()).unwrap();
    let session = Session::open(&sidecar.url());

    // Lines that are not messages never reach the caller; each is logged.
    let response = session.call(1, "garbage", json!({"lines": 3}));
    let sent = messages(&response.body);
    assert_eq!(sent.len(), 1, "{}", response.body);
    assert_eq!(answer(&response).unwrap(), "done");
    assert!(!response.body.contains("not JSON-RPC"), "{}", response.body);
    let log = bridge.process().stderr();
    let dropped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("wrote a line to stdout that is"))
        .collect();
    assert_eq!(
        dropped.len(),
        4,
        "three prints and one JSON non-message:\n{log}"
    );
    assert!(
        dropped[0].contains("debug: this is not JSON-RPC, line 0"),
        "{log}"
    );

    // 256 MiB in one line without end, then 64 MiB of short lines: skipped, and the bridge's
    // memory stays what it was, give or take buffers (the bound is --max-message-bytes, 1 MiB).
    let pid = bridge.process().pid();
    let before = Memory::of(pid).unwrap();
    let flood = session.call(2, "flood", json!({"megabytes": 256, "newlines": false}));
    assert_eq!(answer(&flood).unwrap(), "flooded");
    let lines = session.call(3, "flood", json!({"megabytes": 64, "newlines": true}));
    assert_eq!(answer(&lines).unwrap(), "flooded");
    // Server notifications as fast as the server writes them, to a caller that reads them.
    let shout = session.call(4, "shout", json!({"count": 5000}));
    assert_eq!(answer(&shout).unwrap(), "shouted 5000");
    assert_eq!(messages(&shout.body).len(), 5001);
    let after = Memory::of(pid).unwrap();
    println!(
        "bridge memory: before {} (peak {}), after 320 MiB of garbage and 5,000 notifications {} (peak {})",
        mib(before.rss_kib),
        mib(before.peak_kib),
        mib(after.rss_kib),
        mib(after.peak_kib)
    );
    assert!(
        after.peak_kib < before.rss_kib + 32 * 1024,
        "the bridge grew from {} to a peak of {}",
        mib(before.rss_kib),
        mib(after.peak_kib)
    );
    let log = bridge.process().stderr();
    let logged = log
        .lines()
        .filter(|l| l.contains("wrote a line to stdout that is"))
        .count();
    assert!(
        logged < 40,
        "65,536 garbage lines are logged sparsely, not one by one: {logged}"
    );
    assert_eq!(
        answer(&session.call(5, "echo", json!({"text": "still here"}))).unwrap(),
        "still here"
    );
    bridge.process().ensure_running().unwrap();
}

/// The conformance table of one server: its Streamable HTTP run straight, next to its stdio run
/// through the bridge and the sidecar. `(scenario, direct, bridged, direct checks s/f/w)`.
fn conformance_table(
    direct: &conformance::SuiteResults,
    bridged: &conformance::SuiteResults,
) -> String {
    let verdict = |checks: Option<&Vec<conformance::Check>>| match checks {
        Some(checks) if conformance::passed(checks) => "pass",
        Some(_) => "FAIL",
        None => "missing",
    };
    let count = |checks: &[conformance::Check], status: &str| {
        checks.iter().filter(|c| c.status == status).count()
    };
    let mut out = String::from(
        "| scenario | HTTP, direct | stdio, bridge + sidecar | checks direct (s/f/w) | checks bridged (s/f/w) |\n|---|---|---|---|---|\n",
    );
    for (scenario, checks) in direct {
        let other = bridged.get(scenario);
        out += &format!(
            "| {scenario} | {} | {} | {}/{}/{} | {} |\n",
            verdict(Some(checks)),
            verdict(other),
            count(checks, "SUCCESS"),
            count(checks, "FAILURE"),
            count(checks, "WARNING"),
            other.map_or("-".into(), |o| format!(
                "{}/{}/{}",
                count(o, "SUCCESS"),
                count(o, "FAILURE"),
                count(o, "WARNING")
            )),
        );
    }
    out
}

/// Scenario verdicts that differ between the two runs, with the checks that differ.
fn differences(
    direct: &conformance::SuiteResults,
    bridged: &conformance::SuiteResults,
) -> Vec<String> {
    let verdicts = |checks: &[conformance::Check]| -> Vec<(String, String)> {
        checks
            .iter()
            .filter(|c| c.is_verdict())
            .map(|c| (c.id.clone(), c.status.clone()))
            .collect()
    };
    let mut out = Vec::new();
    for (scenario, checks) in direct {
        let theirs = bridged
            .get(scenario)
            .map(|c| verdicts(c))
            .unwrap_or_default();
        if verdicts(checks) != theirs {
            out.push(format!(
                "{scenario}: direct {:?} bridged {:?} ({:?})",
                verdicts(checks),
                theirs,
                bridged.get(scenario).map(|checks| checks
                    .iter()
                    .filter_map(|c| c.error_message.clone())
                    .collect::<Vec<_>>())
            ));
        }
    }
    out
}

#[test]
fn the_conformance_suite_sees_stdio_servers_through_the_bridge_as_over_http() {
    let out = tempfile::tempdir().unwrap();

    // The conformance fixture (Python SDK): over HTTP at a port, and over stdio.
    let fixture_port = sluice_e2e::free_port().unwrap();
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("conformance/server.py").unwrap())
        .args(["--port", &fixture_port.to_string()]);
    let mut fixture = sluice_e2e::Process::spawn("conformance fixture", command).unwrap();
    fixture.wait_for_port(fixture_port, WAIT).unwrap();
    let fixture_stdio: Vec<OsString> = vec![
        peers::python_mcp2().unwrap().into(),
        python_script("conformance/server.py").unwrap().into(),
        "--stdio".into(),
    ];
    // The suite opens a session per scenario and ends none: a process each until idle.
    let fixture_bridge = Bridge::start(&["--max-processes", "100"], &fixture_stdio).unwrap();
    let fixture_sidecar = Sidecar::permissive(fixture_bridge.port()).unwrap();

    // server-everything: streamableHttp mode, and stdio mode.
    let everything = sluice_e2e::ServerEverything::start().unwrap();
    let everything_bridge =
        Bridge::start(&["--max-processes", "100"], &everything_server()).unwrap();
    let everything_sidecar = Sidecar::permissive(everything_bridge.port()).unwrap();

    let run = |url: &str, name: &str| {
        conformance::run_server_suite(url, Sidecar::AUTHORIZATION, &out.path().join(name)).unwrap()
    };
    let fixture_url = format!("http://127.0.0.1:{fixture_port}/mcp");
    // And server-everything's HTTP mode through the sidecar: a `container` server's path.
    let everything_http_sidecar = Sidecar::permissive(everything.port()).unwrap();
    let (
        fixture_direct,
        fixture_bridged,
        everything_direct,
        everything_bridged,
        everything_proxied,
    ) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run(&fixture_url, "fixture-direct"));
        let b = scope.spawn(|| run(&fixture_sidecar.url(), "fixture-bridged"));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let c = scope.spawn(|| run(&everything.url(), "everything-direct"));
        let d = scope.spawn(|| run(&everything_sidecar.url(), "everything-bridged"));
        let (c, d) = (c.join().unwrap(), d.join().unwrap());
        let e = run(&everything_http_sidecar.url(), "everything-proxied");
        (a, b, c, d, e)
    });
    println!(
        "conformance fixture (Python SDK 2.x):\n{}",
        conformance_table(&fixture_direct, &fixture_bridged)
    );
    println!(
        "server-everything:\n{}",
        conformance_table(&everything_direct, &everything_bridged)
    );

    assert!(
        fixture_direct
            .values()
            .all(|checks| conformance::passed(checks)),
        "the fixture passes every scenario over HTTP"
    );
    let fixture_differences = differences(&fixture_direct, &fixture_bridged);
    assert!(
        fixture_differences.is_empty(),
        "the fixture over stdio through the bridge differs:\n{}",
        fixture_differences.join("\n")
    );
    // One difference, the sidecar's doing: it refuses a rebound Host header, which
    // server-everything's own HTTP mode accepts (over stdio there is no Host to check).
    let everything_differences = differences(&everything_direct, &everything_bridged);
    assert_eq!(
        everything_differences
            .iter()
            .map(|d| d.split(':').next().unwrap())
            .collect::<Vec<_>>(),
        ["dns-rebinding-protection"],
        "server-everything over stdio through the bridge differs:\n{}",
        everything_differences.join("\n")
    );
    assert!(!conformance::passed(
        &everything_direct["dns-rebinding-protection"]
    ));
    assert!(conformance::passed(
        &everything_bridged["dns-rebinding-protection"]
    ));
    println!(
        "server-everything, HTTP through the sidecar (a `container` server):\n{}",
        conformance_table(&everything_direct, &everything_proxied)
    );
    assert_eq!(
        differences(&everything_proxied, &everything_bridged),
        Vec::<String>::new(),
        "over HTTP through the sidecar and over stdio through bridge and sidecar alike"
    );
    // Not vacuous: server-everything passes scenarios either way.
    assert!(
        everything_bridged
            .values()
            .filter(|checks| conformance::passed(checks))
            .count()
            > 5
    );
    // The fixture over stdio really served the scenarios (its `served` lines, on stderr).
    let served = fixture_bridge
        .server_stderr()
        .iter()
        .filter(|line| line.contains("\"served\""))
        .count();
    assert!(served > 20, "the stdio fixture served {served} requests");
    fixture.ensure_running().unwrap();
}

/// The rendered documents as JSON, the sidecar's config parsed.
fn rendered(manifest: &str) -> Vec<Value> {
    sluice_e2e::render::render_stdin_json(manifest).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn a_stdio_server_rendered_by_the_operator_serves_through_the_bridge_and_the_sidecar() {
    // The server's command as the image would hold it; here the npm package's files.
    let node = peers::node22().unwrap();
    let cli = peers::server_everything_cli().unwrap();
    let manifest = format!(
        "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata: {{name: everything, namespace: tools}}
spec:
  container:
    image: docker.io/mcp/everything:latest
    command: ['{node}', '{cli}']
    args: [stdio]
    stdio: {{maxProcesses: 4, idleTimeout: 10m}}
  sessions: stateful
  policy:
    authentication: {{mode: apiKey, apiKey: {{secretRef: {{name: everything-keys}}}}}}
    tools: {{deny: [get-env]}}
",
        node = node.display(),
        cli = cli.display()
    );
    let docs = rendered(&manifest);
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];

    // The init container, as the kubelet would run it: the bridge installs itself.
    let init = &pod["initContainers"][0];
    let install = strings(&init["command"]);
    assert_eq!(install[1..], ["install", "/sluice/bridge"], "{init:#}");
    let volume = tempfile::tempdir().unwrap();
    let mut command = Command::new(sluice_e2e::sluice_bridge().unwrap());
    command.arg(&install[1]).arg(volume.path());
    run_ok(&mut command, WAIT).unwrap();
    let installed = volume.path().join("sluice-bridge");

    // The server's container, its bridge path moved to where the volume is mounted here.
    let server = &pod["containers"][0];
    assert_eq!(server["name"], "mcp-server");
    assert_eq!(
        strings(&server["command"]),
        ["/sluice/bridge/sluice-bridge"]
    );
    let args = strings(&server["args"]);
    let port_at = args.iter().position(|a| a == "--port").unwrap() + 1;
    let port = sluice_e2e::free_port().unwrap();
    let mut args = args.clone();
    args[port_at] = port.to_string();
    let mut command = Command::new(&installed);
    command.args(&args);
    let mut bridge = sluice_e2e::Process::spawn("rendered sluice-bridge", command).unwrap();
    bridge.wait_for_port(port, WAIT).unwrap();

    // The sidecar with the rendered config, its upstream moved to the bridge's port.
    let scratch = tempfile::tempdir().unwrap();
    let keys = scratch.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (name, value) = Sidecar::AUTHORIZATION.split_once(": Bearer ").unwrap();
    assert_eq!(name, "Authorization");
    std::fs::write(keys.join("e2e"), value).unwrap();
    let configmap = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let mut config = configmap["parsedData"]["config.yaml"].clone();
    assert_eq!(config["upstream"]["sessions"], "stateful");
    config["upstream"]["url"] = json!(format!("http://127.0.0.1:{port}"));
    let (listen, admin) = (
        sluice_e2e::free_port().unwrap(),
        sluice_e2e::free_port().unwrap(),
    );
    config["admin"]["listen"] = json!(format!("127.0.0.1:{admin}"));
    config["entryPoints"][0]["listen"] = json!(format!("127.0.0.1:{listen}"));
    config["entryPoints"][0]["auth"]["keysDir"] = json!(keys.to_string_lossy());
    let path = scratch.path().join("sidecar.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut command = Command::new(sluice_e2e::sluice_proxy().unwrap());
    command.arg("--config").arg(&path).env_remove("RUST_LOG");
    let mut sidecar = sluice_e2e::Process::spawn("sluice-proxy", command).unwrap();
    sidecar
        .wait_for_http_ok(&format!("http://127.0.0.1:{admin}/readyz"), WAIT)
        .unwrap();

    // What the SDK client sees over stdio, less the tool the policy denies.
    let url = format!("http://127.0.0.1:{listen}/mcp");
    let call = r#"echo:{"message":"hi"}"#;
    let stream = r#"trigger-long-running-operation:{"duration":0.3,"steps":3}"#;
    let server: Vec<OsString> = vec![node.into(), cli.into(), "stdio".into()];
    let direct = client(Target::Stdio(&server), "legacy", call, stream);
    let proxied = client(Target::Url(&url), "legacy", call, stream);
    let tools = |report: &Value| strings(&report["tools"]);
    assert!(tools(&direct).contains(&"get-env".to_owned()));
    let expected: Vec<String> = tools(&direct)
        .into_iter()
        .filter(|t| t != "get-env")
        .collect();
    assert_eq!(tools(&proxied), expected);
    for field in ["protocol_version", "server_name", "call", "stream"] {
        assert_eq!(direct[field], proxied[field], "{field}");
    }
    // The rendered limit reached the bridge: sessions beyond maxProcesses (4) are refused
    // (one slot may be the sidecar's check's, for the moment it runs).
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "stdio-bridge-test", "version": "1"}}});
    let mut opened = 0;
    let refused = loop {
        let response = http::post_json(&url, &initialize, &Session::headers(None)).unwrap();
        if response.status != 200 {
            break response;
        }
        opened += 1;
        assert!(opened <= 4, "more sessions than maxProcesses");
    };
    assert!(opened >= 3, "only {opened} sessions");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("--max-processes"), "{}", refused.body);
    bridge.ensure_running().unwrap();
    sidecar.ensure_running().unwrap();
}

#[test]
fn at_sigterm_the_bridge_lets_its_servers_finish_before_it_exits() {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("exited");
    // `env` execs the server with the marker's path in its environment (same process).
    let mut server: Vec<OsString> = vec![
        "env".into(),
        format!("EXIT_MARKER={}", marker.display()).into(),
    ];
    server.extend(python_server());
    let mut bridge = Bridge::start(&[], &server).unwrap();
    let session = Session::open(&bridge.url());
    let pid = answer(&session.call(1, "whoami", json!({}))).unwrap();

    bridge
        .process()
        .signal(sluice_e2e::process::Signal::Term)
        .unwrap();
    let status = bridge
        .process()
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .expect("the bridge exits after SIGTERM");
    assert!(status.success(), "{status}");
    // The server saw its stdin close and finished (half a second) before the bridge exited.
    let written = std::fs::read_to_string(&marker)
        .unwrap_or_else(|e| panic!("the server left no exit marker ({e}): it was killed first"));
    assert_eq!(written.trim(), format!("exited cleanly: {pid}"));
}
