//! MCP's deprecated HTTP+SSE transport (2024-11-05), served by the sidecar itself and bridged to
//! the upstream's Streamable HTTP endpoint (`legacySse`).
//!
//! - The SDK's own legacy client (`e2e/py/legacy/client.py`: `mcp.client.sse.sse_client` of the
//!   SDK 1.x and 2.x) through a sidecar (API keys, tool `secret` denied) in front of fastmcp 3.x
//!   on the SDK 1.x (what Conduit runs on), stateful and stateless, with the entry point at `/`
//!   and at `/ai`, sees what the same client sees straight from the same server speaking the
//!   transport itself (`server.py --transport sse`): the same server, protocol, calls, progress
//!   and POST statuses; the tool list without `secret`, and the call of `secret` refused as a
//!   JSON-RPC error. The endpoint announced is under the entry point's prefix; once the client
//!   left, its session is gone from the sidecar (404, gauge back to 0) and from the upstream.
//! - Raw HTTP from outside ([`sluice_e2e::legacy_sse`]): a session answers only its owner
//!   (another caller's POST gets the unknown-session 404 and reaches nothing), refusals of the
//!   owner's own messages (denied tool, rate limit, upstream gone) come on its stream with their
//!   ids, a missing session id, an oversized body and a missing credential are refused, floods of
//!   `GET /sse` meet the per-caller (429) and sidecar (503) limits, an idle session ends, and
//!   every refusal is a JSON-RPC error; the `sluice_legacy_sessions` gauge follows the open
//!   streams, the audit trail names each caller's decisions.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use sluice_e2e::http::{self, HttpResponse};
use sluice_e2e::legacy_sse::{LegacyStream, Opened};
use sluice_e2e::peers::{Venv, python_script};
use sluice_e2e::process::run_ok;
use sluice_e2e::proxy_process::{Ports, ProxyProcess, sample_value};
use sluice_e2e::wait::{Probe, wait_until};
use sluice_e2e::{Process, free_port};

const START: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(150);
/// How long a session, a gauge or an upstream may take to notice a client left.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long one answer may take to arrive on a stream.
const ANSWER: Duration = Duration::from_secs(20);
/// A window in which nothing may arrive on a stream.
const QUIET: Duration = Duration::from_millis(1500);

const ALICE: &str = "alice-key-0123456789abcdef";
const BOB: &str = "bob-key-0123456789abcdef0";
const CAROL: &str = "carol-key-0123456789abcdef";

/// A session id no sidecar handed out (the format they hand out: 32 lowercase hex digits).
const UNKNOWN_SESSION: &str = "0123456789abcdef0123456789abcdef";

// === Peers ===

/// How `e2e/py/peers/server.py` serves MCP.
#[derive(Clone, Copy, Debug)]
enum Transport {
    /// Streamable HTTP at `/mcp`, with sessions.
    Stateful,
    /// Streamable HTTP at `/mcp`, without sessions.
    Stateless,
    /// The legacy HTTP+SSE transport itself (`/sse`, `/messages/`).
    LegacySse,
}

/// `e2e/py/peers/server.py` under fastmcp 3.x on the SDK 1.x, on a free port.
struct Server {
    process: Process,
    port: u16,
}

impl Server {
    /// Starts it; [`Server::ready`] waits until it listens (start several, then wait).
    fn spawn(transport: Transport) -> Self {
        let port = free_port().unwrap();
        let mut command = Command::new(Venv::Mcp1.python().unwrap());
        command
            .arg(python_script("peers/server.py").unwrap())
            .args(["--port", &port.to_string()])
            // fastmcp would otherwise ask PyPI for updates at start.
            .env("FASTMCP_CHECK_FOR_UPDATES", "off");
        match transport {
            Transport::Stateful => {}
            Transport::Stateless => {
                command.arg("--stateless");
            }
            Transport::LegacySse => {
                command.args(["--transport", "sse"]);
            }
        }
        let process = Process::spawn(&format!("fastmcp server ({transport:?})"), command).unwrap();
        Self { process, port }
    }

    fn ready(mut self) -> Self {
        self.process.wait_for_port(self.port, START).unwrap();
        self
    }

    /// Its open Streamable HTTP sessions (`GET /sessions`).
    fn open_sessions(port: u16) -> anyhow::Result<u64> {
        Self::sessions(port, "open")
    }

    /// One count of `GET /sessions`: `open` (Streamable HTTP) or `legacy` (HTTP+SSE streams).
    fn sessions(port: u16, kind: &str) -> anyhow::Result<u64> {
        let sessions = http::get(&format!("http://127.0.0.1:{port}/sessions"), &[])?.json()?;
        sessions[kind]
            .as_u64()
            .with_context(|| format!("GET /sessions: {sessions}"))
    }

