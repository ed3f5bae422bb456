//! The controller and OAuth state on a claim: the claim applied, owned and pruned, the
//! Deployment's strategy moved between rolling and recreating (which an apply alone cannot
//! do), a user's claim never touched, and the server's discovery URLs in its status.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use controller_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Value, json};
use sluice_crds::McpServer;
use sluice_crds::conditions::{self, reasons};

const PUBLIC_URL: &str = "https://phab.example.com/ai";

/// Server `phab` in OAuth mode with `state`.
fn oauth_server(state: Value, replicas: i32) -> Value {
    let mut server = server("phab");
    server["spec"]["replicas"] = json!(replicas);
    server["spec"]["auth"] = json!({
        "mode": "oauth",
        "oauth": {
            "clientId": "PHID-OASC-abcdefghijklmnopqrst",
            "clientSecretRef": {"name": "phab-oauth", "key": "client-secret"},
            "publicUrl": PUBLIC_URL,
            "state": state,
        },
    });
    server
}

fn strategy(deployment: &Deployment) -> (Option<String>, bool) {
    let strategy = deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.clone())
        .unwrap_or_default();
    (strategy.type_, strategy.rolling_update.is_some())
}

/// The claim the pods' `oauth-state` volume names, if any.
fn mounted_claim(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "oauth-state")?
        .persistent_volume_claim
        .as_ref()
        .map(|c| c.claim_name.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_state_gets_its_claim_and_the_status_its_discovery() {
    let cluster = Cluster::start().await;
    cluster
        .apply::<k8s_openapi::api::core::v1::Secret>(secret("phab-oauth", "client-secret", "s3"))
        .await;
    let operator = Operator::start_default(&cluster);
    let server: McpServer = cluster
        .apply(oauth_server(json!({"storage": "persistent"}), 1))
        .await;

    let claim = cluster
        .wait_for::<PersistentVolumeClaim>("phab-oauth-state", "the state's claim", |_| true)
        .await;
    let spec = claim.spec.unwrap();
    assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"],
        Quantity("1Gi".into())
    );
    let owner = &claim.metadata.owner_references.unwrap()[0];
    assert_eq!(Some(&owner.uid), server.metadata.uid.as_ref());

    let deployment = cluster
        .wait_for::<Deployment>("phab", "the Deployment", |_| true)
        .await;
    assert_eq!(strategy(&deployment), (Some("Recreate".into()), false));
    assert_eq!(
        mounted_claim(&deployment).as_deref(),
        Some("phab-oauth-state")
    );

    let status = cluster
        .wait_for::<McpServer>("phab", "the discovery URLs", |s| {
            s.status.as_ref().is_some_and(|st| st.discovery.is_some())
        })
        .await
        .status
        .unwrap();
    assert_eq!(status.url.as_deref(), Some("http://phab.tools.svc/mcp"));
    let discovery = status.discovery.unwrap();
    assert_eq!(
        discovery.protected_resource.as_deref(),
        Some("http://phab.tools.svc/.well-known/oauth-protected-resource/mcp")
    );
    assert_eq!(
        discovery.authorization_server.as_deref(),
        Some("http://phab.tools.svc/.well-known/oauth-authorization-server")
    );
    assert_eq!(
        discovery.openid_configuration.as_deref(),
        Some("http://phab.tools.svc/.well-known/openid-configuration")
    );
    assert_eq!(
        discovery.redirect_uri.as_deref(),
        Some("https://phab.example.com/ai/auth/callback")
    );
    wait_quiet(&cluster, &operator).await;

    // Deleted with its server (owner reference), logins and all.
    cluster.delete::<McpServer>("phab").await;
    cluster
        .wait_gone::<PersistentVolumeClaim>("phab-oauth-state", "the claim collected")
        .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_storage_moves_the_claim_and_the_rollout_strategy() {
    let cluster = Cluster::start().await;
    let operator = Operator::start_default(&cluster);

    // Ephemeral first: the API server defaults a rolling update (and owns its parameters).
    cluster.apply::<McpServer>(oauth_server(json!({}), 1)).await;
    let deployment = cluster
        .wait_for::<Deployment>("phab", "the Deployment", |_| true)
        .await;
    assert_eq!(strategy(&deployment), (Some("RollingUpdate".into()), true));
    assert_eq!(mounted_claim(&deployment), None);

    // Persistent: an apply of Recreate alone would be refused with rollingUpdate still there.
    cluster
        .apply::<McpServer>(oauth_server(json!({"storage": "persistent"}), 1))
        .await;
    let deployment = cluster
        .wait_for::<Deployment>("phab", "a recreating Deployment on the claim", |d| {
            mounted_claim(d).is_some()
        })
        .await;
    assert_eq!(strategy(&deployment), (Some("Recreate".into()), false));
    cluster
        .wait_for::<PersistentVolumeClaim>("phab-oauth-state", "the claim", |_| true)
        .await;
    let server = cluster
        .wait_for::<McpServer>("phab", "a status of the new spec", |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.observed_generation == s.metadata.generation)
        })
        .await;
    assert_ne!(
        server_reason(&server, conditions::READY).as_deref(),
        Some(reasons::APPLY_FAILED),
        "{:#?}",
        server.status
    );

    // Shared with three replicas: a claim of its own (an access mode cannot change), the
    // one-pod claim pruned, rolling again.
    cluster
        .apply::<McpServer>(oauth_server(json!({"storage": "shared"}), 3))
        .await;
    cluster
        .wait_for::<PersistentVolumeClaim>("phab-oauth-state-shared", "the shared claim", |c| {
            c.spec.as_ref().and_then(|s| s.access_modes.clone())
                == Some(vec!["ReadWriteMany".into()])
        })
        .await;
    cluster
        .wait_gone::<PersistentVolumeClaim>("phab-oauth-state", "the one-pod claim pruned")
        .await;
    let deployment = cluster
        .wait_for::<Deployment>("phab", "a rolling Deployment again", |d| {
            strategy(d).0.as_deref() == Some("RollingUpdate")
        })
        .await;
    assert_eq!(
        mounted_claim(&deployment).as_deref(),
        Some("phab-oauth-state-shared")
    );

    // A claim of the user's: mounted, never written; the operator's own is pruned.
    let logins = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "phab-logins", "namespace": NS},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "2Gi"}},
        },
    });
    let users = cluster.apply::<PersistentVolumeClaim>(logins).await;
    cluster
        .apply::<McpServer>(oauth_server(
            json!({"storage": "shared", "claimName": "phab-logins"}),
            3,
        ))
        .await;
    cluster
        .wait_for::<Deployment>("phab", "the user's claim mounted", |d| {
            mounted_claim(d).as_deref() == Some("phab-logins")
        })
        .await;
    cluster
        .wait_gone::<PersistentVolumeClaim>("phab-oauth-state-shared", "the shared claim pruned")
        .await;

    // Back to ephemeral: nothing mounted, the user's claim still there as it was.
    cluster.apply::<McpServer>(oauth_server(json!({}), 1)).await;
    cluster
        .wait_for::<Deployment>("phab", "no claim mounted", |d| mounted_claim(d).is_none())
        .await;
    wait_quiet(&cluster, &operator).await;
    let still = cluster
        .get::<PersistentVolumeClaim>("phab-logins")
        .await
        .expect("the user's claim is never pruned");
    assert_eq!(
        still.metadata.resource_version, users.metadata.resource_version,
        "the operator never wrote the user's claim"
    );
    operator.stop().await;
}
