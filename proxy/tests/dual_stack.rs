//! IPv6: an entry point on the IPv6 wildcard (what the operator renders) serves callers over
//! IPv6 and IPv4 alike, and each is known by its own address — in `X-Forwarded-For`, in
//! budgets by `clientAddress`, and through a trusted proxy's `X-Forwarded-For` naming IPv6 or
//! IPv4-mapped addresses.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::net::{Ipv6Addr, SocketAddr};

use http::StatusCode;
use support::*;

const BUDGETED_CALL: &str =
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"budget_probe"}}"#;

fn dual_stack(upstream: SocketAddr, trusted: &str) -> String {
    config(
        upstream,
        "",
        &format!(
            "rateLimits:\n  - name: per-address\n    by: [clientAddress]\n    requests: 1\n    period: 1h\n    tools: [budget_probe]\n{trusted}"
        ),
    )
    .replace("    listen: 127.0.0.1:0\n", "    listen: \"[::]:0\"\n")
}

#[tokio::test]
async fn the_ipv6_wildcard_serves_both_families_each_by_its_own_address() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&dual_stack(upstream.addr, "")).await;
    let port = sluice.addr().port();
    assert_eq!(sluice.addr().ip(), Ipv6Addr::UNSPECIFIED);
    let over_v6 = format!("http://[::1]:{port}/mcp");
    let over_v4 = format!("http://127.0.0.1:{port}/mcp");

    // Each family's caller reaches the upstream, named by its own address: the IPv4 caller as
    // 127.0.0.1, not the ::ffff:127.0.0.1 the dual-stack socket reports.
    let reply = send(post(&over_v6).body(body(TOOLS_CALL)).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.next().await.headers["x-forwarded-for"], "::1");
    let reply = send(post(&over_v4).body(body(TOOLS_CALL)).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        upstream.next().await.headers["x-forwarded-for"],
        "127.0.0.1"
    );

    // Budgets by clientAddress: one each, so ::1 spending its own leaves 127.0.0.1's.
    let budgeted = |url: &str| {
        let url = url.to_owned();
        async move {
            send(post(&url).body(body(BUDGETED_CALL)).unwrap())
                .await
                .status
        }
    };
    assert_eq!(budgeted(&over_v6).await, StatusCode::OK);
    assert_eq!(budgeted(&over_v6).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(budgeted(&over_v4).await, StatusCode::OK);
    assert_eq!(budgeted(&over_v4).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_trusted_ipv6_proxy_names_ipv6_and_ipv4_mapped_callers() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&dual_stack(upstream.addr, "trustedProxies: [\"::1/128\"]")).await;
    let url = format!("http://[::1]:{}/mcp", sluice.addr().port());
    let through = |xff: &'static str| {
        let url = url.clone();
        async move {
            let request = post(&url).header("x-forwarded-for", xff);
            send(request.body(body(BUDGETED_CALL)).unwrap())
                .await
                .status
        }
    };
    // Two callers behind the proxy: an IPv6 one, and an IPv4 one the proxy wrote IPv4-mapped.
    assert_eq!(through("2001:db8::7").await, StatusCode::OK);
    let seen = upstream.next().await;
    assert_eq!(seen.headers["x-forwarded-for"], "2001:db8::7, ::1");
    assert_eq!(through("2001:db8::7").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(through("::ffff:10.1.2.3").await, StatusCode::OK);
    upstream.next().await;
    // The same caller written plainly is the same budget: spent.
    assert_eq!(through("10.1.2.3").await, StatusCode::TOO_MANY_REQUESTS);
}
