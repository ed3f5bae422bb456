//! Mode `apiKey` (keys from a mounted Secret, re-read as the kubelet swaps it) and mode `none`.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::path::Path;

use support::auth::*;
use support::secret_dir::SecretDir;
use support::*;

const CI_KEY: &str = "ci-key-0123456789abcdef";
const DEPLOY_KEY: &str = "deploy-key-0123456789";
const CI_UPSTREAM: &str = "api-ciupstreamciupstreamciupstre";
const DEPLOY_UPSTREAM: &str = "api-deployupstreamdeployupstream";
const OPS_UPSTREAM: &str = "api-opsupstreamopsupstreamopsups";

fn identity_map(dir: &Path, pairs: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(i, t)| ((*i).to_owned(), serde_json::Value::from(*t)))
        .collect();
    let path = dir.join("upstream-tokens.json");
    std::fs::write(&path, serde_json::Value::Object(map).to_string()).unwrap();
    format!("upstreamToken:\n  perIdentityFile: {}", path.display())
}

#[tokio::test]
async fn a_key_in_either_header_names_its_client() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    SecretDir::new(
        &keys,
        &[
            ("ci", &format!("{CI_KEY}\n")),
            ("deploy", DEPLOY_KEY),
            ("short", "fifteen-chars!!"),
        ],
    );
    let entry = identity_map(
        dir.path(),
        &[("ci", CI_UPSTREAM), ("deploy", DEPLOY_UPSTREAM)],
    );
    let auth = format!("mode: apiKey\nkeysDir: {}", keys.display());
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, &entry)).await;

    let bearer = format!("Bearer {CI_KEY}");
    assert_eq!(
        call(&sluice, &[("authorization", &bearer)]).await.status,
        200
    );
    let seen = upstream.next().await;
    assert_eq!(seen.headers["x-phabricator-token"], CI_UPSTREAM);
    assert!(
        seen.headers.get("authorization").is_none(),
        "the API key went upstream"
    );
    assert_eq!(
        call(&sluice, &[("x-api-key", DEPLOY_KEY)]).await.status,
        200
    );
    let seen = upstream.next().await;
    assert_eq!(seen.headers["x-phabricator-token"], DEPLOY_UPSTREAM);
    assert!(
        seen.headers.get("x-api-key").is_none(),
        "the API key went upstream"
    );

    assert_401(&call(&sluice, &[]).await, "Bearer");
    let both = [("authorization", bearer.as_str()), ("x-api-key", CI_KEY)];
    assert_401(&call(&sluice, &both).await, "invalid_request");
    let oversized = "k".repeat(5000);
    let look_alike = CI_KEY.replace('e', "\u{0435}");
    let refused: [(&str, &[u8]); 6] = [
        ("x-api-key", b"fifteen-chars!!"),
        ("x-api-key", b"not-a-key-of-anybody"),
        ("x-api-key", oversized.as_bytes()),
        ("x-api-key", look_alike.as_bytes()),
        ("x-api-key", b"ci-key-\t123456789abcdef"),
        ("authorization", b"Basic Y2k6Y2kta2V5"),
    ];
    for header in refused {
        let reply = call_raw(&sluice, &[header]).await;
        assert_401(&reply, r#"error="invalid_token""#);
    }
    assert!(!upstream.saw_any(), "a refused caller reached the upstream");

    // The short key was refused at load, and /readyz says so (without the key).
    let ready = get(&sluice.admin("/readyz")).await;
    assert_eq!(ready.status, 200);
    let text = ready.text();
    assert!(
        text.contains("short: the key is shorter than 16 characters"),
        "{text}"
    );
    assert!(!text.contains("fifteen-chars"), "{text}");
}

#[tokio::test]
async fn keys_follow_the_secret_as_the_kubelet_swaps_it() {
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let keys_path = dir.path().join("keys");
    let mut keys = SecretDir::new(&keys_path, &[("ci", CI_KEY)]);
    let entry = identity_map(
        dir.path(),
        &[
            ("ci", CI_UPSTREAM),
            ("deploy", DEPLOY_UPSTREAM),
            ("ops", OPS_UPSTREAM),
        ],
    );
    let auth = format!("mode: apiKey\nkeysDir: {}", keys_path.display());
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, &entry)).await;
    let status = async |key: &str| call(&sluice, &[("x-api-key", key)]).await.status;
    assert_eq!(status(CI_KEY).await, 200);

    // Rotated: ci has a new key, ops is added.
    let new_ci = "ci-key-rotated-0123456789";
    let ops = "ops-key-0123456789abcdef";
    keys.update(&[("ci", new_ci), ("ops", ops)]);
    eventually("the new keys", async || status(new_ci).await == 200).await;
    assert_eq!(status(ops).await, 200);
    assert_eq!(status(CI_KEY).await, 401, "the rotated-out key still works");

    // The Secret disappears: the last good keys stay; /readyz says why.
    let aside = dir.path().join("aside");
    std::fs::rename(&keys_path, &aside).unwrap();
    eventually("the problem on /readyz", async || {
        get(&sluice.admin("/readyz"))
            .await
            .text()
            .contains("API keys")
    })
    .await;
    assert_eq!(status(new_ci).await, 200);
    std::fs::rename(&aside, &keys_path).unwrap();
    eventually("the problem to clear", async || {
        !get(&sluice.admin("/readyz"))
            .await
            .text()
            .contains("API keys")
    })
    .await;
    assert_eq!(status(ops).await, 200);
}

