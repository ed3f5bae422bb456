//! Hot reload, readiness and shutdown: in-process for reloads, the built binary for signals.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use support::*;
use tokio::io::AsyncBufReadExt;

const SECOND: &str = "  - name: second\n    listen: 127.0.0.1:0\n    auth:\n      mode: none\n";
const APPLIED: &str = "sluice_config_reloads_total{result=\"applied\"}";
const REJECTED: &str = "sluice_config_reloads_total{result=\"rejected\"}";

#[tokio::test]
async fn a_good_config_is_swapped_in_and_listeners_follow_it() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    assert_eq!(get(&sluice.url("/x")).await.status, 200);
    upstream.next().await;

    sluice.write_config(&(config(upstream.addr, "", "pathPrefix: /v2") + SECOND));
    eventually("the second listener", async || {
        sluice.proxy.entry_addr("second").is_some()
    })
    .await;
    assert_eq!(sluice.metric(APPLIED).await, Some(1.0));
    // The same listener, new rules.
    assert_eq!(get(&sluice.url("/v2/x")).await.status, 200);
    assert_eq!(upstream.next().await.uri, "/x");
    assert_eq!(get(&sluice.url("/x")).await.status, 404);
    let second = sluice.proxy.entry_addr("second").unwrap();
    assert_eq!(get(&format!("http://{second}/y")).await.status, 200);
    assert_eq!(upstream.next().await.uri, "/y");

    // A keep-alive connection to the entry point about to go.
    let tcp = tokio::net::TcpStream::connect(second).await.unwrap();
    let (mut kept, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("/z")
        .header("host", "x")
        .body(http_body_util::Full::<bytes::Bytes>::default());
    assert_eq!(
        within("a kept request", kept.send_request(req.unwrap()))
            .await
            .unwrap()
            .status(),
        200
    );
    upstream.next().await;

    sluice.write_config(&config(upstream.addr, "", ""));
    // Removing an entry point also ends its open connections.
    within("the kept connection to be closed", conn)
        .await
        .unwrap()
        .unwrap();
    eventually("the second listener to close", async || {
        tokio::net::TcpStream::connect(second).await.is_err()
    })
    .await;
    assert!(sluice.proxy.entry_addr("second").is_none());
}

#[tokio::test]
async fn a_bad_config_is_rejected_and_the_last_good_one_kept() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "pathPrefix: /ai")).await;

    sluice.write_config("entryPoints: [");
    eventually("the rejection", async || {
        sluice.metric("sluice_config_rejected ").await == Some(1.0)
    })
    .await;
    assert_eq!(sluice.metric(REJECTED).await, Some(1.0));
    let ready = get(&sluice.admin("/readyz")).await;
    assert_eq!(
        ready.status, 200,
        "a bad ConfigMap must not take the pod out of service"
    );
    assert!(
        ready.text().contains("config file rejected"),
        "{}",
        ready.text()
    );
    assert_eq!(get(&sluice.url("/ai/x")).await.status, 200);
    assert_eq!(upstream.next().await.uri, "/x");

    // Valid YAML, invalid config: the problem is named by its path.
    sluice.write_config(&config(upstream.addr, "", "pathPrefix: /ai/"));
    eventually("the second rejection", async || {
        sluice.metric(REJECTED).await == Some(2.0)
    })
    .await;
    let ready = get(&sluice.admin("/readyz")).await.text();
    assert!(ready.contains("entryPoints[0].pathPrefix"), "{ready}");

    sluice.write_config(&config(upstream.addr, "", "pathPrefix: /v2"));
    eventually("recovery", async || {
        sluice.metric("sluice_config_rejected ").await == Some(0.0)
    })
    .await;
    assert_eq!(get(&sluice.url("/v2/x")).await.status, 200);
    assert!(
        !get(&sluice.admin("/readyz"))
            .await
            .text()
            .contains("rejected")
    );
}

