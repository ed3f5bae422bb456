//! Faults around the sluice-proxy binary, each with the outcome a caller and an operator must
//! see: the upstream dying mid-stream, an upstream too slow to connect to or to answer, callers
//! leaving silent streams, Redis dying under global rate limits that fail open (fail-closed is
//! in sidecar_policy.rs), the config file corrupted under load (in place and by a Kubernetes
//! `..data` symlink swap), and SIGTERM under load and with streams outlasting the grace period.
//! The upstream is in-process ([`TestUpstream`]) so a test can kill it, slow it down and bring
//! it back on the same port.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::json;
use sluice_e2e::http::{self, HttpResponse, MCP_ACCEPT};
use sluice_e2e::process::Signal;
use sluice_e2e::procstat;
use sluice_e2e::proxy_process::{Ports, ProxyProcess, QUICK_CHECK};
use sluice_e2e::sse;
use sluice_e2e::upstream::{DELAY_HEADER, TestUpstream};
use sluice_e2e::wait::{Probe, wait_until};
use sluice_e2e::{Redis, Result};
// The in-flight stream's end is stamped inside the runtime: tokio's clock, the one its timers
// run on, for both sides of the comparison.
use tokio::time::Instant;

/// Only stops hangs: what is awaited normally takes a second or two.
const PATIENCE: Duration = Duration::from_secs(30);

/// Calls through a sidecar's entry point; `Copy`, for caller threads.
#[derive(Clone, Copy)]
struct Caller {
    port: u16,
}

impl Caller {
    /// A `tools/call` of `tool` with `id`, with extra `headers`.
    fn call(self, id: u64, tool: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
        let body = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {}},
        });
        let mut all = vec![("accept", MCP_ACCEPT)];
        all.extend_from_slice(headers);
        http::post_json(&format!("http://127.0.0.1:{}/mcp", self.port), &body, &all)
    }
}

/// A `tools/call` of `tool` with `id` through `proxy`, with extra `headers`.
fn call(
    proxy: &ProxyProcess,
    id: u64,
    tool: &str,
    headers: &[(&str, &str)],
) -> Result<HttpResponse> {
    Caller { port: proxy.port }.call(id, tool, headers)
}

/// Whether `response` is the upstream's answer to request `id`.
fn answered(response: &HttpResponse, id: u64) -> bool {
    response.status == 200
        && response
            .json()
            .is_ok_and(|v| v["id"] == id && v["result"]["content"][0]["text"] == "ok")
}

/// Asserts a JSON-RPC error answer: `status`, `code`, the request's `id`, a message saying `says`.
fn assert_error(response: &HttpResponse, status: u16, code: i64, id: u64, says: &str) {
    assert_eq!(response.status, status, "{response:?}");
    let v = response.json().unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["id"], id, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{v}");
}

/// Waits until `/readyz` answers `status` with a body containing `says`.
fn until_readyz(proxy: &ProxyProcess, status: u16, says: &str) -> String {
    wait_until(
        &format!("/readyz {status} saying {says:?}"),
        PATIENCE,
        || {
            let r = proxy.readyz()?;
            Ok(if r.status == status && r.body.contains(says) {
                Probe::Ready(r.body)
            } else {
                Probe::NotYet(format!("{}: {}", r.status, r.body))
            })
        },
    )
    .unwrap()
}

/// Waits until metric `sample` reads `value`.
fn until_metric(proxy: &ProxyProcess, sample: &str, value: f64) {
    wait_until(&format!("{sample} to be {value}"), PATIENCE, || {
        let now = proxy.count(sample)?;
        Ok(if now == value {
            Probe::Ready(())
        } else {
            Probe::NotYet(format!("{now}"))
        })
    })
    .unwrap();
}

