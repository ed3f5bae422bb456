//! `Mcp-Method` and `Mcp-Name` (MCP 2026-07-28) checked against the body, so that whatever
//! reads the headers (a policy, the upstream, a load balancer) and whatever reads the body
//! are told the same story. `Mcp-Param-*` headers are forwarded untouched.

use std::borrow::Cow;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::errors::Refusal;
use crate::request::Inspection;

/// The first revision whose requests must carry `Mcp-Method` (and `Mcp-Name` where it applies).
pub const HEADER_REVISION: &str = "2026-07-28";

static PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// Checks the headers of an inspected POST. Where present (any revision), `Mcp-Method` and
/// `Mcp-Name` must equal the body; from `HEADER_REVISION` on they are also required, and a
/// batch (which one header pair cannot describe) is refused.
pub fn check(headers: &HeaderMap, inspection: &Inspection) -> Result<(), Refusal> {
    let requires = match single(headers, &PROTOCOL_VERSION)? {
        Some(v) => requires_headers(v),
        None => false,
    };
    let method_header = single(headers, &MCP_METHOD)?;
    let name_header = single(headers, &MCP_NAME)?;
    let Some(message) = inspection.single() else {
        if requires {
            return Err(Refusal::InvalidRequest("MCP 2026-07-28 has no batches"));
        }
        if method_header.is_some() || name_header.is_some() {
            return Err(Refusal::HeaderMismatch(
                "Mcp-Method and Mcp-Name cannot describe a batch",
            ));
        }
        return Ok(());
    };
    match (message.method(), method_header) {
        (Some(m), Some(h)) if h.as_bytes() == m.as_str().as_bytes() => {}
        (Some(_), Some(_)) => {
            return Err(Refusal::HeaderMismatch(
                "Mcp-Method does not match the body's method",
            ));
        }
        (None, Some(_)) => {
            return Err(Refusal::HeaderMismatch(
                "Mcp-Method sent with a message that has no method",
            ));
        }
        (Some(_), None) if requires => {
            return Err(Refusal::HeaderMismatch("the Mcp-Method header is required"));
        }
        _ => {}
    }
    match (message.name(), name_header) {
        (Some(name), Some(h)) if decode(h).as_deref() == Some(name) => Ok(()),
        (Some(_), Some(_)) => Err(Refusal::HeaderMismatch("Mcp-Name does not match the body")),
        (Some(_), None) if requires => Err(Refusal::HeaderMismatch(
            "the Mcp-Name header is required for tools/call, resources/read and prompts/get",
        )),
        (None, Some(_)) => Err(Refusal::HeaderMismatch(
            "Mcp-Name sent for a method that names nothing",
        )),
        _ => Ok(()),
    }
}

/// The header's one value; a repeated header is ambiguous and refused.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Refusal::HeaderMismatch(
            "an MCP header appears more than once",
        ));
    }
    Ok(first)
}

/// Whether a revision (`YYYY-MM-DD`) is [`HEADER_REVISION`] or later; dates compare as text.
fn requires_headers(version: &HeaderValue) -> bool {
    let v = version.as_bytes();
    let date_shaped = v.len() == 10
        && v.iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    date_shaped && v >= HEADER_REVISION.as_bytes()
}

/// A header value as text; `=?base64?…?=` (how MCP carries non-ASCII in headers) decoded.
fn decode(value: &HeaderValue) -> Option<Cow<'_, str>> {
    let text = value.to_str().ok()?;
    match text
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
        None => Some(Cow::Borrowed(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::inspect;

    const CALL: &str =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pha_task_get"}}"#;
    const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

    fn run(body: &str, pairs: &[(&str, &str)]) -> Result<(), i32> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        check(&h, &inspect(body.as_bytes()).unwrap()).map_err(|e| e.code())
    }

    const V26: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

    #[test]
    fn modern_requests_need_matching_headers() {
        assert_eq!(
            run(
                CALL,
                &[
                    V26,
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "pha_task_get")
                ]
            ),
            Ok(())
        );
        assert_eq!(run(CALL, &[V26, ("mcp-method", "tools/call")]), Err(-32020));
        assert_eq!(run(CALL, &[V26, ("mcp-name", "pha_task_get")]), Err(-32020));
        assert_eq!(
            run(
                CALL,
                &[
                    V26,
                    ("mcp-method", "tools/list"),
                    ("mcp-name", "pha_task_get")
                ]
            ),
            Err(-32020)
        );
        assert_eq!(
            run(
                CALL,
                &[
                    V26,
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "pha_user_whoami")
                ]
            ),
            Err(-32020)
        );
        assert_eq!(run(LIST, &[V26, ("mcp-method", "tools/list")]), Ok(()));
        assert_eq!(
            run(
                LIST,
                &[V26, ("mcp-method", "tools/list"), ("mcp-name", "x")]
            ),
            Err(-32020)
        );
        assert_eq!(
            run(LIST, &[("mcp-protocol-version", "2027-01-01")]),
            Err(-32020)
        );
    }

    #[test]
    fn legacy_requests_may_omit_headers_but_not_contradict_the_body() {
        assert_eq!(run(CALL, &[]), Ok(()));
        assert_eq!(run(CALL, &[("mcp-protocol-version", "2025-06-18")]), Ok(()));
        assert_eq!(
            run(CALL, &[("mcp-name", "pha_passphrase_get")]),
            Err(-32020)
        );
        assert_eq!(
            run(
                CALL,
                &[("mcp-method", "tools/call"), ("mcp-method", "tools/call")]
            ),
            Err(-32020)
        );
    }

    #[test]
    fn base64_names_and_batches() {
        let enc = format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode("pha_task_get")
        );
        assert_eq!(
            run(
                CALL,
                &[V26, ("mcp-method", "tools/call"), ("mcp-name", &enc)]
            ),
            Ok(())
        );
        let batch = format!("[{CALL},{LIST}]");
        assert_eq!(run(&batch, &[]), Ok(()));
        assert_eq!(run(&batch, &[V26]), Err(-32600));
        assert_eq!(run(&batch, &[("mcp-method", "tools/call")]), Err(-32020));
    }
}
