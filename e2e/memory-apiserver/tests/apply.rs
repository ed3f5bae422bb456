//! Server-side apply: create, update, no-op, conflicts, force, field removal, two managers,
//! Update-operation ownership, the status subresource and generation.

mod support;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams, WatchParams};
use serde_json::json;
use sluice_memory_apiserver::{Actor, MemoryApiServer, Verb};
use support::{api_error, deployment_apply, managed, mcp_server, mcp_server_resource};

fn rv_of(meta: &kube::api::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("numeric resourceVersion")
}

#[tokio::test]
async fn apply_creates_updates_and_a_repeat_changes_nothing() {
    let api = MemoryApiServer::start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(api.client());
    let pp = PatchParams::apply("sluice-operator");

    let created = deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(deployment_apply("web", "conduit:1", 2)),
        )
        .await
        .expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));
    let entries = managed(&created.metadata);
    assert_eq!(entries.len(), 1);
    let (manager, operation, subresource, fields) = &entries[0];
    assert_eq!(
        (manager.as_str(), operation.as_str(), subresource),
        ("sluice-operator", "Apply", &None)
    );
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        fields["f:spec"]["f:selector"],
        json!({}),
        "LabelSelector is atomic"
    );
    let container =
        &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
    assert_eq!(container["."], json!({}));
    assert_eq!(
        container["f:ports"]["k:{\"containerPort\":8080,\"protocol\":\"TCP\"}"]["f:containerPort"],
        json!({})
    );

    // The same apply again: no write, same resourceVersion, and no watch event.
    let rv = rv_of(&created.metadata);
    api.clear_logs();
    let again = deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(deployment_apply("web", "conduit:1", 2)),
        )
        .await
        .expect("re-apply");
    assert_eq!(rv_of(&again.metadata), rv);
    assert_eq!(
        again.metadata.managed_fields, created.metadata.managed_fields,
        "timestamps untouched"
    );
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    let events: Vec<_> = deploys
        .watch(
            &WatchParams::default().timeout(1).disable_bookmarks(),
            &rv.to_string(),
        )
        .await
        .expect("watch")
        .collect()
        .await;
    assert!(
        events.is_empty(),
        "no event after a no-op apply: {events:?}"
    );

    // A real change: new resourceVersion, generation bump, one write.
    let updated = deploys
        .patch(
            "web",
            &pp,
            &Patch::Apply(deployment_apply("web", "conduit:2", 2)),
        )
        .await
        .expect("apply update");
    assert!(rv_of(&updated.metadata) > rv);
    assert_eq!(updated.metadata.generation, Some(2));
    let writes = api.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(
        (writes[0].verb, writes[0].actor),
        (Verb::Apply, Actor::Client)
    );
    assert_eq!(writes[0].field_manager.as_deref(), Some("sluice-operator"));
}

#[tokio::test]
async fn conflicts_with_other_managers_unless_forced() {
    let api = MemoryApiServer::start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(api.client());
    deploys
        .patch(
            "web",
            &PatchParams::apply("sluice-operator"),
            &Patch::Apply(deployment_apply("web", "conduit:1", 2)),
        )
        .await
        .expect("created");
    let scale = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let (code, reason, message) = api_error(
        deploys
            .patch("web", &PatchParams::apply("hpa"), &Patch::Apply(&scale))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        message,
        "Apply failed with 1 conflict: conflict with \"sluice-operator\": .spec.replicas"
    );

    // The same value is no conflict: ownership is shared.
    let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    let shared = deploys
        .patch("web", &PatchParams::apply("hpa"), &Patch::Apply(&same))
        .await
        .expect("shared");
    assert_eq!(managed(&shared.metadata).len(), 2);

    let forced = deploys
        .patch(
            "web",
            &PatchParams::apply("hpa").force(),
            &Patch::Apply(&scale),
        )
        .await
        .expect("forced");
    assert_eq!(forced.spec.as_ref().and_then(|s| s.replicas), Some(5));
    let entries = managed(&forced.metadata);
    let operator = entries
        .iter()
        .find(|e| e.0 == "sluice-operator")
        .expect("operator entry");
    assert!(
        operator.3["f:spec"].get("f:replicas").is_none(),
        "ownership moved: {}",
        operator.3
    );
    let hpa = entries.iter().find(|e| e.0 == "hpa").expect("hpa entry");
    assert_eq!(hpa.3, json!({"f:spec": {"f:replicas": {}}}));

    // The operator, applying replicas 2 again, now conflicts with hpa.
    let (code, _, message) = api_error(
        deploys
            .patch(
                "web",
                &PatchParams::apply("sluice-operator"),
                &Patch::Apply(deployment_apply("web", "conduit:1", 2)),
            )
            .await,
    );
    assert_eq!(code, 409);
    assert!(message.contains("conflict with \"hpa\""), "{message}");
}

