//! The whole output: determinism, order, labels, owners, no secret values, the sidecar config.

mod render_fixtures;

use std::path::Path;

use render_fixtures::*;
use serde_json::{Value, json};
use sluice_crds::conditions::reasons;
use sluice_crds::{McpRoute, McpServer};
use sluice_operator::render::{self, Observed, RenderOptions, ServiceMonitor};
use sluice_proxy_config::{Auth, Duration, RateLimitScope, UpstreamToken};

/// Two servers in two namespaces with a bit of everything.
fn fleet() -> (Vec<McpServer>, Vec<McpRoute>) {
    let mut other = ServerBuilder::new("beta").meta("namespace", json!("agents"));
    other = other
        .set("replicas", json!(2))
        .set("monitoring.serviceMonitor.enabled", json!(true));
    let servers = vec![
        ServerBuilder::new("alpha")
            .oauth("oauth-client", None)
            .build(),
        other.build(),
        ServerBuilder::new("gamma").build(),
    ];
    let routes = vec![
        RouteBuilder::new("public", "alpha")
            .ingress("phab.example.com", "/ai")
            .build(),
        RouteBuilder::new("zeta", "gamma")
            .http_route("mcp.example.com", "/")
            .build(),
        RouteBuilder::new("bots", "gamma")
            .set(
                "policy.authentication",
                json!({"mode": "serviceAccount", "serviceAccount": {"allowed": ["ci/*"]}}),
            )
            .build(),
    ];
    (servers, routes)
}

#[test]
fn the_same_input_in_any_order_gives_the_same_bytes() {
    let (servers, routes) = fleet();
    let first = yaml(&servers, &routes);
    assert_eq!(first, yaml(&servers, &routes));
    let mut servers_reversed = servers.clone();
    servers_reversed.reverse();
    let mut routes_reversed = routes.clone();
    routes_reversed.reverse();
    assert_eq!(first, yaml(&servers_reversed, &routes_reversed));
    assert!(first.starts_with("---\napiVersion: "), "{}", &first[..40]);
    assert_eq!(
        first.matches("\n---\n").count() + 1,
        render(&servers, &routes).objects.len()
    );
}

#[test]
fn objects_come_per_server_in_apply_order() {
    let (servers, routes) = fleet();
    let output = render(&servers, &routes);
    let listed: Vec<String> = output.objects.iter().map(|o| o.describe()).collect();
    assert_eq!(
        listed,
        [
            // agents/beta sorts before tools/*.
            "ServiceAccount agents/beta",
            "ConfigMap agents/beta-sluice-proxy",
            "Service agents/beta",
            "Deployment agents/beta",
            "PodDisruptionBudget agents/beta",
            "NetworkPolicy agents/beta",
            "ServiceMonitor agents/beta",
            "ServiceAccount tools/alpha",
            "ConfigMap tools/alpha-sluice-proxy",
            "Service tools/alpha",
            "Service tools/public",
            "Deployment tools/alpha",
            "NetworkPolicy tools/alpha",
            "Ingress tools/public",
            "ServiceAccount tools/gamma",
            "ClusterRoleBinding sluice-tools-gamma-tokenreview",
            "ConfigMap tools/gamma-sluice-proxy",
            "Service tools/gamma",
            "Service tools/bots",
            "Service tools/zeta",
            "Deployment tools/gamma",
            "NetworkPolicy tools/gamma",
            "HTTPRoute tools/zeta",
        ]
    );
}

