//! The HTTP side of a document: public JSON with CORS for any origin and a short cache
//! lifetime, CORS preflights, and which methods a document answers.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, header};
use serde_json::Value;

use crate::body::ResponseBody;
use crate::cors;
use crate::errors::Refusal;

/// How long clients and caches may keep a document: short, so a changed config (or a
/// reloaded upstream) shows soon.
pub const CACHE_CONTROL: &str = "public, max-age=60";

/// The methods a document answers.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// What a request's method asks of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// GET or HEAD: the document (hyper leaves out the body for HEAD).
    Document,
    /// OPTIONS: a CORS preflight.
    Preflight,
}

/// Whether `method` may ask for a document.
pub fn ask(method: &Method) -> Result<Ask, Refusal> {
    match *method {
        Method::GET | Method::HEAD => Ok(Ask::Document),
        Method::OPTIONS => Ok(Ask::Preflight),
        _ => Err(Refusal::MethodNotAllowed { allow: ALLOW }),
    }
}

/// A document's response.
pub fn json(document: &Value) -> Response<ResponseBody> {
    let body = serde_json::to_vec(document).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The answer to a CORS preflight: any origin may GET the document, with the headers it asks
/// to send (documents are public and carry no credentials, so echoing them is safe).
pub fn preflight(request_headers: Option<&HeaderValue>) -> Response<ResponseBody> {
    cors::preflight_answer(HeaderValue::from_static("*"), ALLOW, request_headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn documents_are_public_and_briefly_cacheable() {
        let response = json(&serde_json::json!({"a": 1}));
        assert_eq!(response.status(), StatusCode::OK);
        let h = response.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=60");
    }

    #[test]
    fn preflights_allow_get_from_anywhere() {
        let asked = HeaderValue::from_static("mcp-protocol-version");
        let response = preflight(Some(&asked));
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], ALLOW);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "mcp-protocol-version"
        );
        assert!(
            preflight(None)
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
                .is_none()
        );
    }

    #[test]
    fn only_reads_and_preflights() {
        assert_eq!(ask(&Method::GET).unwrap(), Ask::Document);
        assert_eq!(ask(&Method::HEAD).unwrap(), Ask::Document);
        assert_eq!(ask(&Method::OPTIONS).unwrap(), Ask::Preflight);
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(
                matches!(ask(&m), Err(Refusal::MethodNotAllowed { .. })),
                "{m}"
            );
        }
    }
}