    /// Waits until it holds `count` Streamable HTTP sessions open.
    fn until_open_sessions(port: u16, count: u64) -> anyhow::Result<()> {
        Self::until_sessions(port, "open", count)
    }

    /// Waits until [`Server::sessions`] of `kind` is `count`.
    fn until_sessions(port: u16, kind: &str, count: u64) -> anyhow::Result<()> {
        wait_until(
            &format!("the server to hold {count} {kind} sessions"),
            PATIENCE,
            || {
                let open = Self::sessions(port, kind)?;
                Ok(if open == count {
                    Probe::Ready(())
                } else {
                    Probe::NotYet(format!("{open} open"))
                })
            },
        )
    }
}

// === The sidecar ===

/// One entry point of a test sidecar.
#[derive(Clone, Copy, Debug)]
struct Entry {
    name: &'static str,
    prefix: &'static str,
    port: u16,
}

impl Entry {
    fn new(name: &'static str, prefix: &'static str) -> Self {
        Self {
            name,
            prefix,
            port: free_port().unwrap(),
        }
    }

    fn addr(self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn origin(self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `<prefix><path>` (`/sse` → `/ai/sse`, or `/sse` at `/`).
    fn path(self, path: &str) -> String {
        format!("{}{path}", self.prefix.trim_end_matches('/'))
    }

    fn url(self, path: &str) -> String {
        format!("{}{}", self.origin(), self.path(path))
    }

    /// The gauge of its open legacy sessions, as `/metrics` names it.
    fn gauge(self) -> String {
        format!("sluice_legacy_sessions{{entry_point=\"{}\"}}", self.name)
    }
}

/// What a test sidecar is set to, beyond what they all share.
struct Settings<'a> {
    /// Whether the upstream keeps sessions (`upstream.sessions`, as the operator sets it).
    stateful: bool,
    max_sessions: usize,
    max_sessions_per_caller: usize,
    /// `legacySse.idleTimeout`.
    idle_timeout: &'a str,
    /// YAML lines under each entry point (indented four spaces).
    entry_extra: &'a str,
}

/// A sidecar in front of a [`Server`]: API keys for alice, bob and carol; tool `secret` denied,
/// the rest allowed; bodies up to 4 KiB; keep-alives after 1 s of silence; its own upstream
/// check only at start (so the upstream's session count is the tests' alone afterwards).
struct Sidecar {
    proxy: ProxyProcess,
    entries: Vec<Entry>,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    fn start(upstream: u16, entries: &[Entry], settings: &Settings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys(dir.path());
        let admin = free_port().unwrap();
        let mut config = format!(
            "upstream:\n  url: http://127.0.0.1:{upstream}\n  sessions: {sessions}\n\
             \x20 check:\n    interval: 10m\n    timeout: 5s\n\
             admin:\n  listen: 127.0.0.1:{admin}\n\
             log:\n  level: info\n  format: json\n\
             streaming:\n  keepAlive: 1s\n\
             legacySse:\n  enabled: true\n  maxSessions: {max}\n  maxSessionsPerCaller: {per}\n  idleTimeout: {idle}\n\
             entryPoints:\n",
            sessions = if settings.stateful {
                "stateful"
            } else {
                "stateless"
            },
            max = settings.max_sessions,
            per = settings.max_sessions_per_caller,
            idle = settings.idle_timeout,
        );
        for entry in entries {
            config.push_str(&format!(
                "  - name: {name}\n    listen: 127.0.0.1:{port}\n    pathPrefix: {prefix}\n\
                 \x20   publicUrl: {public}\n    maxBodyBytes: 4096\n\
                 \x20   auth:\n      mode: apiKey\n      keysDir: {keys}\n\
                 \x20   tools:\n      deny: [\"secret\"]\n{extra}",
                name = entry.name,
                port = entry.port,
                prefix = entry.prefix,
                public = entry.url(""),
                keys = keys.display(),
                extra = settings.entry_extra,
            ));
        }
        let ports = Ports {
            entry: entries[0].port,
            admin,
        };
        let mut proxy = ProxyProcess::start_with(dir.path(), &config, ports, &[]).unwrap();
        for entry in &entries[1..] {
            proxy.process.wait_for_port(entry.port, START).unwrap();
        }
        let url = format!("http://127.0.0.1:{admin}/readyz");
        proxy.process.wait_for_http_ok(&url, START).unwrap();
        Self {
            proxy,
            entries: entries.to_vec(),
            _dir: dir,
        }
    }

