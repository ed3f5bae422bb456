//! Where Conduit's OAuth state lives (`spec.auth.oauth.state`): the claim the operator creates
//! or the one the user names, mounted into Conduit only, `FASTMCP_HOME` on it, and the rollout
//! strategy a one-pod volume needs.

mod render_fixtures;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use render_fixtures::*;
use serde_json::{Value, json};
use sluice_crds::McpServer;

const PUBLIC_URL: &str = "https://phab.example.com/ai";

fn oauth_server(state: Value) -> ServerBuilder {
    ServerBuilder::new("s")
        .oauth("oauth-client", Some(PUBLIC_URL))
        .set("auth.oauth.state", state)
}

fn claim(docs: &[Value], name: &str) -> PersistentVolumeClaim {
    find(docs, "PersistentVolumeClaim", name)
}

fn strategy_type(deployment: &Deployment) -> Option<String> {
    deployment.spec.as_ref()?.strategy.as_ref()?.type_.clone()
}

/// The claim a pod's volume `oauth-state` names, if it has one.
fn state_volume_claim(pod: &PodSpec) -> Option<String> {
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == "oauth-state")
        .map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .expect("a claim volume")
                .claim_name
                .clone()
        })
}

/// Checks the pod keeps the state on its claim: mounted read-write into Conduit only, at the
/// directory `FASTMCP_HOME` names, with the volume handed to the pod's group once.
fn assert_state_on_the_claim(pod: &PodSpec) {
    let conduit = container(pod, "conduit");
    assert_eq!(env(conduit, "FASTMCP_HOME"), Some("/var/lib/fastmcp"));
    let mount = conduit
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "oauth-state")
        .expect("Conduit mounts the state");
    assert_eq!(mount.mount_path, "/var/lib/fastmcp");
    assert_eq!(mount.read_only, None, "Conduit writes its state");
    let sidecar = container(pod, "sluice-proxy");
    assert!(
        sidecar
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.name != "oauth-state" && !m.mount_path.starts_with("/var/lib/fastmcp")),
        "the sidecar never sees the logins' tokens: {:?}",
        sidecar.volume_mounts
    );
    let security = pod.security_context.as_ref().expect("pod security context");
    assert_eq!(security.fs_group, Some(65532), "a fresh volume is writable");
    assert_eq!(
        security.fs_group_change_policy.as_deref(),
        Some("OnRootMismatch")
    );
}

#[test]
fn persistent_state_gets_a_one_pod_claim_and_recreating_rollouts() {
    let docs = rendered_documents(
        &[oauth_server(json!({"storage": "persistent"})).build()],
        &[],
    );

    let pvc = claim(&docs, "s-oauth-state");
    let spec = pvc.spec.clone().expect("spec");
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    assert_eq!(
        spec.resources.and_then(|r| r.requests).expect("requests")["storage"],
        Quantity("1Gi".into())
    );
    assert_eq!(spec.storage_class_name, None, "the cluster's default class");
    // Owned and labelled like the server's other objects: watched, pruned and deleted with it.
    let meta = &pvc.metadata;
    let labels = meta.labels.clone().expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "sluice-operator");
    assert_eq!(labels["sluice.dev/server"], "s");
    assert_eq!(labels["app.kubernetes.io/component"], "mcp-server");
    let owners = meta.owner_references.clone().expect("owner");
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].name.as_str()),
        ("McpServer", "s")
    );
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE));

    // Applied before the Deployment whose pods mount it.
    let position = |kind: &str| docs.iter().position(|d| d["kind"] == kind).unwrap();
    assert!(position("PersistentVolumeClaim") < position("Deployment"));

    let deployment = deployment(&docs, "s");
    assert_eq!(strategy_type(&deployment).as_deref(), Some("Recreate"));
    let pod = pod_of(&docs, "s");
    assert_eq!(state_volume_claim(&pod).as_deref(), Some("s-oauth-state"));
    assert_state_on_the_claim(&pod);
}

