//! The methods an entry point answers: the ones MCP uses (POST for messages, GET for a server
//! stream, DELETE to end a session) and the ones browsers and discovery need (OPTIONS, HEAD).
//! Only POST carries a body: a body on any other method is refused, since nothing inspects it
//! — no tool policy, no rate limit — and an upstream might act on it anyway.

use http::{Method, Request};
use http_body::Body;

use crate::errors::Refusal;

/// What an entry point answers to.
pub const ALLOW: &str = "POST, GET, DELETE, OPTIONS, HEAD";

/// Refuses a method MCP does not use (405), and a body on any method but POST (400).
pub fn check<B: Body>(req: &Request<B>) -> Result<(), Refusal> {
    match *req.method() {
        Method::POST => Ok(()),
        Method::GET | Method::DELETE | Method::OPTIONS | Method::HEAD => {
            if req.body().is_end_stream() {
                Ok(())
            } else {
                Err(Refusal::InvalidRequest(
                    "only POST requests may carry a body",
                ))
            }
        }
        _ => Err(Refusal::MethodNotAllowed { allow: ALLOW }),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    use super::*;

    fn with_body(method: &str) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri("/mcp")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    }

    fn without_body(method: &str) -> Request<Empty<Bytes>> {
        Request::builder()
            .method(method)
            .uri("/mcp")
            .body(Empty::new())
            .unwrap()
    }

    #[test]
    fn only_post_carries_a_body_and_only_mcps_methods_are_answered() {
        assert!(check(&with_body("POST")).is_ok());
        for method in ["GET", "DELETE", "OPTIONS", "HEAD"] {
            assert!(check(&without_body(method)).is_ok(), "{method}");
            assert_eq!(
                check(&with_body(method)).unwrap_err().status(),
                400,
                "{method}"
            );
        }
        for method in ["PUT", "PATCH", "TRACE", "CONNECT", "PROPFIND"] {
            let refusal = check(&without_body(method)).unwrap_err();
            assert_eq!(refusal.status(), 405, "{method}");
        }
    }
}
