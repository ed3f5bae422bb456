//! MCP inspection of a POST body: each JSON-RPC message's method, id and the name a policy acts
//! on (`tools/call` and `prompts/get`: `params.name`; `resources/read`: `params.uri`).
//!
//! Values nobody needs (arguments, results) are skipped, never copied. A batch is inspected
//! item by item, so a policy applied to every message cannot be bypassed by batching; a batch
//! with one bad item is refused whole. Ambiguous input is refused rather than guessed at:
//! duplicate keys, a message that is both request and response, ids that are not scalars.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::errors::Refusal;
use crate::request::{Inspection, Message, Method};

/// Deepest JSON nesting accepted. serde skips nested values iteratively, so this is for the
/// upstream's sake: its parser has a recursion limit and a defined refusal beats its crash.
pub const MAX_DEPTH: usize = 128;

/// Methods whose params carry the name a policy acts on, and where.
fn named_param(method: &str) -> Option<(NameField, &'static str)> {
    match method {
        "tools/call" => Some((NameField::Name, "tools/call needs params.name as a string")),
        "prompts/get" => Some((NameField::Name, "prompts/get needs params.name as a string")),
        "resources/read" => Some((
            NameField::Uri,
            "resources/read needs params.uri as a string",
        )),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum NameField {
    Name,
    Uri,
}

// === parsing ===

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    // `present` keeps `"id": null` apart from a missing id.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct NameParams<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct UriParams<'a> {
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Inspects a POST body.
pub fn inspect(body: &[u8]) -> Result<Inspection, Refusal> {
    check_depth(body)?;
    // JSON is UTF-8 (RFC 8259), and serde skips the values nobody reads without checking
    // them: a body must be valid as a whole, not only where we look.
    if let Err(e) = std::str::from_utf8(body) {
        let valid = &body[..e.valid_up_to()];
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        return Err(Refusal::Parse {
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            column: valid.len() - line_start + 1,
        });
    }
    let messages = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Inspection::one(message(body)?),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| refusal(&e))?;
            if items.is_empty() {
                return Err(Refusal::InvalidRequest("an empty batch"));
            }
            let messages: Vec<Message> = items
                .iter()
                .map(|i| message(i.get().as_bytes()))
                .collect::<Result<_, _>>()?;
            // Two requests under one id get two answers to it: which answers which is
            // anybody's guess (and a list filter matches a reply to its request by id).
            let mut ids = std::collections::HashSet::new();
            for id in messages
                .iter()
                .filter(|m| m.is_request())
                .filter_map(Message::id)
            {
                let value: serde_json::Value = serde_json::from_str(id.get())
                    .map_err(|_| Refusal::InvalidRequest("an id is not valid JSON"))?;
                if !ids.insert(value.to_string()) {
                    return Err(Refusal::InvalidRequest(
                        "two requests of the batch share an id",
                    ));
                }
            }
            Inspection::batch(messages)
        }
        _ => {
            return Err(match serde_json::from_slice::<IgnoredAny>(body) {
                Err(e) => refusal(&e),
                Ok(_) => Refusal::InvalidRequest("a JSON-RPC message must be an object"),
            });
        }
    };
    Ok(messages)
}

fn message(json: &[u8]) -> Result<Message, Refusal> {
    let wire: Wire<'_> = serde_json::from_slice(json).map_err(|e| refusal(&e))?;
    let is_response = wire.result.is_some() || wire.error.is_some();
    if let Some(id) = wire.id {
        let null_reply = id.get() == "null" && wire.method.is_none();
        if !null_reply {
            check_id(id.get())?;
        }
    }
    let Some(method) = wire.method else {
        if !is_response {
            return Err(Refusal::InvalidRequest(
                "a message needs a method, a result or an error",
            ));
        }
        return Ok(Message::new(None, wire.id.map(RawValue::to_owned), None));
    };
    if is_response {
        return Err(Refusal::InvalidRequest(
            "a message cannot be both a request and a response",
        ));
    }
    let name = match named_param(&method) {
        None => None,
        Some((field, missing)) => {
            let params = wire
                .params
                .ok_or(Refusal::InvalidParams(missing))?
                .get()
                .as_bytes();
            // serde would also read a struct from an array, positionally.
            if params.first() != Some(&b'{') {
                return Err(Refusal::InvalidParams(missing));
            }
            let name = match field {
                NameField::Name => serde_json::from_slice::<NameParams<'_>>(params).map(|p| p.name),
                NameField::Uri => serde_json::from_slice::<UriParams<'_>>(params).map(|p| p.uri),
            };
            Some(Box::from(
                name.ok().flatten().ok_or(Refusal::InvalidParams(missing))?,
            ))
        }
    };
    Ok(Message::new(
        Some(Method::new(&method)),
        wire.id.map(RawValue::to_owned),
        name,
    ))
}

