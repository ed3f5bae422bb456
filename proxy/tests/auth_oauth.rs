//! Mode `oauth` (Conduit's OAuth-proxy mode): a bearer is required and passed on for Conduit to
//! judge; the sidecar names the caller with `user.whoami` (`access_token`) or, failing that,
//! by a hash of the token; the OAuth flow's own paths need no bearer.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use http::Request;
use support::auth::*;
use support::phabricator::Phabricator;
use support::*;

const ALICE: &str = "oauth-token-of-alice";
const STRANGER: &str = "a-token-phabricator-does-not-know";
const LATE: &str = "a-token-asked-while-phabricator-is-down";
const ALICE_UPSTREAM: &str = "api-aliceupstreamaliceupstreamal";
const STRANGER_UPSTREAM: &str = "api-strangerupstreamstrangerupst";
const LATE_UPSTREAM: &str = "api-lateupstreamlateupstreamlate";

const ENTRY: &str = "pathPrefix: /ai\npublicUrl: https://h.example/ai";

fn sha256_prefix(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

async fn call_ai(sluice: &Sluice, headers: &[(&str, &str)]) -> Reply {
    let mut req = post(&sluice.url("/ai/mcp"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    send(req.body(body(TOOLS_CALL)).unwrap()).await
}

#[tokio::test]
async fn a_bearer_is_required_and_passed_on_to_conduit() {
    let mut upstream = Upstream::ok().await;
    let phab = Phabricator::start().await;
    phab.user(ALICE, "alice");
    let config = auth_config(upstream.addr, &phab.config(""), "mode: oauth", ENTRY);
    let sluice = Sluice::start(&config).await;

    let missing = call_ai(&sluice, &[]).await;
    assert_401(
        &missing,
        r#"Bearer resource_metadata="https://h.example/.well-known/oauth-protected-resource/ai/mcp""#,
    );
    assert!(
        !missing
            .header("www-authenticate")
            .unwrap()
            .contains("error=")
    );
    let twice = post(&sluice.url("/ai/mcp"))
        .header("authorization", format!("Bearer {ALICE}"))
        .header("authorization", format!("Bearer {ALICE}"))
        .body(body(TOOLS_CALL))
        .unwrap();
    assert_401(&send(twice).await, r#"error="invalid_request""#);
    for bad in [
        "Basic YWxpY2U6eA==",
        "Bearer  spaced",
        "Bearer",
        "Bearer a b",
    ] {
        let reply = call_ai(&sluice, &[("authorization", bad)]).await;
        assert_401(&reply, r#"error="invalid_token""#);
    }
    assert_eq!(phab.calls(), 0);
    assert!(!upstream.saw_any(), "a refused caller reached the upstream");

    let bearer = format!("Bearer {ALICE}");
    let ok = call_ai(
        &sluice,
        &[("authorization", &bearer), ("x-api-key", "not-for-conduit")],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let seen = upstream.next().await;
    // Conduit's own token goes on, for Conduit to check; an API key never does.
    assert_eq!(seen.headers["authorization"], bearer.as_str());
    assert!(seen.headers.get("x-api-key").is_none());
    let calls = phab.received();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].form.get("access_token").map(String::as_str),
        Some(ALICE)
    );
    assert!(!calls[0].form.contains_key("api.token"));
}

#[tokio::test]
async fn when_whoami_does_not_name_the_caller_a_token_hash_does() {
    let mut upstream = Upstream::ok().await;
    let phab = Phabricator::start().await;
    phab.user(ALICE, "alice");
    let dir = tempfile::tempdir().unwrap();
    let map = serde_json::json!({
        "alice": ALICE_UPSTREAM,
        format!("oauth:{}", sha256_prefix(STRANGER)): STRANGER_UPSTREAM,
        format!("oauth:{}", sha256_prefix(LATE)): LATE_UPSTREAM,
    });
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, map.to_string()).unwrap();
    let entry = format!(
        "{ENTRY}\nupstreamToken:\n  perIdentityFile: {}",
        path.display()
    );
    let config = auth_config(
        upstream.addr,
        &phab.config("timeout: 500ms"),
        "mode: oauth",
        &entry,
    );
    let sluice = Sluice::start(&config).await;
    let mut upstream_token = async |token: &str| {
        let bearer = format!("Bearer {token}");
        let reply = call_ai(&sluice, &[("authorization", &bearer)]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        upstream.next().await.headers["x-phabricator-token"].clone()
    };

    assert_eq!(upstream_token(ALICE).await, ALICE_UPSTREAM);
    // Phabricator refuses the bearer: Conduit still decides; the caller is named by its hash.
    assert_eq!(upstream_token(STRANGER).await, STRANGER_UPSTREAM);
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_oauth_identity_fallbacks_total{entry_point="main",reason="refused"}"#
        )
        .await,
        1.0
    );
    // Phabricator down: the same, counted apart; Alice is still known from the cache.
    phab.stop();
    assert_eq!(upstream_token(LATE).await, LATE_UPSTREAM);
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_oauth_identity_fallbacks_total{entry_point="main",reason="unavailable"}"#
        )
        .await,
        1.0
    );
    assert_eq!(upstream_token(ALICE).await, ALICE_UPSTREAM);
}

#[tokio::test]
async fn the_oauth_flow_needs_no_bearer() {
    let mut upstream = Upstream::ok().await;
    let phab = Phabricator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("bot");
    std::fs::write(&token_file, ALICE_UPSTREAM).unwrap();
    let entry = format!("{ENTRY}\nupstreamToken:\n  file: {}", token_file.display());
    let config = auth_config(upstream.addr, &phab.config(""), "mode: oauth", &entry);
    let sluice = Sluice::start(&config).await;

    let form = |path: &str| {
        Request::post(sluice.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-phabricator-token", "api-callercallercallercallercall")
            .body(body("grant_type=authorization_code&code=c"))
            .unwrap()
    };
    for path in ["/ai/token", "/ai/register", "/ai/%74oken"] {
        assert_eq!(send(form(path)).await.status, 200, "{path}");
        let seen = upstream.next().await;
        // No caller to inject a token for, and the caller's own does not go on.
        assert!(seen.headers.get("x-phabricator-token").is_none(), "{path}");
    }
    let authorize = get(&sluice.url("/ai/authorize?client_id=c&state=s")).await;
    assert_eq!(authorize.status, 200);
    assert_eq!(upstream.next().await.uri.path(), "/authorize");

    // Everything else needs the bearer, whatever the spelling (a dot segment may be refused
    // earlier still, as an ambiguous path).
    for path in ["/ai/mcp", "/ai/%6dcp", "/ai/token/../mcp", "/ai/tokens"] {
        let reply = send(post(&sluice.url(path)).body(body(TOOLS_CALL)).unwrap()).await;
        assert!(
            matches!(reply.status.as_u16(), 401 | 404),
            "{path}: {}",
            reply.status
        );
    }
    assert!(!upstream.saw_any());
    assert_eq!(phab.calls(), 0);
}
