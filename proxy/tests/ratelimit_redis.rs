//! Global rate limits against a real `redis-server` (installed by scripts/setup.sh): two proxies
//! share one budget; with Redis killed mid-test `failMode: open` lets requests through counted
//! per pod and `closed` answers 503; both recover when Redis returns; passwords come from a
//! file and keys carry the configured prefix.
//!
//! Without `redis-server` these tests fail (they never skip): CI installs it.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use serde_json::json;
use support::redis::RedisProcess;
use support::*;

/// A `redis-server` on a free loopback port, killed (by PID) when dropped.
fn start_redis(password: Option<&str>) -> RedisProcess {
    start_redis_on(free_port(), password)
}

fn start_redis_on(port: u16, password: Option<&str>) -> RedisProcess {
    match password {
        None => RedisProcess::plain(port, &[]),
        Some(p) => {
            let args = ["--bind", "127.0.0.1", "--port", &port.to_string()]
                .into_iter()
                .chain(["--save", "", "--appendonly", "no", "--requirepass", p])
                .map(str::to_owned)
                .collect::<Vec<_>>();
            RedisProcess::spawn(&args, port, &[p])
        }
    }
}

fn call(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"pha_task_get","arguments":{}}})
        .to_string()
}

async fn rpc(sluice: &Sluice, id: u64) -> Reply {
    send(post(&sluice.url("/mcp")).body(body(&call(id))).unwrap()).await
}

/// Waits until the proxy's Redis connection is open (it opens in the background), without
/// spending any budget.
async fn until_connected(sluice: &Sluice) {
    eventually("the proxy to connect to Redis", async || {
        sluice.metric("sluice_redis_connected").await == Some(1.0)
    })
    .await;
}

/// A proxy with one global rule of `requests` per hour against Redis on `port`.
fn global_config(upstream: &Upstream, port: u16, redis_extra: &str, requests: u32) -> String {
    config(
        upstream.addr,
        &format!("redis:\n  address: 127.0.0.1:{port}\n{redis_extra}"),
        &format!(
            "rateLimits:\n  - name: shared\n    requests: {requests}\n    period: 1h\n    scope: global\n"
        ),
    )
}

#[tokio::test]
async fn two_proxies_share_one_global_budget_under_the_key_prefix() {
    let redis = start_redis(None);
    let upstream = Upstream::ok().await;
    let yaml = global_config(&upstream, redis.port, "  keyPrefix: \"team-a/\"\n", 4);
    let a = Sluice::start(&yaml).await;
    let b = Sluice::start(&yaml).await;
    until_connected(&a).await;
    until_connected(&b).await;
    for (id, s) in [(1, &a), (2, &b), (3, &a), (4, &b)] {
        let reply = rpc(s, id).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // 4 per hour: one every 15 minutes; the budget is spent on both.
    for (id, s) in [(5, &a), (6, &b)] {
        let reply = rpc(s, id).await;
        assert_eq!(reply.status, 429, "{}", reply.text());
        assert_eq!(reply.header("retry-after"), Some("900"));
        assert_eq!(reply.rpc_code(), -32004);
        assert_eq!(reply.json()["id"], id);
    }
    let keys = redis.command(&["KEYS", "*"]).unwrap();
    assert!(
        keys.contains("team-a/sluice:ratelimit:main:shared"),
        "{keys}"
    );
    assert!(keys.starts_with("*1\r\n"), "one budget: {keys}");
    let ttl = redis
        .command(&["PTTL", "team-a/sluice:ratelimit:main:shared"])
        .unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 3_600_000, "the key expires: {ttl}");
    // Every decision came from Redis.
    let fallbacks = "sluice_rate_limit_fallbacks_total{entry_point=\"main\",rule=\"shared\",fail_mode=\"open\"}";
    assert_eq!(a.metric(fallbacks).await, Some(0.0));
    assert_eq!(b.metric(fallbacks).await, Some(0.0));
}