#[tokio::test]
async fn fields_a_manager_stops_applying_are_removed_unless_someone_else_owns_them() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let cm = |data: serde_json::Value, labels: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": labels}, "data": data});
    let op = PatchParams::apply("operator");
    cms.patch(
        "c",
        &op,
        &Patch::Apply(cm(
            json!({"a": "1", "b": "2", "c": "3"}),
            json!({"x": "1", "y": "2"}),
        )),
    )
    .await
    .expect("first apply");
    // Another manager applies b (same value) and its own label.
    cms.patch(
        "c",
        &PatchParams::apply("other"),
        &Patch::Apply(cm(json!({"b": "2"}), json!({"z": "3"}))),
    )
    .await
    .expect("other applies");
    // The operator drops a, b and label y.
    let after = cms
        .patch(
            "c",
            &op,
            &Patch::Apply(cm(json!({"c": "3"}), json!({"x": "1"}))),
        )
        .await
        .expect("second apply");
    let data = after.data.clone().unwrap_or_default();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["b", "c"],
        "a removed, b kept: other owns it"
    );
    let labels = after.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["x", "z"]);
    let entries = managed(&after.metadata);
    let names: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_str()))
        .collect();
    assert_eq!(names, [("operator", "Apply"), ("other", "Apply")]);
    assert_eq!(
        entries[0].3,
        json!({"f:data": {"f:c": {}}, "f:metadata": {"f:labels": {"f:x": {}}}})
    );
    assert_eq!(
        entries[1].3,
        json!({"f:data": {"f:b": {}}, "f:metadata": {"f:labels": {"f:z": {}}}})
    );
}

#[tokio::test]
async fn update_operations_take_ownership_of_what_they_change() {
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
    cms.patch(
        "c",
        &PatchParams::apply("operator"),
        &Patch::Apply(&applied),
    )
    .await
    .expect("apply");
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    let edited = cms
        .patch(
            "c",
            &edit,
            &Patch::Merge(json!({"data": {"b": "changed", "c": "new"}})),
        )
        .await
        .expect("merge patch");
    let entries = managed(&edited.metadata);
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[1].0.as_str(), entries[1].1.as_str()),
        ("kubectl-edit", "Update")
    );
    assert_eq!(entries[1].3, json!({"f:data": {"f:b": {}, "f:c": {}}}));
    assert_eq!(
        entries[0].3,
        json!({"f:data": {"f:a": {}}}),
        "the operator lost b"
    );
    // Re-applying b conflicts with the editor.
    let (code, _, message) = api_error(
        cms.patch(
            "c",
            &PatchParams::apply("operator"),
            &Patch::Apply(&applied),
        )
        .await,
    );
    assert_eq!(code, 409);
    assert!(
        message.contains("conflict with \"kubectl-edit\" using v1: .data.b"),
        "{message}"
    );
    // Without fieldManager, the manager is the User-Agent up to its first '/' (kube sends
    // none, so its writes get an empty manager, as on a real server).
    let raw = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .header(
            "user-agent",
            "kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef",
        )
        .body(
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"},"data":{"k":"v"}}"#
                .to_vec(),
        )
        .expect("request");
    let created: ConfigMap = api.client().request(raw).await.expect("created");
    let entries = managed(&created.metadata);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].0.as_str(), entries[0].1.as_str()),
        ("kubectl", "Update")
    );
}

