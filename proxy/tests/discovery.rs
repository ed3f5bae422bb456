//! OAuth discovery through the proxy, against an in-process upstream that behaves like
//! Conduit's FastMCP OAuth proxy — configured with a server URL that is *not* the entry
//! point's public URL, so every URL the caller sees had to be made consistent with P.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::net::SocketAddr;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use support::*;

/// Where the fake upstream believes it lives (its `--server-url`).
const UPSTREAM_BASE: &str = "http://localhost:8000/conduit";

/// An upstream like FastMCP's OAuth proxy with `--server-url http://localhost:8000/conduit`:
/// metadata at its root and at its own protected-resource path, routes at the root.
async fn fastmcp_like() -> Upstream {
    Upstream::start(|seen| {
        let path = seen.uri.path().to_owned();
        let authorized = seen
            .headers
            .get("authorization")
            .is_some_and(|v| v == "Bearer conduit-issued");
        async move {
            let redirect = |to: &str| {
                http::Response::builder()
                    .status(302)
                    .header("location", to)
                    .body(full(""))
                    .unwrap()
            };
            match path.as_str() {
                "/.well-known/oauth-authorization-server" => json_value(json!({
                    "issuer": UPSTREAM_BASE,
                    "authorization_endpoint": format!("{UPSTREAM_BASE}/authorize"),
                    "token_endpoint": format!("{UPSTREAM_BASE}/token"),
                    "registration_endpoint": format!("{UPSTREAM_BASE}/register"),
                    "scopes_supported": ["whoami", "maniphest"],
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"]
                })),
                "/.well-known/oauth-protected-resource/conduit/mcp" => json_value(json!({
                    "resource": format!("{UPSTREAM_BASE}/mcp"),
                    "authorization_servers": [UPSTREAM_BASE],
                    "scopes_supported": ["whoami", "maniphest"],
                    "bearer_methods_supported": ["header"]
                })),
                "/mcp" if !authorized => http::Response::builder()
                    .status(401)
                    .header(
                        "www-authenticate",
                        r#"Bearer error="invalid_token", resource_metadata="http://localhost:8000/.well-known/oauth-protected-resource/conduit/mcp""#,
                    )
                    .body(full(""))
                    .unwrap(),
                "/authorize" => redirect("/consent?txn_id=t1"),
                "/consent" => http::Response::builder()
                    .status(200)
                    .header("content-type", "text/html")
                    .header("set-cookie", "__MCP_CONSENT_STATE=a; HttpOnly; Path=/; SameSite=lax")
                    .header(
                        "set-cookie",
                        "__Host-MCP_CONSENT_BINDING=b; HttpOnly; Path=/; SameSite=lax; Secure",
                    )
                    .body(full("<form method=POST></form>"))
                    .unwrap(),
                "/auth/callback" => redirect("http://127.0.0.1:9/oauth/callback?code=c&state=s"),
                _ => json(StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            }
        }
    })
    .await
}

fn json_value(value: Value) -> http::Response<Body> {
    http::Response::builder()
        .header("content-type", "application/json")
        .body(full(value.to_string()))
        .unwrap()
}

/// One entry point in OAuth mode at `prefix` with public URL `https://h.example{prefix}`.
fn oauth_config(upstream: SocketAddr, prefix: &str, extra: &str) -> String {
    let public = if prefix == "/" {
        "https://h.example".to_owned()
    } else {
        format!("https://h.example{prefix}")
    };
    format!(
        "upstream:\n  url: http://{upstream}\nadmin:\n  listen: 127.0.0.1:0\nphabricator:\n  url: http://127.0.0.1:1/api/\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:0\n    pathPrefix: {prefix}\n    publicUrl: {public}\n    auth:\n      mode: oauth\n{extra}"
    )
}

async fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(builder.body(Full::default()).unwrap()).await
}

/// Every path the entry point must serve, with the document expected there.
fn locations(prefix: &str) -> Vec<(String, &'static str)> {
    let p = if prefix == "/" { "" } else { prefix };
    let mut out = vec![
        (
            format!("/.well-known/oauth-protected-resource{p}/mcp"),
            "pr",
        ),
        (format!("/.well-known/oauth-authorization-server{p}"), "as"),
        (format!("/.well-known/openid-configuration{p}"), "as"),
    ];
    if p.is_empty() {
        out.push(("/.well-known/oauth-protected-resource".into(), "pr"));
    } else {
        out.push((format!("/.well-known/oauth-protected-resource{p}"), "pr"));
        out.push((format!("{p}/.well-known/openid-configuration"), "as"));
    }
    out
}

