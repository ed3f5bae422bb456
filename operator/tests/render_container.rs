//! A `container` server: any MCP server image, rendered with Conduit's hardening and nothing
//! of Phabricator's.

mod render_fixtures;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use render_fixtures::{
    RouteBuilder, ServerBuilder, container, deployment, network_policy, pod_of, proxy_config,
    render_error, render_server, rendered_documents,
};
use serde_json::json;
use sluice_crds::McpServer;
use sluice_operator::render::{Observed, OnChange, RESTART_HASH_ANNOTATION};
use sluice_proxy_config::Sessions;

const IMAGE: &str = "docker.io/mcp/everything:2026.8.31";

fn everything() -> ServerBuilder {
    ServerBuilder::container("everything", IMAGE, 3001)
        .set("container.args", json!(["streamableHttp"]))
        .set(
            "container.env",
            json!([
                {"name": "PORT", "value": "3001"},
                {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "upstream-api", "key": "token"}}},
            ]),
        )
        .set(
            "container.envFrom",
            json!([{"configMapRef": {"name": "everything-settings"}}]),
        )
}

fn pod_of_server(server: &McpServer) -> PodSpec {
    let docs = rendered_documents(std::slice::from_ref(server), &[]);
    pod_of(&docs, server.metadata.name.as_deref().expect("named"))
}

fn mounts(c: &Container) -> Vec<(String, String, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.name.clone(),
                m.mount_path.clone(),
                m.read_only == Some(true),
            )
        })
        .collect()
}

#[test]
fn the_servers_container_is_the_spec_with_the_hardening_of_conduit() {
    let server = everything()
        .set("container.command", json!(["node", "dist/index.js"]))
        .build();
    let pod = pod_of_server(&server);
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["mcp-server", "sluice-proxy"]);
    let c = container(&pod, "mcp-server");
    assert_eq!(c.image.as_deref(), Some(IMAGE));
    assert_eq!(
        c.command.as_deref(),
        Some(&["node".to_string(), "dist/index.js".into()][..])
    );
    assert_eq!(c.args.as_deref(), Some(&["streamableHttp".to_string()][..]));
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(
        env,
        ["PORT", "API_TOKEN"],
        "the user's, and nothing of Conduit's"
    );
    assert_eq!(
        c.env_from.iter().flatten().count(),
        1,
        "envFrom passes as written"
    );
    assert!(
        c.ports.is_none(),
        "the server's port is reached over loopback"
    );

    let sc = c.security_context.as_ref().expect("securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.run_as_group, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, Some(false));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(caps.add.is_none());
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    // The sidecar answers the server's probes from its MCP check, as for Conduit.
    for probe in [&c.startup_probe, &c.liveness_probe] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("probe");
        assert_eq!(get.path.as_deref(), Some("/upstream/livez"));
    }
    assert!(
        c.lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .is_some()
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.enable_service_links, Some(false));

    let docs = rendered_documents(&[server], &[]);
    let template = deployment(&docs, "everything").spec.expect("spec").template;
    let annotations = template
        .metadata
        .expect("metadata")
        .annotations
        .expect("annotations");
    assert_eq!(
        annotations
            .get("kubectl.kubernetes.io/default-container")
            .map(String::as_str),
        Some("mcp-server")
    );
}

#[test]
fn the_sidecar_points_at_the_servers_port_and_knows_no_phabricator() {
    let server = everything().set("sessions", json!("stateful")).build();
    let docs = rendered_documents(&[server], &[]);
    let config = proxy_config(&docs, "everything");
    assert_eq!(config.upstream.url, "http://127.0.0.1:3001");
    assert_eq!(config.upstream.mcp_path, "/mcp");
    assert_eq!(config.upstream.sessions, Sessions::Stateful);
    assert!(config.phabricator.is_none());

    // A server that serves MCP elsewhere: the sidecar forwards callers' /mcp there.
    let elsewhere = everything()
        .set("container.path", json!("/api/v1/mcp"))
        .build();
    let docs = rendered_documents(&[elsewhere], &[]);
    assert_eq!(
        proxy_config(&docs, "everything").upstream.mcp_path,
        "/api/v1/mcp"
    );

    let conduit = ServerBuilder::new("conduit").build();
    let docs = rendered_documents(&[conduit], &[]);
    assert_eq!(
        proxy_config(&docs, "conduit").upstream.url,
        "http://127.0.0.1:8000"
    );
    assert_eq!(proxy_config(&docs, "conduit").upstream.mcp_path, "/mcp");
}

