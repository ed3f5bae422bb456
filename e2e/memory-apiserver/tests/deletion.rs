//! Deletion: finalizers (including kube-runtime's finalizer helper), garbage collection of
//! dependents, orphan and foreground propagation, namespaces.

mod support;

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use serde_json::json;
use sluice_memory_apiserver::{Actor, MemoryApiServer, Verb};
use support::{Cm, api_error, deployment, mcp_server, mcp_server_resource, owner_ref, within};

#[tokio::test]
async fn finalizers_hold_the_object_until_the_last_one_goes() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let created = cms
        .create(
            &PostParams::default(),
            &Cm::named("held")
                .finalizer("sluice.dev/cleanup")
                .finalizer("other.dev/x")
                .build(),
        )
        .await
        .expect("created");
    let rv = created.metadata.resource_version.clone().expect("rv");
    let marked = cms
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let marked = marked.left().expect("still there: the object comes back");
    assert!(marked.metadata.deletion_timestamp.is_some());
    // Deleting again changes nothing.
    let again = cms
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete again")
        .left()
        .expect("object");
    assert_eq!(
        again.metadata.resource_version,
        marked.metadata.resource_version
    );
    // No new finalizers while deleting.
    let add = Patch::Json::<()>(
        serde_json::from_value(
            json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "late.dev/x"}]),
        )
        .expect("patch"),
    );
    let (code, reason, message) = api_error(cms.patch("held", &PatchParams::default(), &add).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains("no new finalizers can be added"),
        "{message}"
    );

    let drop_first = Patch::Json::<()>(
        serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "sluice.dev/cleanup"},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ]))
        .expect("patch"),
    );
    cms.patch("held", &PatchParams::default(), &drop_first)
        .await
        .expect("one finalizer removed");
    assert!(cms.get("held").await.is_ok(), "one finalizer left");
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("last finalizer removed");
    assert_eq!(api_error(cms.get("held").await).0, 404);

    let events: Vec<&str> = cms
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), &rv)
        .await
        .expect("watch")
        .map(|e| match e {
            Ok(WatchEvent::Modified(_)) => "MODIFIED",
            Ok(WatchEvent::Deleted(_)) => "DELETED",
            other => panic!("{other:?}"),
        })
        .collect()
        .await;
    assert_eq!(events, ["MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn kube_runtime_finalizer_helper_works() {
    let api = MemoryApiServer::start().await;
    api.install_crds(&sluice_crds::crds());
    let servers: Api<DynamicObject> =
        Api::default_namespaced_with(api.client(), &mcp_server_resource());
    servers
        .create(
            &PostParams::default(),
            &mcp_server("phab", "https://p.example.com"),
        )
        .await
        .expect("created");
    let cleanups = Arc::new(AtomicUsize::new(0));
    let reconcile = |obj: Arc<DynamicObject>| {
        let servers = servers.clone();
        let cleanups = cleanups.clone();
        async move {
            finalizer(&servers, "sluice.dev/cleanup", obj, |event| async move {
                if let Finalizer::Cleanup(_) = event {
                    cleanups.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, std::convert::Infallible>(Action::await_change())
            })
            .await
        }
    };
    // First pass adds the finalizer (JSON patch with a `test` for null).
    reconcile(Arc::new(servers.get("phab").await.expect("get")))
        .await
        .expect("finalizer added");
    let obj = servers.get("phab").await.expect("get");
    assert_eq!(
        obj.metadata.finalizers.as_deref(),
        Some(&["sluice.dev/cleanup".to_string()][..])
    );
    reconcile(Arc::new(obj)).await.expect("apply pass");
    servers
        .delete("phab", &DeleteParams::default())
        .await
        .expect("delete");
    let deleting = servers.get("phab").await.expect("still there");
    reconcile(Arc::new(deleting)).await.expect("cleanup pass");
    assert_eq!(cleanups.load(Ordering::SeqCst), 1);
    assert_eq!(
        api_error(servers.get("phab").await).0,
        404,
        "gone once the finalizer is removed"
    );
}

#[tokio::test]
async fn dependents_are_garbage_collected() {
    let api = MemoryApiServer::start().await;
    api.install_crds(&sluice_crds::crds());
    let client = api.client();
    let servers: Api<DynamicObject> =
        Api::default_namespaced_with(client.clone(), &mcp_server_resource());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let owner = servers
        .create(
            &PostParams::default(),
            &mcp_server("phab", "https://p.example.com"),
        )
        .await
        .expect("owner");
    let other = cms
        .create(&PostParams::default(), &Cm::named("other-owner").build())
        .await
        .expect("second owner");
    let own = |mut d: Deployment| {
        let mut r = owner_ref(&other);
        r.api_version = "sluice.dev/v1alpha1".into();
        r.kind = "McpServer".into();
        r.name = "phab".into();
        r.uid = owner.metadata.uid.clone().expect("uid");
        d.metadata.owner_references = Some(vec![r]);
        d
    };
    deploys
        .create(
            &PostParams::default(),
            &own(deployment("phab", "conduit:1", 1)),
        )
        .await
        .expect("dependent");
    let mut config = Cm::named("phab-config").build();
    config.metadata.owner_references = deploys
        .get("phab")
        .await
        .expect("get")
        .metadata
        .owner_references;
    cms.create(&PostParams::default(), &config)
        .await
        .expect("dependent");
    // Two owners: survives, loses the dangling reference.
    let mut shared = Cm::named("shared").owned_by(&other).build();
    shared
        .metadata
        .owner_references
        .get_or_insert_default()
        .extend(config.metadata.owner_references.clone().unwrap_or_default());
    cms.create(&PostParams::default(), &shared)
        .await
        .expect("dependent of two");
    // A dependent with a finalizer is only marked.
    let mut held = Cm::named("held").finalizer("sluice.dev/x").build();
    held.metadata.owner_references = config.metadata.owner_references.clone();
    cms.create(&PostParams::default(), &held)
        .await
        .expect("held dependent");

    api.clear_logs();
    servers
        .delete("phab", &DeleteParams::default())
        .await
        .expect("owner deleted");
    assert_eq!(api_error(deploys.get("phab").await).0, 404);
    assert_eq!(api_error(cms.get("phab-config").await).0, 404);
    let shared = cms.get("shared").await.expect("kept");
    let refs = shared.metadata.owner_references.unwrap_or_default();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "other-owner");
    assert!(
        cms.get("held")
            .await
            .expect("held")
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let gc: Vec<String> = api
        .writes()
        .iter()
        .filter(|w| w.actor == Actor::GarbageCollector)
        .map(|w| format!("{:?} {}", w.verb, w.name))
        .collect();
    assert_eq!(gc.len(), 4, "{gc:?}");
    assert!(
        gc.contains(&"Delete phab".to_string()) && gc.contains(&"Patch shared".to_string()),
        "{gc:?}"
    );
}

#[tokio::test]
async fn orphan_and_foreground_propagation() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let pp = PostParams::default();
    let owner = cms
        .create(&pp, &Cm::named("owner").build())
        .await
        .expect("owner");
    cms.create(&pp, &Cm::named("child").owned_by(&owner).build())
        .await
        .expect("child");
    cms.delete("owner", &DeleteParams::orphan())
        .await
        .expect("orphaning delete");
    let child = cms.get("child").await.expect("orphan kept");
    assert_eq!(child.metadata.owner_references, None);

    let owner = cms
        .create(&pp, &Cm::named("owner2").build())
        .await
        .expect("owner");
    cms.create(
        &pp,
        &Cm::named("slow-child")
            .owned_by(&owner)
            .finalizer("sluice.dev/x")
            .build(),
    )
    .await
    .expect("child");
    let waiting = cms
        .delete("owner2", &DeleteParams::foreground())
        .await
        .expect("foreground")
        .left()
        .expect("waits");
    assert_eq!(
        waiting.metadata.finalizers.as_deref(),
        Some(&["foregroundDeletion".to_string()][..])
    );
    assert!(
        cms.get("slow-child")
            .await
            .expect("child")
            .metadata
            .deletion_timestamp
            .is_some()
    );
    cms.patch(
        "slow-child",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("child released");
    assert_eq!(api_error(cms.get("slow-child").await).0, 404);
    assert_eq!(
        api_error(cms.get("owner2").await).0,
        404,
        "the owner goes with its last dependent"
    );
}

#[tokio::test]
async fn preconditions_and_namespace_deletion() {
    let api = MemoryApiServer::start().await;
    let client = api.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let created = cms
        .create(&PostParams::default(), &Cm::named("x").build())
        .await
        .expect("created");
    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    cms.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .expect("patched");
    let (code, _, message) = api_error(cms.delete("x", &stale).await);
    assert_eq!(code, 409);
    assert!(message.contains("Precondition failed"), "{message}");
    let wrong_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: None,
            uid: Some("nope".into()),
        }),
        ..DeleteParams::default()
    };
    assert_eq!(api_error(cms.delete("x", &wrong_uid).await).0, 409);
    assert!(created.metadata.uid.is_some());

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns"),
        )
        .await
        .expect("namespace");
    let ns = namespaces.get("team").await.expect("namespace");
    assert_eq!(
        ns.labels()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("team")
    );
    assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    let mut watch = pin!(
        cms.watch(&WatchParams::default(), "0")
            .await
            .expect("watch")
    );
    within("the initial ADDED", watch.next())
        .await
        .expect("event")
        .expect("ok");
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .expect("namespace deleted");
    assert_eq!(
        api_error(cms.get("x").await).0,
        404,
        "contents deleted with the namespace"
    );
    match within("the DELETED event", watch.next()).await {
        Some(Ok(WatchEvent::Deleted(cm))) => assert_eq!(cm.metadata.name.as_deref(), Some("x")),
        other => panic!("{other:?}"),
    }
    let deletes = api
        .writes()
        .iter()
        .filter(|w| w.verb == Verb::Delete)
        .count();
    assert_eq!(deletes, 2);
}