#[tokio::test]
async fn status_subresource_is_isolated_and_generation_counts_spec_only() {
    let api = MemoryApiServer::start().await;
    api.install_crds(&sluice_crds::crds());
    let servers: Api<DynamicObject> =
        Api::default_namespaced_with(api.client(), &mcp_server_resource());
    let pp = PatchParams::apply("sluice-operator");
    let mut server = mcp_server("phab", "https://phabricator.example.com");
    server.data["status"] = json!({"readyReplicas": 9});
    let created = servers
        .patch("phab", &pp, &Patch::Apply(&server))
        .await
        .expect("created");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status ignored on the main resource"
    );

    let status = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "McpServer", "metadata": {"name": "phab"},
        "status": {"observedGeneration": 1, "readyReplicas": 1},
        "spec": {"phabricator": {"url": "https://ignored.example.com"}}
    });
    let with_status = servers
        .patch_status("phab", &pp, &Patch::Apply(&status))
        .await
        .expect("status apply");
    assert_eq!(with_status.data["status"]["readyReplicas"], 1);
    assert_eq!(
        with_status.data["spec"]["phabricator"]["url"], "https://phabricator.example.com",
        "spec untouched"
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );
    let entries = managed(&with_status.metadata);
    let status_entry = entries
        .iter()
        .find(|e| e.2.as_deref() == Some("status"))
        .expect("status entry");
    assert_eq!(
        (status_entry.0.as_str(), status_entry.1.as_str()),
        ("sluice-operator", "Apply")
    );
    assert_eq!(
        status_entry.3,
        json!({"f:status": {"f:observedGeneration": {}, "f:readyReplicas": {}}})
    );

    // The same status again is a no-op.
    let rv = rv_of(&with_status.metadata);
    let again = servers
        .patch_status("phab", &pp, &Patch::Apply(&status))
        .await
        .expect("status re-apply");
    assert_eq!(rv_of(&again.metadata), rv);

    // Main-resource writes keep the stored status; spec changes bump the generation.
    let mut replace = again.clone();
    replace.data["status"] = json!({"readyReplicas": 42});
    replace.data["spec"]["replicas"] = json!(3);
    let replaced = servers
        .replace("phab", &PostParams::default(), &replace)
        .await
        .expect("replace");
    assert_eq!(replaced.data["status"]["readyReplicas"], 1);
    assert_eq!(replaced.metadata.generation, Some(2));
    // Metadata-only changes do not bump it.
    let labelled = servers
        .patch(
            "phab",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .expect("label");
    assert_eq!(labelled.metadata.generation, Some(2));
    // Nor do status replaces.
    let mut status_put = labelled.clone();
    status_put.data["status"] = json!({"readyReplicas": 2});
    let replaced_status = servers
        .replace_status("phab", &PostParams::default(), &status_put)
        .await
        .expect("replace status");
    assert_eq!(replaced_status.data["status"]["readyReplicas"], 2);
    assert_eq!(replaced_status.metadata.generation, Some(2));
    assert!(
        replaced_status.data["status"]
            .get("observedGeneration")
            .is_none()
    );
}

#[tokio::test]
async fn deployment_status_and_annotations() {
    let api = MemoryApiServer::start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(api.client());
    deploys
        .patch(
            "web",
            &PatchParams::apply("op"),
            &Patch::Apply(deployment_apply("web", "conduit:1", 2)),
        )
        .await
        .expect("created");
    let status = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 2}, "spec": {"replicas": 7}})),
        )
        .await
        .expect("status patch");
    assert_eq!(
        status.spec.and_then(|s| s.replicas),
        Some(2),
        "spec ignored on /status"
    );
    assert_eq!(status.metadata.generation, Some(1));
    // kube's Deployment strategy bumps the generation on annotation changes too.
    let annotated = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .expect("annotate");
    assert_eq!(annotated.metadata.generation, Some(2));
    // Apply needs a field manager.
    let raw = http::Request::patch("/apis/apps/v1/namespaces/default/deployments/web")
        .header("content-type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&deployment_apply("web", "x", 1)).expect("json"))
        .expect("request");
    let err = api
        .client()
        .request::<Deployment>(raw)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400),
        "{err:?}"
    );
}

