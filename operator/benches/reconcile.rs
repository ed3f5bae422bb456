//! Benchmark: 1,000 McpServers, each with a route, against the in-memory API server.
//!
//! Prints render cost per server and per object (in this process, pure), and for the
//! `sluice-operator` binary run as a child process against the in-memory API: the time to
//! converge, reconcile time per server (from its own metrics), writes per server on the first
//! pass and in steady state (a full resync of everything, which must write nothing), and the
//! child's RSS idle and with every object cached.
//!
//! Run: `cargo bench -p sluice-operator --bench reconcile` (`-- --servers N` for another
//! count). A program that prints numbers, not a test: nothing here asserts on speed.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark program reports on stdout and stops on any failure"
)]
#![expect(
    clippy::disallowed_types,
    reason = "it measures the wall time of a child process, which no paused clock moves"
)]

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_crds::conditions;
use sluice_crds::{McpRoute, McpServer};
use sluice_memory_apiserver::{Actor, MemoryApiServer, Verb};
use sluice_operator::render::{Observed, RenderOptions, render_server};

const NAMESPACE: &str = "bench";

fn server(i: usize) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "McpServer",
        "metadata": {"name": format!("phab-{i:04}"), "namespace": NAMESPACE},
        "spec": {
            "phabricator": {"url": "https://phabricator.example.com"},
            "policy": {"tools": {"deny": ["pha_passphrase_*"]}},
        },
    })
}

fn route(i: usize) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "McpRoute",
        "metadata": {"name": format!("public-{i:04}"), "namespace": NAMESPACE},
        "spec": {
            "serverRef": {"name": format!("phab-{i:04}")},
            "hostnames": [format!("phab-{i:04}.example.com")],
            "pathPrefix": "/ai",
            "expose": {"ingress": {"className": "nginx"}},
            "policy": {"upstreamToken": {"secretKeyRef": {"name": "bot-token", "key": "token"}}},
        },
    })
}

/// Pure render cost: every server with its route, in this process.
fn render_cost(count: usize) -> (Duration, usize) {
    let servers: Vec<McpServer> = (0..count)
        .map(|i| serde_json::from_value(server(i)).unwrap())
        .collect();
    let routes: Vec<McpRoute> = (0..count)
        .map(|i| serde_json::from_value(route(i)).unwrap())
        .collect();
    let options = RenderOptions::default();
    let observed = Observed::default();
    let started = Instant::now();
    let mut objects = 0;
    for (server, route) in servers.iter().zip(&routes) {
        let rendered = render_server(server, &[route], &options, &observed).unwrap();
        objects += rendered.objects.len();
    }
    (started.elapsed(), objects)
}