/// Publishes `text` the way kubelet updates a ConfigMap volume: a new timestamped directory,
/// then an atomic swap of the `..data` symlink.
fn publish(dir: &std::path::Path, generation: u32, text: &str) {
    let versioned = dir.join(format!("..2026_01_01_00_00_0{generation}"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("config.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(versioned.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_picked_up() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), 1, &config(upstream.addr, "", "pathPrefix: /ai"));
    let path = dir.path().join("config.yaml");
    std::os::unix::fs::symlink("..data/config.yaml", &path).unwrap();
    let root = dir.path().to_path_buf();
    let sluice = Sluice::start_at(dir, path).await;
    assert_eq!(get(&sluice.url("/ai/x")).await.status, 200);
    upstream.next().await;

    publish(&root, 2, &config(upstream.addr, "", "pathPrefix: /v2"));
    std::fs::remove_dir_all(root.join("..2026_01_01_00_00_01")).unwrap();
    eventually("the swapped config", async || {
        get(&sluice.url("/v2/x")).await.status == 200
    })
    .await;
    assert_eq!(sluice.metric(APPLIED).await, Some(1.0));
}

#[tokio::test]
async fn requests_in_flight_finish_under_the_config_they_started_with() {
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release) = tokio::sync::oneshot::channel::<()>();
    let slots = Arc::new(Mutex::new((Some(started_tx), Some(release))));
    let upstream = Upstream::start(move |seen| {
        let slow = seen.uri.path() == "/slow";
        let (started, release) = if slow {
            std::mem::take(&mut *slots.lock().unwrap())
        } else {
            (None, None)
        };
        async move {
            if let (Some(s), Some(r)) = (started, release) {
                let _ = s.send(());
                let _ = r.await;
                return http::Response::builder()
                    .status(302)
                    .header("location", "/done")
                    .body(full(""))
                    .unwrap();
            }
            json(StatusCode::OK, "{}")
        }
    })
    .await;
    let sluice = Sluice::start(&config(upstream.addr, "", "pathPrefix: /ai")).await;
    let slow = tokio::spawn(get_owned(sluice.url("/ai/slow")));
    within("the slow request to start", started).await.unwrap();

    sluice.write_config(&config(upstream.addr, "", "pathPrefix: /v2"));
    eventually("the new config", async || {
        get(&sluice.url("/v2/x")).await.status == 200
    })
    .await;
    release_tx.send(()).unwrap();
    let reply = within("the slow request", slow).await.unwrap();
    // Rewritten with the prefix the request came in under, not the new one.
    assert_eq!(reply.header("location"), Some("/ai/done"));
}

async fn get_owned(url: String) -> Reply {
    get(&url).await
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    let health = get(&sluice.admin("/healthz")).await;
    assert_eq!(
        (health.status.as_u16(), health.text().as_str()),
        (200, "ok\n")
    );
    let ready = get(&sluice.admin("/readyz")).await;
    assert_eq!(
        (ready.status.as_u16(), ready.text().as_str()),
        (200, "ready\n")
    );
    send(post(&sluice.url("/mcp")).body(body(TOOLS_CALL)).unwrap()).await;
    let metrics = get(&sluice.admin("/metrics")).await;
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let line = "sluice_requests_total{entry_point=\"main\",http_method=\"POST\",mcp_method=\"tools/call\",tool=\"pha_task_get\",status=\"2xx\"} 1";
    assert!(metrics.text().contains(line), "{}", metrics.text());
    // The latency is observed once the answer is over, which the caller may see first.
    eventually("the call's latency to be observed", async || {
        get(&sluice.admin("/metrics"))
            .await
            .text()
            .contains("sluice_request_duration_seconds_bucket{")
    })
    .await;

    // What the upstream check learned, and the upstream's own liveness.
    let upstream = get(&sluice.admin("/upstream")).await;
    assert_eq!(upstream.header("content-type"), Some("application/json"));
    let report = upstream.json();
    assert_eq!(report["answering"], true, "{report}");
    assert_eq!(report["serverInfo"]["name"], "test-upstream", "{report}");
    assert_eq!(report["protocolVersion"], "2025-11-25", "{report}");
    assert_eq!(report["tools"], 0, "{report}");
    assert_eq!(report["behindOAuth"], false, "{report}");
    assert_eq!(get(&sluice.admin("/upstream/livez")).await.status, 200);

    // An upstream that never answered: not ready, with the reason; its liveness fails too.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let down = Sluice::start(&config(gone, "", "")).await;
    let ready = get(&down.admin("/readyz")).await;
    assert_eq!(ready.status, 503);
    let expected =
        format!("not ready: upstream http://{gone}/mcp has not answered MCP yet: cannot connect");
    assert!(ready.text().starts_with(&expected), "{}", ready.text());
    let live = get(&down.admin("/upstream/livez")).await;
    assert_eq!(live.status, 503);
    assert!(
        live.text().contains("has not answered MCP yet"),
        "{}",
        live.text()
    );
    let report = get(&down.admin("/upstream")).await.json();
    assert_eq!(report["answering"], false, "{report}");
    assert_eq!(
        report["lastAnsweredAt"],
        serde_json::Value::Null,
        "{report}"
    );
    assert!(
        report["lastError"]
            .as_str()
            .unwrap()
            .starts_with("cannot connect"),
        "{report}"
    );
    assert_eq!(get(&down.admin("/healthz")).await.status, 200);
}

#[test]
fn check_validates_a_file_and_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, config("127.0.0.1:8000".parse().unwrap(), "", "")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .arg("--check")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let bad = dir.path().join("bad.yaml");
    let text = config(
        "127.0.0.1:8000".parse().unwrap(),
        "limits:\n  maxHeaders: 1",
        "pathPrefix: ai",
    );
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .arg("--check")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("entryPoints[0].pathPrefix") && err.contains("limits.maxHeaders"),
        "{err}"
    );
}