fn assert_consistent(doc: &Value, kind: &str, public: &str, at: &str) {
    match kind {
        "pr" => {
            assert_eq!(doc["resource"], format!("{public}/mcp"), "{at}: {doc}");
            assert_eq!(doc["authorization_servers"], json!([public]), "{at}: {doc}");
            assert_eq!(doc["scopes_supported"], json!(["whoami", "maniphest"]));
        }
        _ => {
            assert_eq!(doc["issuer"], public, "{at}: {doc}");
            for field in [
                "authorization_endpoint",
                "token_endpoint",
                "registration_endpoint",
            ] {
                let url = doc[field].as_str().unwrap();
                assert!(
                    url.starts_with(&format!("{public}/")),
                    "{at}: {field} = {url}"
                );
            }
            assert_eq!(doc["token_endpoint"], format!("{public}/token"));
            assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        }
    }
}

#[tokio::test]
async fn every_location_serves_a_document_consistent_with_p() {
    for prefix in ["/ai", "/team/ai", "/"] {
        let mut upstream = fastmcp_like().await;
        let sluice = Sluice::start(&oauth_config(upstream.addr, prefix, "")).await;
        let public = if prefix == "/" {
            "https://h.example".to_owned()
        } else {
            format!("https://h.example{prefix}")
        };
        for (path, kind) in locations(prefix) {
            // A browser on another origin may read them: no Origin check, no credentials.
            let reply = request(
                Method::GET,
                &sluice.url(&path),
                &[("origin", "https://elsewhere.example")],
            )
            .await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
            assert_eq!(reply.header("cache-control"), Some("public, max-age=60"));
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_consistent(&reply.json(), kind, &public, &path);

            let head = request(Method::HEAD, &sluice.url(&path), &[]).await;
            assert_eq!(head.status, 200, "HEAD {path}");
            assert!(head.body.is_empty());

            let preflight = request(
                Method::OPTIONS,
                &sluice.url(&path),
                &[
                    ("origin", "https://elsewhere.example"),
                    ("access-control-request-method", "GET"),
                    ("access-control-request-headers", "mcp-protocol-version"),
                ],
            )
            .await;
            assert_eq!(preflight.status, 204, "OPTIONS {path}");
            assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
            assert_eq!(
                preflight.header("access-control-allow-methods"),
                Some("GET, HEAD, OPTIONS")
            );
            assert_eq!(
                preflight.header("access-control-allow-headers"),
                Some("mcp-protocol-version")
            );

            let post = request(Method::POST, &sluice.url(&path), &[]).await;
            assert_eq!(post.status, 405, "POST {path}");
            assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
        }
        // The upstream was asked only for its own two documents, at the paths it serves them.
        let mut asked = Vec::new();
        while let Ok(seen) =
            tokio::time::timeout(std::time::Duration::from_millis(200), upstream.next()).await
        {
            assert_eq!(seen.method, Method::GET);
            asked.push(seen.uri.path().to_owned());
        }
        asked.sort();
        asked.dedup();
        assert_eq!(
            asked,
            [
                "/.well-known/oauth-authorization-server",
                "/.well-known/oauth-protected-resource/conduit/mcp"
            ],
            "prefix {prefix}"
        );
    }
}

#[tokio::test]
async fn the_root_fallback_only_when_the_entry_point_owns_the_host() {
    let upstream = fastmcp_like().await;
    let sluice = Sluice::start(&oauth_config(upstream.addr, "/ai", "")).await;
    let root = sluice.url("/.well-known/oauth-protected-resource");
    assert_eq!(get(&root).await.status, 404);

    let upstream = fastmcp_like().await;
    let owner = Sluice::start(&oauth_config(
        upstream.addr,
        "/ai",
        "    rootDiscovery: true\n",
    ))
    .await;
    let reply = get(&owner.url("/.well-known/oauth-protected-resource")).await;
    assert_eq!(reply.status, 200);
    assert_consistent(&reply.json(), "pr", "https://h.example/ai", "root fallback");
}

