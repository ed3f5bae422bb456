//! The files in the pod: CA bundle, policy Secrets, the TokenReview token, the restart hash.

mod render_fixtures;

use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use render_fixtures::*;
use serde_json::json;
use sluice_crds::{McpRoute, McpServer};
use sluice_operator::render::{Observed, OnChange, RESTART_HASH_ANNOTATION};

#[test]
fn the_ca_bundle_is_mounted_where_conduit_and_the_sidecar_look() {
    for (source, volume_kind) in [
        (
            json!({"configMapKeyRef": {"name": "corp-ca", "key": "ca.pem"}}),
            "configMap",
        ),
        (
            json!({"secretKeyRef": {"name": "corp-ca", "key": "ca.pem"}}),
            "secret",
        ),
    ] {
        let server = ServerBuilder::new("ca")
            .set("phabricator.caBundle", source)
            .build();
        let docs = rendered_documents(&[server], &[]);
        let pod = pod_of(&docs, "ca");
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "phabricator-ca")
            .expect("volume");
        let volume_json = serde_json::to_value(volume).expect("json");
        assert_eq!(
            volume_json[volume_kind]["items"],
            json!([{"key": "ca.pem", "path": "ca.crt"}])
        );
        for c in ["conduit", "sluice-proxy"] {
            let mounts = container(&pod, c).volume_mounts.clone().unwrap_or_default();
            let mount = mounts
                .iter()
                .find(|m| m.name == "phabricator-ca")
                .expect("mounted");
            assert_eq!(mount.mount_path, "/etc/sluice/phabricator-ca");
            assert_eq!(mount.read_only, Some(true));
        }
        let config = proxy_config(&docs, "ca");
        let ca_file = config.phabricator.and_then(|p| p.ca_file).expect("caFile");
        assert_eq!(ca_file.to_str(), Some("/etc/sluice/phabricator-ca/ca.crt"));
    }
}

#[test]
fn a_jwt_issuers_ca_bundle_is_mounted_into_the_sidecar_alone_and_reloads_there() {
    let jwt = |issuer: &str, ca: serde_json::Value| json!({"mode": "jwt", "jwt": {"issuer": issuer, "audiences": ["mcp"], "caBundle": ca}});
    let corp_ca = json!({"configMapKeyRef": {"name": "corp-ca", "key": "ca.pem"}});
    let server = ServerBuilder::new("oidc")
        .set(
            "policy.authentication",
            jwt("https://keycloak.auth.svc/realms/mcp", corp_ca.clone()),
        )
        .build();
    let routes = [
        // Another issuer with another CA, from a Secret.
        RouteBuilder::new("partners", "oidc")
            .set(
                "policy.authentication",
                jwt(
                    "https://dex.example.com",
                    json!({"secretKeyRef": {"name": "dex-ca", "key": "ca.crt"}}),
                ),
            )
            .build(),
        // The server's CA again: one file serves both.
        RouteBuilder::new("staff", "oidc")
            .set(
                "policy.authentication",
                jwt("https://keycloak.auth.svc/realms/staff", corp_ca),
            )
            .build(),
    ];
    let docs = rendered_documents(std::slice::from_ref(&server), &routes);
    let pod = pod_of(&docs, "oidc");
    let config = proxy_config(&docs, "oidc");
    let ca_files: Vec<std::path::PathBuf> = config
        .entry_points
        .iter()
        .map(|ep| match &ep.auth {
            sluice_proxy_config::Auth::Jwt(jwt) => jwt.ca_file.clone().expect("caFile"),
            other => panic!("{}: {other:?}", ep.name),
        })
        .collect();
    assert_eq!(ca_files.len(), 3);
    assert_ne!(ca_files[0], ca_files[1], "two sources, two files");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "ca-bundles")
        .expect("the ca-bundles volume");
    let volume = serde_json::to_value(volume).expect("json");
    let sources = volume["projected"]["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 2, "{volume:#}");
    let mount = container(&pod, "sluice-proxy")
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "ca-bundles")
        .expect("mounted into the sidecar");
    assert_eq!(mount.read_only, Some(true));
    for (file, (kind, name, key)) in ca_files.iter().zip([
        ("configMap", "corp-ca", "ca.pem"),
        ("secret", "dex-ca", "ca.crt"),
        ("configMap", "corp-ca", "ca.pem"),
    ]) {
        // The file the config names is the one the volume projects from that source.
        let relative = file
            .strip_prefix(&mount.mount_path)
            .unwrap_or_else(|_| panic!("{} is outside {}", file.display(), mount.mount_path));
        let projected = sources.iter().find(|s| s[kind]["name"] == name);
        let item = &projected.expect("projected")[kind]["items"][0];
        assert_eq!(item["key"], key);
        assert_eq!(item["path"], relative.to_str().expect("utf-8"));
    }
    let conduit = container(&pod, "conduit");
    assert!(
        !conduit
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "ca-bundles"),
        "Conduit does not call the issuer"
    );
    // A changed bundle is re-read by the sidecar: no rollout.
    let rendered = render_server(&server, &routes, &Observed::default());
    for (kind, name) in [("ConfigMap", "corp-ca"), ("Secret", "dex-ca")] {
        let reference = rendered
            .references
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .unwrap_or_else(|| panic!("no reference to {kind} {name}"));
        assert_eq!(reference.on_change, OnChange::Reload);
    }
}

