//! Tool policy: allow/deny lists and per-caller rules refuse calls before the upstream sees
//! them (batches whole), look-alike names are refused, headers cannot smuggle a denied body,
//! and list replies (JSON and event streams) show each caller only what it may use.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use serde_json::{Value, json};
use support::*;

fn call(id: u64, tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"id":1}}})
        .to_string()
}

fn list(id: u64, method: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":method}).to_string()
}

async fn rpc(sluice: &Sluice, body_text: &str) -> Reply {
    send(post(&sluice.url("/mcp")).body(body(body_text)).unwrap()).await
}

/// Asserts a 403 policy refusal carrying `id`, and returns its message.
fn assert_denied(reply: &Reply, id: Value) -> String {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let v = reply.json();
    assert_eq!(v["error"]["code"], -32003, "{v}");
    assert_eq!(v["id"], id, "{v}");
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// Conduit-like tools: `pha_` names, descriptions and schemas, about 48 KB in all.
fn conduit_tools() -> Vec<Value> {
    let names = [
        "pha_user_whoami",
        "pha_user_search",
        "pha_task_create",
        "pha_task_get",
        "pha_task_update",
        "pha_task_add_comment",
        "pha_task_search_advanced",
        "pha_repository_list",
        "pha_repository_browse",
        "pha_diff_get",
        "pha_diff_search",
        "pha_project_search",
        "pha_wiki_get",
        "pha_wiki_edit",
        "pha_paste_get",
        "pha_paste_create",
        "pha_passphrase_get",
        "pha_file_download",
    ];
    let mut tools: Vec<Value> = names
        .iter()
        .map(|n| n.to_string())
        .chain((0..33).map(|i| format!("pha_extra_{i}")))
        .map(|name| {
            json!({
                "name": name,
                "description": format!("{name}: {}", "Calls the Phabricator Conduit API. ".repeat(20)),
                "inputSchema": {"type":"object","properties":{"id":{"type":"integer","description":"x".repeat(100)}},"required":["id"]},
                "annotations": {"readOnlyHint": true}
            })
        })
        .collect();
    tools.truncate(51);
    tools
}

fn names(tools: &Value) -> Vec<String> {
    tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// An upstream answering `tools/list` with [`conduit_tools`] as JSON (echoing the id) and
/// anything else with an empty result.
async fn conduit_json() -> Upstream {
    Upstream::start(|seen| {
        let request: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
        async move {
            let result = if request["method"] == "tools/list" {
                json!({"tools": conduit_tools(), "nextCursor": "page-2"})
            } else {
                json!({})
            };
            let body = json!({"jsonrpc":"2.0","id":request["id"],"result":result}).to_string();
            Response::builder()
                .header("content-type", "application/json")
                .body(full(body))
                .unwrap()
        }
    })
    .await
}

// === calls ===

#[tokio::test]
async fn denied_tools_get_403_with_the_id_and_never_reach_the_upstream() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  deny: [\"pha_passphrase_*\", pha_task_create]",
    ))
    .await;

    let message = assert_denied(
        &rpc(&sluice, &call(42, "pha_passphrase_get")).await,
        json!(42),
    );
    assert_eq!(
        message,
        "tool pha_passphrase_get is not allowed on this entry point"
    );
    // A string id comes back as sent.
    let body = call(0, "pha_task_create").replace("\"id\":0", "\"id\":\"req-\\u0031\"");
    assert_denied(&rpc(&sluice, &body).await, json!("req-1"));
    assert!(!upstream.saw_any(), "a denied call reached the upstream");

    // Names are judged as the upstream reads them: an escaped spelling is the same tool.
    let escaped = call(3, "pha_passphrase_get").replace("passphrase", "p\\u0061ssphrase");
    assert_denied(&rpc(&sluice, &escaped).await, json!(3));
    assert!(!upstream.saw_any());

    let reply = rpc(&sluice, &call(5, "pha_task_get")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        upstream.next().await.body,
        call(5, "pha_task_get").as_bytes()
    );

    // Denials are counted, but a name no call was allowed and no list showed takes no label
    // of its own: callers naming invented tools cannot use up the labels.
    let metric = "sluice_policy_denials_total{entry_point=\"main\",kind=\"tool\",name=\"other\",reason=\"denied\"}";
    assert_eq!(sluice.metric(metric).await, Some(3.0));
    let allowed = "sluice_requests_total{entry_point=\"main\",http_method=\"POST\",mcp_method=\"tools/call\",tool=\"pha_task_get\",status=\"2xx\"}";
    assert_eq!(sluice.metric(allowed).await, Some(1.0));
}