#[test]
fn every_object_is_labelled_and_owned() {
    let (servers, routes) = fleet();
    let output = render(&servers, &routes);
    let docs = objects_documents(&output.objects);
    for doc in &docs {
        let what = format!("{} {}", doc["kind"], doc["metadata"]["name"]);
        let labels = &doc["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "mcp-server", "{what}");
        assert_eq!(labels["app.kubernetes.io/part-of"], "sluice", "{what}");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "sluice-operator",
            "{what}"
        );
        assert_eq!(labels["app.kubernetes.io/version"], "0.2.2", "{what}");
        let server = labels["sluice.dev/server"].as_str().expect("server label");
        assert_eq!(labels["app.kubernetes.io/instance"], server, "{what}");
        if doc["kind"] == "ClusterRoleBinding" {
            assert!(doc["metadata"].get("ownerReferences").is_none(), "{what}");
            continue;
        }
        let owners = doc["metadata"]["ownerReferences"]
            .as_array()
            .expect("owners");
        assert_eq!(owners.len(), 1, "{what}");
        let owner = &owners[0];
        assert_eq!(owner["apiVersion"], "sluice.dev/v1alpha1");
        assert_eq!(
            (
                owner["controller"].as_bool(),
                owner["blockOwnerDeletion"].as_bool()
            ),
            (Some(true), Some(true))
        );
        match labels.get("sluice.dev/route").and_then(Value::as_str) {
            Some(route) => {
                assert_eq!(labels["app.kubernetes.io/component"], "mcp-route", "{what}");
                assert_eq!(
                    (owner["kind"].as_str(), owner["name"].as_str()),
                    (Some("McpRoute"), Some(route))
                );
            }
            None => {
                assert_eq!(
                    labels["app.kubernetes.io/component"], "mcp-server",
                    "{what}"
                );
                assert_eq!(
                    (owner["kind"].as_str(), owner["name"].as_str()),
                    (Some("McpServer"), Some(server))
                );
            }
        }
        let uid = owner["uid"].as_str().expect("uid");
        assert_eq!(uid.len(), 36, "{uid}");
    }
    let placeholder_warnings = output
        .warnings
        .iter()
        .filter(|w| w.contains("placeholder uid"))
        .count();
    assert_eq!(placeholder_warnings, 1, "{:#?}", output.warnings);
}

#[test]
fn live_uids_are_used_and_then_nothing_is_said() {
    let server = ServerBuilder::new("s")
        .meta("uid", json!("0b4a7c1e-0000-4000-8000-000000000001"))
        .build();
    let mut route = RouteBuilder::new("r", "s").build();
    route.metadata.uid = Some("0b4a7c1e-0000-4000-8000-000000000002".into());
    let output = render(&[server], &[route]);
    let docs = objects_documents(&output.objects);
    let uid_of = |name: &str| {
        docs.iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == name)
            .expect("service")["metadata"]["ownerReferences"][0]["uid"]
            .clone()
    };
    assert_eq!(uid_of("s"), "0b4a7c1e-0000-4000-8000-000000000001");
    assert_eq!(uid_of("r"), "0b4a7c1e-0000-4000-8000-000000000002");
    assert!(output.warnings.is_empty(), "{:#?}", output.warnings);
}

/// Walks every string in a document.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}

#[test]
fn no_secret_value_appears_anywhere() {
    // Secrets are named "planted-*"; the controller's observed versions of them are planted
    // values that must never be written out (only a hash of them may be).
    const PLANTED_VALUE: &str = "PLANTED-SECRET-VALUE-6f1c";
    let server = ServerBuilder::new("s")
        .oauth("planted-oauth", None)
        .set("phabricator.caBundle", json!({"secretKeyRef": {"name": "planted-ca", "key": "ca.pem"}}))
        .set("redis", json!({"address": "redis:6379", "passwordSecretRef": {"name": "planted-redis", "key": "password"}}))
        .build();
    let route = RouteBuilder::new("public", "s")
        .ingress("phab.example.com", "/ai")
        .set("expose.ingress.tlsSecretName", json!("planted-tls"))
        .build();
    let mut observed = Observed::default();
    for secret in [
        "planted-oauth",
        "planted-ca",
        "planted-redis",
        "planted-tls",
    ] {
        observed
            .secret_versions
            .insert(secret.into(), PLANTED_VALUE.into());
    }
    let rendered = render_server(&server, &[route], &observed);
    let stream = render::to_yaml_stream(&rendered.objects).expect("yaml");
    assert!(!stream.contains(PLANTED_VALUE));
    let docs = documents(&stream);
    assert!(
        of_kind(&docs, "Secret").is_empty(),
        "Sluice never writes a Secret"
    );

    // Every env variable naming a planted Secret takes it by reference, never by value.
    let pod = pod_of(&docs, "s");
    for c in &pod.containers {
        for e in c.env.iter().flatten() {
            if let Some(value) = &e.value {
                assert!(!value.contains("planted"), "{} = {value}", e.name);
            }
        }
    }
    // Planted names appear only where a reference is expected.
    let mut all = Vec::new();
    for doc in &docs {
        strings(doc, &mut all);
    }
    for s in all.iter().filter(|s| s.contains("planted")) {
        if s.contains('\n') {
            // The sidecar config: only as the path of a mounted file.
            for line in s.lines().filter(|l| l.contains("planted")) {
                assert!(line.contains(": /etc/sluice/secrets/planted-"), "{line:?}");
            }
        } else {
            // A Secret's name, a volume's name or a mount path: one word, no value.
            assert!(!s.contains(char::is_whitespace) && s.len() < 64, "{s:?}");
        }
    }
}