/// VmRSS and VmHWM of process `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A GET on the child's admin endpoint.
fn admin_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    use std::io::Write;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// A metric's value (summed over its label sets) from the child's `/metrics`.
fn metric(port: u16, name: &str) -> f64 {
    admin_get(port, "/metrics")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Operator {
    child: Child,
    admin: u16,
    dir: PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `sluice-operator run` against `api` through a kubeconfig in a fresh directory.
fn start_operator(api: &MemoryApiServer, resync: &str) -> Operator {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("sluice-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: memory\n  cluster:\n    server: {}\nusers:\n- name: memory\n  user: {{}}\ncontexts:\n- name: memory\n  context:\n    cluster: memory\n    user: memory\n    namespace: default\ncurrent-context: memory\n",
            api.url()
        ),
    )
    .unwrap();
    let admin = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice-operator"))
        .args([
            "run",
            "--leader-election=false",
            "--log-format=text",
            "--resync",
            resync,
            "--admin-address",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Operator { child, admin, dir }
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn operator_writes(api: &MemoryApiServer) -> usize {
    // Deletes carry no field manager; nobody else deletes anything here.
    api.writes()
        .iter()
        .filter(|w| {
            w.actor == Actor::Client
                && (w.field_manager.as_deref() == Some("sluice-operator") || w.verb == Verb::Delete)
        })
        .count()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip_while(|a| a != "--servers");
    let count: usize = args.nth(1).and_then(|n| n.parse().ok()).unwrap_or(1000);

    let (render_time, objects) = render_cost(count);

    let api = MemoryApiServer::start().await;
    api.install_crds(&sluice_crds::crds());
    let client = api.client();

    // Idle: the operator with empty caches.
    let operator = start_operator(&api, "20s");
    wait_until(
        "the operator to lead",
        Duration::from_secs(120),
        async || metric(operator.admin, "sluice_operator_leader") >= 1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_rss, _) = memory(operator.child.id());

    // 1,000 servers with a route each, and the Secret the routes refer to.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let apply = PatchParams::apply("bench");
    secrets
        .patch(
            "bot-token",
            &apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "bot-token", "namespace": NAMESPACE},
                "data": {"token": "dG9rZW4="}})),
        )
        .await
        .unwrap();
    api.clear_logs();
    let servers: Api<McpServer> = Api::namespaced(client.clone(), NAMESPACE);
    let routes: Api<McpRoute> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    for i in 0..count {
        let s = server(i);
        servers
            .patch(
                s["metadata"]["name"].as_str().unwrap(),
                &apply,
                &Patch::Apply(&s),
            )
            .await
            .unwrap();
        let r = route(i);
        routes
            .patch(
                r["metadata"]["name"].as_str().unwrap(),
                &apply,
                &Patch::Apply(&r),
            )
            .await
            .unwrap();
    }
    let created = started.elapsed();
    wait_until(
        "every route programmed",
        Duration::from_secs(1800),
        async || {
            let list = routes.list(&ListParams::default()).await.unwrap();
            list.items.len() == count
                && list.items.iter().all(|r| {
                    r.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.type_ == conditions::PROGRAMMED && c.status == "True")
                    })
                })
        },
    )
    .await;
    wait_until(
        "every server's status",
        Duration::from_secs(1800),
        async || {
            let list = servers.list(&ListParams::default()).await.unwrap();
            list.items.iter().all(|s| {
                s.status
                    .as_ref()
                    .is_some_and(|st| st.observed_generation == s.metadata.generation)
            })
        },
    )
    .await;
    // Quiet: no operator write for 3 s.
    let mut last = operator_writes(&api);
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = operator_writes(&api);
        if now == last {
            break;
        }
        last = now;
    }
    let converged = started.elapsed();
    let first_writes = operator_writes(&api);
    let first_requests = api.requests().len();
    let reconciles = metric(operator.admin, "sluice_operator_reconciles_total");
    let reconcile_seconds = metric(
        operator.admin,
        "sluice_operator_reconcile_duration_seconds_sum",
    );
    let reconcile_count = metric(
        operator.admin,
        "sluice_operator_reconcile_duration_seconds_count",
    );

    // Steady state: a full resync of everything (20 s) must write nothing.
    api.clear_logs();
    let before = metric(operator.admin, "sluice_operator_reconciles_total");
    wait_until("a full resync", Duration::from_secs(600), async || {
        metric(operator.admin, "sluice_operator_reconciles_total") >= before + count as f64
    })
    .await;
    let steady_writes = operator_writes(&api);
    let steady_reconciles = metric(operator.admin, "sluice_operator_reconciles_total") - before;
    let steady_requests = api.requests().len();
    let (full_rss, full_hwm) = memory(operator.child.id());
    let cached = metric(operator.admin, "sluice_operator_cached_objects");

    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    println!(
        "sluice-operator reconcile benchmark: {count} McpServers with one exposed McpRoute each"
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| render, per server (server + route) | {:.1} µs |",
        per(render_time, count)
    );
    println!(
        "| render, per object ({objects} objects) | {:.1} µs |",
        per(render_time, objects)
    );
    println!(
        "| creating {count} servers + routes (test client) | {:.2} s |",
        created.as_secs_f64()
    );
    println!(
        "| converged (all statuses written, quiet) after | {:.2} s |",
        converged.as_secs_f64()
    );
    println!(
        "| wall time to converge, per server | {:.2} ms |",
        converged.as_secs_f64() * 1e3 / count as f64
    );
    println!(
        "| reconcile time, mean (operator metric, {reconcile_count:.0} reconciles) | {:.2} ms |",
        reconcile_seconds * 1e3 / reconcile_count.max(1.0)
    );
    println!(
        "| reconciles on the first pass, per server | {:.2} |",
        reconciles / count as f64
    );
    println!(
        "| writes on the first pass, per server | {:.2} |",
        first_writes as f64 / count as f64
    );
    println!(
        "| API requests on the first pass, per server | {:.2} |",
        first_requests as f64 / count as f64
    );
    println!("| steady state: reconciles in one resync | {steady_reconciles:.0} |");
    println!(
        "| steady state: writes per server | {:.3} ({steady_writes} in all) |",
        steady_writes as f64 / count as f64
    );
    println!(
        "| steady state: API requests per reconcile | {:.3} |",
        steady_requests as f64 / steady_reconciles.max(1.0)
    );
    println!(
        "| operator RSS idle (empty caches) | {:.1} MiB |",
        idle_rss as f64 / 1024.0
    );
    println!(
        "| operator RSS with {cached:.0} objects cached | {:.1} MiB |",
        full_rss as f64 / 1024.0
    );
    println!(
        "| operator peak RSS (VmHWM) | {:.1} MiB |",
        full_hwm as f64 / 1024.0
    );
    drop(operator);
}
