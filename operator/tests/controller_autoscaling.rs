//! Autoscaling against an in-memory API server: with `spec.autoscaling` the replica count is
//! the autoscaler's and the operator never writes it; the McpServer's scale subresource scales
//! it like a Deployment.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use controller_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sluice_crds::McpServer;
use sluice_operator::controller::{FIELD_MANAGER, REPLICAS_HANDOVER_MANAGER};
use sluice_operator::render::{label, pod_selector};

/// The field manager the HPA controller writes the scale subresource with.
const HPA_MANAGER: &str = "horizontal-pod-autoscaler";

fn replicas_of(deployment: &Deployment) -> Option<i32> {
    deployment.spec.as_ref().and_then(|s| s.replicas)
}

/// The mutating requests sent to Deployments since the logs were last cleared, but for the
/// autoscaler's own (to the scale subresource): whether or not they changed anything.
fn deployment_requests_but_scale(cluster: &Cluster) -> Vec<String> {
    cluster
        .api
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.resource.as_deref() == Some("deployments"))
        .filter(|r| r.subresource.as_deref() != Some("scale"))
        .map(ToString::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaled_server_leaves_its_replicas_to_the_autoscaler() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let mut spec = server("phab");
    spec["spec"]["replicas"] = json!(3);
    cluster.apply::<McpServer>(spec.clone()).await;
    let deployment = cluster
        .wait_for::<Deployment>("phab", "three replicas", |d| replicas_of(d) == Some(3))
        .await;
    assert_eq!(replica_owners(&deployment), [FIELD_MANAGER]);

    // Autoscaling on, with the CPU request it scales by changed in the same edit (so the
    // Deployment is applied again): the operator writes an HPA and lets go of the count
    // without resetting it (server-side apply drops a field its only owner stops applying,
    // and the API server defaults the count to 1 pod).
    spec["spec"]["autoscaling"] = json!({"minReplicas": 2, "maxReplicas": 6});
    spec["spec"]["resources"] = json!({"requests": {"cpu": "250m", "memory": "128Mi"}});
    cluster.apply::<McpServer>(spec.clone()).await;
    let hpa = cluster
        .wait_for::<HorizontalPodAutoscaler>("phab", "the autoscaler", |_| true)
        .await;
    let hpa_spec = hpa.spec.unwrap();
    assert_eq!(hpa_spec.scale_target_ref.kind, "Deployment");
    assert_eq!(hpa_spec.scale_target_ref.name, "phab");
    assert_eq!((hpa_spec.min_replicas, hpa_spec.max_replicas), (Some(2), 6));
    let metric = &hpa_spec.metrics.unwrap()[0];
    assert_eq!(
        metric.resource.as_ref().unwrap().target.average_utilization,
        Some(80)
    );
    wait_quiet(&cluster, &operator).await;
    let deployment = cluster.get::<Deployment>("phab").await.unwrap();
    assert_eq!(replicas_of(&deployment), Some(3), "the count survived");
    assert_eq!(replica_owners(&deployment), [REPLICAS_HANDOVER_MANAGER]);
    assert!(
        cluster.get::<PodDisruptionBudget>("phab").await.is_some(),
        "minReplicas 2: a PDB"
    );

    // The autoscaler scales three times; the operator sends nothing to the Deployment.
    let deployments: Api<Deployment> = cluster.api();
    let by_hpa = PatchParams {
        field_manager: Some(HPA_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut writes = Vec::new();
    for count in [5, 6, 2] {
        cluster.api.clear_logs();
        deployments
            .patch_scale(
                "phab",
                &by_hpa,
                &Patch::Merge(json!({"spec": {"replicas": count}})),
            )
            .await
            .unwrap();
        // The change woke the operator (it watches its Deployments): let it reconcile a few
        // times over.
        operator.wait_reconciles(3).await;
        let deployment = cluster.get::<Deployment>("phab").await.unwrap();
        assert_eq!(replicas_of(&deployment), Some(count));
        assert_eq!(replica_owners(&deployment), [HPA_MANAGER]);
        writes.extend(deployment_requests_but_scale(&cluster));
    }
    println!(
        "HPA scaled the Deployment 3 times (5, 6, 2); requests the operator sent to it: {}",
        writes.len()
    );
    assert!(writes.is_empty(), "{writes:#?}");

    // A minimum of one: no PDB (it would block node drains with one pod).
    spec["spec"]["autoscaling"]["minReplicas"] = json!(1);
    cluster.apply::<McpServer>(spec.clone()).await;
    cluster
        .wait_gone::<PodDisruptionBudget>("phab", "the PDB of minReplicas 1")
        .await;

    // Autoscaling off: the HPA goes and spec.replicas is the operator's again.
    spec["spec"].as_object_mut().unwrap().remove("autoscaling");
    cluster.apply::<McpServer>(spec).await;
    cluster
        .wait_gone::<HorizontalPodAutoscaler>("phab", "the autoscaler")
        .await;
    let deployment = cluster
        .wait_for::<Deployment>("phab", "spec.replicas again", |d| replicas_of(d) == Some(3))
        .await;
    assert!(replica_owners(&deployment).contains(&FIELD_MANAGER.to_string()));
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_subresource_scales_a_server() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("phab")).await;
    cluster
        .wait_for::<McpServer>("phab", "a status with a selector", |s| {
            s.status.as_ref().is_some_and(|st| st.selector.is_some())
        })
        .await;

    // What `kubectl scale mcps phab --replicas 2` does.
    let servers: Api<McpServer> = cluster.api();
    let by_kubectl = PatchParams {
        field_manager: Some("kubectl".into()),
        ..PatchParams::default()
    };
    let scale = servers
        .patch_scale(
            "phab",
            &by_kubectl,
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    cluster
        .wait_for::<Deployment>("phab", "two replicas", |d| replicas_of(d) == Some(2))
        .await;
    cluster
        .api
        .simulate_deployment_rollout(NS, "phab", 2)
        .unwrap();
    cluster
        .wait_for::<McpServer>("phab", "two pods in status", |s| {
            s.status.as_ref().and_then(|st| st.replicas) == Some(2)
        })
        .await;

    // An HPA or KEDA aimed at the McpServer reads the pods' selector from its scale.
    let scale = servers.get_scale("phab").await.unwrap();
    let status = scale.status.unwrap();
    assert_eq!(status.replicas, 2);
    let selector = status.selector.unwrap();
    assert_eq!(selector, pod_selector("phab"));
    assert!(selector.contains(&format!("{}=phab", label::INSTANCE)));
    let deployment = cluster.get::<Deployment>("phab").await.unwrap();
    let labels = deployment
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    for term in selector.split(',') {
        let (key, value) = term.split_once('=').unwrap();
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{term}");
    }
    operator.stop().await;
}