#[test]
fn the_config_map_holds_the_translated_policies() {
    let server = ServerBuilder::new("s")
        .set("proxy.logLevel", json!("debug"))
        .set("proxy.logFormat", json!("text"))
        .set("redis", json!({"address": "redis.infra.svc:6379", "failMode": "closed"}))
        .set(
            "policy",
            json!({
                "authentication": {"mode": "phabricatorToken", "phabricatorToken": {"verify": true, "cacheTtl": "10m", "negativeCacheTtl": "1m"}},
                "tools": {"allow": ["pha_task_*"], "deny": ["pha_task_create"],
                          "rules": [{"identities": ["alice"], "allow": ["pha_*"]}],
                          "resources": {"deny": ["phab://secret/*"]}},
                "rateLimits": [
                    {"name": "per-user", "by": ["identity", "tool"], "requests": 60, "period": "1m"},
                    {"name": "shared", "requests": 1000, "period": "1h", "burst": 50, "scope": "global", "methods": ["tools/call", "resources/read"]}
                ],
                "maxBodyBytes": 262144,
                "allowedOrigins": ["https://claude.ai"],
            }),
        )
        .build();
    let routes = [
        RouteBuilder::new("jwt", "s")
            .ingress("mcp.example.com", "/ai")
            .set(
                "policy.authentication",
                json!({"mode": "jwt", "jwt": {"issuer": "https://idp.example.com/realms/x", "audiences": ["mcp"],
                    "algorithms": ["ES256"], "clockSkew": "30s", "groupsClaim": "groups", "scopes": ["mcp:tools"]}}),
            )
            .set("policy.upstreamToken", json!({"perIdentitySecretRef": {"name": "tokens", "key": "map.json"}}))
            .build(),
        RouteBuilder::new("sa", "s")
            .set("policy.authentication", json!({"mode": "serviceAccount", "serviceAccount": {"allowed": ["ci/*", "agents/bot"]}}))
            .build(),
        RouteBuilder::new("open", "s").set("policy.authentication.mode", json!("none")).build(),
    ];
    let docs = rendered_documents(&[server], &routes);
    let config = proxy_config(&docs, "s");
    assert_eq!(config.admin.listen.to_string(), "[::]:9090");
    assert_eq!(config.upstream.url, "http://127.0.0.1:8000");
    assert_eq!(
        (config.log.level.as_str(), config.log.format),
        ("debug", sluice_proxy_config::LogFormat::Text)
    );
    let phabricator = config.phabricator.clone().expect("phabricator");
    assert_eq!(phabricator.url, "https://phabricator.example.com/api/");
    let redis = config.redis.clone().expect("redis");
    assert_eq!(redis.fail_mode, sluice_proxy_config::FailMode::Closed);
    assert_eq!(redis.key_prefix, "sluice:tools:s:");

    let server_ep = config.entry_point("s").expect("server");
    assert_eq!(
        (server_ep.listen.port(), server_ep.path_prefix.as_str()),
        (8080, "/")
    );
    assert_eq!(server_ep.max_body_bytes, Some(262144));
    assert_eq!(server_ep.allowed_origins, ["https://claude.ai"]);
    let Auth::PhabricatorToken(token) = &server_ep.auth else {
        panic!("{:?}", server_ep.auth)
    };
    let verify = token.verify.clone().expect("verify");
    assert_eq!(
        (verify.cache_ttl, verify.negative_cache_ttl),
        (Duration::from_secs(600), Duration::from_secs(60))
    );
    let tools = &server_ep.tools;
    assert_eq!(tools.allow[0].as_str(), "pha_task_*");
    assert_eq!(tools.deny[0].as_str(), "pha_task_create");
    assert_eq!(tools.rules[0].identities[0].as_str(), "alice");
    assert_eq!(
        tools.resources.as_ref().expect("resources").deny[0].as_str(),
        "phab://secret/*"
    );
    let limits = &server_ep.rate_limits;
    assert_eq!(
        (limits[0].requests, limits[0].burst, limits[0].period),
        (60, Some(60), Duration::from_secs(60))
    );
    assert_eq!(limits[0].methods, ["tools/call"]);
    assert_eq!(limits[0].scope, RateLimitScope::Local);
    assert_eq!(
        (limits[1].burst, limits[1].scope),
        (Some(50), RateLimitScope::Global)
    );

    let jwt_ep = config.entry_point("jwt").expect("jwt");
    assert_eq!(
        jwt_ep.public_url.as_deref(),
        Some("https://mcp.example.com/ai")
    );
    let Auth::Jwt(jwt) = &jwt_ep.auth else {
        panic!("{:?}", jwt_ep.auth)
    };
    assert_eq!(jwt.issuer, "https://idp.example.com/realms/x");
    assert_eq!(jwt.clock_skew, Duration::from_secs(30));
    assert_eq!(jwt.algorithms, [sluice_proxy_config::JwtAlgorithm::ES256]);
    assert_eq!(jwt.groups_claim.as_deref(), Some("groups"));
    let discovery = jwt_ep.discovery.clone().expect("discovery");
    assert_eq!(
        discovery.authorization_servers,
        ["https://idp.example.com/realms/x"]
    );
    assert_eq!(discovery.scopes, ["mcp:tools"]);
    assert_eq!(
        jwt_ep.upstream_token,
        Some(UpstreamToken::PerIdentityFile(
            Path::new("/etc/sluice/secrets/tokens/map.json").into()
        ))
    );

    let sa_ep = config.entry_point("sa").expect("sa");
    let Auth::ServiceAccount(sa) = &sa_ep.auth else {
        panic!("{:?}", sa_ep.auth)
    };
    assert_eq!(sa.audience, "http://sa.tools.svc");
    assert_eq!(sa.allowed, ["ci/*", "agents/bot"]);
    assert_eq!(sa.token_review.api_server, "https://kubernetes.default.svc");
    assert!(sa_ep.discovery.is_none());

    assert!(matches!(
        config.entry_point("open").expect("open").auth,
        Auth::None
    ));
}

