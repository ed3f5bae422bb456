//! JSON-RPC inspection (proxy/src/inspect.rs) and the MCP header check against it.
//!
//! Input: optional header lines (`name: value`), a blank line, then the POST body; without a
//! blank line the whole input is the body. Beyond "no panic", what inspection accepts must be
//! JSON that says the same thing to a generic parser (the upstream's view): the same method,
//! id and name. A disagreement would let a policy read one story and the upstream another.

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sluice_proxy::fuzzing::{Message, check_mcp_headers, inspect};

fuzz_target!(|data: &[u8]| {
    let (headers, body) = split(data);
    let inspection = match inspect(body) {
        Ok(inspection) => inspection,
        Err(refusal) => {
            let code = refusal.code();
            assert!(
                matches!(code, -32700 | -32600 | -32602),
                "unexpected code {code} for {refusal}"
            );
            // Building the refusal's response must not panic either.
            let _ = refusal.to_response(None);
            return;
        }
    };
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        // JSON's grammar has no number range (RFC 8259 §6 leaves it to implementations):
        // `1e400` is valid JSON that serde_json's Value cannot hold (Python reads inf).
        // Inspection reads no number, so there is no story to compare.
        Err(error) if error.to_string().starts_with("number out of range") => return,
        Err(error) => panic!("inspect accepted invalid JSON: {error}"),
    };
    match &value {
        Value::Array(items) => {
            assert!(inspection.is_batch());
            assert_eq!(items.len(), inspection.messages().len());
            for (item, message) in items.iter().zip(inspection.messages()) {
                agree(item, message);
            }
        }
        Value::Object(_) => agree(&value, inspection.single().expect("a single message")),
        other => panic!("inspect accepted a non-message: {other}"),
    }
    if let Err(refusal) = check_mcp_headers(&headers, &inspection) {
        assert!(matches!(refusal.code(), -32020 | -32600), "{refusal}");
    }
});

/// What a generic JSON parser reads must be what inspection read.
fn agree(item: &Value, message: &Message) {
    let method = item.get("method").and_then(Value::as_str);
    assert_eq!(
        method,
        message.method().map(|m| m.as_str()),
        "method of {item}"
    );
    match (item.get("id"), message.id()) {
        (None, None) => {}
        (Some(id), Some(raw)) => {
            let raw: Value = serde_json::from_str(raw.get()).expect("a raw id is JSON");
            assert_eq!(*id, raw, "id of {item}");
        }
        (seen, kept) => panic!("id of {item}: JSON has {seen:?}, inspection {kept:?}"),
    }
    let field = match method {
        Some("tools/call" | "prompts/get") => Some("name"),
        Some("resources/read") => Some("uri"),
        _ => None,
    };
    if let Some(field) = field {
        let name = item["params"].get(field).and_then(Value::as_str);
        assert_eq!(name, message.name(), "{field} of {item}");
    } else {
        assert_eq!(message.name(), None);
    }
}

fn split(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (headers, &data[end + 2..])
}
