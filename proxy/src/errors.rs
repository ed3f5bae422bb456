//! Every refusal and upstream failure, mapped to an HTTP status and a JSON-RPC error body.
//!
//! This is the one place that decides what a caller sees when the proxy answers instead of
//! the upstream: the status, the JSON-RPC code and message, and the request's id.

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use serde_json::value::RawValue;
use sluice_proxy_config::Duration;

use crate::body::ResponseBody;

/// JSON-RPC error codes the proxy answers with.
pub mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// The JSON is not an acceptable JSON-RPC message, or the HTTP request is refused.
    pub const INVALID_REQUEST: i32 = -32600;
    /// A method's params lack what the method needs (e.g. `tools/call` without a name).
    pub const INVALID_PARAMS: i32 = -32602;
    /// The upstream failed.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// A time limit passed (the MCP SDKs' `RequestTimeout`).
    pub const REQUEST_TIMEOUT: i32 = -32001;
    /// MCP 2026-07-28: a required `Mcp-*` header is missing or disagrees with the body.
    pub const HEADER_MISMATCH: i32 = -32020;
    /// The entry point's tool policy refuses the tool, resource or prompt (HTTP 403). MCP
    /// defines no such code; -32003 is from the implementation-defined server-error range and
    /// clear of the codes the MCP revisions use (-32001, -32002, -32020..-32022, -32042).
    pub const POLICY_DENIED: i32 = -32003;
    /// A rate limit is exhausted (HTTP 429 with `Retry-After`); same range and reasoning.
    pub const RATE_LIMITED: i32 = -32004;
}