    fn admin(&self) -> u16 {
        self.proxy.admin
    }
}

fn keys(dir: &Path) -> PathBuf {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for (name, key) in [("alice", ALICE), ("bob", BOB), ("carol", CAROL)] {
        std::fs::write(keys.join(name), key).unwrap();
    }
    keys
}

/// A sample of the sidecar's `/metrics` (absent: 0, a counter not yet counted).
fn metric(admin: u16, sample: &str) -> anyhow::Result<f64> {
    let metrics = http::get(&format!("http://127.0.0.1:{admin}/metrics"), &[])?;
    Ok(sample_value(&metrics.body, sample).unwrap_or(0.0))
}

/// Waits until `sample` reads `value`.
fn until_metric(admin: u16, sample: &str, value: f64) -> anyhow::Result<()> {
    wait_until(&format!("{sample} to read {value}"), PATIENCE, || {
        let now = metric(admin, sample)?;
        Ok(if (now - value).abs() < f64::EPSILON {
            Probe::Ready(())
        } else {
            Probe::NotYet(format!("it reads {now}"))
        })
    })
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

// === Checks shared by the tests ===

/// `endpoint` (absolute, or a path when `origin` is empty) is
/// `<origin><prefix>/messages/?session_id=<32 lowercase hex>`; returns the session id.
fn session_of(endpoint: &str, origin: &str, prefix: &str) -> anyhow::Result<String> {
    let expected = format!(
        "{origin}{}/messages/?session_id=",
        prefix.trim_end_matches('/')
    );
    let id = endpoint
        .strip_prefix(&expected)
        .with_context(|| format!("endpoint {endpoint:?} is not under {expected:?}"))?;
    let hex = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ensure!(
        hex,
        "session id {id:?} of endpoint {endpoint:?} is not 32 lowercase hex digits"
    );
    Ok(id.to_owned())
}

/// `body` is a JSON-RPC error: `{"jsonrpc": "2.0", "id": …, "error": {"code": int, "message": str}}`.
fn check_jsonrpc_error(body: &Value) -> anyhow::Result<()> {
    let well_formed = body["jsonrpc"] == "2.0"
        && body.get("id").is_some()
        && body["error"]["code"].is_i64()
        && body["error"]["message"].is_string();
    ensure!(well_formed, "not a JSON-RPC error: {body}");
    Ok(())
}

/// `response` has `status` and a JSON-RPC error body (served as JSON).
fn check_refusal(response: &HttpResponse, status: u16) -> anyhow::Result<Value> {
    let what = format!(
        "{} {:?} {}",
        response.status, response.headers, response.body
    );
    ensure!(response.status == status, "expected {status}, got {what}");
    let json = response
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"));
    ensure!(json, "a refusal that is not served as JSON: {what}");
    let body = response.json()?;
    check_jsonrpc_error(&body).with_context(|| what.clone())?;
    Ok(body)
}

// === The SDK's legacy client, through the sidecar and directly ===

/// Runs `e2e/py/legacy/client.py` under `venv` against the stream at `sse_url` as `key`.
fn legacy_client(venv: Venv, sse_url: &str, key: &str) -> anyhow::Result<Value> {
    let mut command = Command::new(venv.python()?);
    command
        .arg(python_script("legacy/client.py")?)
        .args(["--url", sse_url])
        .args(["--header", &format!("Authorization: {}", bearer(key))])
        .args(["--call", r#"echo:{"text":"hi"}"#])
        .args(["--denied", "secret:"])
        .args(["--stream", r#"count:{"steps":3}"#]);
    let output = run_ok(&mut command, CLIENT_TIMEOUT)?;
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim())
        .with_context(|| format!("the client's report is not JSON: {text}"))
}

/// What the SDK serves directly, as every client must see it (the baseline the proxied runs
/// are compared with; a failure here is the peer's, not the sidecar's).
fn check_direct(report: &Value, origin: &str) -> anyhow::Result<()> {
    let r = format!("{report:#}");
    ensure!(report.get("connect_error").is_none(), "{r}");
    ensure!(report["tools"] == json!(["count", "echo", "secret"]), "{r}");
    ensure!(
        report["call"] == json!({"ok": true, "is_error": false, "text": "echo: hi"}),
        "{r}"
    );
    ensure!(
        report["denied"] == json!({"ok": true, "is_error": false, "text": "the secret"}),
        "{r}"
    );
    ensure!(
        report["stream"]
            == json!({"ok": true, "is_error": false, "text": "counted to 3",
                      "progress": [[1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]}),
        "{r}"
    );
    ensure!(
        report["get"] == json!({"status": 200, "type": "text/event-stream"}),
        "{r}"
    );
    session_of(report["endpoint"].as_str().unwrap_or_default(), origin, "/")
        .with_context(|| r.clone())?;
    let posts = report["posts"].as_array().context("no posts")?;
    ensure!(
        posts.len() == 6 && posts.iter().all(|p| p["status"] == 202),
        "{r}"
    );
    ensure!(report["after_close"]["status"] == 404, "{r}");
    Ok(())
}

/// The run through `entry` against the direct run of the same client: the same but for the
/// denied tool (absent from the list, its call a JSON-RPC error) and the endpoint (under the
/// entry point's prefix); the ended session answers 404 with a JSON-RPC error.
fn check_proxied(proxied: &Value, direct: &Value, entry: Entry) -> anyhow::Result<()> {
    let r = format!("through the sidecar: {proxied:#}\ndirectly: {direct:#}");
    ensure!(proxied.get("connect_error").is_none(), "{r}");
    for field in [
        "sdk",
        "protocol_version",
        "server_name",
        "server_version",
        "call",
        "stream",
        "get",
        "posts",
    ] {
        ensure!(proxied[field] == direct[field], "{field} differs: {r}");
    }
    let without_secret: Vec<&Value> = direct["tools"]
        .as_array()
        .context("no tools")?
        .iter()
        .filter(|t| *t != "secret")
        .collect();
    ensure!(
        proxied["tools"] == json!(without_secret),
        "tools are not the direct ones without secret: {r}"
    );
    let denied = &proxied["denied"];
    ensure!(
        denied["ok"] == false && denied["code"] == -32003,
        "the denied call was not refused with -32003: {r}"
    );
    ensure!(
        denied["error"]
            .as_str()
            .is_some_and(|e| e.contains("secret is not allowed")),
        "{r}"
    );
    session_of(
        proxied["endpoint"].as_str().unwrap_or_default(),
        &entry.origin(),
        entry.prefix,
    )
    .with_context(|| r.clone())?;
    let after_close = &proxied["after_close"];
    ensure!(
        after_close["status"] == 404,
        "the ended session did not answer 404: {r}"
    );
    check_jsonrpc_error(&after_close["body"]).with_context(|| r.clone())?;
    Ok(())
}

/// Both SDK lines' legacy clients, through sidecars in front of a stateful and a stateless
/// fastmcp server at `/` and at `/ai`, against the same clients straight from the same server
/// speaking the transport itself. Each upstream's runs go one after another (its session count
/// is then theirs alone); the upstreams and the direct runs go side by side.
#[test]
fn sdk_clients_see_through_the_sidecar_what_they_see_directly() {
    const CLIENTS: [Venv; 2] = [Venv::Mcp1, Venv::Mcp2];
    let servers = [
        Transport::LegacySse,
        Transport::Stateful,
        Transport::Stateless,
    ]
    .map(Server::spawn)
    .map(Server::ready);
    let [direct, stateful, stateless] = &servers;
    let sidecars: Vec<(&str, &Server, Sidecar)> =
        [("stateful", stateful), ("stateless", stateless)]
            .into_iter()
            .map(|(name, server)| {
                let entries = [Entry::new("root", "/"), Entry::new("ai", "/ai")];
                let settings = Settings {
                    stateful: name == "stateful",
                    max_sessions: 512,
                    max_sessions_per_caller: 32,
                    idle_timeout: "30m",
                    entry_extra: "",
                };
                (
                    name,
                    server,
                    Sidecar::start(server.port, &entries, &settings),
                )
            })
            .collect();

    let failures = Mutex::new(Vec::<String>::new());
    let fail = |case: &str, error: anyhow::Error| {
        failures.lock().unwrap().push(format!("{case}: {error:#}"));
    };
    let direct_origin = format!("http://127.0.0.1:{}", direct.port);
    let (direct_reports, proxied_reports) = thread::scope(|s| {
        let direct_runs = s.spawn(|| {
            CLIENTS.map(|venv| {
                let case = format!("{venv:?} client, directly");
                let report = legacy_client(venv, &format!("{direct_origin}/sse"), ALICE)
                    .and_then(|report| check_direct(&report, &direct_origin).map(|()| report))
                    .and_then(|report| {
                        Server::until_sessions(direct.port, "legacy", 0).map(|()| report)
                    });
                report.map_err(|e| fail(&case, e)).ok()
            })
        });
        let proxied_runs: Vec<_> = sidecars
            .iter()
            .map(|(name, server, sidecar)| {
                let fail = &fail;
                s.spawn(move || {
                    let mut reports = Vec::new();
                    for venv in CLIENTS {
                        for &entry in &sidecar.entries {
                            let case = format!(
                                "{venv:?} client, {name} upstream, entry point at {}",
                                entry.prefix
                            );
                            let run = || -> anyhow::Result<Value> {
                                let report = legacy_client(venv, &entry.url("/sse"), ALICE)?;
                                println!("{case}: {report}");
                                // Gone from the sidecar, and (with sessions) from the upstream.
                                until_metric(sidecar.admin(), &entry.gauge(), 0.0)?;
                                if *name == "stateful" {
                                    Server::until_open_sessions(server.port, 0)?;
                                }
                                Ok(report)
                            };
                            match run() {
                                Ok(report) => reports.push((case, venv, entry, report)),
                                Err(e) => fail(&case, e),
                            }
                        }
                    }
                    reports
                })
            })
            .collect();
        (
            direct_runs.join().unwrap(),
            proxied_runs
                .into_iter()
                .flat_map(|run| run.join().unwrap())
                .collect::<Vec<_>>(),
        )
    });
    for (case, venv, entry, report) in &proxied_reports {
        let index = CLIENTS.iter().position(|v| v == venv).unwrap();
        if let Some(direct) = &direct_reports[index]
            && let Err(e) = check_proxied(report, direct, *entry)
        {
            fail(case, e);
        }
    }
    for (_, _, sidecar) in sidecars {
        let mut proxy = sidecar.proxy;
        proxy.process.ensure_running().unwrap();
    }
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CLIENTS.len() * 5,
        failures.join("\n\n")
    );
}

// === Raw HTTP: owners, intruders and refusals ===

/// A JSON-RPC request.
fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn echo(id: u64) -> Value {
    request(
        id,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
    )
}

/// POSTs `message` to `url`, as `key` (none: no credential).
fn post(url: &str, message: &Value, key: Option<&str>) -> HttpResponse {
    let auth = key.map(bearer);
    let headers: Vec<(&str, &str)> = auth
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect();
    http::post_raw(url, &message.to_string(), &headers).unwrap()
}

/// Opens `GET <prefix>/sse` as `key` (none: no credential).
fn open(entry: Entry, key: Option<&str>) -> Opened {
    let auth = key.map(bearer);
    let headers: Vec<(&str, &str)> = auth
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect();
    LegacyStream::open(entry.addr(), &entry.path("/sse"), &headers).unwrap()
}

/// An open session of `key` at `entry`: its stream and the URL its endpoint event names.
fn session(entry: Entry, key: &str) -> (LegacyStream, String) {
    let mut stream = open(entry, Some(key)).stream().unwrap();
    let content_type = stream.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{:?}",
        stream.headers
    );
    let first = stream.expect_event(ANSWER).unwrap();
    assert_eq!(first.event, "endpoint", "the first event: {first:?}");
    session_of(&first.data, "", entry.prefix).unwrap();
    (stream, format!("{}{}", entry.origin(), first.data))
}

/// POSTs `message` to the session at `url` as its owner `key`: 202, and the answer with the
/// request's id comes on `stream`.
fn ask(stream: &mut LegacyStream, url: &str, key: &str, message: &Value) -> Value {
    let response = post(url, message, Some(key));
    assert_eq!(response.status, 202, "{message} → {response:?}");
    let answer = stream.expect_message(ANSWER).unwrap();
    assert_eq!(answer["id"], message["id"], "{message} → {answer}");
    answer
}

/// Initializes the session at `url` (initialize, then notifications/initialized).
fn initialize(stream: &mut LegacyStream, url: &str, key: &str) {
    let params = json!({"protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": {"name": "e2e", "version": "0"}});
    let answer = ask(stream, url, key, &request(1, "initialize", params));
    assert!(answer["result"]["protocolVersion"].is_string(), "{answer}");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = post(url, &initialized, Some(key));
    assert_eq!(response.status, 202, "{response:?}");
}

fn assert_quiet(stream: &mut LegacyStream, who: &str) {
    let events = stream.events_within(QUIET).unwrap();
    assert!(events.is_empty(), "{who}'s stream received {events:?}");
}

/// One sidecar (entry point `main` at `/ai`, where carol may make two tool calls an hour, and
/// `other` at `/`) in front of a stateful fastmcp server; alice, bob and carol each hold a
/// session at `main`.
#[test]
fn a_session_answers_only_its_owner() {
    let upstream = Server::spawn(Transport::Stateful).ready();
    let entry = Entry::new("main", "/ai");
    let other = Entry::new("other", "/");
    let limits = "    rateLimits:\n      - name: per-caller\n        by: [identity]\n        \
                  requests: 2\n        period: 1h\n        methods: [tools/call]\n";
    let settings = Settings {
        stateful: true,
        max_sessions: 512,
        max_sessions_per_caller: 32,
        idle_timeout: "30m",
        entry_extra: limits,
    };
    let mut sidecar = Sidecar::start(upstream.port, &[entry, other], &settings);
    let admin = sidecar.admin();

    // Alice's session answers her on its stream: the tool list filtered, her call, the denied
    // call as a JSON-RPC error with its id.
    let (mut alice, alice_url) = session(entry, ALICE);
    initialize(&mut alice, &alice_url, ALICE);
    let listed = ask(
        &mut alice,
        &alice_url,
        ALICE,
        &request(2, "tools/list", json!({})),
    );
    let mut names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["count", "echo"], "{listed}");
    let called = ask(&mut alice, &alice_url, ALICE, &echo(3));
    assert_eq!(
        called["result"]["content"][0]["text"], "echo: hi",
        "{called}"
    );
    let secret = request(4, "tools/call", json!({"name": "secret", "arguments": {}}));
    let denied = ask(&mut alice, &alice_url, ALICE, &secret);
    check_jsonrpc_error(&denied).unwrap();
    assert_eq!(denied["error"]["code"], -32003, "{denied}");

    // Bob, with a session of his own, POSTs into alice's: the answer an unknown session gets,
    // and nothing reaches either stream.
    let (mut bob, bob_url) = session(entry, BOB);
    assert_ne!(bob_url, alice_url);
    let intruding = post(&alice_url, &echo(5), Some(BOB));
    check_refusal(&intruding, 404).unwrap();
    let unknown_url = entry.url(&format!("/messages/?session_id={UNKNOWN_SESSION}"));
    let unknown = post(&unknown_url, &echo(5), Some(BOB));
    check_refusal(&unknown, 404).unwrap();
    assert_eq!(
        (&intruding.body, intruding.header("content-type")),
        (&unknown.body, unknown.header("content-type")),
        "another caller's session must answer as an unknown one does"
    );
    // Nor can he slip in an answer to a request the server might have sent her.
    let reply = json!({"jsonrpc": "2.0", "id": 0, "result": {}});
    let injected = post(&alice_url, &reply, Some(BOB));
    check_refusal(&injected, 404).unwrap();
    assert_eq!(
        injected.body,
        post(&unknown_url, &reply, Some(BOB)).body,
        "another caller's session must answer as an unknown one does"
    );
    assert_quiet(&mut alice, "alice");
    assert_quiet(&mut bob, "bob");
    check_refusal(&post(&unknown_url, &echo(6), Some(ALICE)), 404).unwrap();

    // A session belongs to the entry point it was opened at: alice's own id, sent to another
    // entry point of the same sidecar, names no session there.
    let alice_id = session_of(&alice_url, &entry.origin(), entry.prefix).unwrap();
    let elsewhere = post(
        &other.url(&format!("/messages/?session_id={alice_id}")),
        &echo(6),
        Some(ALICE),
    );
    let unknown_elsewhere = post(
        &other.url(&format!("/messages/?session_id={UNKNOWN_SESSION}")),
        &echo(6),
        Some(ALICE),
    );
    check_refusal(&elsewhere, 404).unwrap();
    assert_eq!(elsewhere.body, unknown_elsewhere.body);
    assert_quiet(&mut alice, "alice");

    // No session id; no credential (stream and POST); a wrong one; a body over maxBodyBytes.
    check_refusal(&post(&entry.url("/messages/"), &echo(7), Some(ALICE)), 400).unwrap();
    check_refusal(&open(entry, None).refused().unwrap(), 401).unwrap();
    check_refusal(
        &open(entry, Some("not-a-key-0123456789")).refused().unwrap(),
        401,
    )
    .unwrap();
    // Without a credential nobody learns whether a session exists.
    let anonymous = post(&alice_url, &echo(8), None);
    check_refusal(&anonymous, 401).unwrap();
    let anonymous_unknown = post(&unknown_url, &echo(8), None);
    assert_eq!(
        (anonymous.status, &anonymous.body),
        (anonymous_unknown.status, &anonymous_unknown.body)
    );
    let big = request(
        9,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "x".repeat(8192)}}),
    );
    check_refusal(&post(&alice_url, &big, Some(ALICE)), 413).unwrap();
    assert_quiet(&mut alice, "alice");
    // Quiet streams carry keep-alives (after 1 s of silence here): alice's was quiet for 3 s.
    assert!(
        !alice.comments().is_empty(),
        "no keep-alive on alice's stream"
    );

