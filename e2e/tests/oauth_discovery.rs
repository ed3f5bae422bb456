//! Every OAuth discovery location of a prefixed deployment, asked with plain HTTP, for prefixes
//! `/ai`, `/team/ai` and `/`: the real FastMCP OAuth proxy behind sluice-proxy (both configured
//! from `sluice-operator render`), so the documents checked are FastMCP's as the sidecar rewrites
//! them. And the rendered exposure: the Ingress routes exactly the locations the sidecar serves,
//! and the Ingress and HTTPRoute of each case pass their schemas.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod oauth_support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use oauth_support::{Deployment, discovery_locations, find, manifests, render};
use serde_json::{Value, json};
use sluice_e2e::http::{self, HttpResponse};
use sluice_e2e::kubernetes::{self, KUBERNETES_VERSIONS};
use sluice_e2e::peers;
use sluice_e2e::process::run_with_input;

const ORIGIN_HEADER: (&str, &str) = ("origin", "https://client.elsewhere.example");

fn assert_public_json(response: &HttpResponse, what: &str) {
    assert_eq!(response.status, 200, "{what}: {response:?}");
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("*"),
        "{what}"
    );
    assert!(
        response
            .header("cache-control")
            .is_some_and(|c| c.contains("max-age=")),
        "{what}: {:?}",
        response.header("cache-control")
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}"
    );
}

/// A CORS preflight for GET.
fn preflight(url: &str) -> (u16, Vec<(String, String)>) {
    let response = http::agent()
        .options(url)
        .header("origin", ORIGIN_HEADER.1)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "mcp-protocol-version")
        .call()
        .unwrap();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (response.status().as_u16(), headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn check_every_location(prefix: &str) {
    let deployment = Deployment::start(prefix);
    let p = deployment.public.clone();
    let pp = deployment.p().to_owned();

    // The sidecar's upstream check found FastMCP's MCP endpoint answering: with its OAuth
    // challenge (the check carries no credentials), so nothing more is known.
    let upstream = http::get(&format!("{}/upstream", deployment.admin), &[]).unwrap();
    let report = upstream.json().unwrap();
    assert_eq!(report["answering"], true, "{report}");
    assert_eq!(report["behindOAuth"], true, "{report}");
    assert_eq!(report["serverInfo"], Value::Null, "{report}");
    assert_eq!(report["tools"], Value::Null, "{report}");
    let live = http::get(&format!("{}/upstream/livez", deployment.admin), &[]).unwrap();
    assert_eq!(live.status, 200, "{live:?}");

    for (path, kind) in discovery_locations(prefix) {
        let url = deployment.url(&path);
        let response = http::get(&url, &[ORIGIN_HEADER]).unwrap();
        assert_public_json(&response, &url);
        let doc = response.json().unwrap();
        match kind {
            "pr" => {
                assert_eq!(doc["resource"], format!("{p}/mcp"), "{url}: {doc}");
                assert_eq!(doc["authorization_servers"], json!([p]), "{url}: {doc}");
                assert_eq!(doc["scopes_supported"], json!(["whoami", "maniphest"]));
            }
            _ => {
                assert_eq!(doc["issuer"], p, "{url}: {doc}");
                let mut endpoints = 0;
                for (field, value) in doc.as_object().unwrap() {
                    if field.ends_with("_endpoint") {
                        endpoints += 1;
                        let endpoint = value.as_str().unwrap();
                        assert!(
                            endpoint.starts_with(&format!("{p}/")),
                            "{url}: {field} = {endpoint}"
                        );
                    }
                }
                assert!(endpoints >= 3, "{url}: {doc}");
            }
        }
        let (status, headers) = preflight(&url);
        assert_eq!(status, 204, "OPTIONS {url}: {headers:?}");
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
        assert!(
            header(&headers, "access-control-allow-methods").is_some_and(|m| m.contains("GET"))
        );
    }

    // The endpoints the documents name are the upstream's, through the prefix mapping.
    let metadata = http::get(
        &deployment.url(&format!("/.well-known/oauth-authorization-server{pp}")),
        &[],
    )
    .unwrap()
    .json()
    .unwrap();
    let registration = http::post_json(
        metadata["registration_endpoint"].as_str().unwrap(),
        &json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "client_name": "probe"}),
        &[],
    )
    .unwrap();
    assert_eq!(registration.status, 201, "{registration:?}");
    assert!(registration.json().unwrap()["client_id"].is_string());
    let token = http::post_json(
        metadata["token_endpoint"].as_str().unwrap(),
        &json!({}),
        &[],
    )
    .unwrap();
    assert!(
        matches!(token.status, 400 | 401),
        "the token endpoint is FastMCP's, refusing an empty request: {token:?}"
    );

    // A challenge from the upstream (a bearer it does not know) names P's metadata.
    let refused = http::post_json(
        &format!("{p}/mcp"),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        &[
            ("accept", http::MCP_ACCEPT),
            ("authorization", "Bearer not-a-token-fastmcp-issued"),
        ],
    )
    .unwrap();
    assert_eq!(refused.status, 401, "{refused:?}");
    let origin = &deployment.origin;
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|c| c.contains(&format!(
                r#"resource_metadata="{origin}/.well-known/oauth-protected-resource{pp}/mcp""#
            ))),
        "{refused:?}"
    );

    // The rendered Ingress sends exactly the served locations outside the prefix to the route.
    let ingress = find(&deployment.rendered, "Ingress", "public");
    let paths = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap();
    let exact: BTreeSet<String> = paths
        .iter()
        .filter(|p| p["pathType"] == "Exact")
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect();
    let outside_prefix: BTreeSet<String> = discovery_locations(prefix)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| pp.is_empty() || !path.starts_with(&format!("{pp}/")))
        .collect();
    if pp.is_empty() {
        assert!(
            exact.is_empty(),
            "a route at / receives every path: {exact:?}"
        );
    } else {
        assert_eq!(exact, outside_prefix);
    }
    for path in &exact {
        let response = http::get(&deployment.url(path), &[]).unwrap();
        assert_eq!(response.status, 200, "{path} is routed but not served");
    }

    // Neighbours that are not P's documents are not found, and never reach the upstream's own
    // well-known routes.
    let mut absent = vec![
        format!("/.well-known/oauth-protected-resource{pp}/mcp/../../x"),
        format!("/.well-known/oauth-protected-resource{pp}/%6dcp"),
        "/.well-known/jwks.json".to_owned(),
    ];
    if !pp.is_empty() {
        absent.push(format!("{pp}/.well-known/oauth-authorization-server"));
        absent.push("/.well-known/oauth-authorization-server".to_owned());
        absent.push("/.well-known/oauth-protected-resource".to_owned());
        absent.push(format!("{pp}/..%2f.well-known/oauth-authorization-server"));
    }
    for path in absent {
        let response = http::get(&deployment.url(&path), &[]).unwrap();
        assert_eq!(response.status, 404, "{path}: {response:?}");
    }
}