#[test]
fn writable_paths_are_size_limited_empty_dirs_of_the_server_alone() {
    let server = everything()
        .set(
            "container.writablePaths",
            json!([{"path": "/home/node/.cache", "sizeLimit": "1Gi"}, {"path": "/data"}]),
        )
        .build();
    let pod = pod_of_server(&server);
    assert_eq!(
        mounts(container(&pod, "mcp-server")),
        [
            ("tmp".into(), "/tmp".into(), false),
            ("writable-0".into(), "/home/node/.cache".into(), false),
            ("writable-1".into(), "/data".into(), false),
        ]
    );
    assert_eq!(size_of(&pod, "tmp").as_deref(), Some("64Mi"));
    assert_eq!(size_of(&pod, "writable-0").as_deref(), Some("1Gi"));
    assert_eq!(size_of(&pod, "writable-1").as_deref(), Some("64Mi"));
    assert!(
        mounts(container(&pod, "sluice-proxy"))
            .iter()
            .all(|(name, _, read_only)| *read_only && !name.starts_with("writable-"))
    );

    // /tmp listed: its size is the user's, and it is mounted once.
    let server = everything()
        .set(
            "container.writablePaths",
            json!([{"path": "/tmp", "sizeLimit": "512Mi"}]),
        )
        .build();
    let pod = pod_of_server(&server);
    assert_eq!(
        mounts(container(&pod, "mcp-server")),
        [("writable-0".into(), "/tmp".into(), false)]
    );
    assert_eq!(size_of(&pod, "writable-0").as_deref(), Some("512Mi"));
    assert!(pod.volumes.iter().flatten().all(|v| v.name != "tmp"));
}

#[test]
fn a_writable_path_may_be_an_existing_claim_mounted_read_write() {
    let server = everything()
        .set(
            "container.writablePaths",
            json!([{"path": "/data", "claimName": "everything-data"}, {"path": "/cache"}]),
        )
        .build();
    let pod = pod_of_server(&server);
    assert_eq!(
        mounts(container(&pod, "mcp-server")),
        [
            ("tmp".into(), "/tmp".into(), false),
            ("writable-0".into(), "/data".into(), false),
            ("writable-1".into(), "/cache".into(), false),
        ]
    );
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "writable-0")
        .expect("the claim's volume");
    let claim = volume.persistent_volume_claim.as_ref().expect("a claim");
    assert_eq!(claim.claim_name, "everything-data");
    assert_ne!(claim.read_only, Some(true));
    assert!(volume.empty_dir.is_none());
    assert_eq!(size_of(&pod, "writable-1").as_deref(), Some("64Mi"));
}

fn size_of(pod: &PodSpec, name: &str) -> Option<String> {
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .and_then(|v| v.empty_dir.as_ref())
        .and_then(|e| e.size_limit.as_ref())
        .map(|q| q.0.clone())
}

#[test]
fn run_as_user_changes_the_servers_uid_and_nothing_else() {
    let server = everything().set("container.runAsUser", json!(1000)).build();
    let pod = pod_of_server(&server);
    let sc = |name: &str| {
        container(&pod, name)
            .security_context
            .clone()
            .expect("securityContext")
    };
    assert_eq!(sc("mcp-server").run_as_user, Some(1000));
    assert_eq!(sc("mcp-server").run_as_non_root, Some(true));
    assert_eq!(sc("mcp-server").run_as_group, Some(65532));
    assert_eq!(sc("mcp-server").read_only_root_filesystem, Some(true));
    assert_eq!(sc("sluice-proxy").run_as_user, Some(65532));
    let psc = pod.security_context.expect("pod securityContext");
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.fs_group, Some(65532));
}

#[test]
fn the_network_policy_opens_nothing_phabricators_only_what_the_user_adds() {
    let server = everything()
        .set(
            "networkPolicy.egress",
            json!([{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 5432, "protocol": "TCP"}]}]),
        )
        .build();
    let docs = rendered_documents(&[server], &[]);
    let spec = network_policy(&docs, "everything").spec.expect("spec");
    let ports: Vec<i32> = spec
        .egress
        .iter()
        .flatten()
        .flat_map(|rule| rule.ports.iter().flatten())
        .filter_map(|p| match p.port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(
        ports,
        [53, 53, 5432],
        "DNS and the user's rule; no 443 for a Phabricator"
    );
}

