//! A full MCP OAuth login through sluice-proxy, at a path prefix and at the root: the Python MCP
//! SDK 2.x client's own OAuth support against a FastMCP upstream in OAuth-proxy mode (set up as
//! Conduit sets it up, from the rendered Deployment) in front of a fake Phabricator, with the
//! sidecar config rendered by `sluice-operator render`. No nginx, no hand-written rule: the
//! client finds everything where the specs tell it to look.
//!
//! The SDK walks: 401 → protected-resource metadata → authorization-server metadata →
//! registration → (the scripted browser: authorize → consent → Phabricator → callback) → token
//! → the tool call, which reaches Phabricator with the user's token.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod oauth_support;

use oauth_support::{Deployment, steps};
use serde_json::Value;

/// Runs `e2e/py/oauth/login.py` against P/mcp and returns its report.
fn login(deployment: &Deployment) -> Value {
    let url = format!("{}/mcp", deployment.public);
    let (report, ok) = oauth_support::login(
        &url,
        &[
            "--tool",
            "pha_task_get",
            "--arguments",
            r#"{"task_id": "T7"}"#,
        ],
    );
    assert!(
        ok,
        "the login failed: {report:#}\n{}\n{}",
        deployment.sidecar.logs(),
        deployment.conduit.logs()
    );
    report
}

fn without_query(url: &str) -> &str {
    url.split('?').next().unwrap()
}

fn login_through(prefix: &str) {
    let deployment = Deployment::start(prefix);
    let report = login(&deployment);
    let p = &deployment.public;
    let origin = &deployment.origin;
    let pp = deployment.p();

    // The tool ran with the user's Phabricator token.
    assert_eq!(report["tool"]["is_error"], false, "{report:#}");
    assert_eq!(
        report["tool"]["structured"]["task"]["title"], "Make OAuth work behind a subpath",
        "{report:#}"
    );

    // The SDK's requests, in order: every discovery step found its document at the first
    // location it tried (no 404 on the way), every endpoint was under P.
    let sdk = steps(&report, "sdk");
    let expected_start = [
        ("POST", format!("{p}/mcp"), 401),
        (
            "GET",
            format!("{origin}/.well-known/oauth-protected-resource{pp}/mcp"),
            200,
        ),
        (
            "GET",
            format!("{origin}/.well-known/oauth-authorization-server{pp}"),
            200,
        ),
        ("POST", format!("{p}/register"), 201),
        ("POST", format!("{p}/token"), 200),
        ("POST", format!("{p}/mcp"), 200),
    ];
    let got: Vec<(&str, &str, u64)> = sdk
        .iter()
        .take(expected_start.len())
        .map(|(m, u, s)| (m.as_str(), u.as_str(), *s))
        .collect();
    let want: Vec<(&str, &str, u64)> = expected_start
        .iter()
        .map(|(m, u, s)| (*m, u.as_str(), *s))
        .collect();
    assert_eq!(got, want, "{report:#}");
    for (method, url, status) in &sdk[expected_start.len()..] {
        assert_eq!(
            (method.as_str(), url.as_str()),
            ("POST", format!("{p}/mcp").as_str())
        );
        assert!(matches!(status, 200 | 202), "{report:#}");
    }
    // The 401 named P's metadata (the sidecar's own challenge: no bearer yet).
    let challenge = report["sdk"][0]["www_authenticate"].as_str().unwrap();
    assert!(
        challenge.contains(&format!(
            r#"resource_metadata="{origin}/.well-known/oauth-protected-resource{pp}/mcp""#
        )),
        "{challenge}"
    );

    // The browser: authorize and consent under P, Phabricator, the callback under P, then the
    // client's own redirect URI. Cookies come back scoped to the prefix.
    let browser = steps(&report, "browser");
    let phabricator = deployment.phabricator_events();
    let shape: Vec<(&str, &str, u64)> = browser
        .iter()
        .map(|(m, u, s)| (m.as_str(), without_query(u), *s))
        .collect();
    let phab_auth = shape[3].1;
    assert!(phab_auth.ends_with("/oauthserver/auth/"), "{report:#}");
    assert_eq!(
        shape,
        [
            ("GET", format!("{p}/authorize").as_str(), 302),
            ("GET", format!("{p}/consent").as_str(), 200),
            ("POST", format!("{p}/consent").as_str(), 302),
            ("GET", phab_auth, 302),
            ("GET", format!("{p}/auth/callback").as_str(), 302),
        ],
        "{report:#}"
    );
    let cookie_path = if pp.is_empty() { "/" } else { pp };
    for hop in report["browser"].as_array().unwrap() {
        for cookie in hop["set_cookie"].as_array().unwrap() {
            let cookie = cookie.as_str().unwrap();
            assert!(
                cookie.contains(&format!("Path={cookie_path};"))
                    || cookie.ends_with(&format!("Path={cookie_path}")),
                "{cookie}"
            );
        }
    }
    assert!(
        !report["browser"][1]["set_cookie"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the consent page sets its cookie: {report:#}"
    );

    // Phabricator saw the redirect URI the operator says to register, no PKCE, HTTP Basic.
    let authorize = phabricator
        .iter()
        .find(|e| e["event"] == "authorize")
        .expect("Phabricator's authorization page was visited");
    assert_eq!(authorize["redirect_uri"], format!("{p}/auth/callback"));
    assert_eq!(authorize["pkce"], false);
    assert_eq!(authorize["client_id_ok"], true);
    let token = phabricator
        .iter()
        .find(|e| e["event"] == "token")
        .expect("the code was exchanged");
    assert_eq!(token["basic_auth"], true);
    assert_eq!(token["client_ok"], true);
    assert_eq!(token["code_ok"], true);
    assert_eq!(token["pkce"], false);
    assert!(
        phabricator.iter().any(|e| e["event"] == "conduit"
            && e["method"] == "maniphest.info"
            && e["token_known"] == true),
        "{phabricator:#?}"
    );
}

#[test]
fn a_standard_client_logs_in_at_a_path_prefix() {
    login_through("/ai");
}

#[test]
fn a_standard_client_logs_in_at_the_root() {
    login_through("/");
}