#[test]
fn degraded_settings_are_reported() {
    let server = ServerBuilder::new("s")
        .set("phabricator.insecureSkipVerify", json!(true))
        .set("policy.authentication.mode", json!("none"))
        .build();
    let rendered = render_server(&server, &[], &Observed::default());
    let reasons: Vec<&str> = rendered.degraded.iter().map(|n| n.reason).collect();
    assert_eq!(reasons, [reasons::INSECURE, reasons::UNAUTHENTICATED]);
    let output = render::render_all(&[server], &[], &RenderOptions::default()).expect("renders");
    assert!(
        output
            .warnings
            .iter()
            .any(|w| w.contains("McpServer tools/s: Insecure")),
        "{:#?}",
        output.warnings
    );
    let clean = render_server(&ServerBuilder::new("s").build(), &[], &Observed::default());
    assert!(clean.degraded.is_empty());
}

#[test]
fn a_service_monitor_scrapes_the_servers_metrics_port() {
    let server = ServerBuilder::new("s")
        .set(
            "monitoring.serviceMonitor",
            json!({"enabled": true, "interval": "15s",
            "labels": {"release": "prometheus", "app.kubernetes.io/name": "hijack"}}),
        )
        .build();
    let docs = rendered_documents(&[server], &[RouteBuilder::new("r", "s").build()]);
    let monitor: ServiceMonitor = find(&docs, "ServiceMonitor", "s");
    assert_eq!(monitor.api_version, "monitoring.coreos.com/v1");
    let labels = monitor.metadata.labels.clone().expect("labels");
    assert_eq!(labels["release"], "prometheus");
    assert_eq!(labels["app.kubernetes.io/name"], "mcp-server");
    let selector = monitor
        .spec
        .selector
        .match_labels
        .clone()
        .expect("selector");
    assert_eq!(selector["app.kubernetes.io/component"], "mcp-server");
    assert_eq!(selector["app.kubernetes.io/instance"], "s");
    let endpoint = &monitor.spec.endpoints[0];
    assert_eq!(
        (
            endpoint.port.as_str(),
            endpoint.path.as_str(),
            endpoint.interval.as_str()
        ),
        ("metrics", "/metrics", "15s")
    );
    // It selects the server's Service (which has the metrics port) and not the route's.
    let matches = |name: &str| {
        let service_labels = service(&docs, name).metadata.labels.expect("labels");
        selector
            .iter()
            .all(|(k, v)| service_labels.get(k) == Some(v))
    };
    assert!(matches("s") && !matches("r"));
    assert!(!has(
        &rendered_documents(&[ServerBuilder::new("s").build()], &[]),
        "ServiceMonitor",
        "s"
    ));
}