    // Carol's third call meets her rate limit: 202, and the refusal on her stream with its id.
    let (mut carol, carol_url) = session(entry, CAROL);
    initialize(&mut carol, &carol_url, CAROL);
    for id in [2, 3] {
        let answer = ask(&mut carol, &carol_url, CAROL, &echo(id));
        assert_eq!(
            answer["result"]["content"][0]["text"], "echo: hi",
            "{answer}"
        );
    }
    let limited = ask(&mut carol, &carol_url, CAROL, &echo(4));
    check_jsonrpc_error(&limited).unwrap();
    assert_eq!(limited["error"]["code"], -32004, "{limited}");

    // Three open; alice leaves: her session is gone here (the unknown-session answer) and
    // upstream (the sidecar DELETEd it), the gauge says two.
    until_metric(admin, &entry.gauge(), 3.0).unwrap();
    let upstream_before = Server::open_sessions(upstream.port).unwrap();
    println!("sessions upstream while alice, bob and carol hold theirs: {upstream_before}");
    assert!(upstream_before >= 1, "alice's session is not open upstream");
    // What alice's own POST to a session that never was gets, to compare with.
    let unknown_to_alice = post(&unknown_url, &echo(10), Some(ALICE));
    alice.close();
    let gone = wait_until("alice's ended session to refuse her", PATIENCE, || {
        let response = post(&alice_url, &echo(10), Some(ALICE));
        Ok(if response.status == 202 {
            Probe::NotYet(format!("{response:?}"))
        } else {
            Probe::Ready(response)
        })
    })
    .unwrap();
    check_refusal(&gone, 404).unwrap();
    assert_eq!(
        gone.body, unknown_to_alice.body,
        "an ended session answers as an unknown one"
    );
    let intruding = post(&alice_url, &echo(5), Some(BOB));
    assert_eq!((intruding.status, &intruding.body), (404, &unknown.body));
    Server::until_open_sessions(upstream.port, upstream_before - 1).unwrap();
    until_metric(admin, &entry.gauge(), 2.0).unwrap();

