//! The audit trail, from the binary's own output: one JSON event per `tools/call` (allowed,
//! denied, rate limited, batch items), with who (and from which address: the one a trusted
//! proxy reported, in the access lines too), where, what, the decision, the status and the
//! latency; and no secret anywhere in anything the process prints, at debug level, though
//! secrets were planted in arguments, tokens and keys. Also the one warning for a policy that
//! hides every tool the upstream offers. Each request's lines carry the id its answer's
//! `X-Request-Id` names.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use serde_json::{Value, json};
use support::*;

const KEY: &str = "alice-key-SENTINEL-0f9e8d7c6b5a";
const WRONG_KEY: &str = "wrong-key-SENTINEL-1a2b3c4d5e6f";
const PHAB_TOKEN: &str = "api-SENTINELphabtoken000000000";
const ARGUMENT: &str = "hunter2-SENTINEL-argument";
const COOKIE: &str = "session=SENTINEL-cookie";

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
           "params":{"name":tool,"arguments":{"password":ARGUMENT,"token":PHAB_TOKEN}}})
}

#[tokio::test]
async fn one_event_per_tool_call_and_no_secret_in_any_output() {
    // Every answer has id 1; tools/list offers only a tool the policy denies.
    let upstream = Upstream::start(|seen| {
        let list = String::from_utf8_lossy(&seen.body).contains("tools/list");
        async move {
            if list {
                json(
                    http::StatusCode::OK,
                    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"pha_passphrase_get"}]}}"#,
                )
            } else {
                json(http::StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("alice"), KEY).unwrap();
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        "upstream:\n  url: http://{}\nadmin:\n  listen: 127.0.0.1:{admin}\nshutdown:\n  drainDelay: 0s\n  gracePeriod: 5s\nlog:\n  level: debug\n  format: json\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:{port}\n    auth:\n      mode: apiKey\n      keysDir: {}\n    trustedProxies: [\"127.0.0.0/8\"]\n    tools:\n      deny: [\"pha_passphrase_*\"]\n    rateLimits:\n      - name: calls\n        requests: 4\n        period: 1h\n",
        upstream.addr,
        keys.display()
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let rpc = async |key: &str, body_json: &Value| {
        send(
            post(&url)
                .header("authorization", format!("Bearer {key}"))
                .header("x-phabricator-token", PHAB_TOKEN)
                .header("cookie", COOKIE)
                // The test stands in for an Ingress controller the entry point trusts.
                .header("x-forwarded-for", "203.0.113.7")
                .body(body(&body_json.to_string()))
                .unwrap(),
        )
        .await
    };
    // Each answer's X-Request-Id, to find in the request's log lines.
    let (request_ids, stdout, stderr) = run_binary(&path, &[port], async || {
        let mut request_ids = Vec::new();
        let mut expect = async |key: &str, body_json: &Value, status: u16| {
            let reply = rpc(key, body_json).await;
            assert_eq!(reply.status, status, "{}", reply.text());
            request_ids.push(reply.header("x-request-id").unwrap().to_owned());
        };
        expect(KEY, &call(1, "pha_task_get"), 200).await;
        expect(KEY, &call(2, "pha_passphrase_get"), 403).await;
        let batch = json!([call(3, "pha_task_get"), call(4, "pha_user_whoami")]);
        expect(KEY, &batch, 200).await;
        expect(KEY, &call(5, "pha_task_get"), 200).await;
        expect(KEY, &call(6, "pha_task_get"), 429).await;
        expect(WRONG_KEY, &call(7, "pha_task_get"), 401).await;
        let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
        for _ in 0..2 {
            let reply = rpc(KEY, &list).await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.json()["result"]["tools"], json!([]));
        }
        request_ids
    })
    .await;

    for secret in [KEY, WRONG_KEY, PHAB_TOKEN, ARGUMENT, "SENTINEL"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} appears in the output:\n{stdout}\n{stderr}"
        );
    }

    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let audit: Vec<&Value> = lines.iter().filter(|l| l["target"] == "audit").collect();
    let seen: Vec<(&str, &str, u64)> = audit
        .iter()
        .map(|e| {
            (
                e["tool"].as_str().unwrap(),
                e["decision"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("pha_task_get", "allowed", 200),
            ("pha_passphrase_get", "denied", 403),
            ("pha_task_get", "allowed", 200),
            ("pha_user_whoami", "allowed", 200),
            ("pha_task_get", "allowed", 200),
            ("pha_task_get", "rate_limited", 429),
        ],
        "{audit:#?}"
    );
    for e in &audit {
        assert_eq!(e["message"], "tools/call");
        assert_eq!(e["stream"], "audit");
        assert_eq!(e["level"], "INFO");
        assert_eq!(e["entry_point"], "main");
        assert_eq!(e["identity"], "alice");
        assert_eq!(e["client_address"], "203.0.113.7", "{e}");
        assert!(e["latency_us"].is_u64(), "{e}");
    }
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "sluice::access")
        .collect();
    assert!(access.len() >= 8, "{access:#?}");
    for line in &access {
        assert_eq!(line["client_address"], "203.0.113.7", "{line}");
    }
    // The request ids the answers carried, in the access lines of those requests and in their
    // audit events (both items of the batch share its request's).
    let access_ids: Vec<&str> = access
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(access_ids[..request_ids.len()], request_ids, "{access:#?}");
    let audit_ids: Vec<&str> = audit
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    let r = &request_ids;
    assert_eq!(audit_ids, [&r[0], &r[1], &r[2], &r[2], &r[3], &r[4]]);
    assert_eq!(audit[2]["batch"], true);
    assert_eq!(audit[3]["batch"], true);
    assert!(audit[0].get("batch").is_none());
    assert_eq!(audit[5]["rule"], "calls");

    // The emptied list is worth one warning per generation, not one per request.
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" && l["target"] == "sluice_proxy::policy")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["entry_point"], "main");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("hides every item the upstream offered"),
        "{}",
        warnings[0]
    );
}
