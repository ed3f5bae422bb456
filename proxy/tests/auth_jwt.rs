//! Mode `jwt`: tokens signed in the test with RSA, EC and Ed25519 keys, checked against a
//! local issuer's JWKS (by URL or OpenID discovery); every way a token can be wrong; key
//! rotation with a rate-limited refetch; an issuer that cannot be reached.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use serde_json::{Value, json};
use support::auth::*;
use support::issuer::{Issuer, SigningKey, hs256, now, unsigned};
use support::*;

const AUD: &str = "https://h.example/ai";

/// The auth block for `issuer` (discovered when `jwks_url` is false).
fn jwt_auth(issuer: &Issuer, jwks_url: bool, min_refresh: &str) -> String {
    let jwks = if jwks_url {
        format!("jwksUrl: {}\n", issuer.jwks_url())
    } else {
        String::new()
    };
    format!(
        "mode: jwt\nissuer: {}\naudiences: [other-audience, {AUD}]\n{jwks}algorithms: [RS256, PS256, ES256, ES384, EdDSA]\nclockSkew: 30s\ngroupsClaim: groups\njwksMinRefresh: {min_refresh}\nscopes: [mcp:tools]",
        issuer.url()
    )
}

/// Upstream tokens by identity, so the upstream tells who the sidecar said was calling.
fn entry(dir: &std::path::Path, identities: &[&str]) -> String {
    let map: serde_json::Map<String, Value> = identities
        .iter()
        .map(|i| ((*i).to_owned(), Value::from(upstream_token_of(i))))
        .collect();
    let path = dir.join("map.json");
    std::fs::write(&path, Value::Object(map).to_string()).unwrap();
    format!(
        "pathPrefix: /ai\npublicUrl: https://h.example/ai\nupstreamToken:\n  perIdentityFile: {}",
        path.display()
    )
}

/// A tool policy that lets only the `admins` group call `pha_task_get`.
const ADMINS_ONLY: &str =
    "tools:\n  deny: [pha_task_get]\n  rules:\n    - groups: [admins]\n      allow: [\"pha_*\"]";

fn upstream_token_of(identity: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, identity.as_bytes());
    let hex: String = d.as_ref()[..14]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("api-{hex}")
}

async fn call_jwt(sluice: &Sluice, token: &str) -> Reply {
    let req = post(&sluice.url("/ai/mcp"))
        .header("authorization", format!("Bearer {token}"))
        .body(body(TOOLS_CALL))
        .unwrap();
    send(req).await
}