    bob.close();
    carol.close();
    until_metric(admin, &entry.gauge(), 0.0).unwrap();
    Server::until_open_sessions(upstream.port, 0).unwrap();

    // The audit trail names each caller and decision; nothing of bob's was let through.
    let wanted = [
        ("alice", "secret", "denied"),
        ("carol", "echo", "rate_limited"),
        ("bob", "echo", "refused"),
    ];
    let audited = wait_until("the audit events", PATIENCE, || {
        let events = audit_events(&sidecar.proxy.process);
        let seen = |&(who, tool, decision): &(&str, &str, &str)| {
            events
                .iter()
                .any(|e| e["identity"] == who && e["tool"] == tool && e["decision"] == decision)
        };
        Ok(if wanted.iter().all(seen) {
            Probe::Ready(events)
        } else {
            Probe::NotYet(format!("{events:#?}"))
        })
    })
    .unwrap();
    assert!(
        !audited
            .iter()
            .any(|e| e["identity"] == "bob" && e["decision"] == "allowed"),
        "{audited:#?}"
    );
    sidecar.proxy.process.ensure_running().unwrap();
}

/// The audit events a sidecar logged so far (JSON log lines of target `audit`).
fn audit_events(process: &Process) -> Vec<Value> {
    (process.stdout() + &process.stderr())
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == "audit")
        .collect()
}

