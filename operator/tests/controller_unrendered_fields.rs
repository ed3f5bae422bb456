//! A field the operator stops rendering leaves the live object: server-side apply removes a
//! field its applier owned and no longer applies, so the operator must send the apply even
//! when the live object still holds every field it renders. And once converged, it still
//! sends nothing.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use controller_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodSpec, Service};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;
use sluice_crds::conditions::{self, reasons};
use sluice_crds::{McpRoute, McpServer};
use sluice_operator::controller::{FIELD_MANAGER, REPLICAS_HANDOVER_MANAGER};

fn pod(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .unwrap()
}

fn template_labels_and_annotations(deployment: &Deployment) -> (Vec<String>, Vec<String>) {
    let meta = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref())
        .unwrap();
    let keys = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.iter().flatten().map(|(k, _)| k.clone()).collect()
    };
    (keys(&meta.labels), keys(&meta.annotations))
}

fn conduit_cpu_limit(deployment: &Deployment) -> Option<String> {
    let conduit = pod(deployment)
        .containers
        .iter()
        .find(|c| c.name == "conduit")
        .unwrap();
    let limits = conduit.resources.as_ref()?.limits.as_ref()?;
    limits.get("cpu").map(|q| q.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_overrides_a_server_no_longer_sets_leave_its_deployment() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let plain = server("phab");
    let mut overridden = plain.clone();
    overridden["spec"]["pod"] = json!({
        "tolerations": [{"key": "a", "operator": "Exists"}],
        "nodeSelector": {"disk": "ssd"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]},
            ]}],
        }}},
        "labels": {"tier": "mcp"},
        "annotations": {"team": "tools"},
    });
    overridden["spec"]["resources"] = json!({"limits": {"cpu": "1", "memory": "1Gi"}});
    cluster.apply::<McpServer>(overridden).await;
    let applied = cluster
        .wait_for::<Deployment>("phab", "the pod overrides", |d| {
            let pod = pod(d);
            pod.tolerations.is_some() && pod.node_selector.is_some() && pod.affinity.is_some()
        })
        .await;
    let (labels, annotations) = template_labels_and_annotations(&applied);
    assert!(labels.contains(&"tier".to_string()), "{labels:?}");
    assert!(annotations.contains(&"team".to_string()), "{annotations:?}");
    assert_eq!(conduit_cpu_limit(&applied).as_deref(), Some("1"));
    wait_quiet(&cluster, &operator).await;

    // The user takes them out again (the memory limit stays): so does the Deployment.
    let mut plain = plain;
    plain["spec"]["resources"] = json!({"limits": {"memory": "1Gi"}});
    cluster.apply::<McpServer>(plain).await;
    let cleared = cluster
        .wait_for::<Deployment>("phab", "the pod overrides removed", |d| {
            let pod = pod(d);
            let (labels, annotations) = template_labels_and_annotations(d);
            pod.tolerations.is_none()
                && pod.node_selector.is_none()
                && pod.affinity.is_none()
                && !labels.contains(&"tier".to_string())
                && !annotations.contains(&"team".to_string())
                && conduit_cpu_limit(d).is_none()
        })
        .await;
    let (labels, annotations) = template_labels_and_annotations(&cleared);
    assert!(
        labels.contains(&"app.kubernetes.io/managed-by".to_string()),
        "{labels:?}"
    );
    assert!(
        annotations.contains(&sluice_operator::render::RESTART_HASH_ANNOTATION.to_string()),
        "{annotations:?}"
    );

    // And the rule that sent those applies does not send any once converged.
    assert_quiet_once_rolled_out(&cluster, &operator, "phab").await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_affinity_back_to_the_default_leaves_every_service() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let plain = server("phab");
    let mut sticky = plain.clone();
    sticky["spec"]["sessionAffinity"] = json!("ClientIP");
    cluster.apply::<McpServer>(sticky).await;
    cluster.apply::<McpRoute>(route("bots", "phab")).await;
    let affinity = |s: &Service| s.spec.as_ref().and_then(|s| s.session_affinity.clone());
    for name in ["phab", "bots"] {
        cluster
            .wait_for::<Service>(name, "ClientIP affinity", |s| {
                affinity(s).as_deref() == Some("ClientIP")
            })
            .await;
    }
    wait_quiet(&cluster, &operator).await;

    // Back to the default: the operator renders no affinity, and the Services drop ClientIP
    // (a real API server defaults the field to None again).
    cluster.apply::<McpServer>(plain).await;
    for name in ["phab", "bots"] {
        cluster
            .wait_for::<Service>(name, "ClientIP affinity removed", |s| {
                affinity(s).as_deref() != Some("ClientIP")
            })
            .await;
    }

    assert_quiet_once_rolled_out(&cluster, &operator, "phab").await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotation_a_route_no_longer_sets_leaves_its_ingress() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("phab")).await;
    let plain = exposed(route("public", "phab"), "phab.example.com", "/ai");
    let mut annotated = plain.clone();
    annotated["spec"]["expose"]["ingress"]["annotations"] =
        json!({"nginx.ingress.kubernetes.io/proxy-body-size": "8m"});
    cluster.apply::<McpRoute>(annotated).await;
    cluster
        .wait_for::<McpRoute>("public", "the route programmed", |r| {
            route_reason(r, conditions::PROGRAMMED).as_deref() == Some(reasons::PROGRAMMED)
        })
        .await;
    let annotated = |i: &Ingress| {
        i.metadata
            .annotations
            .iter()
            .flatten()
            .any(|(key, _)| key == "nginx.ingress.kubernetes.io/proxy-body-size")
    };
    cluster
        .wait_for::<Ingress>("public", "the annotation", annotated)
        .await;
    wait_quiet(&cluster, &operator).await;

    cluster.apply::<McpRoute>(plain).await;
    let cleared = cluster
        .wait_for::<Ingress>("public", "the annotation removed", |i| !annotated(i))
        .await;
    assert_eq!(
        cleared.spec.unwrap().ingress_class_name.as_deref(),
        Some("nginx"),
        "the rest of the Ingress stays"
    );

    assert_quiet_once_rolled_out(&cluster, &operator, "phab").await;
    operator.stop().await;
}

