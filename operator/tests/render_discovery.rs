//! OAuth discovery of a prefixed route, as rendered: the Ingress and HTTPRoute route the
//! domain-root discovery locations of the prefix (exactly) besides the prefix, Conduit's
//! server URL is the route's public URL, the sidecar gets the public URL and prefix its
//! documents are built from, and the status names the URLs the sidecar serves and the
//! redirect URI Conduit sends Phabricator.

mod render_fixtures;

use render_fixtures::*;
use serde_json::{Value, json};
use sluice_operator::render::{HttpRoute, Observed};
use sluice_proxy_config::Auth;

/// The locations outside the prefix where the sidecar answers a prefixed route's documents
/// (the sidecar's `discovery` module lists the same; the e2e tests check both against each
/// other through real processes). `{prefix}/.well-known/openid-configuration` is under the
/// prefix already.
fn root_locations(prefix: &str) -> Vec<String> {
    vec![
        format!("/.well-known/oauth-protected-resource{prefix}/mcp"),
        format!("/.well-known/oauth-protected-resource{prefix}"),
        format!("/.well-known/oauth-authorization-server{prefix}"),
        format!("/.well-known/openid-configuration{prefix}"),
    ]
}

fn ingress_paths(docs: &[Value], name: &str) -> Vec<(String, String)> {
    let ingress = ingress(docs, name);
    let rules = ingress.spec.and_then(|s| s.rules).expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].host.as_deref(), Some("phab.example.com"));
    rules[0]
        .http
        .as_ref()
        .expect("http")
        .paths
        .iter()
        .map(|p| {
            assert_eq!(
                p.backend.service.as_ref().map(|s| s.name.as_str()),
                Some(name),
                "every path goes to the route's Service"
            );
            (p.path.clone().expect("path"), p.path_type.clone())
        })
        .collect()
}

fn http_route_matches(docs: &[Value], name: &str) -> Vec<(String, String)> {
    let route: HttpRoute = find(docs, "HTTPRoute", name);
    assert_eq!(route.spec.hostnames, ["phab.example.com"]);
    assert_eq!(route.spec.rules.len(), 1);
    assert_eq!(route.spec.rules[0].backend_refs[0].name, name);
    route.spec.rules[0]
        .matches
        .iter()
        .map(|m| (m.path.value.clone(), m.path.match_type.clone()))
        .collect()
}

fn expected(prefix: &str, prefix_type: &str, exact: &str) -> Vec<(String, String)> {
    let mut out = vec![(prefix.to_owned(), prefix_type.to_owned())];
    if prefix != "/" {
        out.extend(
            root_locations(prefix)
                .into_iter()
                .map(|p| (p, exact.to_owned())),
        );
    }
    out
}

#[test]
fn exposure_routes_the_prefix_and_its_root_discovery_locations() {
    for prefix in ["/ai", "/team/ai", "/"] {
        let server = ServerBuilder::new("s").oauth("c", None).build();
        let by_ingress = RouteBuilder::new("public", "s")
            .ingress("phab.example.com", prefix)
            .build();
        let docs = rendered_documents(std::slice::from_ref(&server), &[by_ingress]);
        assert_eq!(
            ingress_paths(&docs, "public"),
            expected(prefix, "Prefix", "Exact"),
            "Ingress at {prefix}"
        );

        let by_gateway = RouteBuilder::new("public", "s")
            .http_route("phab.example.com", prefix)
            .build();
        let docs = rendered_documents(&[server], &[by_gateway]);
        assert_eq!(
            http_route_matches(&docs, "public"),
            expected(prefix, "PathPrefix", "Exact"),
            "HTTPRoute at {prefix}"
        );
    }
}

