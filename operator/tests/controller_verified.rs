//! The `Verified` condition and `status.mcp`: what a ready pod's sidecar says of Conduit,
//! read from its admin port (here a stand-in on loopback answering what sluice-proxy's
//! `GET /upstream` answers), written only when it changes.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use controller_support::*;
use serde_json::{Value, json};
use sluice_crds::McpServer;
use sluice_crds::conditions::{self, reasons};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A sidecar admin port that answers `GET /<namespace>/<name>/upstream` with `report` (or a
/// 404 for any other path), one request per connection as the operator asks.
async fn sidecar_stand_in(report: Arc<Mutex<Value>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let report = report.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let (status, body) = if head.starts_with("GET /tools/phab/upstream ") {
                    ("200 OK", report.lock().unwrap().to_string())
                } else {
                    ("404 Not Found", "not found\n".to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/{{namespace}}/{{name}}")
}

fn answering() -> Value {
    json!({
        "endpoint": "http://127.0.0.1:8000/mcp", "answering": true,
        "checkedAt": "2026-12-06T00:00:00Z", "lastAnsweredAt": "2026-12-06T00:00:00Z",
        "consecutiveMisses": 0, "lastError": null, "protocolVersion": "2025-06-18",
        "serverInfo": {"name": "Phabricator MCP Server", "version": "0.2.2"},
        "tools": 51, "behindOAuth": false,
    })
}

fn verified(server: &McpServer) -> Option<(String, String, String)> {
    server_condition(server, conditions::VERIFIED).map(|c| (c.status, c.reason, c.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_sidecars_report_becomes_verified_and_status_mcp() {
    let cluster = Cluster::start().await;
    let report = Arc::new(Mutex::new(answering()));
    let mut options = options();
    options.controller.sidecar_admin_url = Some(sidecar_stand_in(report.clone()).await);
    options.controller.verify_every = Duration::from_millis(300);
    let operator = Operator::start(&cluster, options);
    cluster.apply::<McpServer>(server("phab")).await;

    // No ready pod: nobody to ask.
    let server = cluster
        .wait_for::<McpServer>("phab", "Verified Unknown", |s| {
            verified(s).is_some_and(|(_, reason, _)| reason == reasons::NO_READY_POD)
        })
        .await;
    assert_eq!(verified(&server).unwrap().0, "Unknown");
    assert!(server.status.unwrap().mcp.is_none());

    // A ready pod: its sidecar's report.
    cluster
        .api
        .simulate_deployment_rollout(NS, "phab", 1)
        .unwrap();
    let server = cluster
        .wait_for::<McpServer>("phab", "Verified True", |s| {
            verified(s).is_some_and(|(status, _, _)| status == "True")
        })
        .await;
    let (_, reason, message) = verified(&server).unwrap();
    assert_eq!(reason, reasons::ANSWERS_MCP);
    assert_eq!(
        message,
        "answers MCP 2025-06-18 as Phabricator MCP Server 0.2.2 with 51 tools"
    );
    let mcp = server.status.unwrap().mcp.unwrap();
    assert_eq!(
        (
            mcp.protocol_version.as_deref(),
            mcp.name.as_deref(),
            mcp.version.as_deref(),
            mcp.tools
        ),
        (
            Some("2025-06-18"),
            Some("Phabricator MCP Server"),
            Some("0.2.2"),
            Some(51)
        )
    );

    // Asked again and again with the same answer: no status write.
    wait_quiet(&cluster, &operator).await;
    cluster.api.clear_logs();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    operator.wait_reconciles(3).await;
    let writes = cluster.operator_writes();
    assert!(writes.is_empty(), "{writes:#?}");

    // Conduit wedged: the sidecar says so, and so does the condition.
    *report.lock().unwrap() = json!({
        "endpoint": "http://127.0.0.1:8000/mcp", "answering": false,
        "consecutiveMisses": 3, "lastError": "no answer within 5s",
        "protocolVersion": "2025-06-18", "behindOAuth": false,
    });
    let server = cluster
        .wait_for::<McpServer>("phab", "Verified False", |s| {
            verified(s).is_some_and(|(status, _, _)| status == "False")
        })
        .await;
    let (_, reason, message) = verified(&server).unwrap();
    assert_eq!(reason, reasons::NOT_ANSWERING);
    assert!(message.contains("no answer within 5s"), "{message}");
    assert!(server.status.unwrap().mcp.is_none());

    // Behind OAuth: it answers, what it is stays unsaid.
    *report.lock().unwrap() =
        json!({"answering": true, "behindOAuth": true, "consecutiveMisses": 0});
    cluster
        .wait_for::<McpServer>("phab", "Verified behind OAuth", |s| {
            verified(s).is_some_and(|(status, reason, _)| {
                status == "True" && reason == reasons::ANSWERS_BEHIND_OAUTH
            })
        })
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_sidecar_is_unknown_and_says_what_to_allow() {
    let cluster = Cluster::start().await;
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/{{namespace}}/{{name}}",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let mut options = options();
    options.controller.sidecar_admin_url = Some(url);
    let operator = Operator::start(&cluster, options);
    cluster.apply::<McpServer>(server("phab")).await;
    cluster
        .wait_for::<k8s_openapi::api::apps::v1::Deployment>("phab", "the Deployment", |_| true)
        .await;
    cluster
        .api
        .simulate_deployment_rollout(NS, "phab", 1)
        .unwrap();
    let server = cluster
        .wait_for::<McpServer>("phab", "Verified unreachable", |s| {
            verified(s).is_some_and(|(_, reason, _)| reason == reasons::SIDECAR_UNREACHABLE)
        })
        .await;
    let (status, _, message) = verified(&server).unwrap();
    assert_eq!(status, "Unknown");
    assert!(message.contains("metricsFrom"), "{message}");
    operator.stop().await;
}
