//! Routes: listener ports, Services, URLs, Ingress and HTTPRoute paths, conflicts, rejections.

mod render_fixtures;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use render_fixtures::*;
use serde_json::{Value, json};
use sluice_crds::McpRoute;
use sluice_crds::conditions::reasons;
use sluice_operator::render::{AcceptedRoute, HttpRoute, Observed, Rendered};

fn accepted(rendered: &Rendered) -> BTreeMap<String, AcceptedRoute> {
    rendered
        .routes
        .iter()
        .filter_map(|o| {
            o.result
                .as_ref()
                .ok()
                .map(|a| (o.route.name.clone(), a.clone()))
        })
        .collect()
}

fn ports(rendered: &Rendered) -> BTreeMap<String, u16> {
    accepted(rendered)
        .into_iter()
        .map(|(name, a)| (name, a.listener_port))
        .collect()
}

fn target_port(docs: &[Value], service_name: &str) -> IntOrString {
    let service = service(docs, service_name);
    let ports = service.spec.and_then(|s| s.ports).expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].port, 80);
    ports[0].target_port.clone().expect("targetPort")
}

fn routes(names: &[&str]) -> Vec<McpRoute> {
    names
        .iter()
        .map(|name| RouteBuilder::new(name, "s").build())
        .collect()
}

#[test]
fn new_routes_take_the_lowest_free_ports_and_services_target_them() {
    let server = ServerBuilder::new("s").build();
    let rendered = render_server(&server, &routes(&["b", "a"]), &Observed::default());
    assert_eq!(
        ports(&rendered),
        BTreeMap::from([("a".into(), 8081), ("b".into(), 8082)])
    );
    let docs = objects_documents(&rendered.objects);
    assert_eq!(target_port(&docs, "a"), IntOrString::Int(8081));
    assert_eq!(target_port(&docs, "b"), IntOrString::Int(8082));
    let config = proxy_config(&docs, "s");
    let listen: Vec<(String, u16)> = config
        .entry_points
        .iter()
        .map(|e| (e.name.clone(), e.listen.port()))
        .collect();
    assert_eq!(
        listen,
        [("s".into(), 8080), ("a".into(), 8081), ("b".into(), 8082)]
    );
}

#[test]
fn ports_in_route_statuses_stay_and_a_new_route_moves_nobody() {
    let server = ServerBuilder::new("s").build();
    let before = vec![
        RouteBuilder::new("m", "s").status_port(8081).build(),
        RouteBuilder::new("z", "s").status_port(8082).build(),
    ];
    let observed = Observed::from_route_statuses(&before);
    let first = render_server(&server, &before, &observed);
    assert_eq!(
        ports(&first),
        BTreeMap::from([("m".into(), 8081), ("z".into(), 8082)])
    );

    // "a" sorts first but must not take a port someone holds.
    let mut after = before.clone();
    after.push(RouteBuilder::new("a", "s").build());
    let observed = Observed::from_route_statuses(&after);
    let second = render_server(&server, &after, &observed);
    assert_eq!(
        ports(&second),
        BTreeMap::from([("a".into(), 8083), ("m".into(), 8081), ("z".into(), 8082)])
    );
    // The offline render reads the statuses the same way.
    let docs = rendered_documents(&[server], &after);
    assert_eq!(target_port(&docs, "a"), IntOrString::Int(8083));
    assert_eq!(target_port(&docs, "z"), IntOrString::Int(8082));
}

#[test]
fn a_route_beyond_the_last_port_is_rejected_and_the_others_stay() {
    let server = ServerBuilder::new("s").build();
    let names: Vec<String> = (0..=919).map(|i| format!("r{i:03}")).collect();
    let many: Vec<McpRoute> = names
        .iter()
        .map(|n| RouteBuilder::new(n, "s").build())
        .collect();
    let rendered = render_server(&server, &many, &Observed::default());
    let last = rendered.routes.last().expect("outcomes");
    assert_eq!(last.route.name, "r919");
    let rejection = last.result.as_ref().expect_err("no port left");
    assert_eq!(rejection.reason, reasons::NO_FREE_PORT);
    assert!(
        rejection.error.to_string().contains("McpRoute tools/r919"),
        "{}",
        rejection.error
    );
    assert_eq!(accepted(&rendered).len(), 919);
    assert_eq!(rendered.config.entry_points.len(), 920);
    // The offline render refuses what the controller would reject.
    let error = render_error(&[server], &many);
    assert!(error.contains("no free sidecar listener port"), "{error}");
}