/// The binary's JSON log lines, as they arrive.
struct Logs {
    lines: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    all: Vec<serde_json::Value>,
}

impl Logs {
    async fn until_target(&mut self, target: &str) -> serde_json::Value {
        within(&format!("a log line of {target}"), async {
            loop {
                let line = self.lines.recv().await.expect("the proxy's stdout closed");
                self.all.push(line.clone());
                if line["target"] == target {
                    return line;
                }
            }
        })
        .await
    }

    async fn until(&mut self, message: &str) -> serde_json::Value {
        within(&format!("log line {message:?}"), async {
            loop {
                let line = self.lines.recv().await.expect("the proxy's stdout closed");
                self.all.push(line.clone());
                if line["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
                {
                    return line;
                }
            }
        })
        .await
    }
}

/// Runs the binary on `config`, with its JSON log lines collected.
fn spawn(config: &std::path::Path) -> (tokio::process::Child, Logs) {
    spawn_with(config, &[])
}

/// [`spawn`] with more arguments.
fn spawn_with(config: &std::path::Path, args: &[&str]) -> (tokio::process::Child, Logs) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--reload-interval")
        .arg("100ms")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            let value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            let _ = tx.send(value);
        }
    });
    (
        child,
        Logs {
            lines,
            all: Vec::new(),
        },
    )
}

/// The names of a process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).unwrap())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn traffic_runs_on_one_thread_unless_told_otherwise() {
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(upstream.addr, "", "")).unwrap();
    for (args, workers) in [(&[][..], 0), (&["--worker-threads", "3"][..], 3)] {
        let (mut child, mut logs) = spawn_with(&path, args);
        let entry = logs.until("listening for entry point main").await["local"]
            .as_str()
            .unwrap()
            .to_owned();
        let call = post(&format!("http://{entry}/mcp"))
            .body(body(TOOLS_CALL))
            .unwrap();
        assert_eq!(send(call).await.status, 200, "{args:?}");
        // A multi-threaded runtime's threads are `sluice-worker`; one thread runs in `main`.
        let names = thread_names(child.id().unwrap());
        let runtime_workers = names.iter().filter(|n| *n == "sluice-worker").count();
        assert_eq!(runtime_workers, workers, "{args:?}: threads {names:?}");
        child.kill().await.unwrap();
    }

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .args(["--worker-threads", "0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--worker-threads"), "{err}");
}