#[tokio::test]
async fn unknown_and_ambiguous_paths_never_reach_the_upstream() {
    // At prefix `/` everything else is forwarded, so this is where a slip would show.
    let mut upstream = fastmcp_like().await;
    let root = Sluice::start(&oauth_config(upstream.addr, "/", "")).await;
    let mut prefixed_upstream = fastmcp_like().await;
    let ai = Sluice::start(&oauth_config(prefixed_upstream.addr, "/ai", "")).await;
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server/mcp",
        "/.well-known/oauth-protected-resource/conduit/mcp",
        "/.well-known/OAuth-Authorization-Server",
        "/%2ewell-known/oauth-authorization-server",
        "/%2Ewell-known/openid-configuration",
        "/.well-known/oauth-protected-resource/%6dcp",
        "/x/../.well-known/oauth-authorization-server",
        "/x/%2e%2e/.well-known/oauth-authorization-server",
        "/x/%2E%2e/mcp",
        "/x/..%2f.well-known/oauth-authorization-server",
        "/x/..%2F..%2Fmcp",
        "/x/..%5c.well-known/x",
        "/mcp/..",
        "/./mcp",
        "//mcp",
        "/x//mcp",
        "/mcp%",
        "/mcp%zz",
        "/mcp%00",
    ] {
        let reply = get(&root.url(path)).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert_eq!(reply.rpc_code(), -32600, "{path}");
    }
    for path in [
        "/ai/.well-known/oauth-authorization-server",
        "/ai/.well-known/oauth-protected-resource/ai/mcp",
        "/ai/../.well-known/oauth-authorization-server",
        "/ai/%2e%2e/.well-known/openid-configuration",
        "/ai%2f..%2f.well-known/oauth-authorization-server",
        "/ai/..%5c..%5cmcp",
        "/.well-known/oauth-authorization-server/ai/../../mcp",
        "/.well-known/oauth-authorization-server/%61i",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-protected-resource",
        "/ai//mcp",
    ] {
        assert_eq!(get(&ai.url(path)).await.status, 404, "{path}");
    }
    assert!(!upstream.saw_any(), "the upstream saw a request");
    assert!(!prefixed_upstream.saw_any(), "the upstream saw a request");
}

#[tokio::test]
async fn the_login_endpoints_map_onto_the_upstream_root() {
    let mut upstream = fastmcp_like().await;
    let sluice = Sluice::start(&oauth_config(upstream.addr, "/ai", "")).await;

    // The authorization endpoint: forwarded to the root route, with the public scheme and
    // host, and its redirect put back under the prefix.
    let reply = get(&sluice.url("/ai/authorize?client_id=c&state=s")).await;
    let seen = upstream.next().await;
    assert_eq!(seen.uri, "/authorize?client_id=c&state=s");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-host"], "h.example");
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("location"), Some("/ai/consent?txn_id=t1"));

    // The consent page: its cookies come back under the prefix, except a `__Host-` cookie,
    // which browsers accept only with `Path=/`.
    let reply = get(&sluice.url("/ai/consent?txn_id=t1")).await;
    assert_eq!(upstream.next().await.uri, "/consent?txn_id=t1");
    let cookies: Vec<&str> = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        [
            "__MCP_CONSENT_STATE=a; HttpOnly; Path=/ai; SameSite=lax",
            "__Host-MCP_CONSENT_BINDING=b; HttpOnly; Path=/; SameSite=lax; Secure"
        ]
    );

    // Phabricator's redirect back: the client's own redirect URI is left alone.
    let reply = get(&sluice.url("/ai/auth/callback?code=x&state=t1")).await;
    assert_eq!(upstream.next().await.uri, "/auth/callback?code=x&state=t1");
    assert_eq!(
        reply.header("location"),
        Some("http://127.0.0.1:9/oauth/callback?code=c&state=s")
    );

    // Token and registration requests are forms and JSON, not JSON-RPC: passed as they are.
    for (path, content_type, body_text) in [
        (
            "/ai/token",
            "application/x-www-form-urlencoded",
            "grant_type=authorization_code&code=c",
        ),
        (
            "/ai/register",
            "application/json",
            r#"{"redirect_uris":["http://127.0.0.1:9/cb"]}"#,
        ),
    ] {
        let reply = send(
            Request::post(sluice.url(path))
                .header("content-type", content_type)
                .body(body(body_text))
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let seen = upstream.next().await;
        assert_eq!(seen.uri.path(), path.trim_start_matches("/ai"));
        assert_eq!(seen.body, body_text.as_bytes());
    }
}