#[test]
fn the_servers_secrets_and_config_maps_roll_the_pods_when_they_change() {
    let server = everything()
        .set(
            "container.envFrom",
            json!([
                {"configMapRef": {"name": "everything-settings"}},
                {"secretRef": {"name": "extras", "optional": true}},
            ]),
        )
        .build();
    let rendered = render_server(&server, &[], &Observed::default());
    for (kind, name) in [
        ("Secret", "upstream-api"),
        ("ConfigMap", "everything-settings"),
    ] {
        let reference = rendered
            .references
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .unwrap_or_else(|| panic!("no reference to {kind} {name}"));
        assert_eq!(reference.on_change, OnChange::Rollout, "{kind} {name}");
    }
    assert!(
        rendered.references.iter().all(|r| r.name != "extras"),
        "an optional Secret is no reference: the pods start without it"
    );
    let hash = |observed: &Observed| {
        let rendered = render_server(&server, &[], observed);
        let docs = render_fixtures::objects_documents(&rendered.objects);
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("deployment");
        deployment["spec"]["template"]["metadata"]["annotations"][RESTART_HASH_ANNOTATION]
            .as_str()
            .expect("hash")
            .to_string()
    };
    let mut rotated = Observed::default();
    rotated
        .secret_versions
        .insert("upstream-api".into(), "v2".into());
    assert_ne!(hash(&Observed::default()), hash(&rotated));
}

#[test]
fn routes_of_a_container_server_name_their_mode_and_inject_no_phabricator_token() {
    let server = everything().build();
    let silent = RouteBuilder::new("agents", "everything").build();
    let error = render_error(std::slice::from_ref(&server), &[silent]);
    assert!(
        error.contains("spec.policy.authentication.mode")
            && error.contains("runs a container, not Conduit"),
        "{error}"
    );
    let token = RouteBuilder::new("agents", "everything")
        .set("policy.authentication", json!({"mode": "none"}))
        .set(
            "policy.upstreamToken",
            json!({"secretKeyRef": {"name": "bot", "key": "token"}}),
        )
        .build();
    let error = render_error(std::slice::from_ref(&server), &[token]);
    assert!(error.contains("spec.policy.upstreamToken"), "{error}");

    let keys = RouteBuilder::new("agents", "everything")
        .set(
            "policy.authentication",
            json!({"mode": "apiKey", "apiKey": {"secretRef": {"name": "api-keys"}}}),
        )
        .build();
    let docs = rendered_documents(&[server], &[keys]);
    let config = proxy_config(&docs, "everything");
    let names: Vec<&str> = config
        .entry_points
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["everything", "agents"]);
}

// === stdio servers, behind the bridge ===

/// server-everything as a stdio server: `npx` runs it, `stdio` its mode.
fn everything_stdio() -> ServerBuilder {
    ServerBuilder::stdio("everything", "docker.io/library/node:22-alpine")
        .set(
            "container.command",
            json!(["npx", "-y", "@modelcontextprotocol/server-everything"]),
        )
        .set("container.args", json!(["stdio"]))
        .set(
            "container.env",
            json!([{"name": "HOME", "value": "/home/node"}]),
        )
}

#[test]
fn a_stdio_server_runs_the_users_command_under_the_bridge_with_its_defaults() {
    let pod = pod_of_server(&everything_stdio().build());
    let c = container(&pod, "mcp-server");
    assert_eq!(c.image.as_deref(), Some("docker.io/library/node:22-alpine"));
    assert_eq!(
        c.command.as_deref(),
        Some(&["/sluice/bridge/sluice-bridge".to_string()][..])
    );
    assert_eq!(
        c.args.clone().unwrap_or_default(),
        [
            "run",
            "--port",
            "3000",
            "--max-processes",
            "16",
            "--idle-timeout",
            "30m",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-everything",
            "stdio",
        ]
    );
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(env, ["HOME"], "the processes inherit the container's env");

    let docs = rendered_documents(&[everything_stdio().build()], &[]);
    let config = proxy_config(&docs, "everything");
    assert_eq!(config.upstream.url, "http://127.0.0.1:3000");
    assert_eq!(config.upstream.sessions, Sessions::Stateful);
}