const OPEN_STREAMS: &str = "sluice_open_streams{entry_point=\"main\"}";
const IN_FLIGHT: &str = "sluice_in_flight_requests{entry_point=\"main\"}";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn an_upstream_killed_mid_stream_ends_every_stream_and_fails_readiness_until_it_returns() {
    const STREAMS: u64 = 5;
    let mut upstream = TestUpstream::start().unwrap();
    let upstream_port = upstream.addr().port();
    let proxy = ProxyProcess::in_front_of_checked(&upstream.url(), QUICK_CHECK, "", "").unwrap();
    until_readyz(&proxy, 200, "ready");

    // Streams that never end by themselves, an event every 100 ms.
    let runtime = runtime();
    let addr = SocketAddr::from(([127, 0, 0, 1], proxy.port));
    let events = Arc::new(AtomicU64::new(0));
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            let events = events.clone();
            runtime.spawn(async move {
                let read = sse::read(addr, "/stream?interval_ms=100", |_| {
                    events.fetch_add(1, Ordering::Relaxed);
                });
                tokio::time::timeout(PATIENCE, read).await
            })
        })
        .collect();
    wait_until("events on every stream", PATIENCE, || {
        let n = events.load(Ordering::Relaxed);
        Ok(if n >= 3 * STREAMS {
            Probe::Ready(())
        } else {
            Probe::NotYet(format!("{n} events"))
        })
    })
    .unwrap();
    // Events on every stream add up before the slowest stream's head may have come.
    until_metric(&proxy, OPEN_STREAMS, STREAMS as f64);

    upstream.kill();

    // Every caller learns its stream broke off (no clean end that looks complete, no hang).
    for stream in streams {
        let outcome = runtime
            .block_on(stream)
            .unwrap()
            .expect("the stream was still open long after the upstream died")
            .unwrap();
        assert!(outcome.broken.is_some(), "{outcome:?}");
        let expected: Vec<u64> = (0..outcome.ids.len() as u64).collect();
        assert!(
            !outcome.ids.is_empty() && outcome.ids == expected,
            "{outcome:?}"
        );
    }
    let body = until_readyz(
        &proxy,
        503,
        &format!(
            "not ready: upstream http://127.0.0.1:{upstream_port}/mcp has not answered MCP for "
        ),
    );
    println!("/readyz with the upstream dead:\n{body}");
    assert!(
        body.contains(&format!(
            "checks: cannot connect to 127.0.0.1:{upstream_port}"
        )),
        "{body}"
    );
    assert_error(
        &call(&proxy, 7, "lookup", &[]).unwrap(),
        503,
        -32603,
        7,
        "the upstream is not accepting connections",
    );
    assert_eq!(
        proxy
            .count("sluice_upstream_errors_total{entry_point=\"main\",kind=\"body\"}")
            .unwrap(),
        STREAMS as f64
    );
    until_metric(&proxy, OPEN_STREAMS, 0.0);
    until_metric(&proxy, IN_FLIGHT, 0.0);

    // The upstream returns on its port: ready again, streams and calls pass.
    let _upstream = TestUpstream::start_on(upstream_port).unwrap();
    until_readyz(&proxy, 200, "ready");
    let outcome = runtime
        .block_on(sse::read(addr, "/stream?events=3&interval_ms=10", |_| {}))
        .unwrap();
    assert_eq!(outcome.ids, [0, 1, 2], "{outcome:?}");
    assert!(outcome.broken.is_none(), "{outcome:?}");
    assert!(answered(&call(&proxy, 8, "lookup", &[]).unwrap(), 8));
}

/// One look at the admin side: `/readyz`'s status and first line, `/upstream/livez`'s status.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Look {
    ready: u16,
    ready_line: String,
    live: u16,
}

impl Look {
    fn take(proxy: &ProxyProcess) -> Result<Self> {
        let ready = proxy.readyz()?;
        let live = proxy.admin_get("/upstream/livez")?;
        Ok(Self {
            ready: ready.status,
            ready_line: ready.body.lines().next().unwrap_or_default().to_owned(),
            live: live.status,
        })
    }
}

/// What the admin side said when, from the test's start: one line per change and per event.
struct Timeline {
    start: std::time::Instant,
    lines: Vec<String>,
    last: Option<Look>,
}