#[test]
fn conduit_and_the_sidecar_agree_on_p() {
    for (prefix, public) in [
        ("/ai", "https://phab.example.com/ai"),
        ("/team/ai", "https://phab.example.com/team/ai"),
        ("/", "https://phab.example.com"),
    ] {
        let server = ServerBuilder::new("s").oauth("c", None).build();
        let route = RouteBuilder::new("public", "s")
            .ingress("phab.example.com", prefix)
            .build();
        let docs = rendered_documents(&[server], &[route]);
        let pod = pod_of(&docs, "s");
        assert_eq!(
            env(container(&pod, "conduit"), "PHABRICATOR_MCP_SERVER_URL"),
            Some(public),
            "{prefix}"
        );
        let config = proxy_config(&docs, "s");
        let entry = config
            .entry_point("public")
            .expect("the route's entry point");
        assert_eq!(entry.public_url.as_deref(), Some(public));
        assert_eq!(entry.path_prefix, prefix);
        assert!(matches!(entry.auth, Auth::OAuth(_)));
        assert_eq!(entry.discovery, None, "OAuth documents come from Conduit");
        // One server's render cannot know whether another route shares the host.
        assert!(!entry.root_discovery);
    }
}

#[test]
fn the_status_names_what_the_sidecar_serves() {
    let server = ServerBuilder::new("s").oauth("c", None).build();
    let route = RouteBuilder::new("public", "s")
        .ingress("phab.example.com", "/team/ai")
        .build();
    let rendered = render_server(&server, &[route], &Observed::default());
    let discovery = rendered.routes[0]
        .result
        .as_ref()
        .expect("accepted")
        .discovery
        .clone()
        .expect("discovery");
    let origin = "https://phab.example.com";
    let locations = root_locations("/team/ai");
    assert_eq!(
        discovery.protected_resource,
        Some(format!("{origin}{}", locations[0]))
    );
    assert_eq!(
        discovery.authorization_server,
        Some(format!("{origin}{}", locations[2]))
    );
    assert_eq!(
        discovery.openid_configuration,
        Some(format!("{origin}{}", locations[3]))
    );
    assert_eq!(
        discovery.redirect_uri.as_deref(),
        Some("https://phab.example.com/team/ai/auth/callback")
    );
}

#[test]
fn the_redirect_uri_is_the_one_conduit_sends() {
    // Conduit advertises spec.auth.oauth.publicUrl; a route with another public URL still
    // sends logins back to that URL's callback, which is what Phabricator must know.
    let server = ServerBuilder::new("s")
        .oauth("c", Some("https://mcp.example.com/team"))
        .build();
    let route = RouteBuilder::new("public", "s")
        .ingress("phab.example.com", "/ai")
        .build();
    let rendered = render_server(&server, &[route], &Observed::default());
    let discovery = rendered.routes[0]
        .result
        .as_ref()
        .expect("accepted")
        .discovery
        .clone()
        .expect("discovery");
    assert_eq!(
        discovery.redirect_uri.as_deref(),
        Some("https://mcp.example.com/team/auth/callback")
    );
    // The documents are the route's own.
    assert_eq!(
        discovery.authorization_server.as_deref(),
        Some("https://phab.example.com/.well-known/oauth-authorization-server/ai")
    );
}

#[test]
fn jwt_routes_get_a_local_document_and_its_locations() {
    let server = ServerBuilder::new("s").build();
    let route = RouteBuilder::new("public", "s")
        .http_route("phab.example.com", "/ai")
        .set(
            "policy.authentication",
            json!({
                "mode": "jwt",
                "jwt": {
                    "issuer": "https://idp.example.com/realms/x",
                    "audiences": ["https://phab.example.com/ai/mcp"],
                    "scopes": ["mcp:call"]
                }
            }),
        )
        .build();
    let docs = rendered_documents(&[server], &[route]);
    let config = proxy_config(&docs, "s");
    let entry = config.entry_point("public").expect("entry point");
    let discovery = entry.discovery.as_ref().expect("a local document");
    assert_eq!(
        discovery.authorization_servers,
        ["https://idp.example.com/realms/x"]
    );
    assert_eq!(discovery.scopes, ["mcp:call"]);
    assert_eq!(
        http_route_matches(&docs, "public"),
        expected("/ai", "PathPrefix", "Exact")
    );
}