#[test]
fn a_stdio_servers_port_and_limits_reach_the_bridge() {
    let server = everything_stdio()
        .set("container.port", json!(3100))
        .set(
            "container.stdio",
            json!({"maxProcesses": 4, "idleTimeout": "1h30m"}),
        )
        .build();
    let pod = pod_of_server(&server);
    let args = container(&pod, "mcp-server")
        .args
        .clone()
        .unwrap_or_default();
    assert_eq!(
        args[..8],
        [
            "run",
            "--port",
            "3100",
            "--max-processes",
            "4",
            "--idle-timeout",
            "1h30m",
            "--"
        ]
    );
    let docs = rendered_documents(&[server], &[]);
    assert_eq!(
        proxy_config(&docs, "everything").upstream.url,
        "http://127.0.0.1:3100"
    );
}

#[test]
fn the_bridge_is_installed_from_the_sidecars_image_into_an_empty_dir_the_server_cannot_write() {
    let pod = pod_of_server(&everything_stdio().build());
    let init = pod.init_containers.clone().unwrap_or_default();
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["sluice-bridge-install"]);
    let install = &init[0];
    assert_eq!(install.image, container(&pod, "sluice-proxy").image);
    assert_eq!(
        install.command.clone().unwrap_or_default(),
        ["/usr/local/bin/sluice-bridge", "install", "/sluice/bridge"]
    );
    assert_eq!(
        install.security_context,
        container(&pod, "sluice-proxy").security_context,
        "the same hardening as the sidecar"
    );
    let resources = install.resources.clone().expect("resources");
    let memory_limit = resources.limits.and_then(|l| l.get("memory").cloned());
    assert_eq!(memory_limit.map(|q| q.0).as_deref(), Some("32Mi"));
    assert!(resources.requests.is_some_and(|r| r.contains_key("cpu")));

    assert_eq!(
        mounts(install),
        [("sluice-bridge".into(), "/sluice/bridge".into(), false)]
    );
    assert_eq!(
        mounts(container(&pod, "mcp-server")),
        [
            ("tmp".into(), "/tmp".into(), false),
            ("sluice-bridge".into(), "/sluice/bridge".into(), true),
        ]
    );
    assert!(
        mounts(container(&pod, "sluice-proxy"))
            .iter()
            .all(|(name, _, _)| name != "sluice-bridge"),
        "the sidecar has its own copy"
    );
    assert_eq!(size_of(&pod, "sluice-bridge").as_deref(), Some("32Mi"));
}

#[test]
fn a_streamable_http_server_gets_no_bridge() {
    let pod = pod_of_server(&everything().build());
    assert!(pod.init_containers.is_none());
    assert!(
        pod.volumes
            .iter()
            .flatten()
            .all(|v| v.name != "sluice-bridge")
    );
    assert_eq!(
        container(&pod, "mcp-server").args.as_deref(),
        Some(&["streamableHttp".to_string()][..]),
        "its command and args as written"
    );
}

#[test]
fn a_stdio_server_is_probed_and_hardened_as_any_other() {
    let stdio = pod_of_server(
        &everything_stdio()
            .set("container.runAsUser", json!(1000))
            .build(),
    );
    let http = pod_of_server(&everything().set("container.runAsUser", json!(1000)).build());
    let (stdio, http) = (
        container(&stdio, "mcp-server"),
        container(&http, "mcp-server"),
    );
    assert_eq!(stdio.security_context, http.security_context);
    assert_eq!(stdio.startup_probe, http.startup_probe);
    assert_eq!(stdio.liveness_probe, http.liveness_probe);
    assert_eq!(stdio.lifecycle, http.lifecycle);
    assert!(stdio.ports.is_none());
}

#[test]
fn a_streamable_http_server_without_a_port_is_refused_naming_the_field() {
    // The API server refuses it first (a CEL rule); this is what the operator says to a
    // manifest that skipped admission.
    let server = everything().set("container.port", json!(null)).build();
    let error = render_error(&[server], &[]);
    assert!(
        error.contains("spec.container.port") && error.contains("without container.stdio"),
        "{error}"
    );
}
