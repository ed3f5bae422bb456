//! Global rate limits through Redis Sentinel, against real processes on loopback: two
//! `redis-server`s (a master and its replica) and one sentinel (`redis-server --sentinel`,
//! what Debian's redis-sentinel runs). The master is killed, or switched over by the sentinel;
//! the sidecar finds the new master, the budget keeps counting where it was (the replica had
//! it), and the switch shows in `sluice_redis_master` and `sluice_redis_master_changes_total`.
//! Each test prints the timeline it saw in the sidecar's metrics.
//!
//! Without `redis-server` these tests fail (they never skip): CI installs it.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;
use support::redis::RedisProcess;
use support::*;

const MASTER: &str = "sluice";
const KEY: &str = "sluice:ratelimit:main:shared";

/// A master, its replica and a sentinel watching them, every process killed when dropped.
struct Sentinelled {
    a: RedisProcess,
    b: RedisProcess,
    sentinel: RedisProcess,
    _dir: tempfile::TempDir,
}

impl Sentinelled {
    fn start() -> Self {
        let a = RedisProcess::plain(free_port(), &[]);
        let b = RedisProcess::plain(
            free_port(),
            &["--replicaof", "127.0.0.1", &a.port.to_string()],
        );
        eventually_blocking("the replica to sync", || {
            b.command(&["INFO", "replication"])
                .is_some_and(|info| info.contains("master_link_status:up"))
        });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\nport {port}\ndaemonize no\n\
                 sentinel monitor {MASTER} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {MASTER} 500\n\
                 sentinel failover-timeout {MASTER} 3000\n",
                a.port
            ),
        )
        .unwrap();
        let sentinel = RedisProcess::sentinel(&conf, port);
        // A failover needs the sentinel to know the replica (it learns it from the master).
        eventually_blocking("the sentinel to know the replica", || {
            sentinel
                .command(&["SENTINEL", "replicas", MASTER])
                .is_some_and(|r| r.contains(&b.port.to_string()))
        });
        Self {
            a,
            b,
            sentinel,
            _dir: dir,
        }
    }

    /// The proxy's config: one global rule of `requests` per hour, failing closed.
    fn config(&self, upstream: &Upstream, requests: u32) -> String {
        config(
            upstream.addr,
            &format!(
                "redis:\n  sentinel:\n    masterName: {MASTER}\n    addresses: [\"127.0.0.1:{}\"]\n  failMode: closed\n",
                self.sentinel.port
            ),
            &format!(
                "rateLimits:\n  - name: shared\n    requests: {requests}\n    period: 1h\n    scope: global\n"
            ),
        )
    }
}

fn eventually_blocking(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn rpc(sluice: &Sluice, id: u64) -> u16 {
    let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"pha_task_get","arguments":{}}});
    send(
        post(&sluice.url("/mcp"))
            .body(body(&call.to_string()))
            .unwrap(),
    )
    .await
    .status
    .as_u16()
}

/// Adds a line to the timeline unless only its time differs from the last one.
fn record(timeline: &mut Vec<String>, line: String) {
    let state = |l: &str| l.split_once("ms").map(|(_, rest)| rest.to_owned());
    if timeline.last().and_then(|l| state(l)) != state(&line) {
        timeline.push(line);
    }
}

fn master_metric(port: u16) -> String {
    format!("sluice_redis_master{{address=\"127.0.0.1:{port}\"}}")
}

/// The metrics a failover shows in, one line of the timeline.
async fn sample(sluice: &Sluice, s: &Sentinelled, started: Instant, status: Option<u16>) -> String {
    let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| v.to_string());
    // Errors by kind, e.g. `io=1 sentinel=3`.
    let errors: Vec<String> = get(&sluice.admin("/metrics"))
        .await
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("sluice_redis_errors_total{kind=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect();
    format!(
        "+{:>5}ms  request {}  connected {}  master[a:{}] {}  master[b:{}] {}  changes {}  errors [{}]",
        started.elapsed().as_millis(),
        status.map_or("-".to_owned(), |s| s.to_string()),
        show(sluice.metric("sluice_redis_connected").await),
        s.a.port,
        show(sluice.metric(&master_metric(s.a.port)).await),
        s.b.port,
        show(sluice.metric(&master_metric(s.b.port)).await),
        show(sluice.metric("sluice_redis_master_changes_total").await),
        errors.join(" "),
    )
}

