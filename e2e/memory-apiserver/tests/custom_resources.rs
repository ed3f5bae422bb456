//! Custom resources under their CRD schema: pruning, defaults, validation, conditional PUT,
//! no strategic merge patch.

mod support;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_memory_apiserver::MemoryApiServer;
use support::{api_error, mcp_server, mcp_server_resource};

async fn servers() -> (MemoryApiServer, Api<DynamicObject>) {
    let api = MemoryApiServer::start().await;
    api.install_crds(&sluice_crds::crds());
    let servers = Api::default_namespaced_with(api.client(), &mcp_server_resource());
    (api, servers)
}

#[tokio::test]
async fn unknown_fields_are_pruned_and_defaults_applied() {
    let (_api, servers) = servers().await;
    let mut server = mcp_server("phab", "https://p.example.com");
    server.data["spec"]["bogus"] = json!({"deep": true});
    server.data["topLevelBogus"] = json!(1);
    let created = servers
        .create(&PostParams::default(), &server)
        .await
        .expect("created");
    assert!(created.data["spec"].get("bogus").is_none());
    assert!(created.data.get("topLevelBogus").is_none());
    // The schema's defaults are filled in (the CRD defaults `monitoring`).
    assert!(
        created.data["spec"].get("monitoring").is_some(),
        "{}",
        created.data
    );
}

#[tokio::test]
async fn schema_violations_are_422_with_the_field() {
    let (_api, servers) = servers().await;
    let mut wrong_type = mcp_server("phab", "https://p.example.com");
    wrong_type.data["spec"]["replicas"] = json!("two");
    let (code, reason, message) =
        api_error(servers.create(&PostParams::default(), &wrong_type).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(message.contains("spec.replicas"), "{message}");
    // A required field left out. (`spec.phabricator` itself is optional since `spec.container`
    // exists: exactly one of them is a CEL rule, which this stand-in does not evaluate.)
    let mut missing = mcp_server("phab", "https://p.example.com");
    missing.data["spec"] = json!({"phabricator": {}});
    let (code, _, message) = api_error(servers.create(&PostParams::default(), &missing).await);
    assert_eq!(code, 422);
    assert!(
        message.contains("spec.phabricator.url: Required value"),
        "{message}"
    );
}

#[tokio::test]
async fn replace_needs_a_resource_version_and_strategic_merge_is_refused() {
    let (_api, servers) = servers().await;
    let created = servers
        .create(
            &PostParams::default(),
            &mcp_server("phab", "https://p.example.com"),
        )
        .await
        .expect("created");
    let mut unconditional = created.clone();
    unconditional.metadata.resource_version = None;
    let (code, _, message) = api_error(
        servers
            .replace("phab", &PostParams::default(), &unconditional)
            .await,
    );
    assert_eq!(code, 422);
    assert!(message.contains("metadata.resourceVersion"), "{message}");
    let (code, reason, _) = api_error(
        servers
            .patch(
                "phab",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"replicas": 2}})),
            )
            .await,
    );
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
    // A merge patch carrying a stale resourceVersion is a conflict.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}});
    assert_eq!(
        api_error(
            servers
                .patch("phab", &PatchParams::default(), &Patch::Merge(stale))
                .await
        )
        .0,
        409
    );
}

#[tokio::test]
async fn routes_are_served_too() {
    let (api, _) = servers().await;
    let routes: Api<DynamicObject> = Api::default_namespaced_with(
        api.client(),
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "sluice.dev",
            "v1alpha1",
            "McpRoute",
        )),
    );
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "McpRoute",
        "metadata": {"name": "r"}, "spec": {"serverRef": {"name": "phab"}}
    }))
    .expect("route");
    let created = routes
        .patch("r", &PatchParams::apply("op"), &Patch::Apply(&route))
        .await
        .expect("applied");
    assert_eq!(created.metadata.generation, Some(1));
    let status = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "McpRoute", "metadata": {"name": "r"},
                        "status": {"listenerPort": 8081}});
    let with_status = routes
        .patch_status("r", &PatchParams::apply("op"), &Patch::Apply(&status))
        .await
        .expect("status");
    assert_eq!(with_status.data["status"]["listenerPort"], 8081);
}