async fn failures(sluice: &Sluice, reason: &str) -> f64 {
    metric(
        sluice,
        &format!(r#"sluice_auth_failures_total{{entry_point="main",reason="{reason}"}}"#),
    )
    .await
}

#[tokio::test]
async fn tokens_signed_by_every_published_key_type_get_in() {
    let mut upstream = Upstream::ok().await;
    let issuer = Issuer::start().await;
    let keys = [
        (SigningKey::rsa("rsa"), "RS256"),
        (SigningKey::rsa("rsa-pss"), "PS256"),
        (SigningKey::p256("p256"), "ES256"),
        (SigningKey::p384("p384"), "ES384"),
        (SigningKey::ed25519("ed"), "EdDSA"),
    ];
    for (key, _) in &keys {
        issuer.publish(key);
    }
    let dir = tempfile::tempdir().unwrap();
    let subjects: Vec<String> = keys
        .iter()
        .map(|(k, _)| format!("user-{}", k.kid))
        .collect();
    let names: Vec<&str> = subjects.iter().map(String::as_str).collect();
    // Discovered through the issuer's OpenID configuration.
    let entry = format!("{}\n{ADMINS_ONLY}", entry(dir.path(), &names));
    let config = auth_config(upstream.addr, "", &jwt_auth(&issuer, false, "30s"), &entry);
    let sluice = Sluice::start(&config).await;

    for ((key, alg), sub) in keys.iter().zip(&subjects) {
        let mut claims = issuer.claims(sub, AUD);
        claims["groups"] = json!(["admins"]);
        let reply = call_jwt(&sluice, &key.sign(alg, &claims)).await;
        assert_eq!(reply.status, 200, "{alg}: {}", reply.text());
        let seen = upstream.next().await;
        assert_eq!(
            seen.headers["x-phabricator-token"],
            upstream_token_of(sub).as_str()
        );
        assert!(
            seen.headers.get("authorization").is_none(),
            "the JWT went upstream"
        );
    }
    assert_eq!(issuer.discovery_fetches(), 1);
    assert_eq!(issuer.jwks_fetches(), 1, "the JWKS was not kept");

    // The same caller without the admins group: the tool policy reads the groups.
    let plain = keys[2].0.sign("ES256", &issuer.claims(&subjects[2], AUD));
    assert_eq!(call_jwt(&sluice, &plain).await.status, 403);
    // A token for the other configured audience, in an audience list: accepted.
    let mut claims = issuer.claims(&subjects[0], "ignored");
    claims["aud"] = json!(["someone", "other-audience"]);
    claims["groups"] = json!(["admins"]);
    assert_eq!(
        call_jwt(&sluice, &keys[0].0.sign("RS256", &claims))
            .await
            .status,
        200
    );
    // Expired, but within the clock skew: accepted.
    let mut claims = issuer.claims(&subjects[0], AUD);
    claims["exp"] = json!(now() - 10);
    claims["groups"] = json!(["admins"]);
    assert_eq!(
        call_jwt(&sluice, &keys[0].0.sign("RS256", &claims))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused() {
    let mut upstream = Upstream::ok().await;
    let issuer = Issuer::start().await;
    let rsa = SigningKey::rsa("rsa");
    let ec = SigningKey::p256("ec");
    issuer.publish(&rsa);
    issuer.publish(&ec);
    let stranger = SigningKey::p256("ec"); // same kid, unpublished key
    let dir = tempfile::tempdir().unwrap();
    // The entry point names its issuer in its own protected-resource metadata, which the
    // challenge then points at.
    let entry = format!(
        "{}\ndiscovery:\n  authorizationServers: [{}]",
        entry(dir.path(), &["alice"]),
        issuer.url()
    );
    let config = auth_config(upstream.addr, "", &jwt_auth(&issuer, true, "1h"), &entry);
    let sluice = Sluice::start(&config).await;
    let good = || issuer.claims("alice", AUD);
    let with = |field: &str, value: Value| {
        let mut c = good();
        c[field] = value;
        c
    };
    let without = |field: &str| {
        let mut c = good();
        c.as_object_mut().unwrap().remove(field);
        c
    };
    // Warm the JWKS, so no case below is a first fetch.
    assert_eq!(
        call_jwt(&sluice, &rsa.sign("RS256", &good())).await.status,
        200
    );
    upstream.next().await;

    let mut tampered = ec.sign("ES256", &good());
    let dot = tampered.find('.').unwrap() + 1;
    let other_claims = ec.sign("ES256", &with("sub", json!("mallory")));
    let other_payload = other_claims.split('.').nth(1).unwrap().to_owned();
    let payload_end = tampered[dot..].find('.').unwrap() + dot;
    tampered.replace_range(dot..payload_end, &other_payload);

    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", unsigned(&good()), "algorithm"),
        (
            "HS256 keyed with the RSA public key",
            hs256("rsa", &rsa.public_bytes(), &good()),
            "algorithm",
        ),
        (
            "HS256 keyed with the EC public key",
            hs256("ec", &ec.public_bytes(), &good()),
            "algorithm",
        ),
        (
            "an allowed family, not an allowed alg",
            rsa.sign("RS512", &good()),
            "algorithm",
        ),
        (
            "ES256 naming the RSA key",
            rsa.sign_with_header(&json!({"alg": "ES256", "kid": "rsa"}), &good()),
            "unknown_key",
        ),
        (
            "RS256 naming the EC key",
            ec.sign_with_header(&json!({"alg": "RS256", "kid": "ec"}), &good()),
            "unknown_key",
        ),
        (
            "signed by an unpublished key",
            stranger.sign("ES256", &good()),
            "invalid",
        ),
        ("payload swapped after signing", tampered, "invalid"),
        (
            "another issuer",
            ec.sign("ES256", &with("iss", json!("https://evil.example"))),
            "wrong_issuer",
        ),
        (
            "another audience",
            ec.sign("ES256", &with("aud", json!("https://elsewhere"))),
            "wrong_audience",
        ),
        (
            "expired past the skew",
            ec.sign("ES256", &with("exp", json!(now() - 120))),
            "expired",
        ),
        (
            "not valid before a minute from now",
            ec.sign("ES256", &with("nbf", json!(now() + 120))),
            "not_yet_valid",
        ),
        ("no exp", ec.sign("ES256", &without("exp")), "malformed"),
        (
            "no identity claim",
            ec.sign("ES256", &without("sub")),
            "invalid",
        ),
        (
            "groups not a list",
            ec.sign("ES256", &with("groups", json!("admins"))),
            "invalid",
        ),
        (
            "critical header extension",
            ec.sign_with_header(
                &json!({"alg": "ES256", "kid": "ec", "crit": ["x"], "x": 1}),
                &good(),
            ),
            "malformed",
        ),
        ("not a JWT", "a.b.c".to_owned(), "malformed"),
    ];
    for (what, token, reason) in &cases {
        let before = failures(&sluice, reason).await;
        let reply = call_jwt(&sluice, token).await;
        assert_401(&reply, r#"error="invalid_token""#);
        assert_eq!(
            failures(&sluice, reason).await,
            before + 1.0,
            "{what}: not counted as {reason}"
        );
    }
    let challenge = call_jwt(&sluice, "a.b.c").await;
    assert_401(
        &challenge,
        r#"resource_metadata="https://h.example/.well-known/oauth-protected-resource/ai/mcp", scope="mcp:tools""#,
    );
    assert!(!upstream.saw_any(), "a refused token reached the upstream");
    // Refusals by key id did not make the sidecar fetch the JWKS again (jwksMinRefresh 1h).
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_new_key_id_refetches_the_jwks_at_most_once_per_min_refresh() {
    let upstream = Upstream::ok().await;
    let issuer = Issuer::start().await;
    let old = SigningKey::p256("2026-01");
    issuer.publish(&old);
    let dir = tempfile::tempdir().unwrap();
    let config = auth_config(
        upstream.addr,
        "",
        &jwt_auth(&issuer, true, "2s"),
        &entry(dir.path(), &["alice"]),
    );
    let sluice = Sluice::start(&config).await;
    let claims = issuer.claims("alice", AUD);
    assert_eq!(
        call_jwt(&sluice, &old.sign("ES256", &claims)).await.status,
        200
    );
    assert_eq!(issuer.jwks_fetches(), 1);

    // The issuer rotates to a new key; tokens naming it arrive at once, and in numbers.
    let new = SigningKey::ed25519("2026-02");
    issuer.publish(&new);
    let token = new.sign("EdDSA", &claims);
    eventually("the new key to be fetched", async || {
        call_jwt(&sluice, &token).await.status == 200
    })
    .await;
    // However many requests named it, one fetch found it (and none ran within 2 s of the first).
    assert_eq!(issuer.jwks_fetches(), 2);
    // A key id the issuer never publishes: at most one more fetch for a burst of them.
    let bogus = SigningKey::p256("never-published");
    for _ in 0..20 {
        assert_eq!(
            call_jwt(&sluice, &bogus.sign("ES256", &claims))
                .await
                .status,
            401
        );
    }
    assert!(
        issuer.jwks_fetches() <= 3,
        "{} fetches",
        issuer.jwks_fetches()
    );
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_jwks_refreshes_total{entry_point="main",result="ok"}"#
        )
        .await,
        issuer.jwks_fetches() as f64
    );
}

#[tokio::test]
async fn without_the_issuer_nobody_gets_in() {
    let mut upstream = Upstream::ok().await;
    let issuer = Issuer::start().await;
    let key = SigningKey::p256("k");
    issuer.publish(&key);
    let dir = tempfile::tempdir().unwrap();

    // The discovery document names another issuer: its keys are not taken.
    issuer.advertise_issuer("https://impostor.example");
    let config = auth_config(
        upstream.addr,
        "",
        &jwt_auth(&issuer, false, "30s"),
        &entry(dir.path(), &["alice"]),
    );
    let sluice = Sluice::start(&config).await;
    let token = key.sign("ES256", &issuer.claims("alice", AUD));
    assert_503(&call_jwt(&sluice, &token).await);
    assert_eq!(issuer.jwks_fetches(), 0);
    drop(sluice);

    // Down before the first fetch.
    issuer.stop();
    let config = auth_config(
        upstream.addr,
        "",
        &jwt_auth(&issuer, true, "30s"),
        &entry(dir.path(), &["alice"]),
    );
    let sluice = Sluice::start(&config).await;
    assert_503(&call_jwt(&sluice, &token).await);
    assert_eq!(
        metric(
            &sluice,
            r#"sluice_jwks_refreshes_total{entry_point="main",result="failed"}"#
        )
        .await,
        1.0
    );
    assert!(!upstream.saw_any());
}

#[tokio::test]
async fn an_issuer_with_an_internal_ca_is_trusted_through_its_ca_file() {
    let mut upstream = Upstream::ok().await;
    let cert = support::serve::TestCert::new();
    let issuer = Issuer::start_tls(&cert).await;
    let key = SigningKey::p256("k");
    issuer.publish(&key);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("issuer-ca.crt");
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let token = key.sign("ES256", &issuer.claims("alice", AUD));
    let config = |auth: &str| auth_config(upstream.addr, "", auth, &entry(dir.path(), &["alice"]));

    // Its certificate is in no public root store: no key can be fetched.
    let sluice = Sluice::start(&config(&jwt_auth(&issuer, false, "30s"))).await;
    assert_503(&call_jwt(&sluice, &token).await);
    assert_eq!(
        issuer.discovery_fetches(),
        0,
        "the TLS handshake should have failed"
    );
    drop(sluice);

    // Trusted through caFile: the OpenID configuration and the JWKS over https.
    let auth = format!(
        "{}\ncaFile: {}",
        jwt_auth(&issuer, false, "30s"),
        ca.display()
    );
    let sluice = Sluice::start(&config(&auth)).await;
    let reply = call_jwt(&sluice, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(issuer.discovery_fetches(), 1);
    assert_eq!(issuer.jwks_fetches(), 1);
    upstream.next().await;
}
