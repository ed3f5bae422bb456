//! CORS for the MCP endpoint: a page served from an allowed origin (the entry point's public
//! URL or one of its `allowedOrigins`) may call the server from the browser, as browser MCP
//! clients do. Its preflight is answered here, before authentication, because a browser never
//! sends credentials with a preflight; the answers to its real requests (refusals included, so
//! the page can read a 401's `WWW-Authenticate` and start the OAuth flow) name the origin.
//! Any other origin never gets this far: the Origin check refuses it with 403.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::body::ResponseBody;

/// What a page may do: the methods of the Streamable HTTP transport.
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// The response headers an MCP client in a page needs to read.
const EXPOSE_HEADERS: &str = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Retry-After";
/// How long a browser may remember a preflight, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Whether a request is a CORS preflight (an OPTIONS that names the method to come).
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight from `origin`, already allowed: the transport's methods and the
/// headers the page asked to send (echoed: the origin is trusted, and the request that follows
/// still meets authentication and every policy).
pub fn preflight(origin: &HeaderValue, headers: &HeaderMap) -> Response<ResponseBody> {
    let mut response = preflight_answer(
        origin.clone(),
        ALLOW_METHODS,
        headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS),
    );
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// A 204 answering a preflight: `allow_origin` may use `allow_methods`, with the request
/// headers it asked for (`asked`, echoed).
pub fn preflight_answer(
    allow_origin: HeaderValue,
    allow_methods: &'static str,
    asked: Option<&HeaderValue>,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(allow_methods),
    );
    if let Some(asked) = asked {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    // The answer depends on the headers asked for, asked or not: a cache must not hand an
    // answer without Allow-Headers to a preflight that asks.
    h.append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Headers"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    response
}

/// Lets the page from `origin` read `response`. An answer that already allows some origin (a
/// public discovery document, or the upstream's own CORS) is left as it is.
pub fn allow(response: &mut Response<ResponseBody>, origin: &HeaderValue) {
    let h = response.headers_mut();
    if h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: HeaderValue = HeaderValue::from_static("http://localhost:6274");

    #[test]
    fn only_an_options_naming_a_method_is_a_preflight() {
        let mut asks = HeaderMap::new();
        asks.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        assert!(is_preflight(&Method::OPTIONS, &asks));
        assert!(!is_preflight(&Method::OPTIONS, &HeaderMap::new()));
        assert!(!is_preflight(&Method::POST, &asks));
    }

    #[test]
    fn a_preflight_names_the_origin_methods_and_asked_headers() {
        let mut asks = HeaderMap::new();
        asks.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("authorization, content-type, mcp-protocol-version"),
        );
        let response = preflight(&PAGE, &asks);
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], PAGE);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], ALLOW_METHODS);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, content-type, mcp-protocol-version"
        );
        // Without asked headers too, the answer varies by them and by the origin.
        let response = preflight(&PAGE, &HeaderMap::new());
        let vary: Vec<&str> = response
            .headers()
            .get_all(header::VARY)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(vary, ["Access-Control-Request-Headers", "Origin"]);
        assert!(
            !response
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_HEADERS)
        );
    }

    #[test]
    fn answers_expose_the_session_and_challenge_but_keep_an_existing_allowance() {
        let mut response = Response::new(ResponseBody::full(Bytes::new()));
        allow(&mut response, &PAGE);
        let h = response.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], PAGE);
        assert!(
            h[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("Mcp-Session-Id")
        );

        let mut public = Response::new(ResponseBody::full(Bytes::new()));
        public.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        allow(&mut public, &PAGE);
        assert_eq!(public.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(
            !public
                .headers()
                .contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS)
        );
    }
}
