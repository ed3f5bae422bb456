//! The request path, top to bottom: every step a caller's request goes through, in order.
//!
//! Each step either passes the request on or refuses it with a [`Refusal`]; refusals become
//! responses in one place (errors.rs) carrying the request's JSON-RPC id once it is known.
//! Later policies (authentication, tool policy, rate limits) are steps here that read and
//! fill the [`RequestContext`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, Uri, header};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde_json::value::RawValue;

use crate::access;
use crate::body::ResponseBody;
use crate::conn::Activity;
use crate::errors::Refusal;
use crate::identity::Identity;
use crate::inspect::{self, Inspection};
use crate::state::{Entry, State};
use crate::{
    audit, cors, discovery, forward, headers, host, limits, mcp_headers, methods, policy, ratelimit,
};

/// A caller connection, as the request path needs it.
pub struct Conn {
    pub peer: SocketAddr,
    /// `peer`'s IP, ready for `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    pub activity: Arc<Activity>,
    /// The listener's entry point; swapped by reloads, read once per request.
    pub entry: Arc<ArcSwap<Entry>>,
    pub state: Arc<State>,
}

/// What the steps of one request learn and share.
pub struct RequestContext {
    /// The entry point as it was when the request arrived.
    pub entry: Arc<Entry>,
    pub started: Instant,
    pub method: Method,
    /// The URI as the caller sent it (a cheap clone of shared bytes).
    pub uri: Uri,
    /// What the body says (inspected POSTs only).
    pub inspection: Option<Inspection>,
    /// Who is calling, once authentication established it.
    pub identity: Option<Identity>,
    /// The allowed Origin of a browser page calling, once the Origin check passed it.
    pub page_origin: Option<HeaderValue>,
    /// Whether the request's body was read whole: until then the connection cannot carry
    /// another request.
    pub body_read: bool,
}

impl RequestContext {
    /// The id refusals answer with.
    pub fn reply_id(&self) -> Option<&RawValue> {
        self.inspection.as_ref().and_then(Inspection::reply_id)
    }
}

/// POST paths of the upstream's OAuth endpoints (Conduit's OAuth-proxy mode): forms and
/// registrations, not JSON-RPC. Compared after percent-decoding, as the upstream routes; every
/// other POST is inspected, so no spelling of the MCP path escapes inspection.
const PLAIN_POST_PATHS: &[&str] = &[
    "/token",
    "/register",
    "/authorize",
    "/consent",
    "/auth/callback",
    "/revoke",
];