/// Why the proxy answered a request itself.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The path is not under the entry point's prefix.
    #[error("no such path on this entry point")]
    NotFound,
    /// A present `Origin` is not one of the entry point's (DNS-rebinding protection).
    #[error("requests from this Origin are not allowed")]
    Origin,
    /// The request line and headers are larger than `limits.maxHeaderBytes`.
    #[error("the request headers exceed {max} bytes")]
    HeadersTooLarge { max: usize },
    /// The body is larger than the entry point's body limit.
    #[error("the request body exceeds {max} bytes")]
    BodyTooLarge { max: u64 },
    /// The body did not arrive within `timeouts.bodyRead`.
    #[error("the request body did not arrive within {0}")]
    BodyTimeout(Duration),
    /// The caller broke off or garbled the body.
    #[error("the request body could not be read")]
    BodyRead,
    /// The body is not JSON.
    #[error("parse error: the body is not valid JSON (line {line}, column {column})")]
    Parse { line: usize, column: usize },
    /// The JSON nests deeper than the proxy inspects.
    #[error("parse error: the JSON nests deeper than {0} levels")]
    TooDeep(usize),
    /// The JSON is not an acceptable JSON-RPC message.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The params lack what the method needs.
    #[error("invalid params: {0}")]
    InvalidParams(&'static str),
    /// `Mcp-Method` / `Mcp-Name` missing or disagreeing with the body.
    #[error("header mismatch: {0}")]
    HeaderMismatch(&'static str),
    /// `limits.maxInFlight` requests are already in flight.
    #[error("the proxy is at its limit of requests in flight; retry later")]
    Overloaded,
    /// The upstream could not be reached or failed.
    #[error("{0}")]
    Upstream(UpstreamFailure),
    /// The tool policy refuses a tool, resource or prompt the request names (for a batch: the
    /// first refused item; the whole batch is refused).
    #[error("{0}")]
    Denied(Denial),
    /// A rate limit of the entry point is exhausted for this caller.
    #[error("rate limit {rule} exceeded; retry in {retry_after} s")]
    RateLimited {
        rule: std::sync::Arc<str>,
        /// Whole seconds until a request would be admitted, rounded up.
        retry_after: u64,
    },
    /// A global rate limit cannot be checked (Redis unreachable) and `redis.failMode` is
    /// `closed`.
    #[error("rate limits cannot be checked right now; retry later")]
    LimiterUnavailable,
    /// The reply to a list request cannot be filtered for the caller, so it is not passed on.
    #[error("the upstream's list reply cannot be filtered: {0}")]
    ListUnfilterable(&'static str),
    /// The path answers other methods only (OAuth discovery documents: `allow`).
    #[error("method not allowed here; allowed: {allow}")]
    MethodNotAllowed { allow: &'static str },
    /// The upstream's OAuth metadata, fetched to serve a discovery document, is unusable.
    #[error("the upstream's OAuth metadata is unusable: {0}")]
    BadMetadata(String),
    /// The caller did not authenticate: 401 with the entry point's `WWW-Authenticate`, and
    /// `hint` (what to send) after the reason.
    #[error("{reason}{hint}")]
    Unauthenticated {
        reason: &'static str,
        challenge: HeaderValue,
        hint: &'static str,
    },
    /// The upstream refused the caller's bearer when asked whose it is (mode `oauth`): its
    /// status (401, or 403 for a missing scope) and its challenges, as the upstream sent them
    /// but for the metadata they name.
    #[error("the upstream refused this token ({status})")]
    TokenRefused {
        status: StatusCode,
        challenges: Vec<HeaderValue>,
    },
    /// The caller authenticated but may not use this entry point (or has no upstream token).
    #[error("{reason}")]
    Forbidden { reason: &'static str },
    /// The caller's credential cannot be checked now (its identity provider is down).
    #[error("the credential cannot be verified now; retry later")]
    AuthUnavailable,
    /// A legacy-transport POST names no session this caller holds on this entry point: unknown,
    /// ended, or another caller's (answered alike, so nobody learns another's session exists).
    #[error(
        "no such legacy session: it ended, or was never opened here (a session lives in the pod that opened it; with several replicas, legacy clients need session affinity)"
    )]
    LegacySessionUnknown,
    /// The caller already holds `legacySse.maxSessionsPerCaller` legacy sessions.
    #[error("this caller already holds {max} legacy sessions, the most allowed; close one first")]
    LegacyCallerLimit { max: usize },
    /// The sidecar already holds `legacySse.maxSessions` legacy sessions.
    #[error("the proxy holds {max} legacy sessions, the most allowed; retry later")]
    LegacySidecarLimit { max: usize },
    /// The upstream answered a legacy session's message with an HTTP error (its JSON-RPC
    /// error, where it sent one, travels instead).
    #[error("the upstream answered HTTP {0}")]
    UpstreamStatus(StatusCode),
}

/// Why the tool policy refused a request: the first item it refused.
#[derive(Debug)]
pub struct Denial {
    /// `tool`, `resource` or `prompt`.
    pub kind: &'static str,
    /// The name as sent, cut to a length worth echoing.
    pub name: Box<str>,
    /// The name is outside its alphabet (rather than denied by a pattern).
    pub invalid: bool,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind;
        if self.invalid {
            // Escaped, so a look-alike shows what it is (`pha_p\u{430}ss…`).
            write!(
                f,
                "\"{}\" is not a valid {kind} name; this entry point's policy refuses it",
                self.name.escape_default()
            )
        } else {
            write!(f, "{kind} {} is not allowed on this entry point", self.name)
        }
    }
}

/// How the upstream failed before its response head; also the `kind` label of
/// `sluice_upstream_errors_total` (which counts `body` for bodies broken off later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Nothing listens on the upstream port.
    ConnectRefused,
    /// Opening a connection took longer than `timeouts.upstreamConnect`.
    ConnectTimeout,
    /// Opening a connection failed otherwise.
    Connect,
    /// The connection broke before a complete response head arrived.
    Reset,
    /// No response head within `timeouts.upstreamFirstByte`.
    FirstByteTimeout,
    /// The upstream answered something that is not HTTP/1.1.
    Protocol,
}

impl UpstreamFailure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamFailure::ConnectRefused => "connect_refused",
            UpstreamFailure::ConnectTimeout => "connect_timeout",
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Reset => "reset",
            UpstreamFailure::FirstByteTimeout => "first_byte_timeout",
            UpstreamFailure::Protocol => "protocol",
        }
    }
}