#[test]
fn policy_files_are_mounted_into_the_sidecar_at_the_paths_the_config_names() {
    let server = ServerBuilder::new("files")
        .set("redis", json!({"address": "redis.infra.svc:6379", "passwordSecretRef": {"name": "redis", "key": "password"}}))
        .set("policy.authentication", json!({"mode": "apiKey", "apiKey": {"secretRef": {"name": "keys.example"}}}))
        .set("policy.upstreamToken", json!({"perIdentitySecretRef": {"name": "tokens", "key": "map.json"}}))
        .build();
    let route = RouteBuilder::new("bots", "files")
        .set(
            "policy.authentication",
            json!({"mode": "serviceAccount", "serviceAccount": {"allowed": ["ci/*"]}}),
        )
        .set(
            "policy.upstreamToken",
            json!({"secretKeyRef": {"name": "tokens", "key": "bot"}}),
        )
        .build();
    let docs = rendered_documents(&[server], &[route]);
    let pod = pod_of(&docs, "files");
    let config = proxy_config(&docs, "files");
    let sidecar = container(&pod, "sluice-proxy");
    let mounts = sidecar.volume_mounts.clone().unwrap_or_default();
    let volumes = pod.volumes.clone().unwrap_or_default();
    // Each path the config names lies under a sidecar mount that provides that file.
    let provided = |path: &std::path::Path| {
        let path = path.to_str().expect("utf-8");
        mounts.iter().any(|m| {
            let Some(rest) = path.strip_prefix(&m.mount_path) else {
                return false;
            };
            let file = rest.trim_start_matches('/');
            let volume = volumes
                .iter()
                .find(|v| v.name == m.name)
                .expect("volume of mount");
            match (&volume.secret, &volume.projected) {
                (Some(secret), _) => match &secret.items {
                    None => true,
                    Some(items) => items.iter().any(|i| i.path == file),
                },
                (None, Some(projected)) => serde_json::to_string(projected)
                    .expect("json")
                    .contains(file),
                _ => false,
            }
        })
    };
    let server_ep = config.entry_point("files").expect("server entry point");
    let route_ep = config.entry_point("bots").expect("route entry point");
    let mut paths = vec![
        config
            .redis
            .clone()
            .and_then(|r| r.password_file)
            .expect("password file"),
    ];
    match &server_ep.auth {
        sluice_proxy_config::Auth::ApiKey(a) => paths.push(a.keys_dir.clone()),
        other => panic!("{other:?}"),
    }
    match &route_ep.auth {
        sluice_proxy_config::Auth::ServiceAccount(sa) => {
            paths.push(sa.token_review.token_file.clone());
            paths.push(sa.token_review.ca_file.clone());
        }
        other => panic!("{other:?}"),
    }
    for token in [&server_ep.upstream_token, &route_ep.upstream_token] {
        match token {
            Some(sluice_proxy_config::UpstreamToken::File(p))
            | Some(sluice_proxy_config::UpstreamToken::PerIdentityFile(p)) => paths.push(p.clone()),
            None => panic!("an upstream token"),
        }
    }
    for path in &paths {
        assert!(
            provided(path),
            "{} is not mounted: {mounts:#?}",
            path.display()
        );
    }
    // One volume per Secret, holding only the keys the config uses (all keys for API keys).
    let tokens = volumes
        .iter()
        .find(|v| {
            v.secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some("tokens"))
        })
        .expect("tokens");
    let keys: Vec<String> = tokens
        .secret
        .as_ref()
        .and_then(|s| s.items.clone())
        .expect("items")
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(keys, ["bot", "map.json"]);
    let api_keys = volumes
        .iter()
        .find(|v| {
            v.secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some("keys.example"))
        })
        .expect("keys");
    assert!(api_keys.secret.as_ref().is_some_and(|s| s.items.is_none()));
    assert!(
        api_keys.name.len() <= 63 && !api_keys.name.contains('.'),
        "{}",
        api_keys.name
    );
    // Conduit sees none of it.
    let conduit_mounts: Vec<String> = container(&pod, "conduit")
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(conduit_mounts, ["tmp"]);
}

