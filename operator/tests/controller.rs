//! The controller against an in-memory API server: what a server and its routes become, how
//! they change, and that a converged operator writes nothing.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use controller_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sluice_crds::conditions::{self, reasons};
use sluice_crds::{McpRoute, McpServer};
use sluice_memory_apiserver::Verb;
use sluice_operator::render::RESTART_HASH_ANNOTATION;
use sluice_operator::render::{MANAGED_BY, label};

fn is_ours(meta: &kube::api::ObjectMeta, server: &McpServer) -> bool {
    let labels = meta.labels.clone().unwrap_or_default();
    let owner = meta.owner_references.clone().unwrap_or_default();
    labels.get(label::MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
        && labels.get(label::SERVER) == server.metadata.name.as_ref()
        && owner
            .iter()
            .any(|o| Some(&o.uid) == server.metadata.uid.as_ref())
}

fn config_of(map: &ConfigMap) -> String {
    map.data.as_ref().unwrap()["config.yaml"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_server_gets_its_objects_and_a_status() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let server: McpServer = cluster.apply(server("phab")).await;

    let status = cluster
        .wait_for::<McpServer>("phab", "the first status", |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.observed_generation == s.metadata.generation)
        })
        .await;
    let status = status.status.unwrap();
    assert_eq!(status.url.as_deref(), Some("http://phab.tools.svc/mcp"));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, reasons::DEPLOYMENT_UNAVAILABLE);

    for meta in [
        cluster
            .get::<ServiceAccount>("phab")
            .await
            .unwrap()
            .metadata,
        cluster
            .get::<ConfigMap>("phab-sluice-proxy")
            .await
            .unwrap()
            .metadata,
        cluster.get::<Service>("phab").await.unwrap().metadata,
        cluster.get::<Deployment>("phab").await.unwrap().metadata,
        cluster.get::<NetworkPolicy>("phab").await.unwrap().metadata,
    ] {
        assert!(is_ours(&meta, &server), "{meta:#?}");
    }
    assert!(
        cluster.get::<PodDisruptionBudget>("phab").await.is_none(),
        "one replica: no PDB"
    );

    // The Deployment becomes ready: so does the server.
    cluster
        .api
        .simulate_deployment_rollout(NS, "phab", 1)
        .unwrap();
    let ready = cluster
        .wait_for::<McpServer>("phab", "Ready", |s| {
            server_reason(s, conditions::READY).as_deref() == Some(reasons::AVAILABLE)
        })
        .await;
    let status = ready.status.unwrap();
    assert_eq!((status.replicas, status.ready_replicas), (Some(1), Some(1)));
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::PROGRESSING)
        .unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", reasons::ROLLED_OUT)
    );
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::DEGRADED)
        .unwrap();
    assert_eq!(degraded.reason, reasons::AS_EXPECTED);

    // Every write was a server-side apply or a status write by the one field manager.
    let writes = cluster.operator_writes();
    assert!(!writes.is_empty());
    assert!(
        writes
            .iter()
            .all(|w| matches!(w.verb, Verb::Create | Verb::Apply)),
        "{writes:#?}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_operator_writes_nothing() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("phab")).await;
    cluster
        .apply::<McpRoute>(exposed(route("public", "phab"), "phab.example.com", "/ai"))
        .await;
    cluster
        .wait_for::<McpRoute>("public", "the route accepted", |r| {
            route_reason(r, conditions::PROGRAMMED).as_deref() == Some(reasons::PROGRAMMED)
        })
        .await;
    cluster
        .api
        .simulate_deployment_rollout(NS, "phab", 1)
        .unwrap();

    // Several more reconciles of everything (the resync is one second): not one write.
    let (writes, mutating) = requests_once_converged(&cluster, &operator).await;
    assert!(writes.is_empty(), "{writes:#?}");
    // Not even a request that would have changed nothing: the live objects already hold
    // everything, so no apply is sent at all.
    assert!(mutating.is_empty(), "{mutating:#?}");
    operator.stop().await;
}