#[test]
fn shared_state_gets_a_claim_every_replica_mounts_and_rolling_updates() {
    let server = oauth_server(json!({
        "storage": "shared",
        "size": "5Gi",
        "storageClassName": "nfs-client",
    }))
    .set("replicas", json!(3))
    .build();
    let docs = rendered_documents(&[server], &[]);

    assert!(
        !has(&docs, "PersistentVolumeClaim", "s-oauth-state"),
        "only the shared claim"
    );
    let spec = claim(&docs, "s-oauth-state-shared").spec.expect("spec");
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteMany".to_string()]));
    assert_eq!(
        spec.resources.and_then(|r| r.requests).expect("requests")["storage"],
        Quantity("5Gi".into())
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("nfs-client"));

    let deployment = deployment(&docs, "s");
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(
        strategy_type(&deployment),
        None,
        "the default rolling update"
    );
    // No session affinity needed: any replica reads any login from the shared volume.
    assert_eq!(
        service(&docs, "s").spec.and_then(|s| s.session_affinity),
        None
    );
    let pod = pod_of(&docs, "s");
    assert_eq!(
        state_volume_claim(&pod).as_deref(),
        Some("s-oauth-state-shared")
    );
    assert_state_on_the_claim(&pod);
}

#[test]
fn a_named_claim_is_mounted_and_never_rendered() {
    for (storage, strategy) in [("persistent", Some("Recreate")), ("shared", None)] {
        let server = oauth_server(json!({"storage": storage, "claimName": "phab-logins"})).build();
        let docs = rendered_documents(&[server], &[]);
        assert!(
            of_kind(&docs, "PersistentVolumeClaim").is_empty(),
            "{storage}: the user's claim is not ours to write"
        );
        assert_eq!(
            strategy_type(&deployment(&docs, "s")).as_deref(),
            strategy,
            "{storage}"
        );
        let pod = pod_of(&docs, "s");
        assert_eq!(state_volume_claim(&pod).as_deref(), Some("phab-logins"));
        assert_state_on_the_claim(&pod);
    }
}

#[test]
fn ephemeral_state_renders_exactly_what_a_spec_without_state_does() {
    let without = ServerBuilder::new("s")
        .oauth("oauth-client", Some(PUBLIC_URL))
        .build();
    let ephemeral = oauth_server(json!({"storage": "ephemeral"})).build();
    let header_token = ServerBuilder::new("s").build();
    let stream = yaml(std::slice::from_ref(&without), &[]);
    assert_eq!(stream, yaml(&[ephemeral], &[]));

    for server in [without, header_token] {
        let docs = rendered_documents(std::slice::from_ref(&server), &[]);
        assert!(of_kind(&docs, "PersistentVolumeClaim").is_empty());
        assert_eq!(strategy_type(&deployment(&docs, "s")), None);
        let pod = pod_of(&docs, "s");
        assert_eq!(state_volume_claim(&pod), None);
        assert_eq!(
            env(container(&pod, "conduit"), "FASTMCP_HOME"),
            Some("/tmp/fastmcp")
        );
        let security = pod.security_context.expect("pod security context");
        assert_eq!(security.fs_group_change_policy, None);
    }
}

#[test]
fn the_claim_follows_the_server_not_a_sibling() {
    // Two servers side by side each get their own claim, named after themselves.
    let state = json!({"storage": "persistent"});
    let other: McpServer = ServerBuilder::new("t")
        .oauth("oauth-client", Some("https://other.example.com"))
        .set("auth.oauth.state", state.clone())
        .build();
    let docs = rendered_documents(&[oauth_server(state).build(), other], &[]);
    let names: Vec<&str> = of_kind(&docs, "PersistentVolumeClaim")
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["s-oauth-state", "t-oauth-state"]);
    assert_eq!(
        state_volume_claim(&pod_of(&docs, "t")).as_deref(),
        Some("t-oauth-state")
    );
}