#[test]
fn redis_tls_ca_and_acl_user_are_mounted_into_the_sidecar_only() {
    let server = ServerBuilder::new("rtls")
        .set(
            "redis",
            json!({
                "address": "redis.infra.svc:6380",
                "tls": {"caBundle": {"configMapKeyRef": {"name": "redis-ca", "key": "ca.crt"}}},
                "usernameSecretRef": {"name": "redis-acl", "key": "username"},
                "passwordSecretRef": {"name": "redis-acl", "key": "password"},
            }),
        )
        .build();
    let docs = rendered_documents(&[server], &[]);
    let pod = pod_of(&docs, "rtls");
    let config = proxy_config(&docs, "rtls");
    let redis = config.redis.clone().expect("redis");
    let ca_file = redis.tls.clone().and_then(|t| t.ca_file).expect("ca file");
    let username = redis.username_file.clone().expect("username file");
    let password = redis.password_file.clone().expect("password file");
    assert_eq!(
        username,
        std::path::Path::new("/etc/sluice/secrets/redis-acl/username")
    );
    assert_eq!(
        password,
        std::path::Path::new("/etc/sluice/secrets/redis-acl/password")
    );
    assert!(
        ca_file.starts_with("/etc/sluice/ca-bundles"),
        "{}",
        ca_file.display()
    );
    let sidecar_mounts: Vec<String> = container(&pod, "sluice-proxy")
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    for dir in ["/etc/sluice/secrets/redis-acl", "/etc/sluice/ca-bundles"] {
        assert!(
            sidecar_mounts.iter().any(|m| m == dir),
            "{sidecar_mounts:?}"
        );
    }
    let volumes = pod.volumes.clone().unwrap_or_default();
    let acl = volumes
        .iter()
        .find(|v| {
            v.secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some("redis-acl"))
        })
        .expect("the ACL Secret's volume");
    let keys: Vec<String> = acl
        .secret
        .as_ref()
        .and_then(|s| s.items.clone())
        .expect("items")
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(keys, ["password", "username"]);
    let bundles = serde_json::to_string(
        volumes
            .iter()
            .find(|v| v.name == "ca-bundles")
            .expect("ca-bundles volume"),
    )
    .expect("json");
    assert!(bundles.contains("redis-ca"), "{bundles}");
    let conduit_mounts: Vec<String> = container(&pod, "conduit")
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(conduit_mounts, ["tmp"]);
}

