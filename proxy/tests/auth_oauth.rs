//! Mode `oauth` (Conduit's OAuth-proxy mode): a bearer is required and passed on for Conduit to
//! judge; the sidecar learns the Phabricator user behind it from Conduit itself (its
//! `pha_user_whoami` tool, with the caller's bearer), remembers it per token, never remembers a
//! refusal or a failure, and never sends the bearer anywhere else. The OAuth flow's own paths
//! need no bearer.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::Duration;

use http::Request;
use support::auth::*;
use support::conduit::Conduit;
use support::*;

const ALICE: &str = "fastmcp-token-of-alice";
const ALICE_AGAIN: &str = "fastmcp-second-token-of-alice";
const BOB: &str = "fastmcp-token-of-bob";
const STRANGER: &str = "a-token-conduit-never-issued";
const ALICE_UPSTREAM: &str = "api-aliceupstreamaliceupstreamal";
const BOB_UPSTREAM: &str = "api-bobupstreambobupstreambobups";

const ENTRY: &str = "pathPrefix: /ai\npublicUrl: https://h.example/ai";
const METADATA: &str = "https://h.example/.well-known/oauth-protected-resource/ai/mcp";

async fn call_ai(sluice: &Sluice, headers: &[(&str, &str)]) -> Reply {
    let mut req = post(&sluice.url("/ai/mcp"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    send(req.body(body(TOOLS_CALL)).unwrap()).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A sidecar in mode oauth whose per-identity upstream tokens show who it took the caller for.
fn config_naming_identities(conduit: &Conduit, dir: &tempfile::TempDir, auth: &str) -> String {
    let map = serde_json::json!({"alice": ALICE_UPSTREAM, "bob": BOB_UPSTREAM});
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, map.to_string()).unwrap();
    let entry = format!(
        "{ENTRY}\nupstreamToken:\n  perIdentityFile: {}",
        path.display()
    );
    auth_config(conduit.upstream.addr, "", auth, &entry)
}

#[tokio::test]
async fn a_bearer_is_required_and_conduit_names_its_user() {
    let mut conduit = Conduit::start().await;
    for (token, user) in [(ALICE, "alice"), (ALICE_AGAIN, "alice"), (BOB, "bob")] {
        conduit.issue(token, user);
    }
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(&config_naming_identities(&conduit, &dir, "mode: oauth")).await;

    let missing = call_ai(&sluice, &[]).await;
    assert_401(
        &missing,
        &format!(r#"Bearer resource_metadata="{METADATA}""#),
    );
    assert!(
        !missing
            .header("www-authenticate")
            .unwrap()
            .contains("error=")
    );
    assert!(missing.text().contains("sign in"), "{}", missing.text());
    let twice = post(&sluice.url("/ai/mcp"))
        .header("authorization", bearer(ALICE))
        .header("authorization", bearer(ALICE))
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
    assert!(
        !conduit.upstream.saw_any(),
        "a refused caller reached the upstream"
    );

    // Alice: Conduit is asked once, with her own bearer, before her request goes on.
    let ok = call_ai(
        &sluice,
        &[
            ("authorization", &bearer(ALICE)),
            ("x-api-key", "not-for-conduit"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let question = conduit.upstream.next().await;
    assert_eq!(question.uri.path(), "/mcp");
    assert_eq!(question.headers["authorization"], bearer(ALICE).as_str());
    assert!(String::from_utf8_lossy(&question.body).contains(r#""name":"pha_user_whoami""#));
    let seen = conduit.next_forwarded().await;
    // Conduit's own token goes on, for Conduit to check; an API key never does.
    assert_eq!(seen.headers["authorization"], bearer(ALICE).as_str());
    assert!(seen.headers.get("x-api-key").is_none());
    assert_eq!(seen.headers["x-phabricator-token"], ALICE_UPSTREAM);

    // Known now: no second question. Bob is someone else; Alice's second token is Alice.
    let mut upstream_token = async |token: &str| {
        let reply = call_ai(&sluice, &[("authorization", &bearer(token))]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        conduit.next_forwarded().await.headers["x-phabricator-token"].clone()
    };
    assert_eq!(upstream_token(ALICE).await, ALICE_UPSTREAM);
    assert_eq!(upstream_token(BOB).await, BOB_UPSTREAM);
    assert_eq!(upstream_token(ALICE_AGAIN).await, ALICE_UPSTREAM);
    assert_eq!(conduit.whoami_calls(), 3, "one question per token");
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_whoami_cache_total{entry_point="main",result="hit"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_token_conduit_refuses_gets_its_challenge_with_the_request_id_and_is_never_kept() {
    let mut conduit = Conduit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(&config_naming_identities(&conduit, &dir, "mode: oauth")).await;

    let refused = call_ai(&sluice, &[("authorization", &bearer(STRANGER))]).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.json()["id"], 42, "{}", refused.text());
    assert_eq!(refused.rpc_code(), -32600);
    // Conduit's challenge, pointed at the metadata the caller can reach.
    assert_eq!(
        refused.header("www-authenticate").unwrap(),
        format!(
            r#"Bearer error="invalid_token", error_description="Authentication required", resource_metadata="{METADATA}""#
        )
    );
    let again = call_ai(&sluice, &[("authorization", &bearer(STRANGER))]).await;
    assert_eq!(again.status, 401);
    assert_eq!(conduit.whoami_calls(), 2, "a refusal is not remembered");
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_auth_failures_total{entry_point="main",reason="invalid"}"#
        )
        .await,
        2.0
    );

    // Conduit issues it after all (a fresh login): it works at once.
    conduit.issue(STRANGER, "bob");
    let ok = call_ai(&sluice, &[("authorization", &bearer(STRANGER))]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // Conduit forgets it (its state lost): the caller gets Conduit's own 401, and the identity
    // the sidecar knew is dropped, so the next request asks again.
    conduit.revoke(STRANGER);
    let forgotten = call_ai(&sluice, &[("authorization", &bearer(STRANGER))]).await;
    assert_eq!(forgotten.status, 401, "{}", forgotten.text());
    assert!(
        forgotten
            .header("www-authenticate")
            .unwrap()
            .contains(&format!(r#"resource_metadata="{METADATA}""#))
    );
    let calls = conduit.whoami_calls();
    let after = call_ai(&sluice, &[("authorization", &bearer(STRANGER))]).await;
    assert_eq!(after.status, 401);
    assert_eq!(conduit.whoami_calls(), calls + 1);
    while conduit.upstream.try_next().is_some() {}
}

#[tokio::test]
async fn a_conduit_that_cannot_say_gets_a_503_with_the_request_id_and_nothing_is_kept() {
    let mut conduit = Conduit::start().await;
    conduit.issue(ALICE, "alice");
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(&config_naming_identities(
        &conduit,
        &dir,
        "mode: oauth\nidentityTimeout: 300ms",
    ))
    .await;

    conduit.fail(true);
    let failing = call_ai(&sluice, &[("authorization", &bearer(ALICE))]).await;
    assert_503(&failing);
    assert_eq!(failing.json()["id"], 42, "{}", failing.text());
    conduit.fail(false);
    conduit.slow_whoami(Duration::from_secs(2));
    let slow = call_ai(&sluice, &[("authorization", &bearer(ALICE))]).await;
    assert_503(&slow);
    for kind in ["status", "timeout"] {
        let line = format!(
            r#"sluice_identity_provider_errors_total{{entry_point="main",provider="upstream",kind="{kind}"}}"#
        );
        assert_eq!(metric(&sluice, &line).await, 1.0, "{kind}");
    }
    // Nothing was kept: once Conduit answers, Alice is Alice.
    conduit.slow_whoami(Duration::ZERO);
    let ok = call_ai(&sluice, &[("authorization", &bearer(ALICE))]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        conduit.next_forwarded().await.headers["x-phabricator-token"],
        ALICE_UPSTREAM
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_token_ask_once() {
    let mut conduit = Conduit::start().await;
    conduit.issue(ALICE, "alice");
    conduit.slow_whoami(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let sluice = Sluice::start(&config_naming_identities(&conduit, &dir, "mode: oauth")).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let request = post(&sluice.url("/ai/mcp"))
            .header("authorization", bearer(ALICE))
            .body(body(TOOLS_CALL))
            .unwrap();
        calls.spawn(send(request));
    }
    while let Some(reply) = calls.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(conduit.whoami_calls(), 1);
    for _ in 0..5 {
        conduit.next_forwarded().await;
    }
}

#[tokio::test]
async fn a_stateful_conduit_is_asked_in_a_session_that_is_then_ended() {
    let mut conduit = Conduit::stateful().await;
    conduit.issue(ALICE, "alice");
    let dir = tempfile::tempdir().unwrap();
    let config = config_naming_identities(&conduit, &dir, "mode: oauth").replacen(
        "upstream:\n",
        "upstream:\n  sessions: stateful\n",
        1,
    );
    let sluice = Sluice::start(&config).await;

    // The caller's own request has no session, so Conduit answers it 400: what matters is
    // what the sidecar asked first.
    let reply = call_ai(&sluice, &[("authorization", &bearer(ALICE))]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let mut steps = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let seen = conduit.upstream.next().await;
        let body: serde_json::Value =
            serde_json::from_slice(&seen.body).unwrap_or(serde_json::Value::Null);
        steps.push((
            seen.method.to_string(),
            body["method"].as_str().unwrap_or("").to_owned(),
            seen.headers.contains_key("mcp-session-id"),
            seen.headers["authorization"] == bearer(ALICE).as_str(),
        ));
        last = Some(seen);
    }
    let expected = [
        ("POST", "initialize", false, true),
        ("POST", "notifications/initialized", true, true),
        ("POST", "tools/call", true, true),
        ("DELETE", "", true, true),
        ("POST", "tools/call", false, true),
    ];
    let steps: Vec<(&str, &str, bool, bool)> = steps
        .iter()
        .map(|(m, b, s, a)| (m.as_str(), b.as_str(), *s, *a))
        .collect();
    assert_eq!(steps, expected);
    assert_eq!(
        conduit.open_sessions(),
        0,
        "the sidecar's session was ended"
    );
    assert_eq!(
        last.unwrap().headers["x-phabricator-token"],
        ALICE_UPSTREAM,
        "the caller went on as alice"
    );
}

#[tokio::test]
async fn the_oauth_flow_needs_no_bearer() {
    let mut conduit = Conduit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("bot");
    std::fs::write(&token_file, ALICE_UPSTREAM).unwrap();
    let entry = format!("{ENTRY}\nupstreamToken:\n  file: {}", token_file.display());
    let config = auth_config(conduit.upstream.addr, "", "mode: oauth", &entry);
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
        let seen = conduit.upstream.next().await;
        // No caller to inject a token for, and the caller's own does not go on.
        assert!(seen.headers.get("x-phabricator-token").is_none(), "{path}");
    }
    let authorize = get(&sluice.url("/ai/authorize?client_id=c&state=s")).await;
    assert_eq!(authorize.status, 200);
    assert_eq!(conduit.upstream.next().await.uri.path(), "/authorize");

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
    assert!(!conduit.upstream.saw_any());
    assert_eq!(conduit.whoami_calls(), 0);
}

#[tokio::test]
async fn an_entry_point_without_a_public_url_names_the_url_its_caller_used() {
    let mut conduit = Conduit::start().await;
    let config = auth_config(conduit.upstream.addr, "", "mode: oauth", "");
    let sluice = Sluice::start(&config).await;

    for host in [sluice.addr().to_string(), "phab.team.svc:8080".to_owned()] {
        let metadata = format!("http://{host}/.well-known/oauth-protected-resource/mcp");
        let missing = send(
            post(&sluice.url("/mcp"))
                .header("host", &host)
                .body(body(TOOLS_CALL))
                .unwrap(),
        )
        .await;
        assert_401(
            &missing,
            &format!(r#"Bearer resource_metadata="{metadata}""#),
        );
        let refused = send(
            post(&sluice.url("/mcp"))
                .header("host", &host)
                .header("authorization", bearer(STRANGER))
                .body(body(TOOLS_CALL))
                .unwrap(),
        )
        .await;
        assert_eq!(refused.status, 401);
        assert!(
            refused
                .header("www-authenticate")
                .unwrap()
                .contains(&format!(r#"resource_metadata="{metadata}""#)),
            "{:?}",
            refused.header("www-authenticate")
        );
    }
    while conduit.upstream.try_next().is_some() {}
}

#[tokio::test]
async fn a_refusal_before_the_body_is_read_closes_the_connection_and_says_so() {
    // The SDKs reuse a keep-alive connection after a 401; hyper cannot reuse one whose request
    // body was never read, so the answer must say it closes, or the client's next request
    // (the discovery GET) dies with "Server disconnected without sending a response".
    let conduit = Conduit::start().await;
    let config = auth_config(conduit.upstream.addr, "", "mode: oauth", ENTRY);
    let sluice = Sluice::start(&config).await;
    let request = format!(
        "POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{TOOLS_CALL}",
        TOOLS_CALL.len()
    );
    let answer = raw(sluice.addr(), request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    // A bearer Conduit refuses, after the body was read: closed too (a refused caller keeps
    // no connection).
    let refused = format!(
        "POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer {STRANGER}\r\ncontent-length: {}\r\n\r\n{TOOLS_CALL}",
        TOOLS_CALL.len()
    );
    let answer = raw(sluice.addr(), refused.as_bytes())
        .await
        .to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    // Any other refusal after the body was read keeps the connection: a caller whose request
    // was malformed, denied or rate-limited may go on with the next one on it.
    conduit.issue(ALICE, "alice");
    let malformed = format!(
        "POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer {ALICE}\r\ncontent-length: 1\r\n\r\n{{"
    );
    let mut tcp = tokio::net::TcpStream::connect(sluice.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, malformed.as_bytes())
        .await
        .unwrap();
    let mut head = vec![0; 4096];
    let n = within(
        "the answer",
        tokio::io::AsyncReadExt::read(&mut tcp, &mut head),
    )
    .await
    .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
}