/// The same with quantities a real API server stores in another spelling (`0.5` as `500m`,
/// `1024Mi` as `1Gi`), as the in-memory one now does too: the operator compares quantities by
/// amount, so a converged server still costs no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_operator_writes_nothing_when_the_api_server_respells_quantities() {
    let cluster = Cluster::start().await;
    cluster
        .apply::<Secret>(secret("phab-oauth", "client-secret", "s3"))
        .await;
    let operator = Operator::start_default(&cluster);
    let mut spec = server("phab");
    let resources = json!({
        "requests": {"cpu": "0.5", "memory": "1024Mi"},
        "limits": {"cpu": "1000m", "memory": "1024Mi"},
    });
    spec["spec"]["resources"] = resources.clone();
    spec["spec"]["proxy"] = json!({"resources": resources});
    spec["spec"]["auth"] = json!({
        "mode": "oauth",
        "oauth": {
            "clientId": "PHID-OASC-abcdefghijklmnopqrst",
            "clientSecretRef": {"name": "phab-oauth", "key": "client-secret"},
            "publicUrl": "https://phab.example.com/ai",
            "state": {"storage": "persistent", "size": "1024Mi"},
        },
    });
    cluster.apply::<McpServer>(spec).await;
    let claim = cluster
        .wait_for::<PersistentVolumeClaim>("phab-oauth-state", "the state's claim", |_| true)
        .await;
    cluster
        .wait_for::<Deployment>("phab", "the Deployment", |_| true)
        .await;
    cluster
        .api
        .simulate_deployment_rollout(NS, "phab", 1)
        .unwrap();

    let (writes, mutating) = requests_once_converged(&cluster, &operator).await;
    // Quoted in notes ("0 writes for cpu: 0.5"): run with --nocapture to see it.
    println!(
        "mutating requests once converged (cpu 0.5, 1000m; memory 1024Mi): {}",
        mutating.len()
    );
    assert!(writes.is_empty(), "{writes:#?}");
    assert!(mutating.is_empty(), "{mutating:#?}");

    // The live objects do hold the other spelling: without it this test would prove nothing.
    let pod = cluster
        .get::<Deployment>("phab")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    for container in &pod.containers {
        assert_eq!(
            serde_json::to_value(&container.resources).unwrap(),
            json!({"requests": {"cpu": "500m", "memory": "1Gi"},
                   "limits": {"cpu": "1", "memory": "1Gi"}}),
            "{}",
            container.name
        );
    }
    assert_eq!(
        claim.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "1Gi"
    );
    operator.stop().await;
}

