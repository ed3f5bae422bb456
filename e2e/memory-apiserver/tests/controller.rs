//! A kube-runtime Controller against the server: it converges, a second reconcile writes
//! nothing, and it does not loop — what the operator's tests will check.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use sluice_memory_apiserver::{Actor, MemoryApiServer, RequestVerb};
use support::{Cm, owner_ref};

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Failed(#[from] kube::Error);

struct Ctx {
    cms: Api<ConfigMap>,
    runs: AtomicUsize,
}

/// Keeps a `<name>-child` ConfigMap owned by every ConfigMap labelled `role=parent`.
async fn reconcile(parent: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Failed> {
    ctx.runs.fetch_add(1, Ordering::SeqCst);
    let child = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{}-child", parent.name_any()), "ownerReferences": [owner_ref(parent.as_ref())]},
        "data": {"copy": parent.data.clone().unwrap_or_default().get("v").cloned().unwrap_or_default()}
    });
    let name = format!("{}-child", parent.name_any());
    ctx.cms
        .patch(
            &name,
            &PatchParams::apply("test-controller").force(),
            &Patch::Apply(&child),
        )
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<ConfigMap>, _: &Failed, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn a_controller_converges_and_goes_quiet() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let ctx = Arc::new(Ctx {
        cms: cms.clone(),
        runs: AtomicUsize::new(0),
    });
    let parents = watcher::Config::default().labels("role=parent");
    let controller = Controller::new(cms.clone(), parents)
        .owns(cms.clone(), watcher::Config::default().labels("!role"))
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    cms.create(
        &PostParams::default(),
        &Cm::named("p")
            .label("role", "parent")
            .data("v", "1")
            .build(),
    )
    .await
    .expect("parent");
    wait_for(|| async { cms.get_opt("p-child").await.ok().flatten().is_some() }).await;
    // The child's own watch event triggers one more reconcile of its owner: that one must
    // apply an identical configuration and so write nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client_writes: Vec<String> = api
        .writes()
        .iter()
        .filter(|w| w.actor == Actor::Client)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        client_writes.len(),
        2,
        "the parent and its child, nothing more: {client_writes:#?}"
    );
    let runs = ctx.runs.load(Ordering::SeqCst);
    assert!((1..=3).contains(&runs), "reconciled {runs} times");

    api.clear_logs();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.verb != RequestVerb::Watch)
        .map(ToString::to_string)
        .collect();
    assert!(busy.is_empty(), "no hot loop: {busy:#?}");

    // Drift: the child is edited; the controller restores it.
    cms.patch("p-child", &PatchParams::apply("someone").force(), &Patch::Apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p-child"}, "data": {"copy": "tampered"}
    })))
    .await
    .expect("tampered");
    wait_for(|| async {
        cms.get("p-child")
            .await
            .ok()
            .and_then(|c| c.data)
            .and_then(|d| d.get("copy").cloned())
            == Some("1".into())
    })
    .await;
    assert!(ConfigMap::kind(&()) == "ConfigMap");
    handle.abort();
}

async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    support::within("the controller to converge", async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn the_event_recorder_creates_then_patches_a_series() {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};

    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let cm = cms
        .create(&PostParams::default(), &Cm::named("subject").build())
        .await
        .expect("created");
    let recorder = Recorder::new(api.client(), Reporter::from("sluice-operator"));
    let event = Event {
        type_: EventType::Warning,
        reason: "SecretNotFound".into(),
        note: Some("secret phab-token not found".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = cm.object_ref(&());
    recorder.publish(&event, &reference).await.expect("created");
    recorder.publish(&event, &reference).await.expect("patched");
    let events: Api<K8sEvent> = Api::default_namespaced(api.client());
    let listed = events.list(&Default::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    let stored = &listed.items[0];
    assert_eq!(stored.reason.as_deref(), Some("SecretNotFound"));
    assert_eq!(stored.series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(
        stored.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("subject")
    );
}
