//! Mode `phabricatorToken`: the form check, `user.whoami` verification against a fake
//! Phabricator (wire format, single flight, TTLs, outages), and what the upstream receives.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::Duration;

use support::auth::*;
use support::phabricator::Phabricator;
use support::*;

const ALICE: &str = "api-alice2alice2alice2alice2alic";
const BOB: &str = "api-bob234bob234bob234bob234bob2";
const BOT_FOR_ALICE: &str = "api-botforalicebotforalicebotfo";

const VERIFY: &str = "mode: phabricatorToken\nverify:\n  cacheTtl: 5m\n  negativeCacheTtl: 5m";

/// A per-identity upstream token map in `dir`, as entry-point lines: the upstream then tells
/// which identity the sidecar established.
fn identity_map(dir: &std::path::Path, pairs: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(i, t)| ((*i).to_owned(), serde_json::Value::from(*t)))
        .collect();
    let path = dir.join("upstream-tokens.json");
    std::fs::write(&path, serde_json::Value::Object(map).to_string()).unwrap();
    format!("upstreamToken:\n  perIdentityFile: {}", path.display())
}

#[tokio::test]
async fn malformed_tokens_are_refused_without_asking_phabricator() {
    let mut upstream = Upstream::ok().await;
    let phab = Phabricator::start().await;
    phab.user(ALICE, "alice");
    let sluice = Sluice::start(&auth_config(upstream.addr, &phab.config(""), VERIFY, "")).await;

    let missing = call(&sluice, &[]).await;
    assert_header_token_401(&missing, r#"realm="sluice""#);
    assert!(
        !missing
            .header("www-authenticate")
            .unwrap()
            .contains("error=")
    );

    let oversized = format!("api-{}", "a".repeat(5000));
    let cyrillic_a = ALICE.replacen('a', "\u{0430}", 1);
    let bearer = format!("Bearer {ALICE}");
    // Headers, and what the challenge must say.
    type Case<'a> = (Vec<(&'a str, &'a [u8])>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("x-phabricator-token", ALICE.as_bytes()),
                ("X-Phabricator-Token", ALICE.as_bytes()),
            ],
            "invalid_request",
        ),
        (
            vec![("x-phabricator-token", oversized.as_bytes())],
            "invalid_token",
        ),
        (
            vec![(
                "x-phabricator-token",
                b"api-\xff\xfe\x80binarybinarybinarybinar",
            )],
            "invalid_token",
        ),
        (
            vec![("x-phabricator-token", cyrillic_a.as_bytes())],
            "invalid_token",
        ),
        (vec![("x-phabricator-token", b"api-short")], "invalid_token"),
        (
            vec![("x-phabricator-token", b"api-ALICE2ALICE2ALICE2ALICE2ALIC")],
            "invalid_token",
        ),
        (
            vec![("x-phabricator-token", b"cli-alice2alice2alice2alice2alic")],
            "invalid_token",
        ),
        // The right token in the wrong header is no token at all.
        (
            vec![("authorization", bearer.as_bytes())],
            r#"realm="sluice""#,
        ),
    ];
    for (headers, challenge) in &cases {
        let reply = call_raw(&sluice, headers).await;
        assert_header_token_401(&reply, challenge);
    }
    assert_eq!(phab.calls(), 0, "a malformed token was sent to Phabricator");
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_auth_failures_total{entry_point="main",reason="ambiguous"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_auth_failures_total{entry_point="main",reason="oversized"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_auth_failures_total{entry_point="main",reason="malformed"}"#
        )
        .await,
        5.0
    );

    // The first request the upstream sees is the first one allowed through.
    let ok = call(
        &sluice,
        &[("x-phabricator-token", ALICE), ("x-request", "first-good")],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(upstream.next().await.headers["x-request"], "first-good");
}