#[test]
fn urls_of_in_cluster_and_exposed_routes() {
    let server = ServerBuilder::new("s").build();
    let routes = vec![
        RouteBuilder::new("internal", "s")
            .set("pathPrefix", json!("/team"))
            .build(),
        RouteBuilder::new("public", "s")
            .ingress("mcp.example.com", "/ai")
            .build(),
        RouteBuilder::new("root", "s")
            .http_route("root.example.com", "/")
            .build(),
        RouteBuilder::new("explicit", "s")
            .set("pathPrefix", json!("/x"))
            .set("publicUrl", json!("https://other.example.com/x"))
            .build(),
    ];
    let rendered = render_server(&server, &routes, &Observed::default());
    assert_eq!(rendered.server_url, "http://s.tools.svc/mcp");
    let routes = accepted(&rendered);
    let internal = &routes["internal"];
    assert_eq!(internal.internal_url, "http://internal.tools.svc/team/mcp");
    assert_eq!(internal.public_url, None);
    assert_eq!(internal.url, internal.internal_url);
    let public = &routes["public"];
    assert_eq!(public.internal_url, "http://public.tools.svc/ai/mcp");
    assert_eq!(
        public.public_url.as_deref(),
        Some("https://mcp.example.com/ai")
    );
    assert_eq!(public.url, "https://mcp.example.com/ai/mcp");
    assert_eq!(
        public.discovery, None,
        "phabricatorToken serves no discovery"
    );
    let root = &routes["root"];
    assert_eq!(root.internal_url, "http://root.tools.svc/mcp");
    assert_eq!(root.url, "https://root.example.com/mcp");
    assert_eq!(routes["explicit"].url, "https://other.example.com/x/mcp");
    let config = &rendered.config;
    let public_url = |name: &str| config.entry_point(name).and_then(|e| e.public_url.clone());
    assert_eq!(
        public_url("public").as_deref(),
        Some("https://mcp.example.com/ai")
    );
    assert_eq!(public_url("internal"), None);
    assert_eq!(
        config
            .entry_point("internal")
            .map(|e| e.path_prefix.as_str()),
        Some("/team")
    );
}

/// The (path, type) pairs of an Ingress rule and of an HTTPRoute rule, which must agree.
fn ingress_paths(docs: &[Value], name: &str) -> Vec<(String, String)> {
    let ingress = ingress(docs, name);
    let rules = ingress.spec.and_then(|s| s.rules).expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].host.as_deref(), Some("mcp.example.com"));
    let paths = rules[0].http.clone().expect("http").paths;
    for p in &paths {
        let backend = p.backend.service.as_ref().expect("service backend");
        assert_eq!(backend.name, name);
        assert_eq!(backend.port.as_ref().and_then(|p| p.number), Some(80));
    }
    paths
        .into_iter()
        .map(|p| (p.path.expect("path"), p.path_type))
        .collect()
}

fn http_route_paths(docs: &[Value], name: &str) -> Vec<(String, String)> {
    let route: HttpRoute = find(docs, "HTTPRoute", name);
    assert_eq!(route.api_version, "gateway.networking.k8s.io/v1");
    assert_eq!(route.spec.hostnames, ["mcp.example.com"]);
    assert_eq!(route.spec.parent_refs[0].name, "public");
    assert_eq!(
        route.spec.parent_refs[0].namespace.as_deref(),
        Some("gateways")
    );
    assert_eq!(route.spec.rules.len(), 1);
    let rule = &route.spec.rules[0];
    assert_eq!(rule.backend_refs.len(), 1);
    assert_eq!(
        (
            rule.backend_refs[0].name.as_str(),
            rule.backend_refs[0].port
        ),
        (name, 80)
    );
    let ingress_kind = |t: &str| match t {
        "PathPrefix" => "Prefix".to_string(),
        other => other.to_string(),
    };
    rule.matches
        .iter()
        .map(|m| (m.path.value.clone(), ingress_kind(&m.path.match_type)))
        .collect()
}