#[test]
fn redis_sentinel_renders_with_its_password_mounted_into_the_sidecar_only() {
    let server = ServerBuilder::new("rs")
        .set(
            "redis",
            json!({
                "sentinel": {
                    "masterName": "rate-limits",
                    "addresses": ["sentinel.infra.svc:26379"],
                    "passwordSecretRef": {"name": "sentinel", "key": "password"},
                },
                "passwordSecretRef": {"name": "redis", "key": "password"},
                "failMode": "closed",
            }),
        )
        .build();
    let docs = rendered_documents(&[server], &[]);
    let config = proxy_config(&docs, "rs");
    let redis = config.redis.clone().expect("redis");
    assert_eq!(redis.address, None);
    let sentinel = redis.sentinel.clone().expect("sentinel");
    assert_eq!(sentinel.master_name, "rate-limits");
    assert_eq!(sentinel.addresses, ["sentinel.infra.svc:26379"]);
    assert_eq!(
        sentinel.password_file.as_deref(),
        Some(std::path::Path::new(
            "/etc/sluice/secrets/sentinel/password"
        ))
    );
    assert_eq!(
        redis.password_file.as_deref(),
        Some(std::path::Path::new("/etc/sluice/secrets/redis/password"))
    );
    let pod = pod_of(&docs, "rs");
    let sidecar_mounts: Vec<String> = container(&pod, "sluice-proxy")
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    assert!(
        sidecar_mounts
            .iter()
            .any(|m| m == "/etc/sluice/secrets/sentinel"),
        "{sidecar_mounts:?}"
    );
    let conduit_mounts: Vec<String> = container(&pod, "conduit")
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(conduit_mounts, ["tmp"]);
}

#[test]
fn token_review_gets_a_projected_token_in_the_sidecar_and_a_binding() {
    let plain = rendered_documents(&[ServerBuilder::new("plain").build()], &[]);
    assert!(of_kind(&plain, "ClusterRoleBinding").is_empty());
    assert!(
        pod_of(&plain, "plain")
            .volumes
            .iter()
            .flatten()
            .all(|v| v.projected.is_none())
    );

    let route = RouteBuilder::new("bots", "plain")
        .set(
            "policy.authentication",
            json!({"mode": "serviceAccount", "serviceAccount": {"allowed": ["ci/*"]}}),
        )
        .build();
    let docs = rendered_documents(&[ServerBuilder::new("plain").build()], &[route]);
    let pod = pod_of(&docs, "plain");
    let projected = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.projected.is_some())
        .expect("projected volume");
    let mounts_of = |c: &str| -> Vec<String> {
        container(&pod, c)
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.name == projected.name)
            .map(|m| m.mount_path.clone())
            .collect()
    };
    assert_eq!(
        mounts_of("sluice-proxy"),
        ["/var/run/secrets/kubernetes.io/serviceaccount"]
    );
    assert!(mounts_of("conduit").is_empty());
    assert_eq!(pod.automount_service_account_token, Some(false));

    let binding: ClusterRoleBinding = find(
        &docs,
        "ClusterRoleBinding",
        "sluice-tools-plain-tokenreview",
    );
    assert_eq!(binding.role_ref.name, "system:auth-delegator");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "plain", Some("tools"))
    );
    assert!(
        binding.metadata.owner_references.is_none(),
        "cluster-scoped: no namespaced owner"
    );
    assert!(binding.metadata.namespace.is_none());
    let labels = binding.metadata.labels.expect("labels");
    assert_eq!(labels["sluice.dev/namespace"], "tools");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "sluice-operator");
}

#[test]
fn the_trace_headers_secret_is_mounted_into_the_sidecar_alone() {
    let server = ServerBuilder::new("traced")
        .set(
            "proxy.tracing",
            json!({"endpoint": "https://otlp.example.com/v1/traces", "headersSecretRef": {"name": "otlp-headers"}}),
        )
        .build();
    let docs = rendered_documents(&[server], &[]);
    let headers_dir = proxy_config(&docs, "traced")
        .tracing
        .and_then(|t| t.otlp.headers_dir)
        .expect("headers dir");
    let pod = pod_of(&docs, "traced");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some("otlp-headers"))
        })
        .expect("the headers Secret's volume");
    // Every key: each is a header.
    assert_eq!(volume.secret.as_ref().and_then(|s| s.items.clone()), None);
    let mounts_of = |c: &str| -> Vec<(String, Option<bool>)> {
        container(&pod, c)
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.name == volume.name)
            .map(|m| (m.mount_path.clone(), m.read_only))
            .collect()
    };
    assert_eq!(
        mounts_of("sluice-proxy"),
        [(headers_dir.to_string_lossy().into_owned(), Some(true))]
    );
    assert!(mounts_of("conduit").is_empty());
}