/// An entry point with API keys for `alice` and `bob`; `extra` goes under `tools:`.
async fn with_keys(upstream: &Upstream, tools: &str) -> Sluice {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("alice"), "alice-key-0123456789abcdef").unwrap();
    std::fs::write(keys.join("bob"), "bob-key-0123456789abcdef").unwrap();
    let yaml = config(upstream.addr, "", &format!("tools:\n{tools}")).replace(
        "    auth:\n      mode: none\n",
        &format!(
            "    auth:\n      mode: apiKey\n      keysDir: {}\n",
            keys.display()
        ),
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    Sluice::start_at(dir, path).await
}

async fn rpc_as(sluice: &Sluice, key: &str, body_text: &str) -> Reply {
    send(
        post(&sluice.url("/mcp"))
            .header("authorization", format!("Bearer {key}"))
            .body(body(body_text))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn allow_lists_and_the_first_rule_naming_the_caller() {
    let mut upstream = Upstream::ok().await;
    let tools = "  allow: [\"pha_task_*\", pha_user_whoami]\n  deny: [pha_task_create]\n  rules:\n    - identities: [alice]\n      allow: [\"*\"]\n      deny: [\"pha_passphrase_*\"]\n    - identities: [\"a*\", bob]\n      deny: [\"*\"]\n";
    let sluice = with_keys(&upstream, tools).await;
    let alice = "alice-key-0123456789abcdef";
    let bob = "bob-key-0123456789abcdef";

    // alice: her rule (the first naming her) replaces the entry point's lists.
    for tool in ["pha_task_create", "pha_wiki_edit"] {
        assert_eq!(rpc_as(&sluice, alice, &call(1, tool)).await.status, 200);
        upstream.next().await;
    }
    assert_denied(
        &rpc_as(&sluice, alice, &call(2, "pha_passphrase_get")).await,
        json!(2),
    );
    // bob: the second rule denies everything.
    assert_denied(
        &rpc_as(&sluice, bob, &call(3, "pha_task_get")).await,
        json!(3),
    );
    assert!(!upstream.saw_any());
}

#[tokio::test]
async fn callers_no_rule_names_get_the_entry_points_lists() {
    let mut upstream = Upstream::ok().await;
    // Mode none: the caller is anonymous, which this rule does not name.
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  allow: [\"pha_task_*\"]\n  rules:\n    - identities: [alice]\n      allow: [\"*\"]",
    ))
    .await;
    assert_denied(&rpc(&sluice, &call(1, "pha_wiki_edit")).await, json!(1));
    assert_eq!(rpc(&sluice, &call(2, "pha_task_get")).await.status, 200);
    upstream.next().await;
}

#[tokio::test]
async fn a_denied_tool_hidden_in_a_batch_refuses_the_whole_batch() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  deny: [\"pha_passphrase_*\"]",
    ))
    .await;
    let batch = format!(
        "[{},{},{},{}]",
        call(1, "pha_task_get"),
        list(2, "tools/list"),
        call(3, "pha_passphrase_get"),
        call(4, "pha_user_whoami")
    );
    // A batch has no one id to answer with: null, as for every batch refusal.
    let message = assert_denied(&rpc(&sluice, &batch).await, Value::Null);
    assert!(message.contains("pha_passphrase_get"), "{message}");
    assert!(
        !upstream.saw_any(),
        "part of a refused batch reached the upstream"
    );

    let fine = format!(
        "[{},{}]",
        call(1, "pha_task_get"),
        call(2, "pha_user_whoami")
    );
    assert_eq!(rpc(&sluice, &fine).await.status, 200);
    assert_eq!(upstream.next().await.body, fine.as_bytes());
}

