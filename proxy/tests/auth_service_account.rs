//! Mode `serviceAccount`: projected tokens reviewed by a fake Kubernetes API server over TLS
//! (TokenReview), the allowed list, the review cache bounded by the token's `exp`, the
//! sidecar's own rotating token, and an API server that is down or refuses the sidecar.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::path::Path;

use support::auth::*;
use support::issuer::now;
use support::serve::TestCert;
use support::token_review::TokenReviewApi;
use support::*;

const AUDIENCE: &str = "https://conduit.tools.svc";
const SIDECAR_TOKEN: &str = "sidecar-own-token-1";
const RUNNER_UPSTREAM: &str = "api-runnerupstreamrunnerupstream";
const TOOLS_UPSTREAM: &str = "api-toolsupstreamtoolsupstreamto";

/// The auth block and entry lines for `api`, with the sidecar's token and CA files in `dir`.
fn setup(
    dir: &Path,
    api: &TokenReviewApi,
    cert: Option<&TestCert>,
    cache_ttl: &str,
) -> (String, String) {
    std::fs::write(dir.join("token"), format!("{SIDECAR_TOKEN}\n")).unwrap();
    if let Some(cert) = cert {
        std::fs::write(dir.join("ca.crt"), &cert.cert_pem).unwrap();
    }
    let auth = format!(
        "mode: serviceAccount\naudience: {AUDIENCE}\nallowed: [ci/runner, tools/*]\ntokenReview:\n  apiServer: {}\n  tokenFile: {}\n  caFile: {}\n  cacheTtl: {cache_ttl}",
        api.url(),
        dir.join("token").display(),
        dir.join("ca.crt").display()
    );
    let map = serde_json::json!({
        "system:serviceaccount:ci:runner": RUNNER_UPSTREAM,
        "system:serviceaccount:tools:indexer": TOOLS_UPSTREAM,
        "system:serviceaccount:ci:other": TOOLS_UPSTREAM,
    });
    std::fs::write(dir.join("map.json"), map.to_string()).unwrap();
    let entry = format!(
        "upstreamToken:\n  perIdentityFile: {}",
        dir.join("map.json").display()
    );
    (auth, entry)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn reviewed_tokens_of_allowed_service_accounts_get_in() {
    let mut upstream = Upstream::ok().await;
    let cert = TestCert::new();
    let api = TokenReviewApi::start_tls(&cert, SIDECAR_TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let (auth, entry) = setup(dir.path(), &api, Some(&cert), "5m");
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, &entry)).await;
    let hour = now() + 3600;

    let runner = api.issue("ci", "runner", &[AUDIENCE], hour);
    assert_eq!(
        call(&sluice, &[("authorization", &bearer(&runner))])
            .await
            .status,
        200
    );
    let seen = upstream.next().await;
    assert_eq!(seen.headers["x-phabricator-token"], RUNNER_UPSTREAM);
    assert!(
        seen.headers.get("authorization").is_none(),
        "a token minted for the sidecar went upstream"
    );
    // The API server heard from the sidecar with the sidecar's own token.
    assert_eq!(api.bearers(), [bearer(SIDECAR_TOKEN)]);
    // Reviewed once, then remembered.
    assert_eq!(
        call(&sluice, &[("authorization", &bearer(&runner))])
            .await
            .status,
        200
    );
    upstream.next().await;
    assert_eq!(api.reviews(), 1);

    let indexer = api.issue("tools", "indexer", &[AUDIENCE], hour);
    assert_eq!(
        call(&sluice, &[("authorization", &bearer(&indexer))])
            .await
            .status,
        200
    );
    assert_eq!(
        upstream.next().await.headers["x-phabricator-token"],
        TOOLS_UPSTREAM
    );

    // Authenticated, but not on the list: 403.
    let other = api.issue("ci", "other", &[AUDIENCE], hour);
    assert_403(&call(&sluice, &[("authorization", &bearer(&other))]).await);
    // Minted for another audience, or unknown to the API server: 401.
    let elsewhere = api.issue("ci", "runner", &["https://kubernetes.default.svc"], hour);
    assert_401(
        &call(&sluice, &[("authorization", &bearer(&elsewhere))]).await,
        "invalid_token",
    );
    let reviews = api.reviews();
    // Not JWT-shaped, oversized, in the wrong header: refused without a review.
    let oversized = format!("{runner}{}", "a".repeat(5000));
    for headers in [
        vec![("authorization", bearer("opaque-token"))],
        vec![("authorization", bearer(&oversized))],
        vec![("x-api-key", runner.clone())],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(call(&sluice, &h).await.status, 401);
    }
    assert_eq!(
        api.reviews(),
        reviews,
        "a malformed token was sent for review"
    );
    assert!(!upstream.saw_any(), "a refused caller reached the upstream");
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_auth_failures_total{entry_point="main",reason="not_allowed"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_review_is_reused_no_longer_than_the_token_lives() {
    let upstream = Upstream::ok().await;
    let cert = TestCert::new();
    let api = TokenReviewApi::start_tls(&cert, SIDECAR_TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let (auth, entry) = setup(dir.path(), &api, Some(&cert), "1h");
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, &entry)).await;

    // Expires in a second: its review is not kept for the hour cacheTtl allows.
    let brief = api.issue("ci", "runner", &[AUDIENCE], now() + 1);
    let brief_bearer = bearer(&brief);
    assert_eq!(
        call(&sluice, &[("authorization", &brief_bearer)])
            .await
            .status,
        200
    );
    api.revoke(&brief);
    eventually("the review to lapse with the token", async || {
        call(&sluice, &[("authorization", &brief_bearer)])
            .await
            .status
            == 401
    })
    .await;

    // Lives long: a revocation goes unnoticed while the review is cached.
    let long = api.issue("ci", "runner", &[AUDIENCE], now() + 3600);
    let long_bearer = bearer(&long);
    assert_eq!(
        call(&sluice, &[("authorization", &long_bearer)])
            .await
            .status,
        200
    );
    api.revoke(&long);
    assert_eq!(
        call(&sluice, &[("authorization", &long_bearer)])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_sidecar_rereads_its_own_token_when_it_rotates() {
    let upstream = Upstream::ok().await;
    let cert = TestCert::new();
    let api = TokenReviewApi::start_tls(&cert, SIDECAR_TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let (auth, entry) = setup(dir.path(), &api, Some(&cert), "5m");
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, &entry)).await;
    let hour = now() + 3600;

    // The kubelet rotates the projected token; the API server accepts only the new one.
    api.rotate_reviewer_token("sidecar-own-token-2");
    write_atomically(&dir.path().join("token"), "sidecar-own-token-2");
    eventually("the rotated token to be used", async || {
        let fresh = api.issue("ci", "runner", &[AUDIENCE], hour);
        call(&sluice, &[("authorization", &bearer(&fresh))])
            .await
            .status
            == 200
    })
    .await;
    assert_eq!(api.bearers().last().unwrap(), "Bearer sidecar-own-token-2");
}

#[tokio::test]
async fn an_api_server_that_fails_or_cannot_be_trusted_lets_nobody_in() {
    let mut upstream = Upstream::ok().await;
    let cert = TestCert::new();
    let api = TokenReviewApi::start_tls(&cert, SIDECAR_TOKEN).await;
    let hour = now() + 3600;
    let errors = async |sluice: &Sluice, kind: &str| {
        let line = format!(
            r#"sluice_identity_provider_errors_total{{entry_point="main",provider="token_review",kind="{kind}"}}"#
        );
        metric(sluice, &line).await
    };

    // Without the CA, the API server's certificate is not trusted: nothing is reviewed.
    let untrusting = tempfile::tempdir().unwrap();
    let (auth, entry) = setup(untrusting.path(), &api, None, "5m");
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, &entry)).await;
    let token = api.issue("ci", "runner", &[AUDIENCE], hour);
    assert_503(&call(&sluice, &[("authorization", &bearer(&token))]).await);
    assert_eq!(api.reviews(), 0);
    assert_eq!(errors(&sluice, "connect").await, 1.0);
    assert!(
        get(&sluice.admin("/readyz"))
            .await
            .text()
            .contains("CA bundle")
    );
    drop(sluice);

    let dir = tempfile::tempdir().unwrap();
    let (auth, entry) = setup(dir.path(), &api, Some(&cert), "5m");
    let sluice = Sluice::start(&auth_config(upstream.addr, "", &auth, &entry)).await;
    // The API server refuses the sidecar (its token, or its RBAC): 503, not the caller's fault.
    api.rotate_reviewer_token("someone-else");
    assert_503(&call(&sluice, &[("authorization", &bearer(&token))]).await);
    assert_eq!(errors(&sluice, "status").await, 1.0);
    // Down.
    api.stop();
    assert_503(&call(&sluice, &[("authorization", &bearer(&token))]).await);
    assert_eq!(errors(&sluice, "connect").await, 1.0);
    assert!(
        !upstream.saw_any(),
        "an unreviewed caller reached the upstream"
    );
}