#[test]
fn the_trace_collectors_ca_is_mounted_into_the_sidecar_alone_and_rolls_the_pods() {
    let server = ServerBuilder::new("traced")
        .set(
            "proxy.tracing",
            json!({"endpoint": "https://otel-collector.observability.svc:4318",
                "caBundle": {"configMapKeyRef": {"name": "collector-ca", "key": "ca.crt"}}}),
        )
        .build();
    let docs = rendered_documents(std::slice::from_ref(&server), &[]);
    let ca_file = proxy_config(&docs, "traced")
        .tracing
        .and_then(|t| t.otlp.ca_file)
        .expect("the export's CA file");
    let pod = pod_of(&docs, "traced");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.projected.as_ref().is_some_and(|p| {
                p.sources.iter().flatten().any(|s| {
                    s.config_map
                        .as_ref()
                        .is_some_and(|c| c.name == "collector-ca")
                })
            })
        })
        .expect("a volume with the collector's CA");
    let mounted: Vec<String> = container(&pod, "sluice-proxy")
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name == volume.name)
        .map(|m| m.mount_path.clone())
        .collect();
    assert_eq!(mounted.len(), 1, "{mounted:?}");
    assert!(
        ca_file.starts_with(&mounted[0]),
        "{} is not under {mounted:?}",
        ca_file.display()
    );
    assert!(
        container(&pod, "conduit")
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.name != volume.name)
    );

    // Read at start: a new CA rolls the pods.
    let observed = Observed::default();
    let rendered = render_server(&server, &[], &observed);
    let reference = rendered
        .references
        .iter()
        .find(|r| r.kind == "ConfigMap" && r.name == "collector-ca")
        .expect("the CA's ConfigMap is referenced");
    assert_eq!(reference.on_change, OnChange::Rollout);
    let mut rotated = observed.clone();
    rotated
        .config_map_versions
        .insert("collector-ca".into(), "v2".into());
    assert_ne!(
        restart_hash(&template_of(&server, &[], &observed)),
        restart_hash(&template_of(&server, &[], &rotated)),
        "a new CA rolls out"
    );
}

fn template_of(server: &McpServer, routes: &[McpRoute], observed: &Observed) -> serde_json::Value {
    let rendered = render_server(server, routes, observed);
    let docs = objects_documents(&rendered.objects);
    docs.iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment")["spec"]["template"]
        .clone()
}

fn restart_hash(template: &serde_json::Value) -> String {
    template["metadata"]["annotations"][RESTART_HASH_ANNOTATION]
        .as_str()
        .expect("hash")
        .to_string()
}