#[tokio::test]
async fn look_alike_names_are_refused_even_by_a_deny_only_list() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  deny: [\"pha_passphrase_*\"]",
    ))
    .await;
    // Cyrillic а (U+0430), as UTF-8 and as a JSON escape; a zero-width space; a space.
    let raw = call(1, "pha_p\u{0430}ssphrase_get");
    let escaped = call(2, "pha_passphrase_get").replace("passphrase", "p\\u0430ssphrase");
    let zero_width = call(3, "pha_passphrase_get\u{200b}");
    let spaced = call(4, "pha passphrase get");
    for (body_text, id) in [(raw, 1), (escaped, 2), (zero_width, 3), (spaced, 4)] {
        let message = assert_denied(&rpc(&sluice, &body_text).await, json!(id));
        assert!(message.contains("is not a valid tool name"), "{message}");
    }
    let message = assert_denied(
        &rpc(&sluice, &call(1, "pha_p\u{0430}ssphrase_get")).await,
        json!(1),
    );
    // The look-alike is shown escaped, so an operator sees what was sent.
    assert!(message.contains("pha_p\\u{430}ssphrase_get"), "{message}");
    assert!(!upstream.saw_any());
    assert_eq!(
        sluice
            .metric(
                "sluice_policy_denials_total{entry_point=\"main\",kind=\"tool\",name=\"other\",reason=\"invalid\"}"
            )
            .await,
        Some(5.0)
    );

    // Without a tool policy nothing is judged: the upstream decides what a name means.
    let open = Sluice::start(&config(upstream.addr, "", "")).await;
    assert_eq!(
        rpc(&open, &call(1, "pha_p\u{0430}ssphrase_get"))
            .await
            .status,
        200
    );
    upstream.next().await;
}

#[tokio::test]
async fn an_allowed_mcp_name_header_cannot_smuggle_a_denied_body() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  deny: [\"pha_passphrase_*\"]",
    ))
    .await;
    let send_with_headers = async |headers: &[(&str, &str)], body_text: &str| {
        let mut req = post(&sluice.url("/mcp"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send(req.body(body(body_text)).unwrap()).await
    };
    let denied_body = call(7, "pha_passphrase_get");
    for headers in [
        vec![("mcp-name", "pha_task_get")],
        vec![("mcp-method", "tools/call"), ("mcp-name", "pha_task_get")],
        vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "pha_task_get"),
        ],
    ] {
        let reply = send_with_headers(&headers, &denied_body).await;
        assert_eq!(reply.status, 400, "{headers:?}: {}", reply.text());
        assert_eq!(reply.rpc_code(), -32020);
        assert_eq!(reply.json()["id"], 7);
    }
    // Headers that tell the truth get the policy's answer.
    let honest = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "pha_passphrase_get"),
    ];
    assert_denied(&send_with_headers(&honest, &denied_body).await, json!(7));
    assert!(!upstream.saw_any());
    let allowed = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "pha_task_get"),
    ];
    let reply = send_with_headers(&allowed, &call(8, "pha_task_get")).await;
    assert_eq!(reply.status, 200);
    upstream.next().await;
}

#[tokio::test]
async fn patterns_that_match_nothing_allow_nothing() {
    let mut upstream = conduit_json().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  allow: [\"phabricator_*\"]",
    ))
    .await;
    assert_denied(&rpc(&sluice, &call(1, "pha_task_get")).await, json!(1));
    let reply = rpc(&sluice, &list(2, "tools/list")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["result"]["tools"], json!([]));
    upstream.next().await;
}