#[test]
fn every_location_at_a_one_segment_prefix() {
    check_every_location("/ai");
}

#[test]
fn every_location_at_a_two_segment_prefix() {
    check_every_location("/team/ai");
}

#[test]
fn every_location_at_the_root() {
    check_every_location("/");
}

/// Validates the rendered HTTPRoutes with `e2e/js/gateway-api-validate.mjs` (Node 22).
fn validate_http_routes(docs: &[Value]) -> Value {
    let script = sluice_e2e::e2e_dir()
        .join("js")
        .join("gateway-api-validate.mjs");
    let mut command = Command::new(peers::node22().unwrap());
    command.arg(&script);
    let input = serde_json::to_vec(docs).unwrap();
    let output = run_with_input(&mut command, Some(&input), Duration::from_secs(60)).unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no report from {} ({e}): {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "invalid HTTPRoute: {report:#}");
    report
}

#[test]
fn the_rendered_exposure_passes_its_schemas() {
    for prefix in ["/ai", "/team/ai", "/"] {
        for http_route in [false, true] {
            let (yaml, docs) = render(&manifests(
                "https://phabricator.example.com",
                prefix,
                "phabricator.example.com",
                None,
                http_route,
            ));
            let report = kubernetes::validate_yaml(&yaml, &KUBERNETES_VERSIONS).unwrap();
            report.ensure_valid().unwrap();
            let unvalidated = report.unvalidated_types();
            if http_route {
                assert_eq!(
                    unvalidated,
                    BTreeSet::from([(
                        "gateway.networking.k8s.io/v1".to_owned(),
                        "HTTPRoute".to_owned()
                    )]),
                    "{prefix}"
                );
                let checked = validate_http_routes(&docs);
                assert_eq!(checked.as_array().unwrap().len(), 1, "{checked}");
                let route = find(&docs, "HTTPRoute", "public");
                let matches = route["spec"]["rules"][0]["matches"].as_array().unwrap();
                assert_eq!(matches.len(), if prefix == "/" { 1 } else { 5 }, "{route}");
            } else {
                assert!(unvalidated.is_empty(), "{prefix}: {unvalidated:?}");
                assert!(
                    report
                        .documents
                        .iter()
                        .any(|d| d.kind.as_deref() == Some("Ingress")),
                    "{prefix}"
                );
            }
        }
    }
}

#[test]
fn the_http_route_validator_refuses_what_the_gateway_api_refuses() {
    // The check above must be able to fail: an HTTPRoute with a bad path match type.
    let (_, mut docs) = render(&manifests(
        "https://phabricator.example.com",
        "/ai",
        "phabricator.example.com",
        None,
        true,
    ));
    let route = docs.iter_mut().find(|d| d["kind"] == "HTTPRoute").unwrap();
    route["spec"]["rules"][0]["matches"][1]["path"]["type"] = json!("Prefix");
    let script = sluice_e2e::e2e_dir()
        .join("js")
        .join("gateway-api-validate.mjs");
    let mut command = Command::new(peers::node22().unwrap());
    command.arg(&script);
    let output = run_with_input(
        &mut command,
        Some(&serde_json::to_vec(&docs).unwrap()),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report[0]["valid"], false, "{report}");
}