#[test]
fn the_restart_hash_follows_what_conduit_reads_at_start_and_nothing_else() {
    let observed = Observed::default();
    let server = ServerBuilder::new("oauth")
        .oauth("oauth-client", Some("https://mcp.example.com"))
        .build();
    let base = template_of(&server, &[], &observed);

    let renamed = ServerBuilder::new("oauth")
        .oauth("other-client", Some("https://mcp.example.com"))
        .build();
    assert_ne!(
        restart_hash(&base),
        restart_hash(&template_of(&renamed, &[], &observed))
    );

    let mut rotated = observed.clone();
    rotated
        .secret_versions
        .insert("oauth-client".into(), "v2".into());
    let rotated_hash = restart_hash(&template_of(&server, &[], &rotated));
    assert_ne!(
        restart_hash(&base),
        rotated_hash,
        "a new version of the client secret rolls out"
    );
    let mut unrelated = observed.clone();
    unrelated
        .secret_versions
        .insert("something-else".into(), "v2".into());
    assert_eq!(
        restart_hash(&base),
        restart_hash(&template_of(&server, &[], &unrelated))
    );

    // Files the sidecar re-reads (API keys here) do not roll the pod when they change.
    let keys = RouteBuilder::new("keys", "oauth")
        .ingress("mcp.example.com", "/")
        .set("policy.authentication", json!({"mode": "oauth"}))
        .set(
            "policy.upstreamToken",
            json!({"secretKeyRef": {"name": "bot", "key": "token"}}),
        )
        .build();
    let with_keys = template_of(&server, std::slice::from_ref(&keys), &observed);
    let mut rotated_keys = observed.clone();
    rotated_keys
        .secret_versions
        .insert("bot".into(), "v2".into());
    assert_eq!(
        with_keys,
        template_of(&server, std::slice::from_ref(&keys), &rotated_keys)
    );

    // Policy and routes reload live: the whole pod template stays the same.
    let header = ServerBuilder::new("plain").build();
    let before = template_of(&header, &[], &observed);
    let tightened = ServerBuilder::new("plain")
        .set("policy.tools", json!({"deny": ["pha_passphrase_*"]}))
        .set(
            "policy.rateLimits",
            json!([{"name": "per-user", "by": ["identity"], "requests": 10}]),
        )
        .build();
    let routes = [
        RouteBuilder::new("public", "plain")
            .ingress("mcp.example.com", "/ai")
            .build(),
        RouteBuilder::new("internal", "plain")
            .set("policy.tools.allow", json!(["pha_task_*"]))
            .build(),
    ];
    assert_eq!(before, template_of(&tightened, &routes, &observed));
    // ... while a CA bundle, read by Conduit at start, changes it.
    let ca = ServerBuilder::new("plain")
        .set(
            "phabricator.caBundle",
            json!({"configMapKeyRef": {"name": "corp-ca", "key": "ca.pem"}}),
        )
        .build();
    let with_ca = template_of(&ca, &[], &observed);
    assert_ne!(restart_hash(&before), restart_hash(&with_ca));
    let mut new_ca = observed.clone();
    new_ca
        .config_map_versions
        .insert("corp-ca".into(), "42".into());
    assert_ne!(
        restart_hash(&with_ca),
        restart_hash(&template_of(&ca, &[], &new_ca))
    );
}

#[test]
fn the_trace_export_and_its_headers_roll_the_pods_as_the_sidecar_reads_them_at_start() {
    let observed = Observed::default();
    let traced = |ratio: &str| {
        ServerBuilder::new("traced")
            .set(
                "proxy.tracing",
                json!({"endpoint": "https://otlp.example.com/v1/traces", "samplingRatio": ratio,
                    "headersSecretRef": {"name": "otlp-headers"}}),
            )
            .build()
    };
    let rendered = render_server(&traced("1"), &[], &observed);
    let reference = rendered
        .references
        .iter()
        .find(|r| r.kind == "Secret" && r.name == "otlp-headers")
        .expect("the headers Secret is referenced");
    assert_eq!(reference.on_change, OnChange::Rollout);

    let base = restart_hash(&template_of(&traced("1"), &[], &observed));
    assert_ne!(
        base,
        restart_hash(&template_of(&traced("0.5"), &[], &observed)),
        "a new sampling ratio rolls out"
    );
    let mut rotated = observed.clone();
    rotated
        .secret_versions
        .insert("otlp-headers".into(), "v2".into());
    assert_ne!(
        base,
        restart_hash(&template_of(&traced("1"), &[], &rotated)),
        "new headers roll out"
    );
    // Without traces nothing is added: a server that reads nothing at start keeps the hash of
    // no input (SHA-256 of nothing), so the operator's upgrade rolls no pods.
    let plain = ServerBuilder::new("traced").build();
    assert_eq!(
        restart_hash(&template_of(&plain, &[], &observed)),
        "e3b0c44298fc1c14"
    );
}

