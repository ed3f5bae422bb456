//! Hostile requests, as one table: each row is the bytes a caller puts on the wire (so a
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]
//! malformed request really reaches the proxy's parser), the outcome it must get, and what the
//! upstream may have seen of it. Rows run one after another on fresh connections against one
//! proxy (at its entry point `main`, unless a row goes to the one that trusts the test's
//! loopback address as a proxy); every answer is parsed as HTTP/1.1, and the proxy's own
//! refusals must also be JSON-RPC errors.

mod support;

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the caller must get.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// The proxy answered: this status and a JSON-RPC error with this code.
    Refused(u16, i64),
    /// The HTTP/1.1 parser refused the message before the request path ran: this status.
    Malformed(u16),
    /// The connection was closed without an answer.
    Closed,
    /// The upstream's answers, one per request: this many 200s.
    Forwarded(usize),
}

/// What the upstream must have seen of the row.
#[derive(Clone, Debug)]
enum Sees {
    Nothing,
    /// Exactly these requests (path and body), in order.
    Exactly(Vec<Expected>),
}

#[derive(Clone, Debug)]
struct Expected {
    path: &'static str,
    body: Vec<u8>,
    /// Headers the upstream must see with exactly these values.
    headers: Vec<(&'static str, String)>,
    /// Headers the upstream must not see at all.
    absent: Vec<&'static str>,
}

struct Row {
    name: &'static str,
    /// The entry point it is sent to.
    entry: &'static str,
    request: Vec<u8>,
    outcome: Outcome,
    sees: Sees,
}

impl Row {
    /// The row, sent to the entry point behind a trusted proxy instead.
    fn behind_ingress(mut self) -> Self {
        self.entry = BEHIND_INGRESS;
        self
    }
}

const PUBLIC: &str = "https://phab.example.com/ai";
const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
const DENIED_CALL: &str =
    r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"pha_passphrase_get"}}"#;

/// The token the proxy injects for every caller (the entry point's `upstreamToken`).
const INJECTED: &str = "api-injectedinjectedinjectedinje";

/// The entry point whose callers come through a trusted proxy: the test itself, on loopback.
const BEHIND_INGRESS: &str = "behind-ingress";

/// A call of the one tool a budget per client address counts (one call an hour each).
const BUDGETED_CALL: &str =
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"budget_probe"}}"#;
const PER_ADDRESS: &str = "rateLimits:\n  - name: per-address\n    by: [clientAddress]\n    requests: 1\n    period: 1h\n    tools: [budget_probe]";

fn config_for(upstream: SocketAddr, token_file: &std::path::Path) -> String {
    let top = "limits:\n  maxHeaderBytes: 4096\n  maxHeaders: 32\ntimeouts:\n  headerRead: 500ms\n  bodyRead: 1s\n  idle: 2s";
    let entry = format!(
        "pathPrefix: /ai\npublicUrl: {PUBLIC}\nallowedOrigins: [\"http://localhost:6274\"]\nmaxBodyBytes: 1024\ntools:\n  deny: [\"pha_passphrase_*\"]\nupstreamToken:\n  file: {}\n{PER_ADDRESS}",
        token_file.display()
    );
    let behind_ingress: String = format!(
        "name: {BEHIND_INGRESS}\nlisten: 127.0.0.1:0\nauth:\n  mode: none\ntrustedProxies: [\"127.0.0.0/8\", \"::1/128\"]\n{PER_ADDRESS}"
    )
    .lines()
    .enumerate()
    .map(|(i, line)| format!("{}{line}\n", if i == 0 { "  - " } else { "    " }))
    .collect();
    config(upstream, top, &entry) + &behind_ingress
}

/// A POST of `body` to `path` with a correct Content-Length and `extra` header lines. It asks
/// the proxy to close the connection after answering, so each row ends without waiting.
fn post_raw(path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for line in extra.lines() {
        writeln!(head, "{line}\r").unwrap();
    }
    head.push_str("\r\n");
    [head.into_bytes(), body.to_vec()].concat()
}