/// An autoscaler's in-flight target of 1000 is stored as `1k`: a converged server with one
/// still costs no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converged_operator_writes_nothing_when_the_api_server_respells_an_autoscaler_target() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let mut spec = server("phab");
    spec["spec"]["autoscaling"] =
        json!({"minReplicas": 1, "maxReplicas": 3, "targetInFlightRequests": 1000});
    cluster.apply::<McpServer>(spec).await;
    cluster
        .wait_for::<HorizontalPodAutoscaler>("phab", "the autoscaler", |_| true)
        .await;
    assert_quiet_once_rolled_out(&cluster, &operator, "phab").await;
    let autoscaler = cluster
        .get::<HorizontalPodAutoscaler>("phab")
        .await
        .unwrap();
    let target = serde_json::to_value(autoscaler.spec.unwrap().metrics).unwrap();
    assert_eq!(
        target[0]["pods"]["target"]["averageValue"], "1k",
        "{target}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_above_one_add_a_pdb_and_back_to_one_prune_it() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let mut spec = server("phab");
    cluster.apply::<McpServer>(spec.clone()).await;
    cluster
        .wait_for::<Deployment>("phab", "the Deployment", |_| true)
        .await;

    spec["spec"]["replicas"] = json!(3);
    cluster.apply::<McpServer>(spec.clone()).await;
    let pdb = cluster
        .wait_for::<PodDisruptionBudget>("phab", "the PDB", |_| true)
        .await;
    assert_eq!(
        pdb.spec.unwrap().max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    cluster
        .wait_for::<Deployment>("phab", "three replicas", |d| {
            d.spec.as_ref().and_then(|s| s.replicas) == Some(3)
        })
        .await;

    spec["spec"]["replicas"] = json!(1);
    cluster.apply::<McpServer>(spec).await;
    cluster
        .wait_gone::<PodDisruptionBudget>("phab", "the PDB pruned")
        .await;
    // Deletes carry no field manager; the test deleted nothing, so these are the operator's.
    let deletes: Vec<_> = cluster
        .api
        .writes()
        .into_iter()
        .filter(|w| w.verb == Verb::Delete && w.actor == sluice_memory_apiserver::Actor::Client)
        .collect();
    assert_eq!(deletes.len(), 1, "only the PDB: {deletes:#?}");
    assert_eq!(deletes[0].kind, "PodDisruptionBudget");
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_leaves_objects_without_the_operators_labels_alone() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let server: McpServer = cluster.apply(server("phab")).await;
    cluster
        .wait_for::<Deployment>("phab", "the Deployment", |_| true)
        .await;
    // A PDB with the server's name and owner, but another manager's labels: not ours to prune.
    let owner = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "McpServer", "name": "phab",
        "uid": server.metadata.uid.clone().unwrap(), "controller": true,
    });
    cluster
        .apply::<PodDisruptionBudget>(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "phab", "namespace": NS,
                         "labels": {"sluice.dev/server": "phab", "app.kubernetes.io/managed-by": "someone-else"},
                         "ownerReferences": [owner]},
            "spec": {"maxUnavailable": 1},
        }))
        .await;
    wait_quiet(&cluster, &operator).await;
    assert!(cluster.get::<PodDisruptionBudget>("phab").await.is_some());
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_undone() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("phab")).await;
    let deployment = cluster
        .wait_for::<Deployment>("phab", "the Deployment", |_| true)
        .await;
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .clone()
    };
    let original = image(&deployment);

    // Someone edits the Deployment with another field manager.
    let edit = json!({"spec": {"template": {"spec": {"containers": [
        {"name": deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].name, "image": "evil:latest"}
    ]}}}});
    cluster
        .api::<Deployment>()
        .patch(
            "phab",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..PatchParams::default()
            },
            &Patch::Strategic(&edit),
        )
        .await
        .unwrap();
    cluster
        .wait_for::<Deployment>("phab", "the image restored", |d| image(d) == original)
        .await;

    // Someone deletes it: it comes back.
    let uid = deployment.metadata.uid.clone();
    cluster.delete::<Deployment>("phab").await;
    let recreated = cluster
        .wait_for::<Deployment>("phab", "the Deployment recreated", |d| {
            d.metadata.uid != uid
        })
        .await;
    assert_eq!(image(&recreated), original);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_come_and_go_with_their_config_service_and_ingress() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster.apply::<McpServer>(server("phab")).await;
    let before = cluster
        .wait_for::<ConfigMap>("phab-sluice-proxy", "the sidecar config", |_| true)
        .await;
    assert!(
        !config_of(&before).contains("8081"),
        "{}",
        config_of(&before)
    );

    cluster
        .apply::<McpRoute>(exposed(route("public", "phab"), "phab.example.com", "/ai"))
        .await;
    let programmed = cluster
        .wait_for::<McpRoute>("public", "the route programmed", |r| {
            route_reason(r, conditions::PROGRAMMED).as_deref() == Some(reasons::PROGRAMMED)
        })
        .await;
    let status = programmed.status.clone().unwrap();
    assert_eq!(status.listener_port, Some(8081));
    assert_eq!(
        status.url.as_deref(),
        Some("https://phab.example.com/ai/mcp")
    );
    assert_eq!(
        status.internal_url.as_deref(),
        Some("http://public.tools.svc/ai/mcp")
    );
    assert_eq!(status.observed_generation, programmed.metadata.generation);
    let with_route = cluster
        .wait_for::<ConfigMap>("phab-sluice-proxy", "the route in the config", |m| {
            config_of(m).contains("8081")
        })
        .await;
    assert_ne!(config_of(&with_route), config_of(&before));
    let service = cluster.get::<Service>("public").await.unwrap();
    let port = &service.spec.unwrap().ports.unwrap()[0];
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8081))
    );
    cluster
        .wait_for::<Ingress>("public", "the Ingress", |_| true)
        .await;

    // Exposure removed: the Ingress goes, the Service stays.
    cluster.apply::<McpRoute>(route("public", "phab")).await;
    cluster
        .wait_gone::<Ingress>("public", "the Ingress pruned")
        .await;
    assert!(cluster.get::<Service>("public").await.is_some());
    let kept = cluster
        .wait_for::<McpRoute>("public", "the in-cluster URL", |r| {
            r.status.as_ref().and_then(|s| s.url.as_deref()) == Some("http://public.tools.svc/mcp")
        })
        .await;
    assert_eq!(
        kept.status.unwrap().listener_port,
        Some(8081),
        "the port is kept"
    );

    // Route deleted: its Service goes (owned by the route), the config forgets it.
    cluster.delete::<McpRoute>("public").await;
    cluster
        .wait_gone::<Service>("public", "the route's Service")
        .await;
    let after = cluster
        .wait_for::<ConfigMap>("phab-sluice-proxy", "the route out of the config", |m| {
            !config_of(m).contains("8081")
        })
        .await;
    assert_eq!(config_of(&after), config_of(&before));
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_reported_and_its_creation_rolls_the_pods() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let mut spec = server("phab");
    spec["spec"]["auth"] = json!({"mode": "oauth", "oauth": {
        "clientId": "PHID-OASC-abcdefghijklmnopqrst",
        "clientSecretRef": {"name": "phab-oauth", "key": "client-secret"},
        "publicUrl": "https://phab.example.com/ai",
    }});
    spec["spec"]["policy"] = json!({"authentication": {"mode": "oauth"}});
    cluster.apply::<McpServer>(spec).await;
    let missing = cluster
        .wait_for::<McpServer>("phab", "SecretNotFound", |s| {
            server_reason(s, conditions::READY).as_deref() == Some(reasons::SECRET_NOT_FOUND)
        })
        .await;
    let message = server_condition(&missing, conditions::READY)
        .unwrap()
        .message;
    assert!(message.contains("phab-oauth"), "{message}");
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[RESTART_HASH_ANNOTATION]
            .clone()
    };
    let first = hash(
        &cluster
            .wait_for::<Deployment>("phab", "the Deployment", |_| true)
            .await,
    );

    cluster
        .apply::<k8s_openapi::api::core::v1::Secret>(secret(
            "phab-oauth",
            "client-secret",
            "s3cret",
        ))
        .await;
    let rolled = cluster
        .wait_for::<Deployment>("phab", "a new restart hash", |d| hash(d) != first)
        .await;
    cluster
        .api
        .simulate_deployment_rollout(NS, "phab", 1)
        .unwrap();
    cluster
        .wait_for::<McpServer>("phab", "Ready", |s| {
            server_reason(s, conditions::READY).as_deref() == Some(reasons::AVAILABLE)
        })
        .await;

    // A new secret value (a new resourceVersion) rolls the pods again.
    cluster
        .apply::<k8s_openapi::api::core::v1::Secret>(secret(
            "phab-oauth",
            "client-secret",
            "rotated",
        ))
        .await;
    cluster
        .wait_for::<Deployment>("phab", "another restart hash", |d| hash(d) != hash(&rolled))
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transition_times_stay_while_a_condition_holds() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    let mut spec = server("phab");
    cluster.apply::<McpServer>(spec.clone()).await;
    let first = cluster
        .wait_for::<McpServer>("phab", "a status", |s| {
            server_condition(s, conditions::READY).is_some()
        })
        .await;
    let ready_at = server_condition(&first, conditions::READY)
        .unwrap()
        .last_transition_time;

    // A new generation that changes no condition's status: the times stay. (Condition
    // times have second precision: the next status is written a second later.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    spec["spec"]["proxy"] = json!({"logLevel": "debug"});
    cluster.apply::<McpServer>(spec.clone()).await;
    let second = cluster
        .wait_for::<McpServer>("phab", "the new generation observed", |s| {
            s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
                && s.metadata.generation > first.metadata.generation
        })
        .await;
    assert_eq!(
        server_condition(&second, conditions::READY)
            .unwrap()
            .last_transition_time,
        ready_at
    );
    assert_eq!(
        server_condition(&second, conditions::READY)
            .unwrap()
            .observed_generation,
        second.metadata.generation
    );

    // Insecure TLS: Degraded turns true, with a new transition time; Ready's stays.
    spec["spec"]["phabricator"]["insecureSkipVerify"] = json!(true);
    cluster.apply::<McpServer>(spec).await;
    let insecure = cluster
        .wait_for::<McpServer>("phab", "Degraded Insecure", |s| {
            server_reason(s, conditions::DEGRADED).as_deref() == Some(reasons::INSECURE)
        })
        .await;
    let degraded = server_condition(&insecure, conditions::DEGRADED).unwrap();
    assert_eq!(degraded.status, "True");
    assert_eq!(
        server_condition(&insecure, conditions::READY)
            .unwrap()
            .last_transition_time,
        ready_at
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_sidecar_reloads_does_not_roll_the_pods() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);
    cluster
        .apply::<k8s_openapi::api::core::v1::Secret>(secret("bot-token", "token", "one"))
        .await;
    cluster.apply::<McpServer>(server("phab")).await;
    let mut bots = route("bots", "phab");
    bots["spec"]["policy"] =
        json!({"upstreamToken": {"secretKeyRef": {"name": "bot-token", "key": "token"}}});
    cluster.apply::<McpRoute>(bots).await;
    cluster
        .wait_for::<McpRoute>("bots", "the route programmed", |r| {
            route_reason(r, conditions::PROGRAMMED).as_deref() == Some(reasons::PROGRAMMED)
        })
        .await;
    wait_quiet(&cluster, &operator).await;
    let before = cluster.get::<Deployment>("phab").await.unwrap();

    cluster.api.clear_logs();
    cluster
        .apply::<k8s_openapi::api::core::v1::Secret>(secret("bot-token", "token", "two"))
        .await;
    // Reconciles after the rotation (the resync is one second) see the new version and change
    // nothing: the sidecar re-reads the mounted file.
    operator.wait_reconciles(2).await;
    let after = cluster.get::<Deployment>("phab").await.unwrap();
    assert_eq!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
    let writes = cluster.operator_writes();
    assert!(writes.is_empty(), "{writes:#?}");
    operator.stop().await;
}
