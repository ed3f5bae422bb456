//! Fetching the upstream's own metadata (OAuth mode): a GET to a fixed upstream path, bounded
//! in size and time, whose answer must be a 200 with JSON. Only paths built here are ever
//! asked for; nothing of the caller's request reaches the upstream this way.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use super::paths::{AUTHORIZATION_SERVER, PROTECTED_RESOURCE};
use super::public::Public;
use crate::errors::Refusal;
use crate::forward::Upstream;

/// Largest metadata document accepted from the upstream (FastMCP's are under 1 KiB).
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// The upstream's authorization-server metadata: FastMCP serves it at its root only, whatever
/// its server URL's path.
pub async fn authorization_server(
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Value, Refusal> {
    fetch(upstream, AUTHORIZATION_SERVER.to_owned(), timeout).await
}

/// The upstream's protected-resource metadata: at the well-known location of its own MCP
/// endpoint, `/.well-known/oauth-protected-resource{its path}/mcp`.
pub async fn protected_resource(
    upstream: &Upstream,
    upstream_base: &Public,
    timeout: Duration,
) -> Result<Value, Refusal> {
    let path = format!("{PROTECTED_RESOURCE}{}/mcp", upstream_base.path());
    fetch(upstream, path, timeout).await
}

async fn fetch(upstream: &Upstream, path: String, timeout: Duration) -> Result<Value, Refusal> {
    let bad = |why: String| Refusal::BadMetadata(format!("{path}: {why}"));
    let authority = upstream.authority();
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{authority}{path}"))
        .header(header::HOST, authority)
        .header(header::ACCEPT, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| bad(format!("cannot build the request: {e}")))?;
    let response = upstream.send(request).await.map_err(Refusal::Upstream)?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(bad(format!("the upstream answered {status}")));
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES);
    let bytes = match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => return Err(bad(format!("reading the body failed: {e}"))),
        Err(_) => return Err(bad("the body did not arrive in time".into())),
    };
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))
}