/// Bytes from text; `\r\n` and all other escapes as written.
fn wire(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn seen(path: &'static str, body: &str) -> Sees {
    Sees::Exactly(vec![Expected {
        path,
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
        absent: Vec::new(),
    }])
}

/// What the upstream sees of a POST of `LIST` to `/ai/mcp`: the injected token alone, and none
/// of the headers in `absent`.
fn seen_without(absent: Vec<&'static str>) -> Sees {
    Sees::Exactly(vec![Expected {
        path: "/mcp",
        body: wire(LIST),
        headers: vec![("x-phabricator-token", INJECTED.into())],
        absent,
    }])
}

fn refused(name: &'static str, request: Vec<u8>, status: u16, code: i64) -> Row {
    Row {
        name,
        entry: "main",
        request,
        outcome: Outcome::Refused(status, code),
        sees: Sees::Nothing,
    }
}

fn malformed(name: &'static str, request: Vec<u8>, status: u16) -> Row {
    Row {
        name,
        entry: "main",
        request,
        outcome: Outcome::Malformed(status),
        sees: Sees::Nothing,
    }
}

fn forwarded(name: &'static str, request: Vec<u8>, sees: Sees) -> Row {
    let count = match &sees {
        Sees::Exactly(v) => v.len(),
        Sees::Nothing => 0,
    };
    Row {
        name,
        entry: "main",
        request,
        outcome: Outcome::Forwarded(count),
        sees,
    }
}

/// A request hidden where a confused parser would find a second message.
const SMUGGLED: &str = "GET /ai/smuggled HTTP/1.1\r\nhost: x\r\n\r\n";

fn rows(proxy: SocketAddr) -> Vec<Row> {
    let nest = |depth: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let chunked = |chunks: &[&[u8]]| {
        let mut out = wire(
            "POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        for c in chunks {
            out.extend(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend(*c);
            out.extend(b"\r\n");
        }
        out.extend(b"0\r\n\r\n");
        out
    };
    let modern = |method: &str, name: &str, body: &str| {
        post_raw(
            "/ai/mcp",
            &format!("mcp-protocol-version: 2026-07-28\nmcp-method: {method}\nmcp-name: {name}"),
            body.as_bytes(),
        )
    };
    let over_limit = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let padded_smuggle = {
        // A declared length over the limit whose "body" is a complete request.
        let mut body = SMUGGLED.repeat(60).into_bytes();
        body.truncate(2000);
        body
    };
    let many_headers: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();

    vec![
        // --- controls: what must pass does pass, and two requests are seen as two ---
        forwarded("control: a plain POST", post_raw("/ai/mcp", "", LIST.as_bytes()), seen("/mcp", LIST)),
        forwarded(
            "control: two pipelined POSTs",
            [
                wire(&format!("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{LIST}", LIST.len())),
                post_raw("/ai/mcp", "", LIST.as_bytes()),
            ]
            .concat(),
            Sees::Exactly(vec![
                Expected { path: "/mcp", body: wire(LIST), headers: vec![], absent: vec![] },
                Expected { path: "/mcp", body: wire(LIST), headers: vec![], absent: vec![] },
            ]),
        ),
        // --- oversized bodies and heads ---
        refused("content-length over the body limit", post_raw("/ai/mcp", "", over_limit.as_bytes()), 413, -32600),
        refused(
            "content-length over the limit, declared only",
            wire("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n{"),
            413,
            -32600,
        ),
        refused(
            "content-length over the limit, a request hidden in the body",
            post_raw("/ai/mcp", "", &padded_smuggle),
            413,
            -32600,
        ),
        refused(
            "expect: 100-continue with a length over the limit",
            wire("POST /ai/mcp HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 100000\r\n\r\n"),
            413,
            -32600,
        ),
        refused("chunked body over the limit", chunked(&[&over_limit.as_bytes()[..1000], &over_limit.as_bytes()[1000..]]), 413, -32600),
        refused(
            "chunk size overflowing 64 bits",
            wire("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
            400,
            -32600,
        ),
        refused(
            "one header over maxHeaderBytes",
            post_raw("/ai/mcp", &format!("x-big: {}", "a".repeat(5000)), LIST.as_bytes()),
            431,
            -32600,
        ),
        malformed(
            "a head over the read buffer",
            post_raw("/ai/mcp", &format!("x-big: {}", "a".repeat(64 * 1024)), LIST.as_bytes()),
            431,
        ),
        malformed(
            "a request line over the read buffer",
            wire(&format!("GET /ai/{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(20_000))),
            431,
        ),
        malformed(
            "more header fields than maxHeaders",
            wire(&format!("GET /ai/mcp HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n")),
            431,
        ),
        // --- slow callers ---
        Row {
            name: "slowloris: half a head, then silence",
            entry: "main",
            request: wire("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-le"),
            outcome: Outcome::Closed,
            sees: Sees::Nothing,
        },
        Row {
            name: "a body that stops arriving",
            entry: "main",
            request: wire("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"jsonrpc\":"),
            outcome: Outcome::Refused(408, -32001),
            sees: Sees::Nothing,
        },
        // --- request smuggling ---
        forwarded(
            "content-length and chunked: chunked wins, the connection closes",
            {
                // A front proxy reading Content-Length would take the rest as a second request.
                let body = format!("{:x}\r\n{LIST}\r\n0\r\n\r\n{SMUGGLED}", LIST.len());
                wire(&format!(
                    "POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\ntransfer-encoding: chunked\r\n\r\n{body}",
                    body.len()
                ))
            },
            seen("/mcp", LIST),
        ),
        forwarded(
            "chunked then content-length: the same",
            wire(&format!(
                "POST /ai/mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n{:x}\r\n{LIST}\r\n0\r\n\r\n{SMUGGLED}",
                LIST.len()
            )),
            seen("/mcp", LIST),
        ),
        malformed(
            "two different content-lengths",
            wire(&format!(
                "POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\ncontent-length: 5\r\n\r\n{LIST}",
                LIST.len()
            )),
            400,
        ),
        malformed(
            "a content-length list",
            wire(&format!(
                "POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-length: {0}, 5\r\n\r\n{LIST}",
                LIST.len()
            )),
            400,
        ),
        malformed(
            "a signed content-length",
            wire(&format!("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-length: +{}\r\n\r\n{LIST}", LIST.len())),
            400,
        ),
        forwarded(
            "the same content-length twice (RFC 9110 allows it)",
            wire(&format!(
                "POST /ai/mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {0}\r\ncontent-length: {0}\r\n\r\n{LIST}",
                LIST.len()
            )),
            seen("/mcp", LIST),
        ),
        malformed(
            "transfer-encoding not ending in chunked",
            wire(&format!("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n{:x}\r\n{LIST}\r\n0\r\n\r\n", LIST.len())),
            400,
        ),
        malformed(
            "transfer-encoding: xchunked",
            wire(&format!("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\r\n{:x}\r\n{LIST}\r\n0\r\n\r\n", LIST.len())),
            400,
        ),
        malformed(
            "transfer-encoding in HTTP/1.0",
            wire(&format!("POST /ai/mcp HTTP/1.0\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{LIST}\r\n0\r\n\r\n", LIST.len())),
            400,
        ),
        refused(
            "chunked with a junk chunk size",
            wire("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
            400,
            -32600,
        ),
        refused(
            "chunked with a chunk longer than its size",
            wire(&format!("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{LIST}\r\n0\r\n\r\n{SMUGGLED}")),
            400,
            -32600,
        ),
        malformed(
            "obs-fold continuation line",
            wire(&format!("POST /ai/mcp HTTP/1.1\r\nhost: x\r\nx-a: b\r\n  folded: in\r\ncontent-length: {}\r\n\r\n{LIST}", LIST.len())),
            400,
        ),
        malformed(
            "a bare CR inside a header line",
            wire(&format!("POST /ai/mcp HTTP/1.1\r\nhost: x\r\nx-a: b\rcontent-length: 0\r\ncontent-length: {}\r\n\r\n{LIST}", LIST.len())),
            400,
        ),
        malformed(
            "whitespace between a header name and its colon",
            wire(&format!("POST /ai/mcp HTTP/1.1\r\nhost: x\r\ncontent-length : {}\r\n\r\n{LIST}", LIST.len())),
            400,
        ),
        forwarded(
            "bare LF line endings (RFC 9112 lets a recipient accept them)",
            wire(&format!("POST /ai/mcp HTTP/1.1\nhost: x\nconnection: close\ncontent-length: {}\n\n{LIST}", LIST.len())),
            seen("/mcp", LIST),
        ),
        // --- encoded paths: nothing leaves the prefix or reaches a path the proxy did not map ---
        refused("%2e%2e segment", post_raw("/ai/%2e%2e/mcp", "", LIST.as_bytes()), 404, -32600),
        refused("mixed-case %2E%2e segment", post_raw("/ai/%2E%2e/mcp", "", LIST.as_bytes()), 404, -32600),
        refused("raw .. segment", post_raw("/ai/../mcp", "", LIST.as_bytes()), 404, -32600),
        refused("encoded slash after ..", post_raw("/ai/..%2fmcp", "", LIST.as_bytes()), 404, -32600),
        refused("encoded slash ending the prefix", post_raw("/ai%2fmcp", "", LIST.as_bytes()), 404, -32600),
        refused("encoded backslash", post_raw("/ai/..%5cmcp", "", LIST.as_bytes()), 404, -32600),
        refused("an empty segment", post_raw("/ai//mcp", "", LIST.as_bytes()), 404, -32600),
        refused("the prefix percent-encoded", post_raw("/%61i/mcp", "", LIST.as_bytes()), 404, -32600),
        refused("a longer first segment than the prefix", post_raw("/aix/mcp", "", LIST.as_bytes()), 404, -32600),
        refused("an encoded NUL", post_raw("/ai/mcp%00", "", LIST.as_bytes()), 404, -32600),
        refused("an unknown well-known path", wire("GET /ai/.well-known/anything HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"), 404, -32600),
        refused("a well-known path behind ..", wire("GET /ai/x/%2e%2e/.well-known/openid-configuration HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"), 404, -32600),
        forwarded(
            "double encoding stays one level encoded upstream",
            post_raw("/ai/%252e%252e/mcp", "", LIST.as_bytes()),
            seen("/%252e%252e/mcp", LIST),
        ),
        refused("a raw backslash in the target", post_raw("/ai\\..\\mcp", "", LIST.as_bytes()), 404, -32600),
        // --- Origin and Host (DNS rebinding) ---
        refused("a foreign Origin", post_raw("/ai/mcp", "origin: https://evil.example", LIST.as_bytes()), 403, -32600),
        refused("Origin null", post_raw("/ai/mcp", "origin: null", LIST.as_bytes()), 403, -32600),
        refused(
            "an allowed and a foreign Origin",
            post_raw("/ai/mcp", "origin: https://phab.example.com\norigin: https://evil.example", LIST.as_bytes()),
            403,
            -32600,
        ),
        refused(
            "Origin equal to the Host it rebinds",
            post_raw("/ai/mcp", &format!("origin: http://{proxy}"), LIST.as_bytes()),
            403,
            -32600,
        ),
        refused(
            "Origin as a look-alike suffix",
            post_raw("/ai/mcp", "origin: https://phab.example.com.evil.example", LIST.as_bytes()),
            403,
            -32600,
        ),
        refused(
            "Origin with bytes that are not UTF-8",
            b"POST /ai/mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\norigin: https://phab.example.com\xff\r\ncontent-length: 2\r\n\r\n{}".to_vec(),
            403,
            -32600,
        ),
        forwarded(
            "a spoofed Host reaches the upstream as the public host",
            post_raw("/ai/mcp", "x-forwarded-host: evil.example", LIST.as_bytes()).replace_host("evil.example"),
            Sees::Exactly(vec![Expected {
                path: "/mcp",
                body: wire(LIST),
                headers: vec![("x-forwarded-host", "phab.example.com".into()), ("x-forwarded-proto", "https".into())],
                absent: vec![],
            }]),
        ),
        refused("two Host fields", post_raw("/ai/mcp", "host: evil.example", LIST.as_bytes()), 400, -32600),
        refused(
            "no Host in HTTP/1.1",
            wire(&format!("POST /ai/mcp HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{LIST}", LIST.len())),
            400,
            -32600,
        ),
        refused(
            "a Host with userinfo",
            post_raw("/ai/mcp", "", LIST.as_bytes()).replace_host("phab.example.com@evil.example"),
            400,
            -32600,
        ),
        refused(
            "an absolute-form target naming another host than Host",
            wire(&format!(
                "POST http://evil.example/ai/mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{LIST}",
                LIST.len()
            )),
            400,
            -32600,
        ),
        // --- MCP headers that disagree with the body (2026-07-28) ---
        refused("Mcp-Method disagreeing with the body", modern("tools/list", "pha_task_get", DENIED_CALL), 400, -32020),
        refused("Mcp-Name naming an allowed tool for a denied one", modern("tools/call", "pha_task_get", DENIED_CALL), 400, -32020),
        refused(
            "Mcp-Name in base64 decoding to another tool",
            modern("tools/call", "=?base64?cGhhX3Rhc2tfZ2V0?=", DENIED_CALL),
            400,
            -32020,
        ),
        refused(
            "Mcp-Name twice",
            post_raw(
                "/ai/mcp",
                "mcp-protocol-version: 2026-07-28\nmcp-method: tools/call\nmcp-name: pha_passphrase_get\nmcp-name: pha_task_get",
                DENIED_CALL.as_bytes(),
            ),
            400,
            -32020,
        ),
        refused(
            "Mcp-Name that is not UTF-8",
            [
                b"POST /ai/mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\nmcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: pha_passphrase_g\xe9t\r\n".to_vec(),
                wire(&format!("content-length: {}\r\n\r\n{DENIED_CALL}", DENIED_CALL.len())),
            ]
            .concat(),
            400,
            -32020,
        ),
        refused(
            "2026-07-28 without Mcp-Method",
            post_raw("/ai/mcp", "mcp-protocol-version: 2026-07-28", LIST.as_bytes()),
            400,
            -32020,
        ),
        refused(
            "matching headers for a denied tool: the policy still applies",
            modern("tools/call", "pha_passphrase_get", DENIED_CALL),
            403,
            -32003,
        ),
        // --- batches and duplicate keys that hide a denied tool ---
        refused(
            "a batch hiding a denied tool after an allowed call",
            post_raw("/ai/mcp", "", format!("[{LIST},{DENIED_CALL}]").as_bytes()),
            403,
            -32003,
        ),
        refused(
            "a batch hiding a denied tool spelt with a unicode escape",
            post_raw(
                "/ai/mcp",
                "",
                br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pha_task_get"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pha_pass\u0070hrase_get"}}]"#,
            ),
            403,
            -32003,
        ),
        refused(
            "a nested batch",
            post_raw("/ai/mcp", "", format!("[[{DENIED_CALL}]]").as_bytes()),
            400,
            -32600,
        ),
        refused(
            "a duplicate params.name (allowed first, denied second)",
            post_raw(
                "/ai/mcp",
                "",
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pha_task_get","name":"pha_passphrase_get"}}"#,
            ),
            400,
            -32602,
        ),
        refused(
            "a duplicate method (harmless first, tools/call second)",
            post_raw(
                "/ai/mcp",
                "",
                br#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"pha_passphrase_get"}}"#,
            ),
            400,
            -32600,
        ),
        refused(
            "a 2026-07-28 batch",
            post_raw("/ai/mcp", "mcp-protocol-version: 2026-07-28", format!("[{LIST}]").as_bytes()),
            400,
            -32600,
        ),
        // --- nesting bombs and bytes that are not UTF-8 ---
        refused("JSON nested 200 deep", post_raw("/ai/mcp", "", nest(200).as_bytes()), 400, -32700),
        forwarded("JSON nested 100 deep (under the limit)", post_raw("/ai/mcp", "", nest(100).as_bytes()), seen("/mcp", &nest(100))),
        refused(
            "brackets in strings do not count, unbalanced closers do not hide openers",
            post_raw("/ai/mcp", "", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","x":"{}","y":{}{}}}"#, "]".repeat(20), "[".repeat(129), "]".repeat(129)).as_bytes()),
            400,
            -32700,
        ),
        refused(
            "a body that is not UTF-8",
            post_raw("/ai/mcp", "", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"pha_\xff\"}}"),
            400,
            -32700,
        ),
        refused(
            "bytes that are not UTF-8 where inspection reads nothing (found by fuzzing)",
            post_raw(
                "/ai/mcp",
                "",
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"pha_task_get\",\"arguments\":{\"q\":\"\xc3\"}}}",
            ),
            400,
            -32700,
        ),
        refused(
            "a lone surrogate escape in a tool name",
            post_raw("/ai/mcp", "", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pha_passphrase_get\ud800"}}"#),
            400,
            -32602,
        ),
        malformed("a NUL in a header value", wire("GET /ai/mcp HTTP/1.1\r\nhost: x\r\nx-a: b\x00c\r\n\r\n"), 400),
        malformed("a header name that is not a token", b"GET /ai/mcp HTTP/1.1\r\nhost: x\r\nx\xffa: b\r\n\r\n".to_vec(), 400),
        // --- ids two JSON-RPC implementations read differently (the proxy would match a list
        // reply to its request by one reading, the upstream answer by another) ---
        refused("id -0", post_raw("/ai/mcp", "", br#"{"jsonrpc":"2.0","id":-0,"method":"tools/list"}"#), 400, -32600),
        refused("id 1.0", post_raw("/ai/mcp", "", br#"{"jsonrpc":"2.0","id":1.0,"method":"tools/list"}"#), 400, -32600),
        refused("id 1e2", post_raw("/ai/mcp", "", br#"{"jsonrpc":"2.0","id":1e2,"method":"tools/list"}"#), 400, -32600),
        refused("id past 2^53", post_raw("/ai/mcp", "", br#"{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/list"}"#), 400, -32600),
        refused(
            "two requests of a batch under one id",
            post_raw("/ai/mcp", "", format!("[{LIST},{LIST}]").as_bytes()),
            400,
            -32600,
        ),
        // --- bodies where nothing would inspect them ---
        forwarded("a body in one-byte chunks", chunked(&LIST.as_bytes().chunks(1).collect::<Vec<_>>()), seen("/mcp", LIST)),
        refused("PUT", wire(&format!("PUT /ai/mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{LIST}", LIST.len())), 405, -32600),
        refused("PATCH", wire(&format!("PATCH /ai/mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{DENIED_CALL}", DENIED_CALL.len())), 405, -32600),
        refused("DELETE with a body", wire(&format!("DELETE /ai/mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{DENIED_CALL}", DENIED_CALL.len())), 400, -32600),
        refused("GET with a body", wire(&format!("GET /ai/mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{DENIED_CALL}", DENIED_CALL.len())), 400, -32600),
        refused(
            "OPTIONS with a chunked body",
            wire(&format!("OPTIONS /ai/mcp HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{DENIED_CALL}\r\n0\r\n\r\n", DENIED_CALL.len())),
            400,
            -32600,
        ),
        refused("a tool call posted to /token outside mode oauth", post_raw("/ai/token", "", DENIED_CALL.as_bytes()), 403, -32003),
        refused("a form posted to /register outside mode oauth", post_raw("/ai/register", "", b"grant_type=x"), 400, -32700),
        refused("a form posted to /auth/callback outside mode oauth", post_raw("/ai/auth/callback", "", b"code=x"), 400, -32700),
        // --- the credential swap undone: a header named in Connection is dropped on the way ---
        refused(
            "Connection naming the injected token",
            post_raw("/ai/mcp", "x-phabricator-token: api-callercallercallercallercall\nconnection: x-phabricator-token", LIST.as_bytes()),
            400,
            -32600,
        ),
        refused("Connection naming Authorization", post_raw("/ai/mcp", "connection: keep-alive, Authorization", LIST.as_bytes()), 400, -32600),
        refused("Connection naming Mcp-Method", post_raw("/ai/mcp", "connection: mcp-method", LIST.as_bytes()), 400, -32600),
        forwarded(
            "the injected token spelt with underscores",
            post_raw("/ai/mcp", "x_phabricator_token: api-callercallercallercallercall\nx-phabricator_token: api-callercallercallercallercall", LIST.as_bytes()),
            seen_without(vec!["x_phabricator_token", "x-phabricator_token"]),
        ),
        forwarded(
            "a Connection header naming a header of the caller's own",
            post_raw("/ai/mcp", "x-trace-hop: 1\nconnection: x-trace-hop", LIST.as_bytes()),
            seen_without(vec!["x-trace-hop", "connection"]),
        ),
        // --- who the caller is, in other words than X-Forwarded-For ---
        forwarded(
            "X-Real-IP and Forwarded from the caller",
            post_raw("/ai/mcp", "x-real-ip: 203.0.113.9\nforwarded: for=203.0.113.9;proto=https;host=evil.example", LIST.as_bytes()),
            seen_without(vec!["x-real-ip", "forwarded"]),
        ),
        // --- who the caller is, as an untrusted peer claims: it is the peer, whatever it says ---
        forwarded(
            "X-Forwarded-For from an untrusted peer: the upstream sees the peer alone",
            post_raw("/ai/mcp", "x-forwarded-for: 203.0.113.1\nx-forwarded-for: 198.51.100.2", LIST.as_bytes()),
            seen_with_forwarded_for("/mcp", LIST, "127.0.0.1", true),
        ),
        forwarded(
            "an untrusted peer spends its clientAddress budget, X-Forwarded-For spoofed",
            post_raw("/ai/mcp", "x-forwarded-for: 203.0.113.1", BUDGETED_CALL.as_bytes()),
            seen_with_forwarded_for("/mcp", BUDGETED_CALL, "127.0.0.1", true),
        ),
        refused(
            "another spoofed X-Forwarded-For from that peer: the same budget, spent",
            post_raw("/ai/mcp", "x-forwarded-for: 203.0.113.2", BUDGETED_CALL.as_bytes()),
            429,
            -32004,
        ),
        refused(
            "a spoofed Forwarded from that peer: the same budget, spent",
            post_raw("/ai/mcp", "forwarded: for=\"[2001:db8::1]:4711\"", BUDGETED_CALL.as_bytes()),
            429,
            -32004,
        ),
        // --- behind a trusted proxy: its callers are told apart by the address it reports ---
        forwarded(
            "behind a trusted proxy: the upstream gets the chain with the peer appended",
            post_raw("/mcp", "x-forwarded-for: 198.51.100.9, 203.0.113.1", LIST.as_bytes()),
            seen_with_forwarded_for("/mcp", LIST, "198.51.100.9, 203.0.113.1, 127.0.0.1", false),
        )
        .behind_ingress(),
        forwarded(
            "behind a trusted proxy: caller 203.0.113.1 spends its budget",
            post_raw("/mcp", "x-forwarded-for: 203.0.113.1", BUDGETED_CALL.as_bytes()),
            seen_with_forwarded_for("/mcp", BUDGETED_CALL, "203.0.113.1, 127.0.0.1", false),
        )
        .behind_ingress(),
        forwarded(
            "behind a trusted proxy: caller 203.0.113.2 has a budget of its own (whatever it spoofed to the left)",
            post_raw("/mcp", "x-forwarded-for: 203.0.113.1\nx-forwarded-for: 203.0.113.2", BUDGETED_CALL.as_bytes()),
            seen_with_forwarded_for("/mcp", BUDGETED_CALL, "203.0.113.1, 203.0.113.2, 127.0.0.1", false),
        )
        .behind_ingress(),
        forwarded(
            "behind a trusted proxy: a caller named by Forwarded has a budget of its own",
            post_raw("/mcp", "forwarded: for=\"[2001:db8::1]:4711\";proto=https", BUDGETED_CALL.as_bytes()),
            seen_with_forwarded_for("/mcp", BUDGETED_CALL, "127.0.0.1", false),
        )
        .behind_ingress(),
        refused(
            "behind a trusted proxy: caller 203.0.113.1 again, its budget spent",
            post_raw("/mcp", "x-forwarded-for: 203.0.113.1", BUDGETED_CALL.as_bytes()),
            429,
            -32004,
        )
        .behind_ingress(),
    ]
}

/// What the upstream sees of a POST of `body`: exactly one `X-Forwarded-For`, `chain`; and
/// the injected token when the row went to `main`.
fn seen_with_forwarded_for(path: &'static str, body: &str, chain: &str, main: bool) -> Sees {
    let mut headers = vec![("x-forwarded-for", chain.to_owned())];
    if main {
        headers.push(("x-phabricator-token", INJECTED.into()));
    }
    Sees::Exactly(vec![Expected {
        path,
        body: wire(body),
        headers,
        absent: vec!["forwarded", "x-real-ip"],
    }])
}

/// Helps the one row that needs another Host than `post_raw` writes.
trait ReplaceHost {
    fn replace_host(self, host: &str) -> Vec<u8>;
}

impl ReplaceHost for Vec<u8> {
    fn replace_host(self, host: &str) -> Vec<u8> {
        let text = String::from_utf8(self).unwrap();
        text.replacen("host: x\r\n", &format!("host: {host}\r\n"), 1)
            .into_bytes()
    }
}

// === the wire ===

/// Sends `request` on a fresh connection and reads until the proxy closes it (bounded). The
/// write side stays open: the proxy closes a connection when its caller half-closes it.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    // A reset after the answer counts as a close.
    let _ = within(
        "the proxy to close the connection",
        tcp.read_to_end(&mut out),
    )
    .await;
    out
}

/// One response as it came off the wire.
#[derive(Debug)]
struct WireResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl WireResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a stream of HTTP/1.1 responses strictly; an error says what is malformed.
fn parse_responses(mut bytes: &[u8]) -> Result<Vec<WireResponse>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = find(bytes, b"\r\n\r\n").ok_or("a head without its end")?;
        let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "a head that is not UTF-8")?;
        bytes = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        if parts.next() != Some("HTTP/1.1") {
            return Err(format!("bad status line {status_line:?}"));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status in {status_line:?}"))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            if name.is_empty() || name.contains(' ') {
                return Err(format!("bad header name {name:?}"));
            }
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut response = WireResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 100 {
            continue;
        }
        if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().map_err(|_| "bad content-length")?;
            if bytes.len() < len {
                return Err("a body shorter than its content-length".into());
            }
            response.body = bytes[..len].to_vec();
            bytes = &bytes[len..];
        } else if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = find(bytes, b"\r\n").ok_or("a chunk without its size line")?;
                let size = std::str::from_utf8(&bytes[..line_end])
                    .ok()
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                    .ok_or("bad chunk size")?;
                bytes = &bytes[line_end + 2..];
                if size == 0 {
                    bytes = bytes.strip_prefix(b"\r\n").ok_or("bad last chunk")?;
                    break;
                }
                if bytes.len() < size + 2 {
                    return Err("a truncated chunk".into());
                }
                response.body.extend_from_slice(&bytes[..size]);
                bytes = &bytes[size + 2..];
            }
        } else if status != 204 && status != 304 {
            // Delimited by the close.
            response.body = std::mem::take(&mut bytes).to_vec();
        }
        out.push(response);
    }
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks a row's answer; an error says what is wrong.
fn check_outcome(outcome: Outcome, answer: &[u8]) -> Result<(), String> {
    let responses = parse_responses(answer)?;
    let only = |responses: &[WireResponse]| -> Result<(), String> {
        if responses.len() == 1 {
            Ok(())
        } else {
            Err(format!("{} responses, expected one", responses.len()))
        }
    };
    match outcome {
        Outcome::Closed if responses.is_empty() => Ok(()),
        Outcome::Closed => Err(format!(
            "answered {}, expected a silent close",
            responses[0].status
        )),
        Outcome::Malformed(status) => {
            only(&responses)?;
            if responses[0].status == status {
                Ok(())
            } else {
                Err(format!("status {}, expected {status}", responses[0].status))
            }
        }
        Outcome::Refused(status, code) => {
            only(&responses)?;
            let r = &responses[0];
            if r.status != status {
                return Err(format!(
                    "status {}, expected {status}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            if r.header("content-type") != Some("application/json") {
                return Err(format!("content-type {:?}", r.header("content-type")));
            }
            let json: Value = serde_json::from_slice(&r.body).map_err(|e| {
                format!(
                    "body is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&r.body)
                )
            })?;
            let well_formed = json["jsonrpc"] == "2.0"
                && json.get("id").is_some()
                && json["error"]["message"].is_string()
                && json.get("result").is_none();
            if !well_formed {
                return Err(format!("not a JSON-RPC error: {json}"));
            }
            match json["error"]["code"].as_i64() {
                Some(c) if c == code => Ok(()),
                other => Err(format!("JSON-RPC code {other:?}, expected {code}: {json}")),
            }
        }
        Outcome::Forwarded(count) => {
            if responses.len() != count || responses.iter().any(|r| r.status != 200) {
                let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
                return Err(format!("statuses {statuses:?}, expected {count} × 200"));
            }
            Ok(())
        }
    }
}

/// Checks what the upstream saw of a row (it records each request before answering it, and
/// every answer arrived before the connection closed, so nothing is still on its way).
fn check_upstream(sees: &Sees, upstream: &mut Upstream) -> Result<(), String> {
    let mut seen = Vec::new();
    while let Some(s) = upstream.try_next() {
        seen.push(s);
    }
    let expected: &[Expected] = match sees {
        Sees::Nothing => &[],
        Sees::Exactly(v) => v,
    };
    let describe = |s: &[Seen]| -> Vec<String> {
        s.iter()
            .map(|s| {
                format!(
                    "{} {} {:?}",
                    s.method,
                    s.uri,
                    String::from_utf8_lossy(&s.body)
                )
            })
            .collect()
    };
    if seen.len() != expected.len() {
        return Err(format!(
            "the upstream saw {:?}, expected {} requests",
            describe(&seen),
            expected.len()
        ));
    }
    for (s, e) in seen.iter().zip(expected) {
        if s.uri.path() != e.path || s.body != e.body {
            return Err(format!(
                "the upstream saw {:?}, expected {} {:?}",
                describe(&seen),
                e.path,
                String::from_utf8_lossy(&e.body)
            ));
        }
        for (name, value) in &e.headers {
            let got: Vec<_> = s.headers.get_all(*name).iter().collect();
            if got.len() != 1 || got[0] != value.as_str() {
                return Err(format!(
                    "the upstream saw {name}: {got:?}, expected {value:?}"
                ));
            }
        }
        for name in &e.absent {
            if let Some(value) = s.headers.get(*name) {
                return Err(format!("the upstream saw {name}: {value:?}"));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn hostile_requests_get_their_expected_outcome_and_the_upstream_sees_only_what_it_should() {
    let mut upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, INJECTED).unwrap();
    let sluice = Sluice::start(&config_for(upstream.addr, &token_file)).await;
    let mut failures = Vec::new();
    let rows = rows(sluice.addr());
    for row in &rows {
        let started = tokio::time::Instant::now();
        let entry = sluice.proxy.entry_addr(row.entry).unwrap();
        let answer = exchange(entry, &row.request).await;
        // For the reader only: a row ending by the idle timeout is slow, not wrong.
        let took = started.elapsed();
        // Both checks run, so what the upstream saw never spills into the next row.
        let outcome = check_outcome(row.outcome, &answer);
        let upstream_saw = check_upstream(&row.sees, &mut upstream);
        let verdict = outcome.and(upstream_saw);
        match verdict {
            Ok(()) => println!("ok    {} ({took:?})", row.name),
            Err(why) => {
                println!("FAIL  {} ({took:?}): {why}", row.name);
                failures.push(format!(
                    "{}: {why}\n  answer: {:?}",
                    row.name,
                    String::from_utf8_lossy(&answer[..answer.len().min(400)])
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