#[tokio::test]
async fn resources_and_prompts_are_judged_only_when_configured() {
    let mut upstream = Upstream::ok().await;
    let read = |id: u64, uri: &str| {
        json!({"jsonrpc":"2.0","id":id,"method":"resources/read","params":{"uri":uri}}).to_string()
    };
    let prompt = |id: u64, name: &str| {
        json!({"jsonrpc":"2.0","id":id,"method":"prompts/get","params":{"name":name}}).to_string()
    };
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  resources:\n    allow: [\"phab://task/*\"]",
    ))
    .await;
    let message = assert_denied(
        &rpc(&sluice, &read(1, "phab://passphrase/K1")).await,
        json!(1),
    );
    assert_eq!(
        message,
        "resource phab://passphrase/K1 is not allowed on this entry point"
    );
    assert!(!upstream.saw_any());
    assert_eq!(rpc(&sluice, &read(2, "phab://task/T1")).await.status, 200);
    upstream.next().await;
    // No prompt filter, no tool lists: prompts and tools pass, whatever their names.
    assert_eq!(rpc(&sluice, &prompt(3, "any prompt")).await.status, 200);
    upstream.next().await;
    assert_eq!(
        rpc(&sluice, &call(4, "pha_passphrase_get")).await.status,
        200
    );
    upstream.next().await;

    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  prompts:\n    deny: [\"secret_*\"]",
    ))
    .await;
    assert_denied(&rpc(&sluice, &prompt(5, "secret_summary")).await, json!(5));
    assert_eq!(rpc(&sluice, &prompt(6, "summary")).await.status, 200);
    upstream.next().await;
}

// === list replies ===

#[tokio::test]
async fn json_tool_lists_are_filtered_with_the_length_fixed() {
    let mut upstream = conduit_json().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  deny: [\"pha_passphrase_*\", \"pha_*_create\", \"pha_extra_*\"]",
    ))
    .await;
    let req = post(&sluice.url("/mcp"))
        .header("accept-encoding", "gzip, br")
        .body(body(&list(11, "tools/list")))
        .unwrap();
    let reply = send(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-length").unwrap(),
        reply.body.len().to_string()
    );
    let v = reply.json();
    assert_eq!(v["id"], 11);
    assert_eq!(v["result"]["nextCursor"], "page-2");
    let shown = names(&v["result"]["tools"]);
    assert_eq!(shown.len(), 15, "{shown:?}");
    assert!(shown.iter().all(|n| !n.contains("passphrase")
        && !n.ends_with("_create")
        && !n.starts_with("pha_extra")));
    // The tools shown are the upstream's, byte for byte.
    let full_list = json!(conduit_tools());
    let task_get = full_list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "pha_task_get")
        .unwrap();
    assert_eq!(
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "pha_task_get")
            .unwrap(),
        task_get
    );
    // The upstream was asked for an uncompressed reply, which the proxy can read.
    let seen = upstream.next().await;
    assert!(seen.headers.get("accept-encoding").is_none());
}

#[tokio::test]
async fn open_callers_get_the_upstream_reply_untouched() {
    let mut upstream = conduit_json().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  deny: [\"pha_passphrase_*\"]\n  rules:\n    - identities: [alice]\n",
    ))
    .await;
    // Only the anonymous caller is filtered here; an open entry point filters nobody.
    let open = Sluice::start(&config(upstream.addr, "", "")).await;
    let req = post(&open.url("/mcp"))
        .header("accept-encoding", "gzip")
        .body(body(&list(1, "tools/list")))
        .unwrap();
    let reply = send(req).await;
    assert_eq!(names(&reply.json()["result"]["tools"]).len(), 51);
    assert_eq!(upstream.next().await.headers["accept-encoding"], "gzip");
    let reply = rpc(&sluice, &list(1, "tools/list")).await;
    assert_eq!(names(&reply.json()["result"]["tools"]).len(), 50);
    upstream.next().await;
}