#[tokio::test]
async fn an_unreadable_key_directory_lets_nobody_in() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = format!(
        "mode: apiKey\nkeysDir: {}",
        dir.path().join("missing").display()
    );
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, "")).await;
    assert_503(&call(&sluice, &[("x-api-key", CI_KEY)]).await);
    assert!(
        get(&sluice.admin("/readyz"))
            .await
            .text()
            .contains("none is in use")
    );
    assert!(!upstream.saw_any());
}

#[tokio::test]
async fn mode_none_lets_everyone_in_as_anonymous_without_their_credentials() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let entry = identity_map(dir.path(), &[("anonymous", CI_UPSTREAM)]);
    let sluice = Sluice::start(&auth_config(upstream.addr, "", "mode: none", &entry)).await;
    let reply = call(
        &sluice,
        &[
            ("authorization", "Bearer some-jwt-for-the-sidecar"),
            ("x-api-key", CI_KEY),
            ("x-phabricator-token", "api-callercallercallercallercall"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = upstream.next().await;
    assert_eq!(seen.headers["x-phabricator-token"], CI_UPSTREAM);
    assert_eq!(
        seen.headers.get_all("x-phabricator-token").iter().count(),
        1
    );
    assert!(seen.headers.get("authorization").is_none());
    assert!(seen.headers.get("x-api-key").is_none());
}

#[tokio::test]
async fn challenges_point_at_no_metadata_where_none_is_served() {
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    SecretDir::new(&dir.path().join("keys"), &[("ci", CI_KEY)]);
    let auth = format!(
        "mode: apiKey\nkeysDir: {}",
        dir.path().join("keys").display()
    );
    // A public URL, but no OAuth here: nothing to discover, so nothing to point at.
    let entry = "pathPrefix: /ai\npublicUrl: https://h.example/ai";
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, entry)).await;
    let reply = send(post(&sluice.url("/ai/mcp")).body(body(TOOLS_CALL)).unwrap()).await;
    assert_401(&reply, "Bearer");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}

/// A browser MCP client on an allowed page: its preflight (which never carries credentials)
/// is answered without authentication, and every answer to its real requests, the 401 that
/// starts its sign-in included, lets the page read it. Other pages get nothing of this.
#[tokio::test]
async fn a_page_on_an_allowed_origin_may_call_from_the_browser() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    SecretDir::new(&dir.path().join("keys"), &[("ci", CI_KEY)]);
    let auth = format!(
        "mode: apiKey\nkeysDir: {}",
        dir.path().join("keys").display()
    );
    let entry = "allowedOrigins: [\"http://localhost:6274\"]";
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, entry)).await;
    let preflight = |origin: &str| {
        http::Request::options(sluice.url("/mcp"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, mcp-protocol-version",
            )
            .body(body(""))
            .unwrap()
    };

    let reply = send(preflight("http://localhost:6274")).await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://localhost:6274")
    );
    assert!(
        reply
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("authorization, content-type, mcp-protocol-version")
    );

    let page = ("origin", "http://localhost:6274");
    let refused = call(&sluice, &[page]).await;
    assert_401(&refused, "Bearer");
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("http://localhost:6274")
    );
    assert!(
        refused
            .header("access-control-expose-headers")
            .unwrap()
            .contains("WWW-Authenticate")
    );
    let bearer = format!("Bearer {CI_KEY}");
    let answered = call(&sluice, &[page, ("authorization", &bearer)]).await;
    assert_eq!(answered.status, 200);
    assert_eq!(
        answered.header("access-control-allow-origin"),
        Some("http://localhost:6274")
    );
    upstream.next().await;

    // Another page: its preflight is refused like its requests; a non-browser OPTIONS (no
    // Origin) still meets authentication.
    let foreign = send(preflight("https://evil.example")).await;
    assert_eq!(foreign.status, 403);
    assert!(foreign.header("access-control-allow-origin").is_none());
    let unauthenticated_options = http::Request::options(sluice.url("/mcp"))
        .header("access-control-request-method", "POST")
        .body(body(""))
        .unwrap();
    assert_eq!(send(unauthenticated_options).await.status, 401);
    // A caller without Origin gets no CORS headers.
    let plain = call(&sluice, &[("authorization", &bearer)]).await;
    assert!(plain.header("access-control-allow-origin").is_none());
    upstream.next().await;
    assert!(!upstream.saw_any(), "a preflight reached the upstream");
}