/// Largest integer id: JavaScript's largest safe integer, 2^53 - 1. The TypeScript SDK reads
/// ids as JS numbers; past this, two parsers can read the same digits as different numbers.
pub const MAX_INTEGER_ID: u64 = (1 << 53) - 1;

/// Refuses an id that two JSON-RPC implementations could read differently, so that the proxy
/// reads every id as the upstream will: a string (that decodes), or an integer written in
/// digits alone — no fraction or exponent (`1.0`, `1e2`: a float to some SDKs, an integer to
/// others, refused by yet others), no `-0` (a float to serde, the integer 0 to Python), within
/// ±[`MAX_INTEGER_ID`].
fn check_id(raw: &str) -> Result<(), Refusal> {
    if raw.starts_with('"') {
        return serde_json::from_str::<Cow<'_, str>>(raw)
            .map(drop)
            .map_err(|_| Refusal::InvalidRequest("the id is not a valid string"));
    }
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::InvalidRequest(
            "an id must be a string or an integer (no fraction or exponent)",
        ));
    }
    if raw == "-0" {
        return Err(Refusal::InvalidRequest(
            "an id of -0 is read as 0 by some SDKs and as -0.0 by others",
        ));
    }
    match digits.parse::<u64>() {
        Ok(n) if n <= MAX_INTEGER_ID => Ok(()),
        _ => Err(Refusal::InvalidRequest(
            "an integer id must lie within ±(2^53 - 1)",
        )),
    }
}

fn refusal(e: &serde_json::Error) -> Refusal {
    match e.classify() {
        serde_json::error::Category::Data => {
            Refusal::InvalidRequest("the body is not a valid JSON-RPC message")
        }
        _ => Refusal::Parse {
            line: e.line(),
            column: e.column(),
        },
    }
}