#[tokio::test]
async fn a_verified_token_names_its_phabricator_user() {
    let mut upstream = Upstream::ok().await;
    let phab = Phabricator::start().await;
    phab.user(ALICE, "alice");
    phab.user(BOB, "bob");
    let dir = tempfile::tempdir().unwrap();
    let entry = identity_map(dir.path(), &[("alice", BOT_FOR_ALICE)]);
    let sluice = Sluice::start(&auth_config(
        upstream.addr,
        &phab.config(""),
        VERIFY,
        &entry,
    ))
    .await;

    let reply = call(&sluice, &[("x-phabricator-token", ALICE)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = upstream.next().await;
    // Identity alice → her upstream token, in place of the one she sent.
    assert_eq!(seen.headers["x-phabricator-token"], BOT_FOR_ALICE);
    assert_eq!(
        seen.headers.get_all("x-phabricator-token").iter().count(),
        1
    );

    // The call was Conduit's wire format: a form POST to <url>user.whoami, uncompressed.
    let calls = phab.received();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/api/user.whoami");
    assert!(
        calls[0]
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
    assert_eq!(calls[0].content_encoding, None);
    assert_eq!(
        calls[0].form.get("api.token").map(String::as_str),
        Some(ALICE)
    );

    // Bob is a real user without an upstream token of his own: 403, nothing upstream.
    assert_403(&call(&sluice, &[("x-phabricator-token", BOB)]).await);
    // A token Phabricator refuses: 401 invalid_token.
    let unknown = "api-unknownunknownunknownunknown";
    assert_header_token_401(
        &call(&sluice, &[("x-phabricator-token", unknown)]).await,
        "invalid_token",
    );
    assert!(!upstream.saw_any(), "a refused caller reached the upstream");
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_auth_failures_total{entry_point="main",reason="no_upstream_token"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_auth_failures_total{entry_point="main",reason="invalid"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_token_make_one_whoami_call() {
    const N: usize = 8;
    let upstream = Upstream::ok().await;
    let phab = Phabricator::start().await;
    phab.user(ALICE, "alice");
    phab.hold();
    let sluice = Sluice::start(&auth_config(upstream.addr, &phab.config(""), VERIFY, "")).await;
    let url = sluice.url("/mcp");
    let calls: Vec<_> = (0..N)
        .map(|_| {
            let req = post(&url)
                .header("x-phabricator-token", ALICE)
                .body(body(TOOLS_CALL))
                .unwrap();
            tokio::spawn(send(req))
        })
        .collect();
    // Every request is inside the proxy and the first call is held at Phabricator.
    eventually("all requests in flight", async || {
        metric(&sluice, r#"sluice_in_flight_requests{entry_point="main"}"#).await == N as f64
    })
    .await;
    eventually("the first whoami call", async || phab.calls() >= 1).await;
    // Were calls not shared, the others would arrive now, while the first is held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        phab.calls(),
        1,
        "concurrent requests made separate whoami calls"
    );
    phab.release();
    for c in calls {
        assert_eq!(within("a call", c).await.unwrap().status, 200);
    }
    assert_eq!(phab.calls(), 1);
    let hits = metric(
        &sluice,
        r#"sluice_whoami_cache_total{entry_point="main",result="hit"}"#,
    )
    .await;
    let misses = metric(
        &sluice,
        r#"sluice_whoami_cache_total{entry_point="main",result="miss"}"#,
    )
    .await;
    assert_eq!((hits, misses), ((N - 1) as f64, 1.0));
}

#[tokio::test]
async fn verdicts_are_remembered_for_their_ttl_and_then_asked_again() {
    let upstream = Upstream::ok().await;
    let phab = Phabricator::start().await;
    phab.user(ALICE, "alice");
    let auth = "mode: phabricatorToken\nverify:\n  cacheTtl: 300ms\n  negativeCacheTtl: 300ms";
    let sluice = Sluice::start(&auth_config(upstream.addr, &phab.config(""), auth, "")).await;
    let alice = || call(&sluice, &[("x-phabricator-token", ALICE)]);

    assert_eq!(alice().await.status, 200);
    assert_eq!(alice().await.status, 200);
    assert_eq!(
        phab.calls(),
        1,
        "the second request was not answered from the cache"
    );
    // Revoked at Phabricator: refused once the accepted verdict expires.
    phab.revoke(ALICE);
    eventually("the revocation to be noticed", async || {
        alice().await.status == 401
    })
    .await;
    let calls = phab.calls();
    assert!(calls >= 2);
    // Refused verdicts are remembered too, then asked again.
    assert_eq!(alice().await.status, 401);
    assert_eq!(
        phab.calls(),
        calls,
        "a refused token was asked about again at once"
    );
    phab.user(ALICE, "alice");
    eventually("the negative verdict to expire", async || {
        alice().await.status == 200
    })
    .await;
}

#[tokio::test]
async fn without_phabricator_answers_nobody_gets_in() {
    let mut upstream = Upstream::ok().await;
    let phab = Phabricator::start().await;
    phab.user(ALICE, "alice");
    phab.user(BOB, "bob");
    let top = phab.config("timeout: 300ms");
    let sluice = Sluice::start(&auth_config(upstream.addr, &top, VERIFY, "")).await;
    let errors = |kind: &'static str| {
        let line = format!(
            r#"sluice_identity_provider_errors_total{{entry_point="main",provider="whoami",kind="{kind}"}}"#
        );
        let sluice = &sluice;
        async move { metric(sluice, &line).await }
    };

    // Slow: past phabricator.timeout.
    phab.slow(Duration::from_secs(30));
    assert_503(&call(&sluice, &[("x-phabricator-token", ALICE)]).await);
    assert_eq!(errors("timeout").await, 1.0);
    phab.slow(Duration::ZERO);

    // Failing with an error that says nothing about the token: not cached as a refusal.
    phab.fail_with(Some("ERR-CONDUIT-CORE"));
    assert_503(&call(&sluice, &[("x-phabricator-token", BOB)]).await);
    assert_eq!(errors("error_code").await, 1.0);
    phab.fail_with(None);
    assert_eq!(
        call(&sluice, &[("x-phabricator-token", BOB)]).await.status,
        200
    );
    assert_eq!(upstream.next().await.headers["x-phabricator-token"], BOB);

    // Down.
    phab.stop();
    assert_503(&call(&sluice, &[("x-phabricator-token", ALICE)]).await);
    assert_eq!(errors("connect").await, 1.0);
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_auth_failures_total{entry_point="main",reason="unavailable"}"#
        )
        .await,
        3.0
    );
    assert!(
        !upstream.saw_any(),
        "an unverified caller reached the upstream"
    );
}

#[tokio::test]
async fn without_verification_the_form_is_checked_and_the_token_named_by_its_hash() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    // sha256(ALICE) starts with these 12 hex digits.
    let name = format!("phabricator:{}", sha256_prefix(ALICE));
    let entry = identity_map(dir.path(), &[(&name, BOT_FOR_ALICE)]);
    let sluice = Sluice::start(&auth_config(
        upstream.addr,
        "",
        "mode: phabricatorToken",
        &entry,
    ))
    .await;
    assert_eq!(
        call(&sluice, &[("x-phabricator-token", ALICE)])
            .await
            .status,
        200
    );
    assert_eq!(
        upstream.next().await.headers["x-phabricator-token"],
        BOT_FOR_ALICE
    );
    assert_header_token_401(
        &call(&sluice, &[("x-phabricator-token", "api-nope")]).await,
        "invalid_token",
    );
    assert_403(&call(&sluice, &[("x-phabricator-token", BOB)]).await);
    assert!(!upstream.saw_any());
}

fn sha256_prefix(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn phabricator_over_tls_is_trusted_by_its_ca_or_the_insecure_switch_only() {
    let mut upstream = Upstream::ok().await;
    let cert = support::serve::TestCert::new();
    let phab = Phabricator::start_tls(&cert).await;
    phab.user(ALICE, "alice");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &cert.cert_pem).unwrap();

    // Its own certificate, not in webpki-roots: refused.
    let sluice = Sluice::start(&auth_config(upstream.addr, &phab.config(""), VERIFY, "")).await;
    assert_503(&call(&sluice, &[("x-phabricator-token", ALICE)]).await);
    assert_eq!(phab.calls(), 0, "the TLS handshake should have failed");
    drop(sluice);

    for extra in [
        format!("caFile: {}", ca.display()),
        "insecureSkipVerify: true".to_owned(),
    ] {
        let top = phab.config(&extra);
        let sluice = Sluice::start(&auth_config(upstream.addr, &top, VERIFY, "")).await;
        let reply = call(&sluice, &[("x-phabricator-token", ALICE)]).await;
        assert_eq!(reply.status, 200, "{extra}: {}", reply.text());
        upstream.next().await;
    }
    assert_eq!(phab.calls(), 2);
}

#[tokio::test]
async fn invented_tokens_cost_phabricator_only_a_bounded_number_of_calls() {
    // Every well-formed token nobody knows costs one user.whoami: without a bound, 300
    // requests with invented tokens made 300 calls. Known tokens cost nothing and still pass.
    let mut upstream = Upstream::ok().await;
    let phab = Phabricator::start().await;
    phab.user(ALICE, "alice");
    let top = format!(
        "{}\nlimits:\n  identityLookups:\n    concurrent: 4\n    perSecond: 1\n    burst: 10",
        phab.config("")
    );
    let sluice = Sluice::start(&auth_config(upstream.addr, &top, VERIFY, "")).await;
    assert_eq!(
        call(&sluice, &[("x-phabricator-token", ALICE)])
            .await
            .status,
        200
    );
    upstream.next().await;

    let mut refused: usize = 0;
    let mut throttled: u32 = 0;
    let started = tokio::time::Instant::now();
    for i in 0..300 {
        let token = format!("api-{:0>28}", format!("invented{i}"));
        let reply = call(&sluice, &[("x-phabricator-token", &token)]).await;
        match reply.status.as_u16() {
            401 => refused += 1,
            503 => {
                assert_eq!(reply.header("retry-after"), Some("1"));
                throttled += 1;
            }
            other => panic!("{other}: {}", reply.text()),
        }
    }
    // The burst of ten (Alice spent one of it), and one a second since.
    let refills = usize::try_from(started.elapsed().as_secs()).unwrap() + 1;
    let calls = phab.calls();
    println!(
        "300 invented tokens: {calls} calls to Phabricator, {refused} refused, {throttled} throttled"
    );
    assert!(calls <= 10 + refills, "{calls} calls to Phabricator");
    assert_eq!(refused + throttled as usize, 300);
    assert_eq!(refused, calls - 1, "every call made refused its token");
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_auth_failures_total{entry_point="main",reason="throttled"}"#
        )
        .await,
        f64::from(throttled)
    );
    // Alice is known: she is not held back by the bound.
    assert_eq!(
        call(&sluice, &[("x-phabricator-token", ALICE)])
            .await
            .status,
        200
    );
    upstream.next().await;
    assert!(
        !upstream.saw_any(),
        "an invented token reached the upstream"
    );
}
