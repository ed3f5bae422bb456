//! Watches through kube-runtime: adds, updates, deletes, relisting after 410, selectors,
//! bookmarks, streaming lists and metadata watches.

mod support;

use std::pin::pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::watcher::{self, Event};
use sluice_memory_apiserver::{MemoryApiServer, RequestVerb};
use support::{Cm, within};

/// The next event, skipping none (errors included), within 10 s.
async fn next<K, S>(stream: &mut S) -> Result<Event<K>, watcher::Error>
where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    within("a watcher event", stream.next())
        .await
        .expect("the watcher stream does not end")
}

fn name_of(cm: &ConfigMap) -> &str {
    cm.metadata.name.as_deref().unwrap_or("")
}

/// Reads events until InitDone; returns the names listed.
async fn initial_names<S>(stream: &mut S) -> Vec<String>
where
    S: Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    let mut names = Vec::new();
    loop {
        match next(stream).await {
            Ok(Event::Init) => names.clear(),
            Ok(Event::InitApply(cm)) => names.push(name_of(&cm).to_string()),
            Ok(Event::InitDone) => return names,
            Ok(other) => panic!("unexpected during init: {other:?}"),
            Err(e) => panic!("watch error during init: {e}"),
        }
    }
}

#[tokio::test]
async fn watcher_sees_adds_updates_and_deletes() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    cms.create(&PostParams::default(), &Cm::named("before").build())
        .await
        .expect("created");
    let mut events = pin!(watcher::watcher(cms.clone(), watcher::Config::default()));
    assert_eq!(initial_names(&mut events).await, ["before"]);

    cms.create(
        &PostParams::default(),
        &Cm::named("a").data("k", "1").build(),
    )
    .await
    .expect("created");
    match next(&mut events).await {
        Ok(Event::Apply(cm)) => assert_eq!(name_of(&cm), "a"),
        other => panic!("{other:?}"),
    }
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"k": "2"}})),
    )
    .await
    .expect("patched");
    match next(&mut events).await {
        Ok(Event::Apply(cm)) => assert_eq!(cm.data.unwrap_or_default()["k"], "2"),
        other => panic!("{other:?}"),
    }
    cms.delete("a", &DeleteParams::default())
        .await
        .expect("deleted");
    match next(&mut events).await {
        Ok(Event::Delete(cm)) => assert_eq!(name_of(&cm), "a"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn watcher_relists_after_410_gone() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    cms.create(&PostParams::default(), &Cm::named("a").build())
        .await
        .expect("created");
    let mut events = pin!(watcher::watcher(cms.clone(), watcher::Config::default()));
    assert_eq!(initial_names(&mut events).await, ["a"]);
    cms.create(&PostParams::default(), &Cm::named("b").build())
        .await
        .expect("created");
    match next(&mut events).await {
        Ok(Event::Apply(cm)) => assert_eq!(name_of(&cm), "b"),
        other => panic!("{other:?}"),
    }
    // The watcher is not polled while its watch is cut and history is compacted past it.
    api.close_watches();
    cms.create(&PostParams::default(), &Cm::named("c").build())
        .await
        .expect("created");
    cms.create(&PostParams::default(), &Cm::named("d").build())
        .await
        .expect("created");
    api.compact();
    match next(&mut events).await {
        Err(watcher::Error::WatchError(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    assert_eq!(
        initial_names(&mut events).await,
        ["a", "b", "c", "d"],
        "relisted"
    );
    let lists = api
        .requests()
        .iter()
        .filter(|r| r.verb == RequestVerb::List)
        .count();
    assert_eq!(lists, 2);

    // Watching from a compacted resourceVersion directly: one ERROR event, then the end.
    let old: Vec<_> = cms
        .watch(&WatchParams::default(), "1")
        .await
        .expect("watch answers 200")
        .collect()
        .await;
    match old.as_slice() {
        [Ok(WatchEvent::Error(status))] => assert_eq!(status.code, 410),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn label_selected_watches_see_objects_enter_and_leave() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let mut events = pin!(watcher::watcher(
        cms.clone(),
        watcher::Config::default().labels("app=web")
    ));
    assert!(initial_names(&mut events).await.is_empty());
    cms.create(
        &PostParams::default(),
        &Cm::named("other").label("app", "db").build(),
    )
    .await
    .expect("created");
    cms.create(
        &PostParams::default(),
        &Cm::named("x").label("app", "web").build(),
    )
    .await
    .expect("created");
    match next(&mut events).await {
        Ok(Event::Apply(cm)) => assert_eq!(name_of(&cm), "x", "the db one is not seen"),
        other => panic!("{other:?}"),
    }
    let relabel =
        |app: &str| Patch::Merge(serde_json::json!({"metadata": {"labels": {"app": app}}}));
    cms.patch("x", &PatchParams::default(), &relabel("db"))
        .await
        .expect("patched");
    match next(&mut events).await {
        Ok(Event::Delete(cm)) => assert_eq!(name_of(&cm), "x"),
        other => panic!("leaving the selector is a delete: {other:?}"),
    }
    cms.patch("other", &PatchParams::default(), &relabel("web"))
        .await
        .expect("patched");
    match next(&mut events).await {
        Ok(Event::Apply(cm)) => assert_eq!(name_of(&cm), "other"),
        other => panic!("entering the selector is an add: {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_and_timeouts() {
    let api = MemoryApiServer::builder()
        .bookmark_interval(Duration::from_millis(200))
        .start()
        .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    cms.create(&PostParams::default(), &Cm::named("x").build())
        .await
        .expect("created");
    let events: Vec<_> = within(
        "a 1 s watch to end",
        cms.watch(&WatchParams::default().timeout(1), "0")
            .await
            .expect("watch")
            .collect::<Vec<_>>(),
    )
    .await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Ok(WatchEvent::Added(_)) => "ADDED",
            Ok(WatchEvent::Bookmark(_)) => "BOOKMARK",
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds.first(),
        Some(&"ADDED"),
        "resourceVersion 0 starts with the current state"
    );
    assert!(
        kinds.iter().filter(|k| **k == "BOOKMARK").count() >= 3,
        "periodic and final bookmarks: {kinds:?}"
    );
    if let Some(Ok(WatchEvent::Bookmark(b))) = events.last() {
        assert_eq!(
            b.metadata.resource_version,
            api.resource_version().to_string()
        );
    } else {
        panic!("the stream ends with a bookmark");
    }
    // Without allowWatchBookmarks there are none.
    let plain: Vec<_> = cms
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .expect("watch")
        .collect()
        .await;
    assert_eq!(plain.len(), 1);
}

#[tokio::test]
async fn streaming_lists_and_metadata_watches() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    for name in ["a", "b"] {
        cms.create(&PostParams::default(), &Cm::named(name).build())
            .await
            .expect("created");
    }
    let mut streaming = pin!(watcher::watcher(
        cms.clone(),
        watcher::Config::default().streaming_lists()
    ));
    assert_eq!(initial_names(&mut streaming).await, ["a", "b"]);
    assert!(
        api.requests().iter().all(|r| r.verb != RequestVerb::List),
        "no list in streaming mode"
    );

    let metas: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(api.client());
    let mut meta = pin!(watcher::watcher(metas, watcher::Config::default()));
    let mut names = Vec::new();
    loop {
        match next(&mut meta).await.expect("metadata event") {
            Event::InitApply(m) => names.push(m.metadata.name.unwrap_or_default()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(names, ["a", "b"]);
    cms.delete("a", &DeleteParams::default())
        .await
        .expect("deleted");
    match next(&mut meta).await.expect("metadata event") {
        Event::Delete(m) => assert_eq!(m.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    let listed = cms
        .list_metadata(&ListParams::default())
        .await
        .expect("metadata list");
    assert_eq!(listed.items.len(), 1);
}