/// Opens `count` streams at once as `key`.
fn flood(entry: Entry, key: &str, count: usize) -> (Vec<LegacyStream>, Vec<HttpResponse>) {
    let opened: Vec<Opened> = thread::scope(|s| {
        let opening: Vec<_> = (0..count)
            .map(|_| s.spawn(|| open(entry, Some(key))))
            .collect();
        opening.into_iter().map(|o| o.join().unwrap()).collect()
    });
    let (mut streams, mut refused) = (Vec::new(), Vec::new());
    for o in opened {
        match o {
            Opened::Stream(stream) => streams.push(stream),
            Opened::Refused(response) => refused.push(response),
        }
    }
    (streams, refused)
}

/// `legacySse.maxSessionsPerCaller: 3`, `maxSessions: 5`: alice floods six streams (three
/// open, three refused 429), bob four (two open, then the sidecar is full: 503); the gauge and
/// the refusal counters say so, and a freed place can be taken again.
#[test]
fn floods_of_streams_meet_the_caller_and_sidecar_limits() {
    let upstream = Server::spawn(Transport::Stateful).ready();
    let entry = Entry::new("main", "/");
    let settings = Settings {
        stateful: true,
        max_sessions: 5,
        max_sessions_per_caller: 3,
        idle_timeout: "30m",
        entry_extra: "",
    };
    let mut sidecar = Sidecar::start(upstream.port, &[entry], &settings);
    let admin = sidecar.admin();
    let refused = |reason: &str| {
        format!("sluice_legacy_sessions_refused_total{{entry_point=\"main\",reason=\"{reason}\"}}")
    };

    let (alice, alice_refused) = flood(entry, ALICE, 6);
    let statuses: Vec<u16> = alice_refused.iter().map(|r| r.status).collect();
    assert_eq!(
        (alice.len(), statuses),
        (3, vec![429; 3]),
        "alice's flood: {alice_refused:#?}"
    );
    for response in &alice_refused {
        check_refusal(response, 429).unwrap();
    }
    until_metric(admin, &entry.gauge(), 3.0).unwrap();
    assert_eq!(metric(admin, &refused("caller_limit")).unwrap(), 3.0);

    let (bob, bob_refused) = flood(entry, BOB, 4);
    let statuses: Vec<u16> = bob_refused.iter().map(|r| r.status).collect();
    assert_eq!(
        (bob.len(), statuses),
        (2, vec![503; 2]),
        "bob's flood: {bob_refused:#?}"
    );
    for response in &bob_refused {
        check_refusal(response, 503).unwrap();
    }
    until_metric(admin, &entry.gauge(), 5.0).unwrap();
    assert_eq!(metric(admin, &refused("sidecar_limit")).unwrap(), 2.0);
    // Authentication comes first: a full sidecar still answers a stranger 401, uncounted.
    check_refusal(&open(entry, None).refused().unwrap(), 401).unwrap();
    assert_eq!(metric(admin, &refused("sidecar_limit")).unwrap(), 2.0);

    // Every stream that opened is a session of its own.
    let (mut alice, mut bob) = (alice, bob);
    let mut ids: Vec<String> = alice
        .iter_mut()
        .chain(bob.iter_mut())
        .map(|stream| {
            let first = stream.expect_event(ANSWER).unwrap();
            session_of(&first.data, "", "/").unwrap()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "session ids repeat: {ids:?}");

    // A place alice frees is hers to take again.
    alice.pop().unwrap().close();
    until_metric(admin, &entry.gauge(), 4.0).unwrap();
    alice.push(open(entry, Some(ALICE)).stream().unwrap());
    until_metric(admin, &entry.gauge(), 5.0).unwrap();

    drop(alice);
    drop(bob);
    until_metric(admin, &entry.gauge(), 0.0).unwrap();
    sidecar.proxy.process.ensure_running().unwrap();
}

/// `legacySse.idleTimeout: 3s`: a session nobody speaks on ends (keep-alives, every second
/// here, do not count), here and upstream; and once the upstream is gone, the owner's message
/// is still taken (202) and its failure comes on the stream as a JSON-RPC error with its id.
#[test]
fn idle_sessions_end_and_upstream_failures_come_on_the_stream() {
    let mut upstream = Server::spawn(Transport::Stateful).ready();
    let entry = Entry::new("main", "/");
    let settings = Settings {
        stateful: true,
        max_sessions: 512,
        max_sessions_per_caller: 32,
        idle_timeout: "3s",
        entry_extra: "",
    };
    let mut sidecar = Sidecar::start(upstream.port, &[entry], &settings);
    let admin = sidecar.admin();

    let (mut alice, alice_url) = session(entry, ALICE);
    // Taken before the session's last message: the sidecar's idle clock starts later (when the
    // answer to initialize is delivered), so a loaded runner cannot shorten the silence measured.
    let last_message = Instant::now();
    initialize(&mut alice, &alice_url, ALICE);
    until_metric(admin, &entry.gauge(), 1.0).unwrap();
    Server::until_open_sessions(upstream.port, 1).unwrap();
    let ended = wait_until("alice's idle session to end", PATIENCE, || {
        Ok(match alice.next_event(Duration::from_secs(1)) {
            Err(ended) => Probe::Ready(ended.to_string()),
            Ok(event) => Probe::NotYet(format!("still open; last event {event:?}")),
        })
    })
    .unwrap();
    let idle = last_message.elapsed();
    assert!(
        idle >= Duration::from_millis(2500),
        "the session ended after {idle:?} of silence, before its idle timeout ({ended})"
    );
    assert!(
        !alice.comments().is_empty(),
        "no keep-alive before the end ({ended})"
    );
    check_refusal(&post(&alice_url, &echo(2), Some(ALICE)), 404).unwrap();
    until_metric(admin, &entry.gauge(), 0.0).unwrap();
    Server::until_open_sessions(upstream.port, 0).unwrap();

    let (mut bob, bob_url) = session(entry, BOB);
    initialize(&mut bob, &bob_url, BOB);
    let answer = ask(&mut bob, &bob_url, BOB, &echo(2));
    assert_eq!(
        answer["result"]["content"][0]["text"], "echo: hi",
        "{answer}"
    );
    upstream.process.kill().unwrap();
    let failed = ask(&mut bob, &bob_url, BOB, &echo(3));
    println!("the upstream gone, a call is answered on the stream with {failed}");
    check_jsonrpc_error(&failed).unwrap();
    sidecar.proxy.process.ensure_running().unwrap();
}
