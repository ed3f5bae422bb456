//! Create, get, replace, delete with resourceVersion conflicts, selectors, pages and discovery.

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;
use sluice_memory_apiserver::{Actor, MemoryApiServer, RequestVerb, Verb};
use support::{Cm, api_error, mcp_server, mcp_server_resource};

#[tokio::test]
async fn crud_with_resource_version_conflicts() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let pp = PostParams::default();

    let created = cms
        .create(&pp, &Cm::named("a").data("k", "1").build())
        .await
        .expect("created");
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(meta.uid.as_deref().map(str::len), Some(36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, None, "ConfigMaps have no generation");
    let rv1: u64 = meta
        .resource_version
        .as_deref()
        .expect("rv")
        .parse()
        .expect("numeric rv");

    let (code, reason, message) = api_error(cms.create(&pp, &Cm::named("a").build()).await);
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(message, "configmaps \"a\" already exists");

    let mut changed = cms.get("a").await.expect("get");
    changed
        .data
        .get_or_insert_default()
        .insert("k".into(), "2".into());
    let replaced = cms
        .replace("a", &pp, &changed)
        .await
        .expect("replace with current rv");
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .as_deref()
        .expect("rv")
        .parse()
        .expect("numeric");
    assert!(rv2 > rv1);

    // The same object again carries the old resourceVersion: 409 Conflict.
    let (code, reason, message) = api_error(cms.replace("a", &pp, &changed).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("the object has been modified"),
        "{message}"
    );

    // A replace that changes nothing writes nothing.
    api.clear_logs();
    let same = cms
        .replace("a", &pp, &replaced)
        .await
        .expect("no-op replace");
    assert_eq!(
        same.metadata.resource_version,
        replaced.metadata.resource_version
    );
    assert!(api.writes().is_empty(), "{:?}", api.writes());

    let deleted = cms
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(deleted.is_right(), "deleted at once: a Status");
    let (code, reason, _) = api_error(cms.get("a").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(
        api_error(cms.delete("a", &DeleteParams::default()).await).0,
        404
    );

    let writes = api.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(
        (writes[0].verb, writes[0].actor, writes[0].name.as_str()),
        (Verb::Delete, Actor::Client, "a")
    );
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.verb == RequestVerb::Update && r.status == 200)
    );
    assert!(
        requests
            .iter()
            .any(|r| r.verb == RequestVerb::Get && r.status == 404)
    );
}

#[tokio::test]
async fn invalid_objects_get_422_and_malformed_requests_400() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let pp = PostParams::default();
    let (code, reason, message) = api_error(cms.create(&pp, &Cm::named("Not_Valid").build()).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.starts_with("ConfigMap \"Not_Valid\" is invalid: metadata.name: Invalid value"),
        "{message}"
    );
    let (code, _, _) = api_error(
        cms.create(&pp, &Cm::named("x").label("app", "not valid!").build())
            .await,
    );
    assert_eq!(code, 422);
    let (code, _, message) = api_error(
        cms.create(&pp, &Cm::named("x").namespace("other").build())
            .await,
    );
    assert_eq!(code, 400, "{message}");
    let (code, reason, _) = api_error(cms.list(&ListParams::default().labels("app in (a")).await);
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    let (code, _, message) = api_error(cms.list(&ListParams::default().fields("data.k=v")).await);
    assert_eq!(
        (code, message.as_str()),
        (400, "field label not supported: data.k")
    );
    // A merge patch that is not JSON.
    let raw = http::Request::patch("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "application/merge-patch+json")
        .body(b"{".to_vec())
        .expect("request");
    let err = api
        .client()
        .request::<ConfigMap>(raw)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    cms.create(&pp, &Cm::named("x").build())
        .await
        .expect("created");
    let raw = http::Request::patch("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "application/merge-patch+json")
        .body(b"{".to_vec())
        .expect("request");
    let err = api
        .client()
        .request::<ConfigMap>(raw)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400),
        "{err:?}"
    );
}

#[tokio::test]
async fn label_and_field_selectors_across_namespaces() {
    let api = MemoryApiServer::start().await;
    let client = api.client();
    let pp = PostParams::default();
    for (ns, name, app, tier) in [
        ("a", "web-1", "web", "front"),
        ("a", "web-2", "web", "back"),
        ("a", "db", "db", "back"),
        ("b", "web-3", "web", "front"),
        ("b", "plain", "", ""),
    ] {
        let mut cm = Cm::named(name);
        if !app.is_empty() {
            cm = cm.label("app", app).label("tier", tier);
        }
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .create(&pp, &cm.build())
            .await
            .expect("created");
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let names = |list: kube::api::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap_or_default())
            .collect()
    };
    let cases = [
        ("app=web", vec!["web-1", "web-2", "web-3"]),
        ("app==web,tier=front", vec!["web-1", "web-3"]),
        ("app!=web", vec!["db", "plain"]),
        ("tier in (back)", vec!["web-2", "db"]),
        ("tier notin (back)", vec!["web-1", "web-3", "plain"]),
        ("app", vec!["web-1", "web-2", "db", "web-3"]),
        ("!app", vec!["plain"]),
    ];
    for (selector, want) in cases {
        let mut got = names(
            all.list(&ListParams::default().labels(selector))
                .await
                .expect("list"),
        );
        let mut want: Vec<String> = want.into_iter().map(String::from).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{selector}");
    }
    let in_a: Api<ConfigMap> = Api::namespaced(client.clone(), "a");
    assert_eq!(
        names(in_a.list(&ListParams::default()).await.expect("list")),
        ["db", "web-1", "web-2"]
    );
    let by_name = all
        .list(&ListParams::default().fields("metadata.name=web-3"))
        .await
        .expect("list");
    assert_eq!(names(by_name), ["web-3"]);
    let by_ns = all
        .list(
            &ListParams::default()
                .fields("metadata.namespace!=a")
                .labels("app=web"),
        )
        .await
        .expect("list");
    assert_eq!(names(by_ns), ["web-3"]);
}

