//! Sidecar configs for authentication tests, and calls carrying credentials.

use std::net::SocketAddr;

use http::{HeaderName, HeaderValue};

use super::{Reply, Sluice, TOOLS_CALL, body, post, send};

/// A config with one entry point `main` in front of `upstream`, authenticating with the YAML
/// lines `auth` (under `auth:`); `entry` lines are added to the entry point, `top` lines at the
/// top level.
pub fn auth_config(upstream: SocketAddr, top: &str, auth: &str, entry: &str) -> String {
    let indent = |text: &str, by: usize| -> String {
        text.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(by)))
            .collect()
    };
    format!(
        "upstream:\n  url: http://{upstream}\nadmin:\n  listen: 127.0.0.1:0\n{top}\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:0\n    auth:\n{}{}",
        indent(auth, 6),
        indent(entry, 4)
    )
}

/// A `tools/call` to the sidecar with `headers` (values as raw bytes).
pub async fn call_raw(sluice: &Sluice, headers: &[(&str, &[u8])]) -> Reply {
    let mut req = post(&sluice.url("/mcp"));
    for (name, value) in headers {
        req = req.header(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    send(req.body(body(TOOLS_CALL)).unwrap()).await
}

/// A `tools/call` to the sidecar with `headers`.
pub async fn call(sluice: &Sluice, headers: &[(&str, &str)]) -> Reply {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    call_raw(sluice, &raw).await
}

/// Asserts `reply` is a 401 with a JSON-RPC error (id null: authentication runs before the
/// body is read) and a `WWW-Authenticate` challenge that contains `challenge`.
pub fn assert_401(reply: &Reply, challenge: &str) {
    let header = refused_with_challenge(reply);
    assert!(header.starts_with("Bearer"), "{header}");
    assert!(header.contains(challenge), "{header} lacks {challenge}");
}

/// Asserts `reply` is the 401 of an entry point that takes Phabricator API tokens: id null, a
/// challenge that is not `Bearer` (no OAuth login can help) and contains `challenge`, and a
/// message naming the header to send.
pub fn assert_header_token_401(reply: &Reply, challenge: &str) {
    let header = refused_with_challenge(reply);
    assert!(header.starts_with("X-PHABRICATOR-TOKEN "), "{header}");
    assert!(!header.contains("Bearer"), "{header}");
    assert!(header.contains(challenge), "{header} lacks {challenge}");
    if !challenge.contains("invalid_token") {
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("X-PHABRICATOR-TOKEN header"), "{message}");
    }
}

/// Asserts `reply` is a 401 with a JSON-RPC error of id null (authentication runs before the
/// body is read); its `WWW-Authenticate` challenge.
fn refused_with_challenge(reply: &Reply) -> &str {
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.rpc_code(), -32600, "{}", reply.text());
    assert!(reply.json()["id"].is_null(), "{}", reply.text());
    reply
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("no challenge: {reply:?}"))
}

/// Asserts `reply` is a 403 with a JSON-RPC error and no challenge.
pub fn assert_403(reply: &Reply) {
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.rpc_code(), -32600, "{}", reply.text());
    assert!(reply.header("www-authenticate").is_none());
}

/// Asserts `reply` is a 503 with a JSON-RPC error and `Retry-After`.
pub fn assert_503(reply: &Reply) {
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.rpc_code(), -32603, "{}", reply.text());
    assert!(reply.header("retry-after").is_some());
}

/// The value of a metric line starting with `prefix` (labels included), or 0.
pub async fn metric(sluice: &Sluice, prefix: &str) -> f64 {
    sluice.metric(prefix).await.unwrap_or(0.0)
}