#[test]
fn tls_secrets_are_mounted_whole_into_the_sidecar_and_services_speak_https() {
    let tls = |secret: &str, client_ca: bool| {
        let mut tls = json!({"secretName": secret});
        if client_ca {
            tls["clientCa"] = json!({"secretKeyRef": {"name": secret, "key": "ca.crt"}});
        }
        tls
    };
    let server = ServerBuilder::new("mtls")
        .set("tls", tls("mtls-tls", true))
        .set(
            "policy.authentication",
            json!({"mode": "clientCertificate"}),
        )
        .set(
            "policy.upstreamToken",
            json!({"secretKeyRef": {"name": "bot", "key": "token"}}),
        )
        .build();
    let routes = [
        RouteBuilder::new("edge", "mtls")
            .ingress("mcp.example.com", "/ai")
            .set("tls", tls("edge-tls", false))
            .build(),
        RouteBuilder::new("gw", "mtls")
            .http_route("gw.example.com", "/gw")
            .set("tls", tls("gw-tls", false))
            .build(),
        RouteBuilder::new("plain", "mtls").build(),
    ];
    let docs = rendered_documents(&[server], &routes);
    let config = proxy_config(&docs, "mtls");
    let entry = |name: &str| {
        config
            .entry_points
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("entry point {name}"))
    };
    let server_tls = entry("mtls").tls.clone().expect("server TLS");
    assert_eq!(
        server_tls.cert_file,
        std::path::Path::new("/etc/sluice/secrets/mtls-tls/tls.crt")
    );
    assert_eq!(
        server_tls.key_file,
        std::path::Path::new("/etc/sluice/secrets/mtls-tls/tls.key")
    );
    let client_ca = server_tls.client_ca_file.expect("client CA");
    assert!(
        client_ca.starts_with("/etc/sluice/ca-bundles"),
        "{}",
        client_ca.display()
    );
    assert_eq!(
        entry("mtls").auth,
        sluice_proxy_config::Auth::ClientCertificate
    );
    let edge_tls = entry("edge").tls.clone().expect("route TLS");
    assert_eq!(edge_tls.client_ca_file, None);
    assert_eq!(entry("plain").tls, None);

    // Whole Secrets (no items, no subPath), so the kubelet's updates reach the files; the
    // sidecar's alone.
    let pod = pod_of(&docs, "mtls");
    for secret in ["mtls-tls", "edge-tls", "gw-tls"] {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| {
                v.secret
                    .as_ref()
                    .is_some_and(|s| s.secret_name.as_deref() == Some(secret))
            })
            .unwrap_or_else(|| panic!("{secret}'s volume"));
        assert_eq!(volume.secret.as_ref().and_then(|s| s.items.clone()), None);
        let mount = container(&pod, "sluice-proxy")
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume.name)
            .unwrap_or_else(|| panic!("{secret} mounted"));
        assert_eq!(mount.mount_path, format!("/etc/sluice/secrets/{secret}"));
        assert_eq!(mount.sub_path, None);
    }
    let conduit_mounts: Vec<String> = container(&pod, "conduit")
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(conduit_mounts, ["tmp"]);

    // Probes stay on the admin port, plain HTTP.
    let sidecar = container(&pod, "sluice-proxy");
    for probe in [&sidecar.liveness_probe, &sidecar.readiness_probe] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("httpGet");
        assert_eq!(get.port, IntOrString::String("admin".into()));
        assert_eq!(get.scheme, None);
    }

    // Services: 443 `https` for TLS entry points, 80 `http` for the others; exposure follows.
    let ports = |name: &str| -> Vec<(String, i32, Option<String>)> {
        service(&docs, name)
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name.unwrap_or_default(), p.port, p.app_protocol))
            .collect()
    };
    let https = ("https".to_string(), 443, Some("https".to_string()));
    assert_eq!(ports("mtls")[0], https);
    for route in ["edge", "gw"] {
        assert_eq!(ports(route), std::slice::from_ref(&https), "{route}");
    }
    assert_eq!(ports("plain"), [("http".to_string(), 80, None)]);
    let backend_port = ingress(&docs, "edge")
        .spec
        .and_then(|s| s.rules)
        .and_then(|r| r.into_iter().next())
        .and_then(|r| r.http)
        .and_then(|h| h.paths.into_iter().next())
        .and_then(|p| p.backend.service)
        .and_then(|s| s.port)
        .and_then(|p| p.number);
    assert_eq!(backend_port, Some(443));
    let http_route = of_kind(&docs, "HTTPRoute")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "gw")
        .expect("the HTTPRoute");
    assert_eq!(
        http_route["spec"]["rules"][0]["backendRefs"][0]["port"],
        443
    );
}