impl Timeline {
    fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            lines: Vec::new(),
            last: None,
        }
    }

    fn stamp(&self) -> String {
        format!("{:>6.2}s", self.start.elapsed().as_secs_f64())
    }

    fn event(&mut self, what: &str) {
        let line = format!("{}  -- {what}", self.stamp());
        self.lines.push(line);
    }

    /// Looks every 50 ms until `done`, noting every change; returns the look that was done.
    fn until(&mut self, proxy: &ProxyProcess, what: &str, done: impl Fn(&Look) -> bool) -> Look {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let look = Look::take(proxy).unwrap();
            if self.last.as_ref() != Some(&look) {
                let line = format!(
                    "{}  /readyz {} {:?}  /upstream/livez {}",
                    self.stamp(),
                    look.ready,
                    look.ready_line,
                    look.live
                );
                self.lines.push(line);
                self.last = Some(look.clone());
            }
            if done(&look) {
                return look;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {PATIENCE:?}; timeline:\n{}",
                self.lines.join("\n")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn an_upstream_that_accepts_but_never_answers_fails_readiness_and_its_liveness_until_it_answers_again()
 {
    let upstream = TestUpstream::start().unwrap();
    let proxy = ProxyProcess::in_front_of_checked(&upstream.url(), QUICK_CHECK, "", "").unwrap();
    let mut timeline = Timeline::new();
    timeline.event(&format!("sidecar started, upstream.check: {QUICK_CHECK:?}"));
    timeline.until(&proxy, "ready and live", |l| {
        l.ready == 200 && l.live == 200
    });

    // Connections are accepted and requests read: only an MCP answer tells it is wedged.
    upstream.hang(true);
    timeline.event("the upstream stops answering (it still accepts connections)");
    let down = timeline.until(&proxy, "not ready and not live", |l| {
        l.ready == 503 && l.live == 503
    });
    let endpoint = format!("{}/mcp", upstream.url());
    assert!(
        down.ready_line.starts_with(&format!(
            "not ready: upstream {endpoint} has not answered MCP for "
        )) && down
            .ready_line
            .ends_with("checks: timed out after 400ms waiting for the answer to initialize"),
        "{down:?}"
    );
    let report = proxy.admin_get("/upstream").unwrap().json().unwrap();
    assert_eq!(report["answering"], false, "{report}");
    assert!(
        report["consecutiveMisses"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert!(report["lastAnsweredAt"].is_string(), "{report}");
    assert_eq!(proxy.count("sluice_upstream_answering").unwrap(), 0.0);
    assert!(
        proxy
            .count("sluice_upstream_check_failures_total{kind=\"timeout\"}")
            .unwrap()
            >= 2.0
    );

    upstream.hang(false);
    timeline.event("the upstream answers again");
    timeline.until(&proxy, "ready and live again", |l| {
        l.ready == 200 && l.live == 200
    });
    let report = proxy.admin_get("/upstream").unwrap().json().unwrap();
    assert_eq!(report["answering"], true, "{report}");
    assert_eq!(report["consecutiveMisses"], 0, "{report}");
    assert_eq!(report["lastError"], serde_json::Value::Null, "{report}");
    assert_eq!(proxy.count("sluice_upstream_answering").unwrap(), 1.0);

    println!("timeline (time since the sidecar started; a line per change):");
    for line in &timeline.lines {
        println!("{line}");
    }
    println!("the sidecar's log lines about it:");
    for line in proxy
        .process
        .stdout()
        .lines()
        .filter(|l| l.contains("answer"))
    {
        println!("  {line}");
    }
}

#[test]
fn an_upstream_slow_to_answer_gets_504_and_nothing_leaks() {
    const CALLS: u64 = 20;
    let upstream = TestUpstream::start().unwrap();
    let top = "timeouts:\n  upstreamFirstByte: 1s\n";
    let proxy = ProxyProcess::in_front_of(&upstream.url(), top, "").unwrap();
    assert!(answered(&call(&proxy, 1, "lookup", &[]).unwrap(), 1));
    let pid = proxy.process.pid();
    let fds_before = procstat::open_fds(pid).unwrap();

    // CALLS callers at once, each answered a minute late by the upstream.
    let caller = Caller { port: proxy.port };
    let slow: Vec<_> = (0..CALLS)
        .map(|i| thread::spawn(move || caller.call(100 + i, "lookup", &[(DELAY_HEADER, "60000")])))
        .collect();
    for (i, caller) in slow.into_iter().enumerate() {
        let response = caller.join().unwrap().unwrap();
        assert_error(
            &response,
            504,
            -32001,
            100 + i as u64,
            "the upstream did not answer in time",
        );
    }
    assert_eq!(
        proxy
            .count("sluice_upstream_errors_total{entry_point=\"main\",kind=\"first_byte_timeout\"}")
            .unwrap(),
        CALLS as f64
    );
    // Nothing left behind: gauges at zero, the sockets of the timed-out requests closed.
    until_metric(&proxy, IN_FLIGHT, 0.0);
    until_metric(&proxy, OPEN_STREAMS, 0.0);
    let fds_after = wait_until("the sidecar's descriptors to settle", PATIENCE, || {
        let now = procstat::open_fds(pid)?;
        Ok(if now <= fds_before {
            Probe::Ready(now)
        } else {
            Probe::NotYet(format!("{now} open, {fds_before} before"))
        })
    })
    .unwrap();
    println!("sidecar fds: {fds_before} before, {fds_after} after {CALLS} timed-out calls");
    assert!(answered(&call(&proxy, 2, "lookup", &[]).unwrap(), 2));
}

#[test]
fn callers_leaving_silent_streams_release_them_and_their_upstream_connections() {
    const STREAMS: u64 = 10;
    let upstream = TestUpstream::start().unwrap();
    // No keep-alive comments: nothing is written that would reveal the caller's departure, so
    // only noticing the closed connection itself frees the stream.
    let top = "streaming:\n  keepAlive: null\n";
    let proxy = ProxyProcess::in_front_of(&upstream.url(), top, "").unwrap();
    assert!(answered(&call(&proxy, 1, "lookup", &[]).unwrap(), 1));
    let pid = proxy.process.pid();
    let fds_before = procstat::open_fds(pid).unwrap();

    // One event at once, then silence for ten minutes.
    let runtime = runtime();
    let addr = SocketAddr::from(([127, 0, 0, 1], proxy.port));
    let opened = Arc::new(AtomicU64::new(0));
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            let opened = opened.clone();
            runtime.spawn(sse::read(addr, "/stream?interval_ms=600000", move |_| {
                opened.fetch_add(1, Ordering::Relaxed);
            }))
        })
        .collect();
    wait_until("every stream's first event", PATIENCE, || {
        let n = opened.load(Ordering::Relaxed);
        Ok(if n == STREAMS {
            Probe::Ready(())
        } else {
            Probe::NotYet(format!("{n} open"))
        })
    })
    .unwrap();
    assert_eq!(proxy.count(OPEN_STREAMS).unwrap(), STREAMS as f64);
    let fds_open = procstat::open_fds(pid).unwrap();

    // The callers go away (their connections close).
    for stream in &streams {
        stream.abort();
    }
    drop(runtime);
    until_metric(&proxy, OPEN_STREAMS, 0.0);
    until_metric(&proxy, IN_FLIGHT, 0.0);
    let fds_after = wait_until("the sidecar's descriptors to settle", PATIENCE, || {
        let now = procstat::open_fds(pid)?;
        Ok(if now <= fds_before {
            Probe::Ready(now)
        } else {
            Probe::NotYet(format!("{now} open, {fds_before} before"))
        })
    })
    .unwrap();
    println!(
        "sidecar fds: {fds_before} before, {fds_open} with {STREAMS} streams, {fds_after} after they left"
    );
}

/// A loopback listener that accepts no connection: its backlog is full, so a connect to it
/// hangs until the caller gives up (a wedged upstream). Holds what fills the backlog.
struct Wedged {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _queued: Vec<TcpStream>,
    _runtime: tokio::runtime::Runtime,
}

impl Wedged {
    fn start() -> Self {
        let runtime = runtime();
        let _entered = runtime.enter();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        // Fill the accept queue until a connect no longer completes.
        while let Ok(tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            queued.push(tcp);
            assert!(queued.len() < 64, "the backlog of {addr} does not fill");
        }
        drop(_entered);
        Self {
            addr,
            _listener: listener,
            _queued: queued,
            _runtime: runtime,
        }
    }
}

#[test]
fn an_upstream_that_accepts_no_connection_gets_503_within_the_connect_timeout() {
    let wedged = Wedged::start();
    let top = "timeouts:\n  upstreamConnect: 500ms\n";
    let proxy =
        ProxyProcess::in_front_of_checked(&format!("http://{}", wedged.addr), QUICK_CHECK, top, "")
            .unwrap();
    let pid = proxy.process.pid();
    let fds_before = procstat::open_fds(pid).unwrap();
    for id in 1..=5 {
        assert_error(
            &call(&proxy, id, "lookup", &[]).unwrap(),
            503,
            -32603,
            id,
            "connecting to the upstream timed out",
        );
    }
    let body = until_readyz(
        &proxy,
        503,
        "has not answered MCP yet: timed out after 400ms waiting for a connection",
    );
    println!("/readyz with a wedged upstream:\n{body}");
    assert_eq!(
        proxy
            .count("sluice_upstream_errors_total{entry_point=\"main\",kind=\"connect_timeout\"}")
            .unwrap(),
        5.0
    );
    until_metric(&proxy, IN_FLIGHT, 0.0);
    wait_until("the sidecar's descriptors to settle", PATIENCE, || {
        let now = procstat::open_fds(pid)?;
        Ok(if now <= fds_before {
            Probe::Ready(())
        } else {
            Probe::NotYet(format!("{now} open, {fds_before} before"))
        })
    })
    .unwrap();
}

#[test]
fn global_rate_limits_fail_open_without_redis_and_count_in_redis_again_when_it_returns() {
    let upstream = TestUpstream::start().unwrap();
    let mut redis = Redis::start().unwrap();
    let redis_port = redis.port();
    let top = format!(
        "redis:\n  address: 127.0.0.1:{redis_port}\n  failMode: open\n  keyPrefix: faults/\n"
    );
    let limits = "    rateLimits:\n      - name: global\n        requests: 3\n        period: 1h\n        scope: global\n";
    let mut proxy = ProxyProcess::in_front_of(&upstream.url(), &top, limits).unwrap();
    until_metric(&proxy, "sluice_redis_connected", 1.0);
    let fallbacks = "sluice_rate_limit_fallbacks_total{entry_point=\"main\",rule=\"global\",fail_mode=\"open\"}";
    let mut id = 0;
    // Three calls per hour, the fourth refused: by Redis, then without it by the pod's own
    // count, then by Redis again once it is back (empty).
    let mut budget = |phase: &str| {
        for _ in 0..3 {
            id += 1;
            let r = call(&proxy, id, "lookup", &[]).unwrap();
            assert!(answered(&r, id), "{phase}: {r:?}");
        }
        id += 1;
        assert_error(
            &call(&proxy, id, "lookup", &[]).unwrap(),
            429,
            -32004,
            id,
            "rate limit global exceeded",
        );
    };
    budget("Redis up");
    assert_eq!(proxy.count(fallbacks).unwrap(), 0.0);

    redis.process().kill().unwrap();
    budget("Redis down, failing open");
    assert_eq!(proxy.count(fallbacks).unwrap(), 4.0);

    let _redis = Redis::start_on(redis_port).unwrap();
    until_metric(&proxy, "sluice_redis_connected", 1.0);
    budget("Redis back");
    assert_eq!(
        proxy.count(fallbacks).unwrap(),
        4.0,
        "checks went to Redis again"
    );
    proxy
        .process
        .wait_for_output("Redis for global rate limits is reachable again", PATIENCE)
        .unwrap();
}

/// Calls through the sidecar from `threads` threads until told to stop; every answer must be
/// the upstream's to that very request.
struct Load {
    halt: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, threads: u64, headers: &'static [(&'static str, &'static str)]) -> Self {
        let halt = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|t| {
                let (halt, done, failures) = (halt.clone(), done.clone(), failures.clone());
                thread::spawn(move || {
                    let caller = Caller { port };
                    let mut id = t * 1_000_000;
                    while !halt.load(Ordering::Relaxed) {
                        id += 1;
                        match caller.call(id, "lookup", headers) {
                            Ok(r) if answered(&r, id) => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures
                                .lock()
                                .unwrap()
                                .push(format!("request {id}: {other:?}")),
                        }
                    }
                })
            })
            .collect();
        Self {
            halt,
            done,
            failures,
            threads,
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `more` further requests have been answered.
    fn until_more(&self, more: u64) {
        let target = self.done() + more;
        wait_until("more requests under load", PATIENCE, || {
            Ok(if self.done() >= target {
                Probe::Ready(())
            } else {
                Probe::NotYet(format!("{} done", self.done()))
            })
        })
        .unwrap();
    }

    /// Asks the callers to send no more requests (those under way go on).
    fn halt(&self) {
        self.halt.store(true, Ordering::Relaxed);
    }

    /// Stops the callers and waits for their last requests; returns how many requests were
    /// answered and what failed.
    fn stop(self) -> (u64, Vec<String>) {
        self.halt();
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.done.load(Ordering::Relaxed), failures)
    }
}

/// Points `dir/..data` at `dir/<version>` holding `config` as `sluice.yaml`, atomically, as
/// the kubelet updates a mounted ConfigMap.
fn publish(dir: &Path, version: &str, config: &str) {
    let target = dir.join(version);
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("sluice.yaml"), config).unwrap();
    let staged = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(version, &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
}

#[test]
fn a_config_corrupted_under_load_is_rejected_without_dropping_a_request_until_a_good_one_applies() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start().unwrap();
    let ports = Ports::free().unwrap();
    let good = ProxyProcess::config(&upstream.url(), ports, "", "");
    // The ConfigMap volume layout: sluice.yaml -> ..data/sluice.yaml, ..data -> ..v1.
    publish(dir.path(), "..v1", &good);
    let path = dir.path().join("sluice.yaml");
    std::os::unix::fs::symlink("..data/sluice.yaml", &path).unwrap();
    let proxy = ProxyProcess::start(&path, ports, &["--reload-interval", "100ms"]).unwrap();
    let rejected = "sluice_config_reloads_total{result=\"rejected\"}";
    let applied = "sluice_config_reloads_total{result=\"applied\"}";
    assert!(answered(&call(&proxy, 1, "blocked_tool", &[]).unwrap(), 1));

    let load = Load::start(proxy.port, 4, &[]);
    load.until_more(20);

    // Garbage written over the file in place.
    std::fs::write(
        dir.path().join("..v1/sluice.yaml"),
        "entryPoints: [{name: main, listen: ]]]\n\u{0}\u{1}garbage",
    )
    .unwrap();
    until_metric(&proxy, "sluice_config_rejected", 1.0);
    let body = until_readyz(
        &proxy,
        200,
        "config file rejected, serving the last good config",
    );
    println!("/readyz with garbage in place:\n{body}");
    let rejected_in_place = proxy.count(rejected).unwrap();
    assert!(rejected_in_place >= 1.0);
    load.until_more(20);

    // Garbage published by a ..data swap: well-formed YAML, not a config.
    publish(dir.path(), "..v2", "upstream:\n  url: 42\nbogus: true\n");
    wait_until("the swapped-in garbage to be rejected", PATIENCE, || {
        let now = proxy.count(rejected)?;
        Ok(if now > rejected_in_place {
            Probe::Ready(())
        } else {
            Probe::NotYet(format!("{now} rejected"))
        })
    })
    .unwrap();
    until_readyz(&proxy, 200, "config file rejected");
    assert_eq!(proxy.count(applied).unwrap(), 0.0);
    load.until_more(20);

    // A good config, changed: denies blocked_*; it applies and the rejection clears.
    let denying = ProxyProcess::config(
        &upstream.url(),
        ports,
        "",
        "    tools:\n      deny: [\"blocked_*\"]\n",
    );
    publish(dir.path(), "..v3", &denying);
    until_metric(&proxy, applied, 1.0);
    until_metric(&proxy, "sluice_config_rejected", 0.0);
    let ready = proxy.readyz().unwrap().expect_status(200).unwrap();
    assert!(!ready.body.contains("rejected"), "{}", ready.body);
    assert_error(
        &call(&proxy, 2, "blocked_tool", &[]).unwrap(),
        403,
        -32003,
        2,
        "blocked_tool",
    );
    load.until_more(20);

    let (done, failures) = load.stop();
    println!(
        "requests under load: {done} answered, {} failed; config rejections: {}",
        failures.len(),
        proxy.count(rejected).unwrap()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sigterm_under_load_fails_readiness_first_finishes_what_is_in_flight_and_exits_0() {
    let upstream = TestUpstream::start().unwrap();
    let top = "shutdown:\n  drainDelay: 3s\n  gracePeriod: 20s\n";
    let mut proxy = ProxyProcess::in_front_of(&upstream.url(), top, "").unwrap();
    until_readyz(&proxy, 200, "ready");
    let addr = SocketAddr::from(([127, 0, 0, 1], proxy.port));

    // Quick calls, calls the upstream takes 4 s over (longer than the drain delay), and a
    // stream of 10 s.
    let quick = Load::start(proxy.port, 3, &[]);
    let slow = Load::start(proxy.port, 2, &[(DELAY_HEADER, "4000")]);
    let runtime = runtime();
    let stream_ended = Arc::new(Mutex::new(None));
    let stream = {
        let stream_ended = stream_ended.clone();
        runtime.spawn(async move {
            let outcome = sse::read(addr, "/stream?events=100&interval_ms=100", |_| {}).await;
            *stream_ended.lock().unwrap() = Some(Instant::now());
            outcome
        })
    };
    quick.until_more(10);
    slow.until_more(2);

    proxy.process.signal(Signal::Term).unwrap();
    // Readiness fails first, while new connections are still served.
    let body = until_readyz(&proxy, 503, "not ready: shutting down");
    println!("/readyz after SIGTERM:\n{body}");
    // Conduit's liveness does not follow the sidecar's shutdown (that would restart it).
    let live = proxy.admin_get("/upstream/livez").unwrap();
    assert_eq!(live.status, 200, "{live:?}");
    let during_drain = call(&proxy, 1, "lookup", &[]).unwrap();
    assert!(answered(&during_drain, 1), "{during_drain:?}");
    // The endpoints are gone: callers stop sending; what is in flight goes on.
    let (quick_done, mut failures) = quick.stop();
    slow.halt();

    // After the drain delay, new connections are refused.
    let refused_at = wait_until("new connections to be refused", PATIENCE, || {
        Ok(
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Probe::Ready(Instant::now())
                }
                other => Probe::NotYet(format!("{other:?}")),
            },
        )
    })
    .unwrap();

    let status = proxy
        .process
        .wait_timeout(PATIENCE)
        .unwrap()
        .expect("the sidecar did not exit within its grace period");
    assert!(status.success(), "the sidecar exited with {status}");

    let (slow_done, slow_failures) = slow.stop();
    failures.extend(slow_failures);
    let outcome = runtime.block_on(stream).unwrap().unwrap();
    let expected: Vec<u64> = (0..100).collect();
    assert!(
        outcome.broken.is_none() && outcome.ids == expected,
        "the stream in flight was cut: {outcome:?}"
    );
    let stream_ended = stream_ended.lock().unwrap().unwrap();
    println!(
        "answered: {quick_done} quick, {slow_done} slow calls, 1 stream of 100 events; failed: {}",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        stream_ended > refused_at,
        "the stream should still have been in flight when the listener closed"
    );
}