#[tokio::test]
async fn redis_killed_mid_test_fails_open_or_closed_and_both_recover() {
    let mut redis = start_redis(None);
    let port = redis.port;
    let mut upstream = Upstream::ok().await;
    let open = Sluice::start(&global_config(&upstream, port, "  failMode: open\n", 2)).await;
    let closed = Sluice::start(&global_config(
        &upstream,
        port,
        "  failMode: closed\n  keyPrefix: closed/\n",
        1000,
    ))
    .await;
    until_connected(&open).await;
    until_connected(&closed).await;

    // Redis decides: 2 per hour.
    assert_eq!(rpc(&open, 1).await.status, 200);
    assert_eq!(rpc(&open, 2).await.status, 200);
    assert_eq!(rpc(&open, 3).await.status, 429);

    redis.kill();

    // Open: let through, counted per pod (a fresh local budget of 2), then refused locally.
    assert_eq!(rpc(&open, 4).await.status, 200);
    assert_eq!(rpc(&open, 5).await.status, 200);
    let reply = rpc(&open, 6).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("1800"));
    let fallbacks = "sluice_rate_limit_fallbacks_total{entry_point=\"main\",rule=\"shared\",fail_mode=\"open\"}";
    assert_eq!(open.metric(fallbacks).await, Some(3.0));

    // Closed: no request since the kill, yet its health check notices within seconds.
    eventually("the idle connection's PING to fail", async || {
        closed.metric("sluice_redis_connected").await == Some(0.0)
    })
    .await;
    // 503, nothing forwarded.
    while upstream.saw_any() {}
    let reply = rpc(&closed, 7).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.rpc_code(), -32603);
    assert_eq!(reply.json()["id"], 7);
    assert!(
        !upstream.saw_any(),
        "a request reached the upstream unchecked"
    );
    let closed_fallbacks = "sluice_rate_limit_fallbacks_total{entry_point=\"main\",rule=\"shared\",fail_mode=\"closed\"}";
    assert!(closed.metric(closed_fallbacks).await.unwrap() >= 1.0);
    let errors: f64 = get(&closed.admin("/metrics"))
        .await
        .text()
        .lines()
        .filter(|l| l.starts_with("sluice_redis_errors_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(errors >= 1.0, "Redis errors are counted");

    // Redis returns (empty): both reconnect. The open proxy's local budget is spent, so a 200
    // there proves the decision came from Redis again.
    let _redis = start_redis_on(port, None);
    let mut id = 100;
    eventually("the closed proxy to recover", async || {
        id += 1;
        rpc(&closed, id).await.status == 200
    })
    .await;
    eventually("the open proxy to count in Redis again", async || {
        id += 1;
        rpc(&open, id).await.status == 200
    })
    .await;
    let before = open.metric(fallbacks).await.unwrap();
    assert_eq!(rpc(&open, 999).await.status, 200);
    assert_eq!(open.metric(fallbacks).await.unwrap(), before);
}

#[tokio::test]
async fn the_password_comes_from_its_file() {
    let redis = start_redis(Some("s3cret-pw"));
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "s3cret-pw\n").unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "wrong").unwrap();
    let with = |file: &std::path::Path| {
        global_config(
            &upstream,
            redis.port,
            &format!(
                "  failMode: closed\n  passwordFile: {}\n  timeout: 1s\n",
                file.display()
            ),
            1,
        )
    };
    let ok = Sluice::start(&with(&good)).await;
    until_connected(&ok).await;
    assert_eq!(rpc(&ok, 1).await.status, 200);
    assert_eq!(rpc(&ok, 2).await.status, 429);
    assert!(
        redis
            .command(&["KEYS", "sluice:*"])
            .unwrap()
            .starts_with("*1")
    );

    let refused = Sluice::start(&with(&bad)).await;
    eventually("the wrong password to be counted", async || {
        refused
            .metric("sluice_redis_errors_total{kind=\"auth\"}")
            .await
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(rpc(&refused, 3).await.status, 503);
    assert_eq!(refused.metric("sluice_redis_connected").await, Some(0.0));
}