/// Autoscaling switched on, nothing else changed: the Deployment is rendered without
/// `spec.replicas`, which the operator still owns. The count is handed over (kept, under
/// another field manager) and the operator's apply lets go of it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_alone_makes_the_operator_let_go_of_the_replicas() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let mut spec = server("phab");
    spec["spec"]["replicas"] = json!(3);
    cluster.apply::<McpServer>(spec.clone()).await;
    let deployment = cluster
        .wait_for::<Deployment>("phab", "three replicas", |d| {
            d.spec.as_ref().and_then(|s| s.replicas) == Some(3)
        })
        .await;
    assert_eq!(replica_owners(&deployment), [FIELD_MANAGER]);
    wait_quiet(&cluster, &operator).await;

    spec["spec"]["autoscaling"] = json!({"minReplicas": 2, "maxReplicas": 6});
    cluster.apply::<McpServer>(spec).await;
    let handed_over = cluster
        .wait_for::<Deployment>("phab", "the replicas let go of", |d| {
            replica_owners(d) == [REPLICAS_HANDOVER_MANAGER]
        })
        .await;
    assert_eq!(
        handed_over.spec.and_then(|s| s.replicas),
        Some(3),
        "the count survived"
    );

    cluster
        .api
        .simulate_deployment_rollout(NS, "phab", 3)
        .unwrap();
    let (writes, mutating) = requests_once_converged(&cluster, &operator).await;
    assert!(writes.is_empty(), "{writes:#?}");
    assert!(mutating.is_empty(), "{mutating:#?}");
    operator.stop().await;
}
