//! Deleting servers: owned objects go with them (owner references); the cluster-scoped
//! TokenReview binding goes through the finalizer, which only servers that need it carry.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use controller_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::Api;
use serde_json::json;
use sluice_crds::McpServer;
use sluice_operator::controller::FINALIZER;

fn token_review_server(name: &str) -> serde_json::Value {
    let mut spec = server(name);
    spec["spec"]["policy"] = json!({"authentication": {
        "mode": "serviceAccount",
        "serviceAccount": {"allowed": ["agents/*"]},
    }});
    spec
}

const BINDING: &str = "sluice-tools-bots-tokenreview";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_server_takes_its_objects_and_its_cluster_binding_along() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster
        .apply::<McpServer>(token_review_server("bots"))
        .await;
    let bindings: Api<ClusterRoleBinding> = Api::all(cluster.client.clone());
    let binding = eventually("the TokenReview binding", || async {
        bindings.get_opt(BINDING).await.ok().flatten()
    })
    .await
    .expect("the ClusterRoleBinding is created");
    assert_eq!(binding.role_ref.name, "system:auth-delegator");
    let server = cluster
        .wait_for::<McpServer>("bots", "the finalizer", |s| {
            s.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == FINALIZER)
        })
        .await;
    cluster
        .wait_for::<Deployment>("bots", "the Deployment", |_| true)
        .await;
    assert!(server.metadata.deletion_timestamp.is_none());

    cluster.delete::<McpServer>("bots").await;
    cluster
        .wait_gone::<McpServer>("bots", "the server gone")
        .await;
    let gone = eventually("the binding deleted", || async {
        matches!(bindings.get_opt(BINDING).await, Ok(None)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the ClusterRoleBinding outlived its server");
    cluster
        .wait_gone::<Deployment>("bots", "the Deployment collected")
        .await;
    cluster
        .wait_gone::<Service>("bots", "the Service collected")
        .await;
    cluster
        .wait_gone::<ConfigMap>("bots-sluice-proxy", "the sidecar config collected")
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_without_cluster_objects_carry_no_finalizer() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("plain")).await;
    cluster
        .wait_for::<McpServer>("plain", "a status", |s| s.status.is_some())
        .await;
    wait_quiet(&cluster, &operator).await;
    let plain = cluster.get::<McpServer>("plain").await.unwrap();
    assert!(plain.metadata.finalizers.unwrap_or_default().is_empty());
    // Deleting it needs no operator at all.
    operator.stop().await;
    cluster.delete::<McpServer>("plain").await;
    cluster
        .wait_gone::<McpServer>("plain", "deleted without the operator")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_token_review_prunes_the_binding() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster
        .apply::<McpServer>(token_review_server("bots"))
        .await;
    let bindings: Api<ClusterRoleBinding> = Api::all(cluster.client.clone());
    eventually("the binding", || async {
        bindings.get_opt(BINDING).await.ok().flatten()
    })
    .await
    .expect("the binding is created");

    let mut spec = server("bots");
    spec["spec"]["policy"] = json!({"authentication": {"mode": "phabricatorToken"}});
    cluster.apply::<McpServer>(spec).await;
    let gone = eventually("the binding pruned", || async {
        matches!(bindings.get_opt(BINDING).await, Ok(None)).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the binding outlived the policy that needed it"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_are_published_as_events() {
    use k8s_openapi::api::events::v1::Event;
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let mut spec = server("phab");
    spec["spec"]["phabricator"]["insecureSkipVerify"] = json!(true);
    cluster.apply::<McpServer>(spec).await;
    cluster
        .wait_for::<Deployment>("phab", "the Deployment", |_| true)
        .await;
    cluster
        .api
        .simulate_deployment_rollout(NS, "phab", 1)
        .unwrap();
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), NS);
    let reasons = eventually("the events", || async {
        let list = events.list(&Default::default()).await.ok()?;
        let reasons: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("phab"))
            .filter_map(|e| e.reason.clone())
            .collect();
        (reasons.iter().any(|r| r == "Available") && reasons.iter().any(|r| r == "Insecure"))
            .then_some(reasons)
    })
    .await
    .expect("Available and Insecure events");
    assert!(
        !reasons.iter().any(|r| r == "DeploymentUnavailable"),
        "{reasons:?}: a starting server is quiet"
    );
    let list = events.list(&Default::default()).await.unwrap();
    let insecure = list
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("Insecure"))
        .unwrap();
    assert_eq!(insecure.type_.as_deref(), Some("Warning"));
    assert_eq!(
        insecure.reporting_controller.as_deref(),
        Some(sluice_operator::controller::REPORTER)
    );
    operator.stop().await;
}
