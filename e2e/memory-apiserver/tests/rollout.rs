//! Playing kube-controller-manager for Deployments.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use sluice_memory_apiserver::{Actor, MemoryApiServer, Verb};
use support::deployment_apply;

#[tokio::test]
async fn simulated_rollouts_set_deployment_status() {
    let api = MemoryApiServer::start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(api.client());
    deploys
        .patch(
            "web",
            &PatchParams::apply("op"),
            &Patch::Apply(deployment_apply("web", "conduit:1", 3)),
        )
        .await
        .expect("created");
    api.simulate_deployment_rollout("default", "web", 1)
        .expect("partial rollout");
    let status = deploys
        .get_status("web")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(
        (
            status.observed_generation,
            status.replicas,
            status.ready_replicas
        ),
        (Some(1), Some(3), Some(1))
    );
    let available = status.conditions.unwrap_or_default();
    assert_eq!(available[0].type_, "Available");
    assert_eq!(available[0].status, "False");

    api.simulate_deployment_rollout("default", "web", 3)
        .expect("complete");
    let status = deploys
        .get("web")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(status.available_replicas, Some(3));
    let conditions = status.conditions.unwrap_or_default();
    assert_eq!(
        (
            conditions[0].status.as_str(),
            conditions[1].reason.as_deref()
        ),
        ("True", Some("NewReplicaSetAvailable"))
    );

    api.clear_logs();
    api.simulate_deployment_rollout("default", "web", 3)
        .expect("again");
    assert!(
        api.writes().is_empty(),
        "an unchanged status writes nothing"
    );
    deploys
        .patch(
            "web",
            &PatchParams::apply("op"),
            &Patch::Apply(deployment_apply("web", "conduit:2", 3)),
        )
        .await
        .expect("new template");
    api.simulate_deployment_rollout("default", "web", 3)
        .expect("observes generation 2");
    let writes = api.writes();
    assert_eq!(writes.len(), 2);
    assert_eq!(
        (
            writes[1].verb,
            writes[1].actor,
            writes[1].subresource.as_deref()
        ),
        (Verb::Update, Actor::Simulation, Some("status"))
    );
    assert_eq!(
        deploys
            .get("web")
            .await
            .expect("get")
            .status
            .and_then(|s| s.observed_generation),
        Some(2)
    );
    let err = api
        .simulate_deployment_rollout("default", "missing", 1)
        .expect_err("no such Deployment");
    assert!(err.to_string().contains("404"), "{err}");
}