#[tokio::test]
async fn yaml_apply_bodies_and_strict_validation() {
    let api = MemoryApiServer::start().await;
    api.install_crds(&sluice_crds::crds());
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n";
    let raw = http::Request::patch(
        "/api/v1/namespaces/default/configmaps/from-yaml?fieldManager=kubectl",
    )
    .header("content-type", "application/apply-patch+yaml")
    .body(yaml.as_bytes().to_vec())
    .expect("request");
    let cm: ConfigMap = api.client().request(raw).await.expect("yaml apply");
    assert_eq!(
        cm.data.unwrap_or_default().get("k").map(String::as_str),
        Some("v")
    );

    let servers: Api<DynamicObject> =
        Api::default_namespaced_with(api.client(), &mcp_server_resource());
    let mut server = mcp_server("phab", "https://phabricator.example.com");
    server.data["spec"]["notAField"] = json!(1);
    let (code, _, message) = api_error(
        servers
            .patch(
                "phab",
                &PatchParams::apply("op").validation_strict(),
                &Patch::Apply(&server),
            )
            .await,
    );
    assert_eq!(code, 400);
    assert!(message.contains("spec.notAField"), "{message}");
    let pruned = servers
        .patch("phab", &PatchParams::apply("op"), &Patch::Apply(&server))
        .await
        .expect("pruned");
    assert!(pruned.data["spec"].get("notAField").is_none());
}

#[tokio::test]
async fn an_apply_to_an_existing_object_may_leave_the_name_out() {
    // kube-lease-manager locks a Lease it created with an apply whose body has no metadata;
    // the API server takes the name from the live object. A create still needs it.
    let api = MemoryApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(api.client());
    let pp = PatchParams::apply("holder");
    let nameless =
        |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": value}});

    let refused = cms.patch("lease", &pp, &Patch::Apply(nameless("1"))).await;
    assert_eq!(
        api_error(refused).0,
        400,
        "a create needs the name in the body"
    );

    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "lease"}})).unwrap(),
    )
    .await
    .expect("create");
    let applied = cms
        .patch("lease", &pp, &Patch::Apply(nameless("2")))
        .await
        .expect("an apply to an existing object without a name");
    assert_eq!(applied.metadata.name.as_deref(), Some("lease"));
    assert_eq!(applied.data.unwrap()["k"], "2");
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}});
    let mismatch = cms.patch("lease", &pp, &Patch::Apply(other)).await;
    assert_eq!(
        api_error(mismatch).0,
        400,
        "a different name is still refused"
    );
}

/// As on a real server: the strategy defaulted at creation belongs to no manager, so an apply
/// of `type: Recreate` keeps `rollingUpdate` and is refused; one merge patch that sets the
/// type and removes `rollingUpdate` switches it.
#[tokio::test]
async fn a_defaulted_rolling_update_blocks_an_apply_of_recreate() {
    let api = MemoryApiServer::start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(api.client());
    let pp = PatchParams::apply("sluice-operator").force();
    let created = deploys
        .patch("web", &pp, &Patch::Apply(deployment_apply("web", "a:1", 1)))
        .await
        .expect("apply creates");
    let strategy = created.spec.unwrap().strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert!(strategy.rolling_update.is_some());
    let (_, _, _, fields) = &managed(&created.metadata)[0];
    assert!(fields["f:spec"].get("f:strategy").is_none(), "{fields}");

    let mut recreate = deployment_apply("web", "a:1", 1);
    recreate["spec"]["strategy"] = json!({"type": "Recreate"});
    let (code, reason, message) =
        api_error(deploys.patch("web", &pp, &Patch::Apply(&recreate)).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(message.contains("spec.strategy.rollingUpdate"), "{message}");

    let switch = json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}});
    deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(&switch))
        .await
        .expect("the merge patch switches");
    let applied = deploys
        .patch("web", &pp, &Patch::Apply(&recreate))
        .await
        .expect("then the apply goes through");
    let strategy = applied.spec.unwrap().strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
    assert_eq!(strategy.rolling_update, None);
}