#[test]
fn sigterm_cuts_what_is_still_streaming_when_the_grace_period_ends_and_exits_0() {
    let upstream = TestUpstream::start().unwrap();
    let top = "shutdown:\n  drainDelay: 1s\n  gracePeriod: 2s\n";
    let mut proxy = ProxyProcess::in_front_of(&upstream.url(), top, "").unwrap();
    let runtime = runtime();
    let addr = SocketAddr::from(([127, 0, 0, 1], proxy.port));
    let events = Arc::new(AtomicU64::new(0));
    let stream = {
        let events = events.clone();
        runtime.spawn(sse::read(addr, "/stream?interval_ms=100", move |_| {
            events.fetch_add(1, Ordering::Relaxed);
        }))
    };
    wait_until("the stream's first events", PATIENCE, || {
        let n = events.load(Ordering::Relaxed);
        Ok(if n >= 3 {
            Probe::Ready(())
        } else {
            Probe::NotYet(format!("{n} events"))
        })
    })
    .unwrap();

    proxy.process.signal(Signal::Term).unwrap();
    let status = proxy
        .process
        .wait_timeout(PATIENCE)
        .unwrap()
        .expect("the sidecar did not exit after its grace period");
    assert!(status.success(), "the sidecar exited with {status}");
    let outcome = runtime
        .block_on(async { tokio::time::timeout(PATIENCE, stream).await })
        .expect("the stream outlived the sidecar")
        .unwrap()
        .unwrap();
    assert!(outcome.broken.is_some(), "{outcome:?}");
    let logs = proxy.process.logs();
    assert!(
        logs.contains("grace period over; cutting what is left"),
        "{logs}"
    );
}
