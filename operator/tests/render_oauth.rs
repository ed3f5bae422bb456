//! Conduit's OAuth mode: its environment, the public URL it advertises, discovery URLs.

mod render_fixtures;

use render_fixtures::*;
use serde_json::json;
use sluice_crds::McpRoute;
use sluice_operator::render::Observed;
use sluice_proxy_config::Auth;

fn public_route(name: &str, host: &str, prefix: &str) -> McpRoute {
    RouteBuilder::new(name, "s").ingress(host, prefix).build()
}

#[test]
fn oauth_env_passes_the_secret_by_reference() {
    let server = ServerBuilder::new("s").oauth("oauth-client", None).build();
    let docs = rendered_documents(
        &[server],
        &[public_route("public", "phab.example.com", "/ai")],
    );
    let pod = pod_of(&docs, "s");
    let conduit = container(&pod, "conduit");
    assert_eq!(
        env(conduit, "PHABRICATOR_OAUTH_CLIENT_ID"),
        Some("PHID-OASC-abcdefghijklmnopqrst")
    );
    assert_eq!(
        env(conduit, "PHABRICATOR_OAUTH_SCOPE"),
        Some("maniphest file user")
    );
    assert_eq!(
        env(conduit, "PHABRICATOR_MCP_SERVER_URL"),
        Some("https://phab.example.com/ai")
    );
    assert_eq!(env(conduit, "FASTMCP_HOME"), Some("/tmp/fastmcp"));
    let secret = conduit
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "PHABRICATOR_OAUTH_CLIENT_SECRET")
        .expect("client secret variable");
    assert_eq!(secret.value, None);
    let selector = secret
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secretKeyRef");
    assert_eq!(
        (selector.name.as_str(), selector.key.as_str()),
        ("oauth-client", "client-secret")
    );
    // /tmp (FASTMCP_HOME) is the writable emptyDir.
    let tmp = conduit
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/tmp")
        .expect("tmp");
    assert_eq!(tmp.read_only, None);

    let config = proxy_config(&docs, "s");
    assert!(
        config.phabricator.is_some(),
        "identities come from user.whoami"
    );
    for entry_point in &config.entry_points {
        assert!(
            matches!(entry_point.auth, Auth::OAuth(_)),
            "{}",
            entry_point.name
        );
    }
}

#[test]
fn the_public_url_is_explicit_or_the_one_of_the_servers_public_route() {
    let explicit = ServerBuilder::new("s")
        .oauth("c", Some("https://mcp.example.com/team"))
        .build();
    let routes = [
        public_route("a", "a.example.com", "/"),
        public_route("b", "b.example.com", "/x"),
    ];
    let docs = rendered_documents(&[explicit], &routes);
    let pod = pod_of(&docs, "s");
    assert_eq!(
        env(container(&pod, "conduit"), "PHABRICATOR_MCP_SERVER_URL"),
        Some("https://mcp.example.com/team")
    );

    // A route with an explicit public URL counts even when exposed by other means.
    let implicit = ServerBuilder::new("s").oauth("c", None).build();
    let by_hand = RouteBuilder::new("by-hand", "s")
        .set("pathPrefix", json!("/ai"))
        .set("publicUrl", json!("https://edge.example.com/ai"))
        .build();
    let internal = RouteBuilder::new("internal", "s").build();
    let docs = rendered_documents(std::slice::from_ref(&implicit), &[by_hand, internal]);
    let pod = pod_of(&docs, "s");
    assert_eq!(
        env(container(&pod, "conduit"), "PHABRICATOR_MCP_SERVER_URL"),
        Some("https://edge.example.com/ai")
    );
}

#[test]
fn no_public_url_or_several_are_refused_with_the_fix() {
    let server = ServerBuilder::new("s").oauth("c", None).build();
    let none = render_error(
        std::slice::from_ref(&server),
        &[RouteBuilder::new("internal", "s").build()],
    );
    assert!(
        none.contains("McpServer tools/s: spec.auth.oauth.publicUrl"),
        "{none}"
    );
    assert!(none.contains("expose one McpRoute"), "{none}");

    let several = render_error(
        std::slice::from_ref(&server),
        &[
            public_route("a", "a.example.com", "/"),
            public_route("b", "b.example.com", "/x"),
        ],
    );
    assert!(
        several.contains("McpServer tools/s: spec.auth.oauth.publicUrl"),
        "{several}"
    );
    assert!(
        several.contains("https://a.example.com (McpRoute a)"),
        "{several}"
    );
    assert!(
        several.contains("https://b.example.com/x (McpRoute b)"),
        "{several}"
    );
    assert!(
        several.contains("set spec.auth.oauth.publicUrl"),
        "{several}"
    );

    // The controller reports the same for the server: it is the server that cannot render.
    let routes = [
        public_route("a", "a.example.com", "/"),
        public_route("b", "b.example.com", "/x"),
    ];
    let refs: Vec<&McpRoute> = routes.iter().collect();
    let error = sluice_operator::render::render_server(
        &server,
        &refs,
        &Default::default(),
        &Observed::default(),
    )
    .expect_err("refused");
    assert_eq!(
        error.reason(),
        sluice_crds::conditions::reasons::INVALID_SPEC
    );
}