/// An object applied empty (`{}`) and later with fields: the manager owned the object itself,
/// now owns fields below it, and the fields land (structured-merge-diff adds back what the
/// applier still owns after removing what it let go of).
#[tokio::test]
async fn an_object_applied_empty_then_with_fields_takes_them() {
    let api = MemoryApiServer::start().await;
    api.install_crds(&sluice_crds::crds());
    let servers: Api<DynamicObject> =
        Api::default_namespaced_with(api.client(), &mcp_server_resource());
    let pp = PatchParams::apply("test").force();
    let with_state = |state: serde_json::Value| {
        json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "McpServer",
            "metadata": {"name": "phab"},
            "spec": {
                "phabricator": {"url": "https://phabricator.example.com"},
                "auth": {"mode": "oauth", "oauth": {
                    "clientId": "PHID-OASC-abcdefghijklmnopqrst",
                    "clientSecretRef": {"name": "oauth", "key": "client-secret"},
                    "state": state,
                }},
            },
        })
    };
    let created = servers
        .patch("phab", &pp, &Patch::Apply(with_state(json!({}))))
        .await
        .expect("apply creates");
    let state = |o: &DynamicObject| o.data["spec"]["auth"]["oauth"]["state"].clone();
    assert_eq!(
        state(&created),
        json!({"storage": "ephemeral"}),
        "defaulted"
    );
    let updated = servers
        .patch(
            "phab",
            &pp,
            &Patch::Apply(with_state(json!({"storage": "persistent"}))),
        )
        .await
        .expect("apply updates");
    assert_eq!(state(&updated), json!({"storage": "persistent"}));
    assert_eq!(updated.metadata.generation, Some(2));
}

/// Quantities come back as a real API server stores them, and an apply that spells one
/// differently but means the same amount changes nothing (the object it decodes to is the
/// same), as on a real server. A malformed quantity is refused.
#[tokio::test]
async fn quantities_are_stored_canonical_and_a_respelled_apply_changes_nothing() {
    let api = MemoryApiServer::start().await;
    let deploys: Api<Deployment> = Api::default_namespaced(api.client());
    let pp = PatchParams::apply("sluice-operator").force();
    let mut applied = deployment_apply("web", "a:1", 1);
    applied["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({
        "requests": {"cpu": "0.5", "memory": "1024Mi"},
        "limits": {"cpu": 1, "memory": "1.5Gi"},
    });
    let created = deploys
        .patch("web", &pp, &Patch::Apply(&applied))
        .await
        .expect("apply creates");
    let stored =
        serde_json::to_value(&created.spec.unwrap().template.spec.unwrap().containers[0].resources)
            .unwrap();
    assert_eq!(
        stored,
        json!({"requests": {"cpu": "500m", "memory": "1Gi"},
               "limits": {"cpu": "1", "memory": "1536Mi"}})
    );

    api.clear_logs();
    let again = deploys
        .patch("web", &pp, &Patch::Apply(&applied))
        .await
        .expect("re-apply");
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );
    assert!(api.writes().is_empty(), "{:?}", api.writes());

    applied["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
        json!("one");
    let (code, _, message) = api_error(deploys.patch("web", &pp, &Patch::Apply(&applied)).await);
    assert_eq!(code, 400);
    assert!(message.contains("quantities must match"), "{message}");
}