#[tokio::test]
async fn pages_with_limit_and_continue() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    for i in 0..7 {
        cms.create(
            &PostParams::default(),
            &Cm::named(&format!("cm-{i}")).build(),
        )
        .await
        .expect("created");
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.expect("page");
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn generate_name_and_dry_run() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let mut cm = Cm::named("").build();
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("gen-".into());
    let a = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("created");
    let b = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("created");
    let (a, b) = (
        a.metadata.name.expect("name"),
        b.metadata.name.expect("name"),
    );
    assert!(a.starts_with("gen-") && a.len() == 9, "{a}");
    assert_ne!(a, b);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    cms.create(&dry, &Cm::named("dry").build())
        .await
        .expect("dry run");
    assert_eq!(api_error(cms.get("dry").await).0, 404);
}

#[tokio::test]
async fn leases_use_optimistic_concurrency() {
    let api = MemoryApiServer::start().await;
    let leases: Api<Lease> = Api::default_namespaced(api.client());
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "sluice-operator"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}
    }))
    .expect("lease");
    let stored = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("created");
    let mut by_a = stored.clone();
    by_a.spec.get_or_insert_default().holder_identity = Some("a".into());
    by_a.spec.get_or_insert_default().lease_transitions = Some(1);
    let mut by_b = stored.clone();
    by_b.spec.get_or_insert_default().holder_identity = Some("b".into());
    leases
        .replace("sluice-operator", &PostParams::default(), &by_a)
        .await
        .expect("a renews");
    let (code, reason, _) = api_error(
        leases
            .replace("sluice-operator", &PostParams::default(), &by_b)
            .await,
    );
    assert_eq!(
        (code, reason.as_str()),
        (409, "Conflict"),
        "b loses the race"
    );
    // kube-lease-manager's strategic merge patch with nulls releases the lease.
    let release = json!({"spec": {"holderIdentity": null, "acquireTime": null}});
    let released = leases
        .patch(
            "sluice-operator",
            &PatchParams::default(),
            &Patch::Strategic(&release),
        )
        .await
        .expect("released");
    assert_eq!(released.spec.and_then(|s| s.holder_identity), None);
}

#[tokio::test]
async fn discovery_lists_what_is_served() {
    let api = MemoryApiServer::start().await;
    let client = api.client();
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert!(
        discovery.has_group("apps")
            && discovery.has_group("policy")
            && !discovery.has_group("sluice.dev")
    );
    let gvk = kube::api::GroupVersionKind::gvk("networking.k8s.io", "v1", "NetworkPolicy");
    let (ar, caps) = discovery
        .resolve_gvk(&gvk)
        .expect("network policies served");
    assert_eq!(ar.plural, "networkpolicies");
    assert_eq!(caps.scope, Scope::Namespaced);
    let crb =
        kube::api::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding");
    assert_eq!(
        discovery.resolve_gvk(&crb).expect("served").1.scope,
        Scope::Cluster
    );

    api.install_crds(&sluice_crds::crds());
    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let gvk = kube::api::GroupVersionKind::gvk("sluice.dev", "v1alpha1", "McpServer");
    let (ar, caps) = aggregated.resolve_gvk(&gvk).expect("McpServer served");
    assert_eq!(ar.plural, "mcpservers");
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "mcpservers/status" || sub.plural == "status")
    );
    assert!(
        aggregated
            .resolve_gvk(&kube::api::GroupVersionKind::gvk(
                "apps",
                "v1",
                "Deployment"
            ))
            .is_some()
    );
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn resources_of_missing_crds_are_404_until_installed() {
    let api = MemoryApiServer::start().await;
    let client = api.client();
    let gvk = kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: Api<DynamicObject> =
        Api::default_namespaced_with(client.clone(), &kube::api::ApiResource::from_gvk(&gvk));
    let (code, reason, message) = api_error(routes.list(&ListParams::default()).await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(message, "the server could not find the requested resource");
    let servers: Api<DynamicObject> =
        Api::default_namespaced_with(client.clone(), &mcp_server_resource());
    let (code, _, _) = api_error(
        servers
            .create(
                &PostParams::default(),
                &mcp_server("x", "https://p.example"),
            )
            .await,
    );
    assert_eq!(code, 404);
    let sm = kube::api::GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
    let monitors: Api<DynamicObject> =
        Api::default_namespaced_with(client.clone(), &kube::api::ApiResource::from_gvk(&sm));
    assert_eq!(api_error(monitors.get("x").await).0, 404);

    // Installing through the API works too, and the CRD becomes Established.
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"plural": "servicemonitors", "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .expect("crd");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("crd created");
    support::within(
        "the CRD to be established",
        await_condition(
            crds.clone(),
            "servicemonitors.monitoring.coreos.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("established");
    let monitor: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "x"}, "spec": {"endpoints": [{"port": "admin"}]}
    }))
    .expect("monitor");
    monitors
        .create(&PostParams::default(), &monitor)
        .await
        .expect("served now");
    crds.delete(
        "servicemonitors.monitoring.coreos.com",
        &DeleteParams::default(),
    )
    .await
    .expect("crd deleted");
    assert_eq!(
        api_error(monitors.get("x").await).0,
        404,
        "gone with its CRD"
    );

    // Installing the same CRDs twice changes nothing.
    api.install_crds(&sluice_crds::crds());
    let before = api.resource_version();
    api.install_crds(&sluice_crds::crds());
    assert_eq!(api.resource_version(), before);
}