#[test]
fn policies_must_agree_with_the_upstream_mode() {
    let route = RouteBuilder::new("keys", "s")
        .ingress("phab.example.com", "/ai")
        .set(
            "policy.authentication",
            json!({"mode": "apiKey", "apiKey": {"secretRef": {"name": "keys"}}}),
        )
        .build();
    let server = ServerBuilder::new("s")
        .oauth("c", Some("https://phab.example.com/ai"))
        .build();
    let error = render_error(std::slice::from_ref(&server), &[route]);
    assert!(
        error.contains("McpRoute tools/keys: spec.policy.authentication.mode"),
        "{error}"
    );
    assert!(error.contains("oauth"), "{error}");

    let own = ServerBuilder::new("s")
        .oauth("c", Some("https://phab.example.com/ai"))
        .set("policy.authentication.mode", json!("phabricatorToken"))
        .build();
    let error = render_error(&[own], &[]);
    assert!(
        error.contains("McpServer tools/s: spec.policy.authentication.mode"),
        "{error}"
    );
}

#[test]
fn an_oauth_route_reports_its_discovery_urls_and_redirect_uri() {
    let server = ServerBuilder::new("s").oauth("c", None).build();
    let rendered = render_server(
        &server,
        &[public_route("public", "phab.example.com", "/ai")],
        &Observed::default(),
    );
    let accepted = rendered.routes[0].result.as_ref().expect("accepted");
    let discovery = accepted.discovery.clone().expect("discovery");
    assert_eq!(
        discovery.protected_resource.as_deref(),
        Some("https://phab.example.com/.well-known/oauth-protected-resource/ai/mcp")
    );
    assert_eq!(
        discovery.authorization_server.as_deref(),
        Some("https://phab.example.com/.well-known/oauth-authorization-server/ai")
    );
    assert_eq!(
        discovery.openid_configuration.as_deref(),
        Some("https://phab.example.com/.well-known/openid-configuration/ai")
    );
    assert_eq!(
        discovery.redirect_uri.as_deref(),
        Some("https://phab.example.com/ai/auth/callback")
    );
    assert_eq!(accepted.url, "https://phab.example.com/ai/mcp");
    // Changing the client secret's Secret rolls the pod; the reference says so.
    let reference = rendered
        .references
        .iter()
        .find(|r| r.name == "c")
        .expect("reference");
    assert_eq!(
        (reference.kind, reference.on_change),
        ("Secret", sluice_operator::render::OnChange::Rollout)
    );
}

#[test]
fn the_servers_own_entry_point_reports_in_cluster_discovery_and_the_public_callback() {
    let server = ServerBuilder::new("s").oauth("c", None).build();
    let rendered = render_server(
        &server,
        &[public_route("public", "phab.example.com", "/ai")],
        &Observed::default(),
    );
    assert_eq!(rendered.server_url, "http://s.tools.svc/mcp");
    let discovery = rendered.discovery.clone().expect("discovery");
    // The root forms on the in-cluster origin: the server's entry point is served at `/`.
    assert_eq!(
        discovery.protected_resource.as_deref(),
        Some("http://s.tools.svc/.well-known/oauth-protected-resource/mcp")
    );
    assert_eq!(
        discovery.authorization_server.as_deref(),
        Some("http://s.tools.svc/.well-known/oauth-authorization-server")
    );
    assert_eq!(
        discovery.openid_configuration.as_deref(),
        Some("http://s.tools.svc/.well-known/openid-configuration")
    );
    // What to register in Phabricator is public: the one Conduit sends, as the route says.
    assert_eq!(
        discovery.redirect_uri.as_deref(),
        Some("https://phab.example.com/ai/auth/callback")
    );
    let route = rendered.routes[0].result.as_ref().expect("accepted");
    assert_eq!(
        route
            .discovery
            .as_ref()
            .and_then(|d| d.redirect_uri.as_deref()),
        discovery.redirect_uri.as_deref()
    );

    let header_token = ServerBuilder::new("s").build();
    assert_eq!(
        render_server(&header_token, &[], &Observed::default()).discovery,
        None
    );
}
