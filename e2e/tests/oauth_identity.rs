//! OAuth mode knows its users: with FastMCP's real `OAuthProxy` (set up as Conduit sets it up,
//! from the rendered Deployment) in front of the fake Phabricator, the Python MCP SDK's own
//! OAuth client logs in as alice and as bob through the public route at `/ai` and through the
//! server's own in-cluster entry point at `/`; the sidecar learns each user from Conduit (its
//! `pha_user_whoami` tool, with the caller's bearer), so tool rules by identity, per-user rate
//! limits and the audit trail act on the person, and Phabricator never sees a token it did not
//! issue.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod oauth_support;

use oauth_support::{Deployment, assert_only_phabricator_tokens, events, login, steps};
use serde_json::Value;

/// Bob may not create tasks, alice may; each user may ask who they are three times an hour,
/// whatever token they hold.
const POLICY: &str = "tools:
  deny: [pha_task_create]
  rules:
    - identities: [alice]
      allow: [\"*\"]
rateLimits:
  - name: per-user
    by: [identity]
    requests: 3
    period: 1h
    tools: [pha_user_whoami]";

/// The JSON-RPC codes of a policy denial and of an exhausted rate limit (errors.rs).
const DENIED: i64 = -32003;
const RATE_LIMITED: i64 = -32004;

/// The user names the calls of a report were answered for, or the error codes.
fn outcomes(report: &Value) -> Vec<Result<String, i64>> {
    report["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls: {report:#}"))
        .iter()
        .map(|call| {
            if call["ok"] == true {
                Ok(call["structured"]["user"]["userName"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned())
            } else {
                Err(call["code"].as_i64().unwrap_or(0))
            }
        })
        .collect()
}

fn whoami(url: &str, user: &str, calls: u32) -> Value {
    let calls = calls.to_string();
    let (report, _) = login(
        url,
        &[
            "--user",
            user,
            "--tool",
            "pha_user_whoami",
            "--calls",
            &calls,
        ],
    );
    assert!(report.get("error").is_none(), "{report:#}");
    report
}

/// `(method, url without query, status)` of each browser hop.
fn hops(report: &Value) -> Vec<(String, String, u64)> {
    report["browser"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["method"].as_str().unwrap().to_owned(),
                h["url"]
                    .as_str()
                    .unwrap()
                    .split('?')
                    .next()
                    .unwrap()
                    .to_owned(),
                h["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Everything the issue asks of one entry point, whose MCP endpoint is `base/mcp`.
fn per_user_policy_at(deployment: &Deployment, base: &str) {
    let url = format!("{base}/mcp");
    // Alice logs in twice (two tokens); both count against one budget of three.
    let first = whoami(&url, "alice", 2);
    assert_eq!(
        outcomes(&first),
        [Ok("alice".into()), Ok("alice".into())],
        "{first:#}"
    );
    let second = whoami(&url, "alice", 2);
    assert!(
        !second["browser"].as_array().unwrap().is_empty(),
        "a second login"
    );
    assert_eq!(
        outcomes(&second),
        [Ok("alice".into()), Err(RATE_LIMITED)],
        "{second:#}"
    );
    // Bob has a budget of his own.
    let bob = whoami(&url, "bob", 3);
    assert_eq!(
        outcomes(&bob),
        [Ok("bob".into()), Ok("bob".into()), Ok("bob".into())],
        "{bob:#}"
    );

    // The rule for alice lets her create a task; bob is refused before Conduit sees it.
    let create = |user: &str| {
        let (report, _) = login(
            &url,
            &[
                "--user",
                user,
                "--tool",
                "pha_task_create",
                "--arguments",
                r#"{"title": "Per-user policy works"}"#,
            ],
        );
        assert!(report.get("error").is_none(), "{report:#}");
        report["calls"][0].clone()
    };
    let by_alice = create("alice");
    assert_eq!(by_alice["ok"], true, "{by_alice:#}");
    assert_eq!(
        by_alice["structured"]["task"]["authorPHID"], "PHID-USER-alice000000000000000",
        "{by_alice:#}"
    );
    let by_bob = create("bob");
    assert_eq!(by_bob["ok"], false, "{by_bob:#}");
    assert_eq!(by_bob["code"], DENIED, "{by_bob:#}");

    // The audit trail names the person behind every call.
    let audit = audit_events(deployment, |events| {
        events
            .iter()
            .any(|e| e["tool"] == "pha_task_create" && e["identity"] == "bob")
    });
    let calls: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|e| {
            (
                e["identity"].as_str().unwrap_or("-"),
                e["tool"].as_str().unwrap_or("-"),
                e["decision"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    // For the reader (and the closing note): the audit line of alice's first call.
    if let Some(line) = audit.iter().find(|e| e["identity"] == "alice") {
        println!("audit line of an OAuth tool call: {line}");
    }
    for expected in [
        ("alice", "pha_user_whoami", "allowed"),
        ("alice", "pha_user_whoami", "rate_limited"),
        ("bob", "pha_user_whoami", "allowed"),
        ("alice", "pha_task_create", "allowed"),
        ("bob", "pha_task_create", "denied"),
    ] {
        assert!(calls.contains(&expected), "{expected:?} in {calls:#?}");
    }
    assert!(
        audit
            .iter()
            .all(|e| e["identity"] == "alice" || e["identity"] == "bob"),
        "every call is named by its user: {audit:#?}"
    );
}

/// The sidecar's audit events (JSON log lines of target `audit`), once `complete` says they
/// are there or 10 s have passed: the sidecar writes its log lines in batches.
fn audit_events(deployment: &Deployment, complete: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let audit: Vec<Value> = events(&deployment.sidecar)
            .into_iter()
            .filter(|e| e["target"] == "audit")
            .collect();
        if complete(&audit) || std::time::Instant::now() > deadline {
            return audit;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Phabricator saw only tokens it issued (its log printed for the reader).
fn assert_phabricator_saw_only_its_own_tokens(deployment: &Deployment) {
    let events = deployment.phabricator_events();
    println!("the fake Phabricator's log:");
    for event in &events {
        println!("  {event}");
    }
    assert_only_phabricator_tokens(&events);
}

#[test]
fn the_public_route_knows_each_user() {
    let deployment = Deployment::start_with("/ai", POLICY, "");
    per_user_policy_at(&deployment, &deployment.public);
    assert_phabricator_saw_only_its_own_tokens(&deployment);
}

#[test]
fn the_in_cluster_entry_point_serves_logins_and_knows_each_user() {
    let deployment = Deployment::start_with("/ai", POLICY, "");
    let base = &deployment.in_cluster;
    let (report, ok) = login(
        &format!("{base}/mcp"),
        &[
            "--tool",
            "pha_task_get",
            "--arguments",
            r#"{"task_id": "T7"}"#,
        ],
    );
    assert!(ok, "{report:#}\n{}", deployment.sidecar.logs());
    // Every discovery step found its document where the specs say, under the URL the client
    // used; the browser authorized there and went on to Conduit's consent page and callback,
    // which are public (Phabricator sends the user back to the registered redirect URI).
    let sdk: Vec<(String, u64)> = report["sdk"]
        .as_array()
        .unwrap()
        .iter()
        .take(6)
        .map(|s| {
            (
                format!(
                    "{} {}",
                    s["method"].as_str().unwrap(),
                    s["url"].as_str().unwrap()
                ),
                s["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [
        ("POST", "/mcp", 401),
        ("GET", "/.well-known/oauth-protected-resource/mcp", 200),
        ("GET", "/.well-known/oauth-authorization-server", 200),
        ("POST", "/register", 201),
        ("POST", "/token", 200),
        ("POST", "/mcp", 200),
    ]
    .iter()
    .map(|(m, path, status)| (format!("{m} {base}{path}"), *status))
    .collect();
    assert_eq!(sdk, expected, "{report:#}");
    let challenge = report["sdk"][0]["www_authenticate"].as_str().unwrap();
    assert_eq!(
        challenge,
        format!(r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#)
    );
    let p = &deployment.public;
    let browser = hops(&report);
    assert_eq!(browser[0], ("GET".into(), format!("{base}/authorize"), 302));
    assert_eq!(browser[1], ("GET".into(), format!("{p}/consent"), 200));
    assert_eq!(browser.last().unwrap().1, format!("{p}/auth/callback"));
    assert_eq!(
        report["tool"]["structured"]["task"]["title"], "Make OAuth work behind a subpath",
        "{report:#}"
    );

    per_user_policy_at(&deployment, base);
    assert_phabricator_saw_only_its_own_tokens(&deployment);
}

#[test]
fn a_login_survives_a_restart_that_keeps_the_state_and_not_one_that_loses_it() {
    let mut deployment = Deployment::start_with("/ai", "", "");
    let url = format!("{}/mcp", deployment.public);
    let state = deployment.new_dir("client").join("alice.json");
    let state = state.to_str().unwrap();
    let (first, ok) = login(&url, &["--state", state, "--tool", "pha_user_whoami"]);
    assert!(ok, "{first:#}");
    assert!(
        !first["browser"].as_array().unwrap().is_empty(),
        "{first:#}"
    );

    // Conduit restarts with its state directory (a persistent or shared volume): the token
    // still works, with no browser step and no 401 on the way.
    let home = deployment.conduit_home();
    deployment.restart_conduit(&home);
    let (kept, ok) = login(&url, &["--state", state, "--tool", "pha_user_whoami"]);
    println!(
        "after a restart with the state kept: sdk {}, browser {}",
        kept["sdk"], kept["browser"]
    );
    assert!(ok, "{kept:#}\n{}", deployment.conduit.logs());
    assert_eq!(kept["browser"], serde_json::json!([]), "{kept:#}");
    assert!(
        steps(&kept, "sdk")
            .iter()
            .all(|(_, _, status)| *status < 400),
        "{kept:#}"
    );
    assert_eq!(outcomes(&kept), [Ok("alice".into())]);

    // Conduit restarts without it (ephemeral state): the old token is refused with a
    // challenge naming the metadata under P. The SDK then tries its stored registration, which
    // Conduit no longer knows either: FastMCP shows its "Client Not Registered" page. A client
    // that registers afresh logs in cleanly.
    deployment.restart_conduit(&deployment.new_dir("lost-state"));
    let (lost, ok) = login(&url, &["--state", state, "--tool", "pha_user_whoami"]);
    println!(
        "after a restart without the state: sdk {}, error {}",
        lost["sdk"], lost["error"]
    );
    assert!(!ok, "{lost:#}");
    let refused = &lost["sdk"][0];
    assert_eq!(refused["status"], 401, "{lost:#}");
    let challenge = refused["www_authenticate"].as_str().unwrap();
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource{}/mcp",
        deployment.origin,
        deployment.p()
    );
    assert!(
        challenge.contains(r#"error="invalid_token""#)
            && challenge.contains(&format!(r#"resource_metadata="{metadata}""#)),
        "{challenge}"
    );
    assert!(
        lost["error"]
            .as_str()
            .unwrap_or("")
            .contains("Client Not Registered"),
        "{lost:#}"
    );
    let fresh = whoami(&url, "alice", 1);
    println!(
        "a fresh client after it: {} browser steps, calls {}",
        fresh["browser"].as_array().unwrap().len(),
        fresh["calls"]
    );
    assert!(!fresh["browser"].as_array().unwrap().is_empty());
    assert_eq!(outcomes(&fresh), [Ok("alice".into())]);
}
