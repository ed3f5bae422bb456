//! Local rate limits: exact GCRA counting (tiny budgets, long periods, so no assertion depends
//! on how fast the test runs), 429 with `Retry-After` and the request's id, keys by tool,
//! identity and address, methods and tools that count, and budgets kept across reloads.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use serde_json::{Value, json};
use support::*;

fn call(id: u64, tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
        .to_string()
}

async fn rpc(sluice: &Sluice, body_text: &str) -> Reply {
    send(post(&sluice.url("/mcp")).body(body(body_text)).unwrap()).await
}

fn assert_limited(reply: &Reply, id: Value, retry_after: &str) {
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some(retry_after));
    let v = reply.json();
    assert_eq!(v["error"]["code"], -32004, "{v}");
    assert_eq!(v["id"], id, "{v}");
}

/// A rule `name` (indented for the entry point).
fn rule(name: &str, rest: &str) -> String {
    format!("rateLimits:\n  - name: {name}\n{rest}")
}

#[tokio::test]
async fn budgets_count_exactly_and_answer_429_with_retry_after() {
    let mut upstream = Upstream::ok().await;
    // 3 per hour: one every 20 minutes, bursts of 3.
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        &rule("calls", "    requests: 3\n    period: 1h\n"),
    ))
    .await;
    for id in 1..=3 {
        assert_eq!(rpc(&sluice, &call(id, "pha_task_get")).await.status, 200);
        upstream.next().await;
    }
    let reply = rpc(&sluice, &call(4, "pha_task_get")).await;
    // The next request is admitted 20 minutes after the first: 1200 s, rounded up.
    assert_limited(&reply, json!(4), "1200");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate limit calls exceeded")
    );
    assert!(
        !upstream.saw_any(),
        "a limited request reached the upstream"
    );
    // Only tools/call counts by default.
    let ping = json!({"jsonrpc":"2.0","id":5,"method":"tools/list"}).to_string();
    assert_eq!(rpc(&sluice, &ping).await.status, 200);
    upstream.next().await;
    let metric = "sluice_rate_limited_total{entry_point=\"main\",rule=\"calls\"}";
    assert_eq!(sluice.metric(metric).await, Some(1.0));
}

#[tokio::test]
async fn burst_and_rate_are_separate() {
    let mut upstream = Upstream::ok().await;
    // 60 per hour (one a minute) with bursts of 2.
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        &rule("calls", "    requests: 60\n    period: 1h\n    burst: 2\n"),
    ))
    .await;
    for id in 1..=2 {
        assert_eq!(rpc(&sluice, &call(id, "x")).await.status, 200);
        upstream.next().await;
    }
    assert_limited(&rpc(&sluice, &call(3, "x")).await, json!(3), "60");
}

#[tokio::test]
async fn each_tool_has_its_own_budget_when_keyed_by_tool() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        &rule(
            "per-tool",
            "    by: [tool]\n    requests: 1\n    period: 1h\n",
        ),
    ))
    .await;
    assert_eq!(rpc(&sluice, &call(1, "pha_task_get")).await.status, 200);
    upstream.next().await;
    assert_eq!(rpc(&sluice, &call(2, "pha_user_whoami")).await.status, 200);
    upstream.next().await;
    assert_limited(
        &rpc(&sluice, &call(3, "pha_task_get")).await,
        json!(3),
        "3600",
    );
    // Look-alikes share one budget instead of minting new ones.
    assert_eq!(
        rpc(&sluice, &call(4, "pha_t\u{0430}sk_get")).await.status,
        200
    );
    upstream.next().await;
    assert_limited(
        &rpc(&sluice, &call(5, "pha_t\u{0430}sk_g\u{0435}t")).await,
        json!(5),
        "3600",
    );
}