#[tokio::test]
async fn challenges_name_the_metadata_of_p() {
    for (prefix, expected) in [
        (
            "/ai",
            "https://h.example/.well-known/oauth-protected-resource/ai/mcp",
        ),
        (
            "/",
            "https://h.example/.well-known/oauth-protected-resource/mcp",
        ),
    ] {
        let mut upstream = fastmcp_like().await;
        let sluice = Sluice::start(&oauth_config(upstream.addr, prefix, "")).await;
        let mcp = if prefix == "/" {
            "/mcp".to_owned()
        } else {
            format!("{prefix}/mcp")
        };
        // Without a bearer the sidecar answers itself, naming the same document.
        let reply = send(post(&sluice.url(&mcp)).body(body(TOOLS_CALL)).unwrap()).await;
        assert_eq!(reply.status, 401, "{}", reply.text());
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(
            challenge.contains(&format!(r#"resource_metadata="{expected}""#)),
            "{challenge}"
        );
        assert!(!upstream.saw_any());

        // The upstream refuses the bearer and names the metadata of its own URL: the caller
        // is sent to P's.
        let reply = send(
            post(&sluice.url(&mcp))
                .header("authorization", "Bearer not-a-conduit-token")
                .body(body(TOOLS_CALL))
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, 401, "{}", reply.text());
        assert_eq!(upstream.next().await.uri, "/mcp");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(
                format!(r#"Bearer error="invalid_token", resource_metadata="{expected}""#).as_str()
            )
        );
    }
}

#[tokio::test]
async fn external_authorization_servers_get_a_document_written_by_the_sidecar() {
    let mut upstream = Upstream::ok().await;
    let yaml = format!(
        "upstream:\n  url: http://{}\nadmin:\n  listen: 127.0.0.1:0\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:0\n    pathPrefix: /team/ai\n    publicUrl: https://h.example/team/ai\n    auth:\n      mode: jwt\n      issuer: https://idp.example.com/realms/x\n      audiences: [https://h.example/team/ai/mcp]\n      algorithms: [RS256]\n    discovery:\n      authorizationServers: [https://idp.example.com/realms/x]\n      scopes: [mcp:call]\n",
        upstream.addr
    );
    let sluice = Sluice::start(&yaml).await;
    for path in [
        "/.well-known/oauth-protected-resource/team/ai/mcp",
        "/.well-known/oauth-protected-resource/team/ai",
    ] {
        let reply = get(&sluice.url(path)).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            reply.json(),
            json!({
                "resource": "https://h.example/team/ai/mcp",
                "authorization_servers": ["https://idp.example.com/realms/x"],
                "bearer_methods_supported": ["header"],
                "scopes_supported": ["mcp:call"]
            })
        );
    }
    // The authorization server's own metadata is the external server's to serve.
    for path in [
        "/.well-known/oauth-authorization-server/team/ai",
        "/.well-known/openid-configuration/team/ai",
        "/team/ai/.well-known/openid-configuration",
    ] {
        assert_eq!(get(&sluice.url(path)).await.status, 404, "{path}");
    }
    assert!(!upstream.saw_any(), "nothing is asked of the upstream");
}

#[tokio::test]
async fn entry_points_without_metadata_serve_none() {
    let mut upstream = fastmcp_like().await;
    // Mode none at `/`: well-known paths would otherwise be forwarded.
    let yaml = format!(
        "upstream:\n  url: http://{}\nadmin:\n  listen: 127.0.0.1:0\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:0\n    publicUrl: https://h.example\n    auth:\n      mode: none\n",
        upstream.addr
    );
    let sluice = Sluice::start(&yaml).await;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        assert_eq!(get(&sluice.url(path)).await.status, 404, "{path}");
    }
    assert!(!upstream.saw_any());
    // Ordinary requests still pass.
    assert_eq!(get(&sluice.url("/anything")).await.status, 200);
    assert_eq!(upstream.next().await.uri, "/anything");
}