impl fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpstreamFailure::ConnectRefused => "the upstream is not accepting connections",
            UpstreamFailure::ConnectTimeout => "connecting to the upstream timed out",
            UpstreamFailure::Connect => "cannot connect to the upstream",
            UpstreamFailure::Reset => "the upstream closed the connection without answering",
            UpstreamFailure::FirstByteTimeout => "the upstream did not answer in time",
            UpstreamFailure::Protocol => "the upstream sent an invalid response",
        })
    }
}

// === impl Refusal ===

impl Refusal {
    /// The HTTP status. Upstream failures: 503 when nothing reached the upstream (a retry is
    /// safe), 502 when the request may have reached it, 504 when it did not answer in time.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Origin => StatusCode::FORBIDDEN,
            Refusal::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::BodyRead
            | Refusal::Parse { .. }
            | Refusal::TooDeep(_)
            | Refusal::InvalidRequest(_)
            | Refusal::InvalidParams(_)
            | Refusal::HeaderMismatch(_) => StatusCode::BAD_REQUEST,
            Refusal::Overloaded | Refusal::LimiterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Denied(_) => StatusCode::FORBIDDEN,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::ListUnfilterable(_) => StatusCode::BAD_GATEWAY,
            Refusal::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BadMetadata(_) => StatusCode::BAD_GATEWAY,
            Refusal::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Refusal::TokenRefused { status, .. } => *status,
            Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
            Refusal::LegacySessionUnknown => StatusCode::NOT_FOUND,
            Refusal::LegacyCallerLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::LegacySidecarLimit { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::UpstreamStatus(_) => StatusCode::BAD_GATEWAY,
            Refusal::Upstream(f) => match f {
                UpstreamFailure::ConnectRefused
                | UpstreamFailure::ConnectTimeout
                | UpstreamFailure::Connect => StatusCode::SERVICE_UNAVAILABLE,
                UpstreamFailure::Reset | UpstreamFailure::Protocol => StatusCode::BAD_GATEWAY,
                UpstreamFailure::FirstByteTimeout => StatusCode::GATEWAY_TIMEOUT,
            },
        }
    }

    /// A short name of the refusal: a span's `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::Origin => "origin",
            Refusal::HeadersTooLarge { .. } => "headers_too_large",
            Refusal::BodyTooLarge { .. } => "body_too_large",
            Refusal::BodyTimeout(_) => "body_timeout",
            Refusal::BodyRead => "body_read",
            Refusal::Parse { .. } | Refusal::TooDeep(_) => "parse_error",
            Refusal::InvalidRequest(_) => "invalid_request",
            Refusal::InvalidParams(_) => "invalid_params",
            Refusal::HeaderMismatch(_) => "header_mismatch",
            Refusal::Overloaded => "overloaded",
            Refusal::Upstream(f) => f.label(),
            Refusal::Denied(_) => "denied",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::LimiterUnavailable => "limiter_unavailable",
            Refusal::ListUnfilterable(_) => "list_unfilterable",
            Refusal::MethodNotAllowed { .. } => "method_not_allowed",
            Refusal::BadMetadata(_) => "bad_metadata",
            Refusal::Unauthenticated { .. } => "unauthenticated",
            Refusal::TokenRefused { .. } => "token_refused",
            Refusal::Forbidden { .. } => "forbidden",
            Refusal::AuthUnavailable => "auth_unavailable",
            Refusal::LegacySessionUnknown => "legacy_session_unknown",
            Refusal::LegacyCallerLimit { .. } => "legacy_caller_limit",
            Refusal::LegacySidecarLimit { .. } => "legacy_sidecar_limit",
            Refusal::UpstreamStatus(_) => "upstream_status",
        }
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i32 {
        match self {
            Refusal::Parse { .. } | Refusal::TooDeep(_) => code::PARSE_ERROR,
            Refusal::InvalidParams(_) => code::INVALID_PARAMS,
            Refusal::HeaderMismatch(_) => code::HEADER_MISMATCH,
            Refusal::Denied(_) => code::POLICY_DENIED,
            Refusal::RateLimited { .. } => code::RATE_LIMITED,
            Refusal::LimiterUnavailable | Refusal::ListUnfilterable(_) => code::INTERNAL_ERROR,
            Refusal::BodyTimeout(_) | Refusal::Upstream(UpstreamFailure::FirstByteTimeout) => {
                code::REQUEST_TIMEOUT
            }
            Refusal::Overloaded | Refusal::Upstream(_) | Refusal::BadMetadata(_) => {
                code::INTERNAL_ERROR
            }
            Refusal::AuthUnavailable | Refusal::UpstreamStatus(_) => code::INTERNAL_ERROR,
            Refusal::LegacyCallerLimit { .. } => code::RATE_LIMITED,
            Refusal::LegacySidecarLimit { .. } => code::INTERNAL_ERROR,
            Refusal::Unauthenticated { .. }
            | Refusal::TokenRefused { .. }
            | Refusal::Forbidden { .. } => code::INVALID_REQUEST,
            Refusal::NotFound
            | Refusal::LegacySessionUnknown
            | Refusal::MethodNotAllowed { .. }
            | Refusal::Origin
            | Refusal::HeadersTooLarge { .. }
            | Refusal::BodyTooLarge { .. }
            | Refusal::BodyRead
            | Refusal::InvalidRequest(_) => code::INVALID_REQUEST,
        }
    }

    /// The answer: the status, `Content-Type: application/json` and a JSON-RPC error object
    /// carrying `id` (the request's id where known, else `null`).
    pub fn to_response(&self, id: Option<&RawValue>) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::full(error_body(self.code(), self, id)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Refusal::MethodNotAllowed { allow } = self {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Refusal::Unauthenticated { challenge, .. } = self {
            headers.insert(header::WWW_AUTHENTICATE, challenge.clone());
        }
        if let Refusal::TokenRefused { challenges, .. } = self {
            for challenge in challenges {
                headers.append(header::WWW_AUTHENTICATE, challenge.clone());
            }
        }
        if let Refusal::RateLimited { retry_after, .. } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        response
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    jsonrpc: &'static str,
    id: Option<&'a RawValue>,
    error: ErrorObject,
}

#[derive(Serialize)]
struct ErrorObject {
    code: i32,
    message: String,
}

/// A JSON-RPC error response.
pub fn error_body(code: i32, message: &dyn fmt::Display, id: Option<&RawValue>) -> Bytes {
    let body = ErrorBody {
        jsonrpc: "2.0",
        id,
        error: ErrorObject {
            code,
            message: message.to_string(),
        },
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => Bytes::from(bytes),
        // Serialising a string and a validated raw id cannot fail; stay well-formed anyway.
        Err(_) => Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_the_raw_id_and_escape_the_message() {
        let id = RawValue::from_string("\"a\\\"b\"".into()).unwrap();
        let body = error_body(-32600, &"say \"hi\"", Some(&id));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["error"]["code"], -32600);
        assert_eq!(v["error"]["message"], "say \"hi\"");
        let v: serde_json::Value = serde_json::from_slice(&error_body(1, &"x", None)).unwrap();
        assert!(v["id"].is_null());
    }

    #[test]
    fn denials_say_what_was_refused_and_show_look_alikes_escaped() {
        let d = Denial {
            kind: "tool",
            name: "pha_passphrase_get".into(),
            invalid: false,
        };
        assert_eq!(
            d.to_string(),
            "tool pha_passphrase_get is not allowed on this entry point"
        );
        let d = Denial {
            kind: "tool",
            name: "pha_p\u{0430}ss".into(),
            invalid: true,
        };
        assert_eq!(
            d.to_string(),
            "\"pha_p\\u{430}ss\" is not a valid tool name; this entry point's policy refuses it"
        );
    }

    #[test]
    fn upstream_failures_map_to_gateway_statuses() {
        let s = |f| Refusal::Upstream(f).status().as_u16();
        assert_eq!(s(UpstreamFailure::ConnectRefused), 503);
        assert_eq!(s(UpstreamFailure::ConnectTimeout), 503);
        assert_eq!(s(UpstreamFailure::Reset), 502);
        assert_eq!(s(UpstreamFailure::FirstByteTimeout), 504);
    }
}