#[test]
fn exposure_routes_the_prefix_and_its_domain_root_discovery_paths() {
    let expected = |prefix: &str| -> Vec<(String, String)> {
        let mut paths = vec![(prefix.to_string(), "Prefix".to_string())];
        if prefix != "/" {
            for form in [
                format!("/.well-known/oauth-protected-resource{prefix}/mcp"),
                format!("/.well-known/oauth-protected-resource{prefix}"),
                format!("/.well-known/oauth-authorization-server{prefix}"),
                format!("/.well-known/openid-configuration{prefix}"),
            ] {
                paths.push((form, "Exact".into()));
            }
        }
        paths
    };
    for prefix in ["/ai", "/team/ai", "/"] {
        let server = ServerBuilder::new("s").build();
        let routes = [
            RouteBuilder::new("by-ingress", "s")
                .ingress("mcp.example.com", prefix)
                .build(),
            RouteBuilder::new("by-gateway", "s")
                .http_route("mcp.example.com", prefix)
                .build(),
        ];
        // Same host and prefix on two routes conflict: render them one at a time.
        for route in routes {
            let name = route.metadata.name.clone().expect("named");
            let docs = rendered_documents(std::slice::from_ref(&server), &[route]);
            let paths = if name == "by-ingress" {
                assert!(of_kind(&docs, "HTTPRoute").is_empty());
                ingress_paths(&docs, &name)
            } else {
                assert!(of_kind(&docs, "Ingress").is_empty());
                http_route_paths(&docs, &name)
            };
            assert_eq!(paths, expected(prefix), "{name} at {prefix}");
        }
    }
}