#[tokio::test]
async fn broken_upstream_metadata_is_a_gateway_error() {
    let no_issuer =
        Upstream::start(|_| async { json(StatusCode::OK, r#"{"token_endpoint":"x"}"#) }).await;
    let sluice = Sluice::start(&oauth_config(no_issuer.addr, "/ai", "")).await;
    let reply = get(&sluice.url("/.well-known/oauth-authorization-server/ai")).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.rpc_code(), -32603);

    let not_found = Upstream::start(|_| async { json(StatusCode::NOT_FOUND, "{}") }).await;
    let sluice = Sluice::start(&oauth_config(not_found.addr, "/ai", "")).await;
    let reply = get(&sluice.url("/.well-known/oauth-protected-resource/ai/mcp")).await;
    assert_eq!(reply.status, 502, "{}", reply.text());

    // Nothing listening: the proxy's usual answer for an unreachable upstream.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = gone.local_addr().unwrap();
    drop(gone);
    let sluice = Sluice::start(&oauth_config(addr, "/ai", "")).await;
    let reply = get(&sluice.url("/.well-known/oauth-authorization-server/ai")).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
}

/// The server's own entry point in mode oauth: no public URL, at `/`.
fn in_cluster_config(upstream: SocketAddr) -> String {
    format!(
        "upstream:\n  url: http://{upstream}\nadmin:\n  listen: 127.0.0.1:0\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:0\n    auth:\n      mode: oauth\n"
    )
}

#[tokio::test]
async fn an_entry_point_without_a_public_url_serves_documents_for_the_url_its_caller_used() {
    let upstream = fastmcp_like().await;
    let sluice = Sluice::start(&in_cluster_config(upstream.addr)).await;
    for host in [sluice.addr().to_string(), "phab.team.svc:8080".to_owned()] {
        let public = format!("http://{host}");
        for (path, kind) in locations("/") {
            let reply = request(Method::GET, &sluice.url(&path), &[("host", &host)]).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            assert_consistent(&reply.json(), kind, &public, &path);
        }
        // The challenge names the document the caller will find.
        let reply = send(
            post(&sluice.url("/mcp"))
                .header("host", &host)
                .body(body(TOOLS_CALL))
                .unwrap(),
        )
        .await;
        assert_eq!(
            reply.header("www-authenticate"),
            Some(
                format!(
                    r#"Bearer resource_metadata="{public}/.well-known/oauth-protected-resource/mcp""#
                )
                .as_str()
            )
        );
    }
}

#[tokio::test]
async fn an_authorization_request_for_this_entry_points_resource_asks_for_conduits() {
    const CONDUIT_RESOURCE: &str = "http%3A%2F%2Flocalhost%3A8000%2Fconduit%2Fmcp";
    let mut upstream = fastmcp_like().await;
    let sluice = Sluice::start(&in_cluster_config(upstream.addr)).await;
    let mut authorize = async |host: &str, query: &str| {
        let reply = request(
            Method::GET,
            &sluice.url(&format!("/authorize?{query}")),
            &[("host", host)],
        )
        .await;
        let mut seen = None;
        while let Ok(s) =
            tokio::time::timeout(std::time::Duration::from_millis(300), upstream.next()).await
        {
            if s.uri.path() == "/authorize" {
                seen = Some(s.uri.to_string());
            }
        }
        (reply.status, seen)
    };

    // P/mcp of the URL the caller used is this entry point's resource: Conduit is asked for
    // its own, every other parameter kept.
    let (status, seen) = authorize(
        "phab.team.svc:8080",
        "client_id=c&resource=http%3A%2F%2Fphab.team.svc%3A8080%2Fmcp&state=s",
    )
    .await;
    assert_eq!(status, 302);
    assert_eq!(
        seen.as_deref(),
        Some(format!("/authorize?client_id=c&resource={CONDUIT_RESOURCE}&state=s").as_str())
    );
    // Another entry point's or another server's resource reaches Conduit as sent (and is
    // refused there); so does Conduit's own, and a request without one.
    for query in [
        "client_id=c&resource=http%3A%2F%2Fphab.other.svc%3A8080%2Fmcp",
        "client_id=c&resource=https%3A%2F%2Fevil.example%2Fmcp",
        &format!("client_id=c&resource={CONDUIT_RESOURCE}"),
        "client_id=c&state=s",
    ] {
        let (status, seen) = authorize("phab.team.svc:8080", query).await;
        assert_eq!(status, 302, "{query}");
        assert_eq!(
            seen.as_deref(),
            Some(format!("/authorize?{query}").as_str()),
            "{query}"
        );
    }
    // Two resources: which one Conduit would read is not guessed.
    let (status, seen) = authorize(
        "phab.team.svc:8080",
        "resource=http%3A%2F%2Fphab.team.svc%3A8080%2Fmcp&resource=https%3A%2F%2Fevil.example%2Fmcp",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(seen, None);
}

#[tokio::test]
async fn a_route_whose_public_url_is_not_conduits_gets_logins_for_conduits_resource() {
    let mut upstream = fastmcp_like().await;
    let sluice = Sluice::start(&oauth_config(upstream.addr, "/ai", "")).await;
    let reply = get(&sluice
        .url("/ai/authorize?client_id=c&resource=https%3A%2F%2Fh.example%2Fai%2Fmcp&state=s"))
    .await;
    assert_eq!(reply.status, 302);
    loop {
        let seen = upstream.next().await;
        if seen.uri.path() == "/authorize" {
            assert_eq!(
                seen.uri,
                "/authorize?client_id=c&resource=http%3A%2F%2Flocalhost%3A8000%2Fconduit%2Fmcp&state=s"
            );
            break;
        }
    }
}