#[tokio::test]
async fn a_batch_with_a_list_request_has_its_list_filtered() {
    let mut upstream = Upstream::start(|_| async {
        let body = json!([
            {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"pha_task_get"},{"name":"pha_passphrase_get"}]}},
            {"jsonrpc":"2.0","id":2,"result":{"content":[],"isError":false}}
        ])
        .to_string();
        Response::builder()
            .header("content-type", "application/json")
            .body(full(body))
            .unwrap()
    })
    .await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  deny: [\"pha_passphrase_*\"]",
    ))
    .await;
    let batch = format!("[{},{}]", list(1, "tools/list"), call(2, "pha_task_get"));
    let v = rpc(&sluice, &batch).await.json();
    assert_eq!(names(&v[0]["result"]["tools"]), ["pha_task_get"]);
    assert_eq!(v[1]["result"]["isError"], false);
    upstream.next().await;
}

#[tokio::test]
async fn list_replies_that_cannot_be_filtered_are_refused() {
    for (content_type, encoding, text, why) in [
        (
            "application/json",
            Some("gzip"),
            "\u{1f}\u{8b}...",
            "compressed",
        ),
        (
            "text/plain",
            None,
            "tools: pha_passphrase_get",
            "neither JSON",
        ),
        (
            "application/json",
            None,
            "{\"id\":1,\"result\":",
            "not JSON",
        ),
        (
            "application/json",
            None,
            "{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{\"tools\":[{\"name\":\"pha_passphrase_get\"}]}}",
            "does not answer",
        ),
    ] {
        let upstream = Upstream::start(move |_| async move {
            let mut r = Response::builder().header("content-type", content_type);
            if let Some(e) = encoding {
                r = r.header("content-encoding", e);
            }
            r.body(full(text)).unwrap()
        })
        .await;
        let sluice = Sluice::start(&config(
            upstream.addr,
            "",
            "tools:\n  deny: [\"pha_passphrase_*\"]",
        ))
        .await;
        let reply = rpc(&sluice, &list(1, "tools/list")).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{why}");
        assert_eq!(reply.rpc_code(), -32603);
        assert_eq!(reply.json()["id"], 1);
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(why), "{message}");
        assert!(!reply.text().contains("pha_passphrase_get"));
    }
}

#[tokio::test]
async fn get_streams_have_every_list_reply_filtered() {
    // A resumed stream (GET with Last-Event-ID) replays a POST's events, its list reply included;
    // the legacy HTTP+SSE transport sends every reply on its GET stream.
    let mut upstream = Upstream::start(|seen| {
        let is_get = seen.method == http::Method::GET;
        async move {
            if !is_get {
                return json(StatusCode::OK, "{}");
            }
            let reply = json!({"jsonrpc":"2.0","id":9,"result":{"tools":[
                {"name":"pha_task_get"},{"name":"pha_passphrase_get"}]}});
            let stream = format!(
                "event: endpoint\ndata: /messages?session=1\n\nid: 4\ndata: {reply}\n\ndata: {reply}\n\n"
            );
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(full(stream))
                .unwrap()
        }
    })
    .await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "streaming:\n  keepAlive: null",
        "tools:\n  deny: [\"pha_passphrase_*\"]",
    ))
    .await;
    let open = Sluice::start(&config(upstream.addr, "streaming:\n  keepAlive: null", "")).await;
    let resume = |url: String| {
        http::Request::get(url)
            .header("accept", "text/event-stream")
            .header("last-event-id", "3")
            .body(http_body_util::Full::default())
            .unwrap()
    };
    let filtered = send(resume(sluice.url("/mcp"))).await.text();
    assert!(filtered.starts_with("event: endpoint\ndata: /messages?session=1\n\nid: 4\n"));
    assert_eq!(filtered.matches("pha_task_get").count(), 2, "{filtered}");
    assert!(!filtered.contains("pha_passphrase_get"), "{filtered}");
    upstream.next().await;
    let unfiltered = send(resume(open.url("/mcp"))).await.text();
    assert_eq!(unfiltered.matches("pha_passphrase_get").count(), 2);
    upstream.next().await;
}