#[test]
fn ingress_carries_class_tls_and_annotations() {
    let route = RouteBuilder::new("public", "s")
        .set("hostnames", json!(["a.example.com", "b.example.com"]))
        .set(
            "expose",
            json!({"ingress": {"className": "nginx", "tlsSecretName": "certs",
                "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}}}),
        )
        .build();
    let docs = rendered_documents(&[ServerBuilder::new("s").build()], &[route]);
    let ingress = ingress(&docs, "public");
    let annotations = ingress.metadata.annotations.clone().expect("annotations");
    assert_eq!(annotations["cert-manager.io/cluster-issuer"], "letsencrypt");
    let spec = ingress.spec.expect("spec");
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let tls = spec.tls.expect("tls");
    assert_eq!(tls[0].secret_name.as_deref(), Some("certs"));
    assert_eq!(
        tls[0].hosts.clone().unwrap_or_default(),
        ["a.example.com", "b.example.com"]
    );
    let hosts: Vec<_> = spec
        .rules
        .expect("rules")
        .into_iter()
        .filter_map(|r| r.host)
        .collect();
    assert_eq!(hosts, ["a.example.com", "b.example.com"]);
    let owner = &ingress.metadata.owner_references.expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("McpRoute", "public")
    );
    let labels = ingress.metadata.labels.expect("labels");
    assert_eq!(labels["sluice.dev/route"], "public");
    assert_eq!(labels["app.kubernetes.io/component"], "mcp-route");
}

#[test]
fn route_services_keep_the_servers_session_affinity() {
    let server = ServerBuilder::new("s")
        .set("replicas", json!(2))
        .set("sessions", json!("stateful"))
        .set("sessionAffinity", json!("ClientIP"))
        .build();
    let docs = rendered_documents(&[server], &routes(&["r"]));
    for name in ["s", "r"] {
        let spec = service(&docs, name).spec.expect("spec");
        assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"), "{name}");
        assert_eq!(
            spec.selector.expect("selector"),
            BTreeMap::from([
                ("app.kubernetes.io/instance".to_string(), "s".to_string()),
                (
                    "app.kubernetes.io/name".to_string(),
                    "mcp-server".to_string()
                ),
            ])
        );
    }
    let plain = rendered_documents(&[ServerBuilder::new("s").build()], &routes(&["r"]));
    assert_eq!(
        service(&plain, "r").spec.expect("spec").session_affinity,
        None
    );
    let server_ports: Vec<(Option<String>, i32, Option<IntOrString>)> = service(&plain, "s")
        .spec
        .and_then(|s| s.ports)
        .expect("ports")
        .into_iter()
        .map(|p| (p.name, p.port, p.target_port))
        .collect();
    assert_eq!(
        server_ports,
        [
            (Some("http".into()), 80, Some(IntOrString::Int(8080))),
            (Some("metrics".into()), 9090, Some(IntOrString::Int(9090))),
        ]
    );
}

#[test]
fn two_routes_claiming_one_host_and_prefix_conflict() {
    let server = ServerBuilder::new("s").build();
    let first = RouteBuilder::new("first", "s")
        .ingress("mcp.example.com", "/ai")
        .build();
    let second = RouteBuilder::new("second", "s")
        .http_route("mcp.example.com", "/ai")
        .build();
    let error = render_error(
        std::slice::from_ref(&server),
        &[second.clone(), first.clone()],
    );
    assert!(error.contains("McpRoute tools/second"), "{error}");
    assert!(error.contains("McpRoute tools/first"), "{error}");
    assert!(
        error.contains("mcp.example.com") && error.contains("/ai"),
        "{error}"
    );

    // The controller keeps the server and the first route, and rejects the second.
    let rendered = render_server(&server, &[second, first], &Observed::default());
    let outcome = rendered
        .routes
        .iter()
        .find(|o| o.route.name == "second")
        .expect("second");
    let rejection = outcome.result.as_ref().expect_err("rejected");
    assert_eq!(rejection.reason, reasons::CONFLICTING_ROUTE);
    assert!(
        rejection
            .message()
            .contains("already claimed by McpRoute tools/first"),
        "{}",
        rejection.message()
    );
    assert!(accepted(&rendered).contains_key("first"));
    assert!(rendered.config.entry_point("second").is_none());
    let docs = objects_documents(&rendered.objects);
    assert!(!has(&docs, "Service", "second") && !has(&docs, "HTTPRoute", "second"));

    // Another prefix on the same host, or the same prefix on another host, is fine.
    let other_prefix = RouteBuilder::new("other", "s")
        .ingress("mcp.example.com", "/team")
        .build();
    let other_host = RouteBuilder::new("elsewhere", "s")
        .ingress("other.example.com", "/ai")
        .build();
    let first = RouteBuilder::new("first", "s")
        .ingress("mcp.example.com", "/ai")
        .build();
    // Hostnames of in-cluster routes reach nothing and claim nothing.
    let internal = |name: &str| {
        RouteBuilder::new(name, "s")
            .set("hostnames", json!(["mcp.example.com"]))
            .set("pathPrefix", json!("/ai"))
            .build()
    };
    render(
        &[server],
        &[
            first,
            other_prefix,
            other_host,
            internal("i1"),
            internal("i2"),
        ],
    );
}

#[test]
fn conflicts_across_servers_are_refused_offline() {
    let servers = [
        ServerBuilder::new("a").build(),
        ServerBuilder::new("b").build(),
    ];
    let on_a = RouteBuilder::new("ra", "a")
        .ingress("mcp.example.com", "/ai")
        .build();
    let on_b = RouteBuilder::new("rb", "b")
        .ingress("mcp.example.com", "/ai")
        .build();
    let error = render_error(&servers, &[on_a, on_b]);
    assert!(
        error.contains("McpRoute tools/rb") && error.contains("McpRoute tools/ra"),
        "{error}"
    );

    // A route named like another server would take that server's Service name.
    let named_b = RouteBuilder::new("b", "a").build();
    let error = render_error(&servers, &[named_b]);
    assert!(
        error.contains("McpRoute tools/b") && error.contains("McpServer tools/b"),
        "{error}"
    );
    assert!(error.contains("metadata.name"), "{error}");
}

#[test]
fn a_route_named_like_its_server_is_rejected() {
    let server = ServerBuilder::new("s").build();
    let rendered = render_server(&server, &routes(&["s", "ok"]), &Observed::default());
    let outcome = rendered
        .routes
        .iter()
        .find(|o| o.route.name == "s")
        .expect("outcome");
    let rejection = outcome.result.as_ref().expect_err("rejected");
    assert_eq!(rejection.reason, reasons::CONFLICTING_ROUTE);
    assert!(accepted(&rendered).contains_key("ok"));
}

#[test]
fn bad_input_is_refused_with_object_and_field() {
    let server = ServerBuilder::new("s").build();
    let cases: Vec<(Vec<McpRoute>, &[&str])> = vec![
        (
            vec![RouteBuilder::new("lost", "missing").build()],
            &["McpRoute tools/lost", "spec.serverRef.name", "\"missing\""],
        ),
        (
            vec![
                RouteBuilder::new("twice", "s").build(),
                RouteBuilder::new("twice", "s").build(),
            ],
            &["McpRoute tools/twice", "more than once"],
        ),
        (
            vec![
                RouteBuilder::new("wrong-mode", "s")
                    .set("policy.authentication.mode", json!("oauth"))
                    .build(),
            ],
            &[
                "McpRoute tools/wrong-mode",
                "spec.policy.authentication.mode",
                "auth.mode oauth",
            ],
        ),
        (
            vec![
                RouteBuilder::new("global", "s")
                    .set(
                        "policy.rateLimits",
                        json!([{"name": "shared", "requests": 10, "scope": "global"}]),
                    )
                    .build(),
            ],
            &[
                "McpRoute tools/global",
                "spec.policy.rateLimits[0].scope",
                "spec.redis",
            ],
        ),
        (
            vec![
                RouteBuilder::new("bad-period", "s")
                    .set(
                        "policy.rateLimits",
                        json!([{"name": "x", "requests": 1, "period": "soon"}]),
                    )
                    .build(),
            ],
            &[
                "McpRoute tools/bad-period",
                "spec.policy.rateLimits[0].period",
            ],
        ),
        (
            vec![
                RouteBuilder::new("bad-tool", "s")
                    .set("policy.tools.allow", json!(["pha task"]))
                    .build(),
            ],
            &["McpRoute tools/bad-tool", "spec.policy.tools.allow[0]"],
        ),
        (
            vec![
                RouteBuilder::new("hostless", "s")
                    .set("expose", json!({"ingress": {}}))
                    .build(),
            ],
            &["McpRoute tools/hostless", "spec.hostnames"],
        ),
        (
            vec![
                RouteBuilder::new("nowhere", "s")
                    .set("hostnames", json!(["h.example.com"]))
                    .set("expose", json!({}))
                    .build(),
            ],
            &["McpRoute tools/nowhere", "spec.expose", "exactly one"],
        ),
        (
            vec![
                RouteBuilder::new("mismatch", "s")
                    .set("pathPrefix", json!("/ai"))
                    .set("publicUrl", json!("https://h.example.com/x/ai"))
                    .build(),
            ],
            &["McpRoute tools/mismatch", "spec.publicUrl", "pathPrefix"],
        ),
    ];
    for (routes, expected) in cases {
        let error = render_error(std::slice::from_ref(&server), &routes);
        for part in expected {
            assert!(error.contains(part), "{error:?} lacks {part:?}");
        }
    }
    let twice = [
        ServerBuilder::new("s").build(),
        ServerBuilder::new("s").build(),
    ];
    assert!(render_error(&twice, &[]).contains("McpServer tools/s is defined more than once"));
}

#[test]
fn trusted_proxies_reach_each_entry_point_they_are_set_on() {
    let server = ServerBuilder::new("s")
        .set("policy.trustedProxies", json!(["10.244.0.0/16"]))
        .build();
    let routes = vec![
        RouteBuilder::new("behind-ingress", "s")
            .ingress("mcp.example.com", "/ai")
            .set("policy.trustedProxies", json!(["10.0.0.0/8", "fd00::/8"]))
            .build(),
        RouteBuilder::new("direct", "s").build(),
    ];
    let rendered = render_server(&server, &routes, &Observed::default());
    let config = proxy_config(&objects_documents(&rendered.objects), "s");
    let trusted: Vec<(&str, &[String])> = config
        .entry_points
        .iter()
        .map(|e| (e.name.as_str(), e.trusted_proxies.as_slice()))
        .collect();
    assert_eq!(
        trusted,
        [
            ("s", &["10.244.0.0/16".to_string()][..]),
            (
                "behind-ingress",
                &["10.0.0.0/8".into(), "fd00::/8".into()][..]
            ),
            ("direct", &[][..]),
        ]
    );
}
