//! Upstream credentials: the entry point's Phabricator token injected (one for all, or one per
//! caller) and re-read when its file changes; caller credentials meant for the sidecar
//! stripped; the caller's own Phabricator token passed on when nothing is injected.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use support::auth::*;
use support::*;

const KEY: &str = "client-key-0123456789";
const BOT: &str = "api-bot234bot234bot234bot234bot2";
const BOT_ROTATED: &str = "api-rotatedrotatedrotatedrotated";
const CALLER_TOKEN: &str = "api-callercallercallercallercall";

fn api_keys(dir: &std::path::Path) -> String {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("client"), KEY).unwrap();
    std::fs::write(keys.join("other"), "other-key-0123456789").unwrap();
    format!("mode: apiKey\nkeysDir: {}", keys.display())
}

#[tokio::test]
async fn one_bot_token_replaces_the_callers_and_follows_its_file() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("bot-token");
    std::fs::write(&token_file, format!("{BOT}\n")).unwrap();
    let entry = format!("upstreamToken:\n  file: {}", token_file.display());
    let sluice = Sluice::start(&auth_config(
        upstream.addr,
        "",
        &api_keys(dir.path()),
        &entry,
    ))
    .await;

    let reply = call(
        &sluice,
        &[
            ("x-api-key", KEY),
            ("x-phabricator-token", CALLER_TOKEN),
            ("X-Phabricator-Token", "api-secondsecondsecondsecondseco"),
            ("proxy-authorization", "Basic c2VjcmV0"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = upstream.next().await;
    let injected: Vec<_> = seen.headers.get_all("x-phabricator-token").iter().collect();
    assert_eq!(injected, [BOT], "the caller's tokens were not replaced");
    for stripped in ["x-api-key", "authorization", "proxy-authorization"] {
        assert!(
            seen.headers.get(stripped).is_none(),
            "{stripped} went upstream"
        );
    }
    let bearer = format!("Bearer {KEY}");
    assert_eq!(
        call(&sluice, &[("authorization", &bearer)]).await.status,
        200
    );
    assert!(upstream.next().await.headers.get("authorization").is_none());

    // Rotated in the Secret: used from the next check on.
    write_atomically(&token_file, BOT_ROTATED);
    eventually("the rotated bot token", async || {
        assert_eq!(call(&sluice, &[("x-api-key", KEY)]).await.status, 200);
        upstream.next().await.headers["x-phabricator-token"] == BOT_ROTATED
    })
    .await;
    // Emptied: the last good token stays in use, and /readyz says so.
    write_atomically(&token_file, "\n");
    eventually("the problem on /readyz", async || {
        get(&sluice.admin("/readyz"))
            .await
            .text()
            .contains("upstream token")
    })
    .await;
    assert_eq!(call(&sluice, &[("x-api-key", KEY)]).await.status, 200);
    assert_eq!(
        upstream.next().await.headers["x-phabricator-token"],
        BOT_ROTATED
    );
}

#[tokio::test]
async fn per_caller_tokens_follow_their_map_and_callers_without_one_are_refused() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let map_file = dir.path().join("map.json");
    std::fs::write(&map_file, serde_json::json!({ "client": BOT }).to_string()).unwrap();
    let entry = format!("upstreamToken:\n  perIdentityFile: {}", map_file.display());
    let sluice = Sluice::start(&auth_config(
        upstream.addr,
        "",
        &api_keys(dir.path()),
        &entry,
    ))
    .await;

    assert_eq!(call(&sluice, &[("x-api-key", KEY)]).await.status, 200);
    assert_eq!(upstream.next().await.headers["x-phabricator-token"], BOT);
    let other = [
        ("x-api-key", "other-key-0123456789"),
        ("x-phabricator-token", CALLER_TOKEN),
    ];
    assert_403(&call(&sluice, &other).await);
    assert!(
        !upstream.saw_any(),
        "a caller without a token reached the upstream"
    );

    // Not JSON: the last good map stays.
    write_atomically(&map_file, "{ not json");
    eventually("the problem on /readyz", async || {
        get(&sluice.admin("/readyz"))
            .await
            .text()
            .contains("upstream token map")
    })
    .await;
    assert_eq!(call(&sluice, &[("x-api-key", KEY)]).await.status, 200);
    upstream.next().await;
    // The caller gets a token of its own.
    let map = serde_json::json!({ "client": BOT, "other": BOT_ROTATED });
    write_atomically(&map_file, &map.to_string());
    eventually("the new map", async || {
        call(&sluice, &other).await.status == 200
    })
    .await;
    assert_eq!(
        upstream.next().await.headers["x-phabricator-token"],
        BOT_ROTATED
    );
}

#[tokio::test]
async fn a_missing_token_file_refuses_with_503_until_it_appears() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("bot-token");
    let entry = format!("upstreamToken:\n  file: {}", token_file.display());
    let sluice = Sluice::start(&auth_config(
        upstream.addr,
        "",
        &api_keys(dir.path()),
        &entry,
    ))
    .await;
    assert_503(&call(&sluice, &[("x-api-key", KEY)]).await);
    assert!(!upstream.saw_any());
    std::fs::write(&token_file, BOT).unwrap();
    eventually("the token file", async || {
        call(&sluice, &[("x-api-key", KEY)]).await.status == 200
    })
    .await;
    assert_eq!(upstream.next().await.headers["x-phabricator-token"], BOT);
}

#[tokio::test]
async fn without_injection_the_callers_own_phabricator_token_goes_on() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&auth_config(
        upstream.addr,
        "",
        "mode: phabricatorToken",
        "",
    ))
    .await;
    let reply = call(
        &sluice,
        &[
            ("x-phabricator-token", CALLER_TOKEN),
            ("authorization", "Bearer for-someone-else"),
            ("x-api-key", "key-for-someone-else"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = upstream.next().await;
    assert_eq!(seen.headers["x-phabricator-token"], CALLER_TOKEN);
    assert!(seen.headers.get("authorization").is_none());
    assert!(seen.headers.get("x-api-key").is_none());
}