/// Refuses JSON nested deeper than [`MAX_DEPTH`], in one pass without allocating.
fn check_depth(body: &[u8]) -> Result<(), Refusal> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Refusal::TooDeep(MAX_DEPTH));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Inspection {
        inspect(body.as_bytes()).unwrap()
    }

    fn code(body: &str) -> i32 {
        inspect(body.as_bytes()).unwrap_err().code()
    }

    #[test]
    fn a_tool_call_yields_method_id_and_tool() {
        let i = ok(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"a":[1,{"b":2}]},"name":"pha_task_get"}}"#,
        );
        let m = i.single().unwrap();
        assert_eq!(m.method(), Some(&Method::Known("tools/call")));
        assert_eq!(m.id().unwrap().get(), "7");
        assert_eq!(i.tool(), Some("pha_task_get"));
        assert!(m.is_request());
        assert_eq!(i.method_label(), "tools/call");
    }

    #[test]
    fn names_are_unescaped_as_the_upstream_reads_them() {
        let i = ok(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"pha_\u0074ask_get"}}"#,
        );
        assert_eq!(i.tool(), Some("pha_task_get"));
        let i = ok(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"phab://T1"}}"#,
        );
        assert_eq!(i.single().unwrap().name(), Some("phab://T1"));
    }

    #[test]
    fn notifications_responses_and_unknown_methods() {
        let i = ok(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(i.single().unwrap().is_notification());
        let i = ok(r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#);
        assert_eq!(i.method_label(), "response");
        let i = ok(r#"{"jsonrpc":"2.0","id":1,"method":"x/custom"}"#);
        assert_eq!(i.single().unwrap().method().unwrap().as_str(), "x/custom");
        assert_eq!(i.method_label(), "other");
    }

    #[test]
    fn batches_are_inspected_item_by_item() {
        let i = ok(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},
                      {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pha_passphrase_get"}}]"#);
        assert!(i.is_batch());
        assert_eq!(i.messages()[1].name(), Some("pha_passphrase_get"));
        assert!(i.reply_id().is_none());
        assert_eq!(i.method_label(), "batch");
        assert_eq!(code("[]"), -32600);
        assert_eq!(
            code(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"}]"#),
            -32602
        );
        assert_eq!(code(r#"[1]"#), -32600);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_even_where_nothing_is_read() {
        // Found by the inspect fuzz target: a skipped key or value was never checked.
        let skipped_key = b"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"\xffext\":\"ok\"}}";
        assert_eq!(inspect(skipped_key).unwrap_err().code(), -32700);
        let in_arguments = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\",\"arguments\":{\"q\":\"\xc3\"}}}";
        assert_eq!(inspect(in_arguments).unwrap_err().code(), -32700);
    }

    #[test]
    fn malformed_and_ambiguous_bodies_are_refused() {
        assert_eq!(code(""), -32700);
        assert_eq!(code("{\"id\":1,"), -32700);
        assert_eq!(code("{} x"), -32700);
        assert_eq!(code("\"str\""), -32600);
        assert_eq!(
            code(r#"{"id":1,"method":"a","method":"tools/call"}"#),
            -32600
        );
        assert_eq!(
            code(r#"{"id":1,"method":"tools/list","result":{}}"#),
            -32600
        );
        assert_eq!(code(r#"{"id":{},"method":"tools/list"}"#), -32600);
        assert_eq!(code(r#"{"id":null,"method":"tools/list"}"#), -32600);
        assert_eq!(code(r#"{"jsonrpc":"2.0"}"#), -32600);
        assert_eq!(code(r#"{"id":1,"method":7}"#), -32600);
        assert_eq!(
            code(r#"{"id":1,"method":"tools/call","params":{"name":3}}"#),
            -32602
        );
        assert_eq!(
            code(r#"{"id":1,"method":"tools/call","params":["x"]}"#),
            -32602
        );
        assert_eq!(
            code(r#"{"id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#),
            -32602
        );
    }

    #[test]
    fn ids_that_two_parsers_could_read_differently_are_refused() {
        for id in [
            r#""a""#,
            r#""\u0031""#,
            "0",
            "7",
            "-7",
            "9007199254740991",
            "-9007199254740991",
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
            assert_eq!(ok(&body).reply_id().unwrap().get(), id);
        }
        for id in [
            "-0",
            "1.0",
            "1e2",
            "1E2",
            "0.5",
            "-1.5e3",
            "9007199254740992",
            "-9007199254740992",
            "123456789012345678901234567890",
            r#""\ud800""#,
            "true",
            "[1]",
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
            assert_eq!(code(&body), -32600, "{id}");
            // A response the client sends (to a server's request) is held to the same rule.
            let reply = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
            assert_eq!(code(&reply), -32600, "{id}");
        }
    }

    #[test]
    fn a_batch_whose_requests_share_an_id_is_refused() {
        let same = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#;
        assert_eq!(code(same), -32600);
        let escaped = r#"[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"\u0061","method":"tools/list"}]"#;
        assert_eq!(code(escaped), -32600);
        let distinct = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"1","method":"ping"}]"#;
        assert_eq!(ok(distinct).messages().len(), 2);
    }

    #[test]
    fn nesting_bombs_are_refused_but_brackets_in_strings_are_not() {
        let bomb = format!(
            r#"{{"id":1,"method":"tools/call","params":{{"name":"x","arguments":{}1{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(code(&bomb), -32700);
        let text = format!(
            r#"{{"id":1,"method":"tools/call","params":{{"name":"x","arguments":"{}\"\\"}}}}"#,
            "[".repeat(500)
        );
        assert_eq!(ok(&text).tool(), Some("x"));
    }
}