/// Spends 3 of a budget of 6 on the first master, runs `fail_over`, then shows the sidecar
/// moves to the replica, which goes on from 3: exactly 3 more requests pass. With
/// `traffic`, requests are sent during the switch (each a line of the timeline); without,
/// only the metrics are read.
async fn budget_survives(fail_over: impl FnOnce(&mut Sentinelled), traffic: bool) {
    let mut s = Sentinelled::start();
    let upstream = Upstream::ok().await;
    let sluice = Sluice::start(&s.config(&upstream, 6)).await;
    eventually("the sidecar to connect to the master", async || {
        sluice.metric(&master_metric(s.a.port)).await == Some(1.0)
            && sluice.metric("sluice_redis_connected").await == Some(1.0)
    })
    .await;
    for id in 1..=3 {
        assert_eq!(rpc(&sluice, id).await, 200);
    }
    // The spent budget reached the replica before the failover.
    eventually_blocking("the budget to reach the replica", || {
        s.b.command(&["EXISTS", KEY]).as_deref() == Some(":1\r\n")
    });

    let started = Instant::now();
    fail_over(&mut s);
    let mut timeline = Vec::new();
    let mut id = 100;
    let mut passed = 0;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let moved = sluice.metric(&master_metric(s.b.port)).await == Some(1.0)
            && sluice.metric("sluice_redis_connected").await == Some(1.0);
        if traffic {
            id += 1;
            let status = rpc(&sluice, id).await;
            record(
                &mut timeline,
                sample(&sluice, &s, started, Some(status)).await,
            );
            // The old master is gone: a request that passes was counted on the new one.
            if status == 200 {
                passed += 1;
                break;
            }
            // Closed: while no master answers, requests are refused and counted nowhere.
            assert_eq!(status, 503, "{}", timeline.join("\n"));
        } else {
            record(&mut timeline, sample(&sluice, &s, started, None).await);
            if moved {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the sidecar did not move to the new master:\n{}",
            timeline.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "failover timeline (sidecar metrics):\n{}",
        timeline.join("\n")
    );

    assert_eq!(sluice.metric(&master_metric(s.b.port)).await, Some(1.0));
    assert_eq!(sluice.metric(&master_metric(s.a.port)).await, Some(0.0));
    assert_eq!(
        sluice.metric("sluice_redis_master_changes_total").await,
        Some(1.0)
    );
    // The budget went on from 3 spent: 3 in all after the switch, then refused.
    while passed < 3 {
        id += 1;
        assert_eq!(
            rpc(&sluice, id).await,
            200,
            "request {} after the switch",
            passed + 1
        );
        passed += 1;
    }
    assert_eq!(rpc(&sluice, id + 1).await, 429);
    let role = s.b.command(&["ROLE"]).unwrap();
    assert!(role.starts_with("*3\r\n$6\r\nmaster\r\n"), "{role}");
}

#[tokio::test]
async fn a_killed_master_fails_over_and_the_budget_keeps_counting() {
    budget_survives(|s| s.a.kill(), true).await;
}

#[tokio::test]
async fn a_switchover_by_the_sentinel_moves_the_sidecar_to_the_new_master() {
    budget_survives(
        |s| {
            // Until the sentinel has looked at the replica itself it answers NOGOODSLAVE.
            eventually_blocking("the sentinel to start a switchover", || {
                s.sentinel
                    .command(&["SENTINEL", "FAILOVER", MASTER])
                    .as_deref()
                    == Some("+OK\r\n")
            });
        },
        false,
    )
    .await;
}
