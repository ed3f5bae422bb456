//! A `container` server under the controller: its Deployment runs the user's image, a Secret
//! its environment names is waited for and rolls the pods when it changes, and a route that
//! leaves its mode to Conduit's default is rejected with the field named; a stdio server runs
//! under the bridge.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use controller_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use sluice_crds::conditions::{self, reasons};
use sluice_crds::{McpRoute, McpServer};
use sluice_operator::render::RESTART_HASH_ANNOTATION;

fn restart_hash(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .map(|a| a[RESTART_HASH_ANNOTATION].clone())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_server_runs_its_image_and_follows_its_secrets() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster
        .apply::<McpServer>(json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "McpServer",
            "metadata": {"name": "everything", "namespace": NS},
            "spec": {
                "container": {
                    "image": "docker.io/mcp/everything:2026.8.31",
                    "args": ["streamableHttp"],
                    "env": [{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "upstream-api", "key": "token"}}}],
                    "envFrom": [{"secretRef": {"name": "extras", "optional": true}}],
                    "port": 3001,
                },
                "policy": {"authentication": {"mode": "none"}},
            },
        }))
        .await;
    let missing = cluster
        .wait_for::<McpServer>("everything", "SecretNotFound", |s| {
            server_reason(s, conditions::READY).as_deref() == Some(reasons::SECRET_NOT_FOUND)
        })
        .await;
    let message = server_condition(&missing, conditions::READY)
        .unwrap()
        .message;
    assert!(message.contains("upstream-api"), "{message}");
    assert!(!message.contains("extras"), "optional: {message}");

    let deployment = cluster
        .wait_for::<Deployment>("everything", "the Deployment", |_| true)
        .await;
    let pod = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    let server = &pod.containers[0];
    assert_eq!(server.name, "mcp-server");
    assert_eq!(
        server.image.as_deref(),
        Some("docker.io/mcp/everything:2026.8.31")
    );
    let first = restart_hash(&deployment);

    cluster
        .apply::<Secret>(secret("upstream-api", "token", "t0ken"))
        .await;
    let rolled = cluster
        .wait_for::<Deployment>("everything", "a new restart hash", |d| {
            restart_hash(d) != first
        })
        .await;
    cluster
        .apply::<Secret>(secret("upstream-api", "token", "rotated"))
        .await;
    cluster
        .wait_for::<Deployment>("everything", "another restart hash", |d| {
            restart_hash(d) != restart_hash(&rolled)
        })
        .await;

    // A route that names no mode: Conduit's default does not apply.
    cluster
        .apply::<McpRoute>(route("agents", "everything"))
        .await;
    let refused = cluster
        .wait_for::<McpRoute>("agents", "InvalidPolicy", |r| {
            route_reason(r, conditions::ACCEPTED).as_deref() == Some(reasons::INVALID_POLICY)
        })
        .await;
    let message = route_condition(&refused, conditions::ACCEPTED)
        .unwrap()
        .message;
    assert!(
        message.contains("spec.policy.authentication.mode")
            && message.contains("runs a container, not Conduit"),
        "{message}"
    );
    operator.stop().await;
}

/// A stdio server under the controller: the defaults of `stdio: {}` reach the bridge's
/// arguments, the bridge's installer is an init container, and once rolled out the operator
/// sends nothing more (the init container does not make it apply again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_runs_under_the_bridge_and_converges() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster
        .apply::<McpServer>(json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "McpServer",
            "metadata": {"name": "everything", "namespace": NS},
            "spec": {
                "container": {
                    "image": "docker.io/library/node:22-alpine",
                    "command": ["npx", "-y", "@modelcontextprotocol/server-everything"],
                    "args": ["stdio"],
                    "stdio": {},
                },
                "sessions": "stateful",
                "policy": {"authentication": {"mode": "none"}},
            },
        }))
        .await;
    let deployment = cluster
        .wait_for::<Deployment>("everything", "the Deployment", |_| true)
        .await;
    let pod = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    let init: Vec<String> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(init, ["sluice-bridge-install"]);
    let server = &pod.containers[0];
    assert_eq!(
        server.command.as_deref(),
        Some(&["/sluice/bridge/sluice-bridge".to_string()][..])
    );
    let args = server.args.clone().unwrap();
    assert_eq!(
        args[..8],
        [
            "run",
            "--port",
            "3000",
            "--max-processes",
            "16",
            "--idle-timeout",
            "30m",
            "--"
        ]
    );
    assert_quiet_once_rolled_out(&cluster, &operator, "everything").await;
    operator.stop().await;
}