#[tokio::test]
async fn a_reload_changes_the_log_level() {
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let info = config(upstream.addr, "log:\n  level: info", "");
    std::fs::write(&path, &info).unwrap();
    let (_child, mut logs) = spawn(&path);
    let entry = logs.until("listening for entry point main").await["local"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = logs.until("listening for the admin listener").await["local"]
        .as_str()
        .unwrap()
        .to_owned();
    let call = |path: &str| {
        send(
            post(&format!("http://{entry}{path}"))
                .body(body(TOOLS_CALL))
                .unwrap(),
        )
    };
    let metrics = format!("http://{admin}/metrics");
    let reloaded = |n: u32| {
        let metrics = metrics.clone();
        async move {
            get(&metrics)
                .await
                .text()
                .contains(&format!("{APPLIED} {n}"))
        }
    };

    write_atomically(&path, &info.replace("level: info", "level: warn"));
    eventually("the reload to warn", async || reloaded(1).await).await;
    assert_eq!(call("/quiet").await.status, 200);

    write_atomically(&path, &info);
    eventually("the reload to info", async || reloaded(2).await).await;
    assert_eq!(call("/loud").await.status, 200);
    // The first access line must be the second call's: the first was made at level warn.
    let access = logs.until_target("sluice::access").await;
    assert_eq!(access["path"], "/loud");
}

#[tokio::test]
async fn sigterm_fails_readiness_drains_and_exits_zero() {
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release) = tokio::sync::oneshot::channel::<()>();
    let slots = Arc::new(Mutex::new((Some(started_tx), Some(release))));
    let upstream = Upstream::start(move |seen| {
        let slow = seen.uri.path() == "/slow";
        let (started, release) = if slow {
            std::mem::take(&mut *slots.lock().unwrap())
        } else {
            (None, None)
        };
        async move {
            if let (Some(s), Some(r)) = (started, release) {
                let _ = s.send(());
                let _ = r.await;
            }
            json(StatusCode::OK, "{}")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let top = "shutdown:\n  drainDelay: 2s\n  gracePeriod: 20s\nlog:\n  format: json";
    std::fs::write(&path, config(upstream.addr, top, "")).unwrap();
    let (mut child, mut logs) = spawn(&path);
    let entry = logs.until("listening for entry point main").await["local"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = logs.until("listening for the admin listener").await["local"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = |path: &str| format!("http://{entry}{path}");

    // A call with credentials, to check the access log keeps them out.
    let req = post(&url("/mcp"))
        .header("x-phabricator-token", "api-aaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .header("authorization", "Bearer sekrit-bearer")
        .body(body(TOOLS_CALL))
        .unwrap();
    assert_eq!(send(req).await.status, 200);
    let slow = tokio::spawn(get_owned(url("/slow")));
    within("the slow request to start", started).await.unwrap();

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    logs.until("SIGTERM received").await;
    let ready = get(&format!("http://{admin}/readyz")).await;
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("shutting down"));
    // Still serving while endpoints drain.
    assert_eq!(get(&url("/quick")).await.status, 200);

    logs.until("no longer accepting").await;
    eventually("the listener to close", async || {
        tokio::net::TcpStream::connect(&entry).await.is_err()
    })
    .await;
    release_tx.send(()).unwrap();
    assert_eq!(within("the slow request", slow).await.unwrap().status, 200);
    let status = within("the proxy to exit", child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));

    while let Ok(line) = logs.lines.try_recv() {
        logs.all.push(line);
    }
    let text = logs
        .all
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !text.contains("aaaaaaaaaaaaaaaaaaaaaaaaaaaa") && !text.contains("sekrit"),
        "a secret was logged"
    );
    let access = logs
        .all
        .iter()
        .find(|l| l["target"] == "sluice::access" && l["tool"] == "pha_task_get")
        .unwrap_or_else(|| panic!("no access line in {text}"));
    assert_eq!(access["status"], 200);
    assert_eq!(access["entry_point"], "main");
    assert_eq!(access["mcp_method"], "tools/call");
    assert_eq!(access["path"], "/mcp");
    assert!(access["latency_us"].is_u64());
}