/// Serves one request.
pub async fn serve(req: Request<Incoming>, conn: &Conn) -> Response<ResponseBody> {
    let busy = conn.activity.begin();
    let mut cx = RequestContext {
        entry: conn.entry.load_full(),
        started: Instant::now(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        inspection: None,
        identity: None,
        page_origin: None,
        body_read: false,
    };
    let mut response = match handle(req, conn, &mut cx).await {
        Ok(response) => {
            audit::record(&cx, None, response.status());
            response
        }
        Err(refusal) => {
            if let Refusal::Upstream(failure) = &refusal {
                access::upstream_failed(&conn.state, &cx, *failure);
            }
            audit::record(&cx, Some(&refusal), refusal.status());
            let mut response = refusal.to_response(cx.reply_id());
            // An unread body is still on the connection, and a caller refused by
            // authentication has no business keeping one open: close it, and say so, or a
            // client sends its next request on a connection about to close.
            if !cx.body_read || matches!(refusal, Refusal::TokenRefused { .. }) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    if let Some(origin) = &cx.page_origin {
        cors::allow(&mut response, origin);
    }
    access::record(&conn.state, &cx, &response);
    response.body_mut().guards_mut().busy = Some(busy);
    response
}

async fn handle(
    mut req: Request<Incoming>,
    conn: &Conn,
    cx: &mut RequestContext,
) -> Result<Response<ResponseBody>, Refusal> {
    let entry = cx.entry.clone();
    let config = &entry.snapshot.config;

    // Limits: a place among the requests in flight (held until the response ends), a head of
    // bounded size.
    let permit = limits::admit(
        &conn.state.in_flight,
        config.limits.max_in_flight,
        &entry.in_flight,
    )?;
    limits::check_head(&req, config.limits.max_header_bytes)?;
    // MCP's methods only, and a body on POST only: nothing else is inspected.
    methods::check(&req)?;
    // One Host, agreeing with the target: what X-Forwarded-Host and redirects are built from,
    // and the URL an entry point without a public one is known by.
    host::check(&req)?;
    // Hop-by-hop headers go now, before anything reads the headers; a Connection header may
    // not name one the proxy checks or sets (it would vanish after the check, or the setting).
    headers::check_connection(req.headers())?;
    headers::strip_hop_by_hop(req.headers_mut());
    let host = forward::caller_host(req.headers(), req.uri());
    let via = discovery::Via::of(&entry, host.as_ref());

    // OAuth discovery documents are public: answered here, before any check. Ambiguous paths
    // and unknown well-known paths end here too.
    if let Some(answer) = discovery::answer(&req, &entry, via).await {
        return answer;
    }

    // DNS rebinding: a browser page may only call from an allowed Origin.
    cx.page_origin = entry.origins.check(req.headers())?;

    // The upstream path: prefix stripped, `/mcp/` normalised.
    let path = entry
        .prefix
        .upstream_path(req.uri())
        .ok_or(Refusal::NotFound)?;

    // A page's CORS preflight carries no credentials: answered here, before authentication.
    if let Some(origin) = &cx.page_origin
        && cors::is_preflight(req.method(), req.headers())
    {
        return Ok(cors::preflight(origin, req.headers()));
    }

    // Authentication: who is calling, as far as the request head tells. A refused caller goes
    // no further: its body is never read and nothing reaches the upstream.
    let caller = entry
        .auth
        .authenticate(req.headers(), path.path(), via)
        .await?;

    // The body, bounded in size and time; then what it says, for MCP POSTs.
    let (mut parts, body) = req.into_parts();
    let body = limits::read_body(body, entry.max_body, config.timeouts.body_read).await?;
    cx.body_read = true;
    // The OAuth flow's form posts (mode oauth only) are not JSON-RPC; every other POST is.
    if parts.method == Method::POST && !(entry.auth.is_oauth() && is_plain_post(path.path())) {
        let inspection = cx.inspection.insert(inspect::inspect(&body)?);
        mcp_headers::check(&parts.headers, inspection)?;
    }

    // Identity: in mode oauth, the upstream names the user behind the bearer (asked now, so a
    // refusal carries the request's id). Then the caller's credentials are swapped for what
    // the upstream may see.
    cx.identity = entry
        .auth
        .identify(&caller, &parts.headers, &entry.snapshot.upstream, via)
        .await?;
    entry
        .credentials
        .apply(&mut parts.headers, cx.identity.as_ref())
        .map_err(|f| entry.auth.refuse(f, via))?;

    // Tool policy: every tool, resource and prompt named must be allowed for this caller (a
    // batch is refused whole); then the rate limits count what is left.
    policy::authorize(cx, &conn.state.metrics)?;
    ratelimit::check(cx, conn.peer.ip()).await?;
    // List replies will show this caller only what it may use.
    let list_filter = policy::list_filter(cx, &conn.state.metrics);
    if let Some(filter) = &list_filter {
        filter.prepare_request(&mut parts.headers);
    }

    // Conduit issues tokens for its own resource URL only: an authorization request naming
    // this entry point's is translated.
    let path = discovery::authorization_request(&parts.method, path, &entry, via).await?;

    // Forward, and stream the answer back.
    let upstream_req = forward::request(parts, body, path, host.as_ref(), &conn.peer_ip, &entry);
    let upstream_resp = entry
        .snapshot
        .upstream
        .send(upstream_req)
        .await
        .map_err(Refusal::Upstream)?;
    if upstream_resp.status() == http::StatusCode::UNAUTHORIZED {
        entry.auth.upstream_refused(&caller).await;
    }
    let mut response = forward::response(upstream_resp, host.as_ref(), &entry);
    // Upstream challenges name this entry point's metadata, whatever the upstream wrote.
    discovery::rewrite_challenge(&mut response, &entry, via);
    if let Some(filter) = list_filter {
        response = filter.apply(response).await?;
    }
    response.body_mut().guards_mut().permit = Some(permit);
    Ok(response)
}

fn is_plain_post(path: &str) -> bool {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    PLAIN_POST_PATHS.contains(&decoded.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_oauth_paths_skip_inspection() {
        assert!(is_plain_post("/token"));
        assert!(is_plain_post("/%74oken"));
        assert!(!is_plain_post("/mcp"));
        assert!(!is_plain_post("/token/"));
        assert!(!is_plain_post("/token/../mcp"));
        assert!(!is_plain_post("/%6dcp"));
    }
}