/// An upstream whose one response is an event stream the test writes into.
async fn streaming_upstream() -> (Upstream, tokio::sync::oneshot::Receiver<Sender<Bytes>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let upstream = Upstream::start(move |_| {
        let tx = tx.lock().unwrap().take();
        async move {
            let (sender, body) = Channel::<Bytes, std::convert::Infallible>::new(1);
            if let Some(tx) = tx {
                let _ = tx.send(sender);
            }
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body.boxed_unsync())
                .unwrap()
        }
    })
    .await;
    (upstream, rx)
}

/// Reads the next data frame of a response body (bounded).
async fn next_data(body: &mut hyper::body::Incoming) -> Option<Bytes> {
    loop {
        match within("the next frame", body.frame()).await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(data);
                }
            }
            Err(e) => panic!("stream failed: {e}"),
        }
    }
}

#[tokio::test]
async fn event_stream_lists_are_filtered_across_tiny_chunks_between_other_events() {
    let (upstream, sender) = streaming_upstream().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "streaming:\n  keepAlive: null",
        "tools:\n  deny: [\"pha_passphrase_*\"]",
    ))
    .await;
    let req = post(&sluice.url("/mcp"))
        .body(body(&list(21, "tools/list")))
        .unwrap();
    let response = within("the response head", client().request(req))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut sender = within("the upstream stream", sender).await.unwrap();

    // A priming event and a notification pass at once, before any reply.
    let priming = "id: ev-0\r\nretry: 1000\r\ndata:\r\n\r\n";
    let progress = "event: message\r\nid: ev-1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\r\n\r\n";
    for event in [priming, progress] {
        sender.send_data(Bytes::from(event)).await.unwrap();
        assert_eq!(next_data(&mut body).await.unwrap(), event);
    }

    // The ~48 KB reply in 97-byte chunks.
    let reply = json!({"jsonrpc":"2.0","id":21,"result":{"tools":conduit_tools()}}).to_string();
    let event = format!("event: message\r\nid: ev-2\r\ndata: {reply}\r\n\r\n");
    let after = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\r\n\r\n";
    let writer = tokio::spawn(async move {
        for chunk in event.as_bytes().chunks(97) {
            sender
                .send_data(Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
        sender.send_data(Bytes::from(after)).await.unwrap();
    });
    let mut rest = Vec::new();
    while let Some(data) = next_data(&mut body).await {
        rest.extend_from_slice(&data);
    }
    writer.await.unwrap();
    let rest = String::from_utf8(rest).unwrap();
    let (filtered, tail) = rest.split_once("\r\n\r\n").unwrap();
    assert_eq!(tail, after, "the event after the reply passed unchanged");
    let mut lines = filtered.split("\r\n");
    assert_eq!(lines.next(), Some("event: message"));
    assert_eq!(lines.next(), Some("id: ev-2"));
    let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
    assert_eq!(lines.next(), None);
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["id"], 21);
    let shown = names(&v["result"]["tools"]);
    assert_eq!(shown.len(), 50);
    assert!(!shown.contains(&"pha_passphrase_get".to_owned()));
}

#[tokio::test]
async fn invented_tool_names_cannot_use_up_the_metric_labels() {
    // The `tool` label is capped process-wide (256 names). Denied calls count, but only a
    // name the policy allowed takes a label: a caller inventing names cannot push real tools
    // into `other`.
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(
        upstream.addr,
        "",
        "tools:\n  deny: [\"pha_passphrase_*\"]",
    ))
    .await;
    for i in 0..300 {
        let reply = rpc(&sluice, &call(i, &format!("pha_passphrase_invented{i}"))).await;
        assert_eq!(reply.status, 403);
    }
    let reply = rpc(&sluice, &call(1, "pha_task_get")).await;
    assert_eq!(reply.status, 200);
    upstream.next().await;
    let line = "sluice_requests_total{entry_point=\"main\",http_method=\"POST\",mcp_method=\"tools/call\",tool=\"pha_task_get\",status=\"2xx\"}";
    assert_eq!(sluice.metric(line).await, Some(1.0));
    let denied = "sluice_policy_denials_total{entry_point=\"main\",kind=\"tool\",name=\"other\",reason=\"denied\"}";
    assert_eq!(sluice.metric(denied).await, Some(300.0));
}