#[tokio::test]
async fn callers_have_their_own_budgets_when_keyed_by_identity() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("alice"), "alice-key-0123456789abcdef").unwrap();
    std::fs::write(keys.join("bob"), "bob-key-0123456789abcdef").unwrap();
    let yaml = config(
        upstream.addr,
        "",
        &rule(
            "per-caller",
            "    by: [identity]\n    requests: 1\n    period: 1h\n",
        ),
    )
    .replace(
        "    auth:\n      mode: none\n",
        &format!(
            "    auth:\n      mode: apiKey\n      keysDir: {}\n",
            keys.display()
        ),
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let sluice = Sluice::start_at(dir, path).await;
    let as_ = async |key: &str, id: u64| {
        send(
            post(&sluice.url("/mcp"))
                .header("x-api-key", key)
                .body(body(&call(id, "pha_task_get")))
                .unwrap(),
        )
        .await
    };
    assert_eq!(as_("alice-key-0123456789abcdef", 1).await.status, 200);
    upstream.next().await;
    assert_eq!(as_("bob-key-0123456789abcdef", 2).await.status, 200);
    upstream.next().await;
    assert_limited(
        &as_("alice-key-0123456789abcdef", 3).await,
        json!(3),
        "3600",
    );
}

#[tokio::test]
async fn methods_and_tools_decide_what_counts_and_batch_items_each_count() {
    let mut upstream = Upstream::ok().await;
    let rules = "rateLimits:\n  - name: writes\n    requests: 2\n    period: 1h\n    tools: [\"pha_*_create\"]\n  - name: reads\n    requests: 1\n    period: 1h\n    methods: [resources/read]\n";
    let sluice = Sluice::start(&config(upstream.addr, "", rules)).await;
    // Not a create: uncounted by `writes`, and `reads` counts resources/read only.
    for id in 1..=3 {
        assert_eq!(rpc(&sluice, &call(id, "pha_task_get")).await.status, 200);
        upstream.next().await;
    }
    // A batch of three creates against a budget of two: refused whole, nothing forwarded.
    let batch = format!(
        "[{},{},{}]",
        call(4, "pha_task_create"),
        call(5, "pha_paste_create"),
        call(6, "pha_task_create")
    );
    let reply = rpc(&sluice, &batch).await;
    assert_limited(&reply, Value::Null, "1800");
    assert!(!upstream.saw_any());
    // The batch's first two items took the budget.
    assert_limited(
        &rpc(&sluice, &call(7, "pha_task_create")).await,
        json!(7),
        "1800",
    );

    let read =
        json!({"jsonrpc":"2.0","id":8,"method":"resources/read","params":{"uri":"phab://T1"}})
            .to_string();
    assert_eq!(rpc(&sluice, &read).await.status, 200);
    upstream.next().await;
    assert_limited(&rpc(&sluice, &read).await, json!(8), "3600");
    let metric =
        |rule: &str| format!("sluice_rate_limited_total{{entry_point=\"main\",rule=\"{rule}\"}}");
    assert_eq!(sluice.metric(&metric("writes")).await, Some(2.0));
    assert_eq!(sluice.metric(&metric("reads")).await, Some(1.0));
}

#[tokio::test]
async fn budgets_survive_a_reload_that_keeps_the_rule() {
    let mut upstream = Upstream::ok().await;
    let limit = rule("calls", "    requests: 1\n    period: 1h\n");
    let sluice = Sluice::start(&config(upstream.addr, "", &limit)).await;
    assert_eq!(rpc(&sluice, &call(1, "x")).await.status, 200);
    upstream.next().await;
    assert_eq!(rpc(&sluice, &call(2, "x")).await.status, 429);

    // Another change (the body limit), the same rule: the spent budget stays spent.
    let applied = "sluice_config_reloads_total{result=\"applied\"}";
    sluice.write_config(&config(
        upstream.addr,
        "",
        &format!("maxBodyBytes: 4096\n{limit}"),
    ));
    eventually("the first reload", async || {
        sluice.metric(applied).await == Some(1.0)
    })
    .await;
    assert_eq!(rpc(&sluice, &call(3, "x")).await.status, 429);

    // A changed rule starts afresh.
    sluice.write_config(&config(
        upstream.addr,
        "",
        &rule("calls", "    requests: 2\n    period: 1h\n"),
    ));
    eventually("the second reload", async || {
        sluice.metric(applied).await == Some(2.0)
    })
    .await;
    assert_eq!(rpc(&sluice, &call(4, "x")).await.status, 200);
    upstream.next().await;
}
