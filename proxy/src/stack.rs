//! The request path, top to bottom: every step a caller's request goes through, in order.
//!
//! Each step either passes the request on or refuses it with a [`Refusal`]; refusals become
//! responses in one place (errors.rs) carrying the request's JSON-RPC id once it is known.
//! Every step is a method of what the entry point compiled (`entry.auth`, `entry.policy`, ...)
//! or a function of the request's parts, and is handed only the data it reads; this function
//! is the one place that knows their order, and what they learn goes in the
//! [`RequestContext`].

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use rustls::pki_types::CertificateDer;
use sluice_otlp::Span;
use tokio::time::Instant;

use crate::activity::Activity;
use crate::auth::Caller;
use crate::body::{AtEnd, ResponseBody};
use crate::errors::Refusal;
use crate::metrics::GaugeGuard;
use crate::policy::ListFilter;
use crate::request::{Inspection, RequestContext};
use crate::request_id::X_REQUEST_ID;
use crate::state::{Entry, State};
use crate::{
    access, audit, cors, discovery, forward, headers, host, in_flight, inspect, legacy, limits,
    mcp_headers, methods, trace,
};

/// A caller connection, as the request path needs it.
pub struct Conn {
    pub peer: SocketAddr,
    /// `peer`'s IP (canonical: IPv4-mapped as IPv4), ready for `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    pub activity: Arc<Activity>,
    /// The certificate the client presented in the TLS handshake, verified against the entry
    /// point's client CA (mutual TLS); what mode `clientCertificate` names the caller by.
    pub client_certificate: Option<CertificateDer<'static>>,
    /// The listener's entry point; swapped by reloads, read once per request.
    pub entry: Arc<ArcSwap<Entry>>,
    pub state: Arc<State>,
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
pub async fn serve(mut req: Request<Incoming>, conn: &Conn) -> Response<ResponseBody> {
    let busy = conn.activity.begin();
    let entry = conn.entry.load_full();
    // Who is calling, before anything is logged or counted; an untrusted peer's
    // X-Forwarded-For goes now, so nothing after reads or forwards what it claimed.
    let client = entry
        .trusted_proxies
        .client(conn.peer.ip(), req.headers_mut());
    let request_id = conn.state.request_ids.assign(req.headers_mut());
    let mut cx = RequestContext {
        entry_point: entry.name.clone(),
        started: Instant::now(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        client,
        request_id,
        inspection: None,
        identity: None,
        page_origin: None,
        span: None,
        body_read: false,
    };
    cx.span = trace::start(conn.state.tracer.as_ref(), req.headers(), &cx);
    let metrics = &conn.state.metrics;
    // Once a legacy session's owner is known, refusals travel on its stream.
    let mut on_stream = None;
    let mut response = match handle(req, conn, &entry, &mut cx, &mut on_stream).await {
        Ok(response) => {
            audit::record(&conn.state.audit_events, &cx, None, response.status());
            trace::finish(&mut cx, response.status(), None);
            response
        }
        Err(refusal) => {
            if let Refusal::Upstream(failure) = &refusal {
                access::upstream_failed(metrics, &cx.entry_point, *failure);
            }
            audit::record(
                &conn.state.audit_events,
                &cx,
                Some(&refusal),
                refusal.status(),
            );
            trace::finish(&mut cx, refusal.status(), Some(&refusal));
            if let Some(session) = on_stream {
                // The legacy transport's client reads answers on its stream; an error status
                // on the POST would end its session.
                session.refuse(cx.reply_id(), &refusal);
                legacy::accepted()
            } else {
                let mut response = refusal.to_response(cx.reply_id());
                // An unread body is still on the connection, and a caller refused by
                // authentication has no business keeping one open: close it, and say so, or
                // a client sends its next request on a connection about to close.
                if !cx.body_read || matches!(refusal, Refusal::TokenRefused { .. }) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        }
    };
    if let Some(origin) = &cx.page_origin {
        cors::allow(&mut response, origin);
    }
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), cx.request_id.clone());
    let status = response.status();
    access::count(metrics, &cx, status);
    response.body_mut().guards_mut().busy = Some(busy);
    if cx.method == Method::POST && !response.body().is_made_here() {
        // An MCP answer often streams (Conduit's always do): its time is the stream's, so its
        // latency, access line and span wait for the answer's end.
        response.body_mut().guards_mut().at_end = Some(Box::new(Answering {
            cx,
            state: conn.state.clone(),
            status,
        }));
    } else {
        access::answered(metrics, &cx, status);
    }
    response
}

/// A POST whose answer comes from the upstream, until that answer is over: then its latency
/// is observed and its access line written, and its span (in `cx`) ends.
struct Answering {
    cx: RequestContext,
    state: Arc<State>,
    status: http::StatusCode,
}

impl std::fmt::Debug for Answering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answering")
            .field("request_id", &self.cx.request_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl AtEnd for Answering {
    fn broken_off(&mut self) {
        trace::broken_off(&mut self.cx);
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        access::answered(&self.state.metrics, &self.cx, self.status);
    }
}

async fn handle(
    mut req: Request<Incoming>,
    conn: &Conn,
    entry: &Arc<Entry>,
    cx: &mut RequestContext,
    on_stream: &mut Option<Arc<legacy::Session>>,
) -> Result<Response<ResponseBody>, Refusal> {
    let config = &entry.snapshot.config;
    let metrics = &conn.state.metrics;
    let forwarding = &entry.forwarding;

    // Limits: a place among the requests in flight (held until the response ends), a head of
    // bounded size.
    let permit = in_flight::admit(
        &conn.state.in_flight,
        config.limits.max_in_flight,
        &entry.in_flight,
    )
    .ok_or(Refusal::Overloaded)?;
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
    let via = discovery::Via::of(&forwarding.proto, host.as_ref());

    // OAuth discovery documents are public: answered here, before any check. Ambiguous paths
    // and unknown well-known paths end here too.
    if let Some(answer) = entry.discovery.answer(&req, via).await {
        return answer;
    }

    // DNS rebinding: a browser page may only call from an allowed Origin.
    cx.page_origin = entry.origins.check(req.headers())?;

    // The upstream path: prefix stripped, `/mcp/` normalised.
    let path = forwarding
        .prefix
        .upstream_path(req.uri())
        .ok_or(Refusal::NotFound)?;
    // The legacy HTTP+SSE transport's two paths, which the sidecar serves itself.
    let legacy_route = config
        .legacy_sse
        .enabled
        .then(|| legacy::route(req.method(), &path))
        .flatten();

    // A page's CORS preflight carries no credentials: answered here, before authentication.
    if let Some(origin) = &cx.page_origin
        && cors::is_preflight(req.method(), req.headers())
    {
        return Ok(cors::preflight(origin, req.headers()));
    }

    // Authentication: who is calling, as far as the request head (or the connection's client
    // certificate) tells. A refused caller goes no further: its body is never read and nothing
    // reaches the upstream.
    let caller = entry
        .auth
        .authenticate(
            req.headers(),
            conn.client_certificate.as_ref(),
            path.path(),
            via,
        )
        .await?;
    trace::passed(&mut cx.span, "sluice.authenticate");

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
        .identify(&caller, &parts.headers, &forwarding.upstream, via)
        .await?;
    entry
        .credentials
        .apply(&mut parts.headers, cx.identity.as_ref())
        .map_err(|f| entry.auth.refuse(f, via))?;

    // A legacy client opens its session here, or is known to own the one it posts to.
    let owner = || legacy::Owner::of(cx.identity.as_ref(), entry.auth.names_callers(), cx.client);
    match legacy_route {
        Some(legacy::Route::Open) => {
            let mut response = conn.state.legacy.open(
                &config.legacy_sse,
                forwarding.keep_alive,
                &entry.name,
                owner(),
                forwarding.prefix.as_str(),
            )?;
            let guards = response.body_mut().guards_mut();
            guards.permit = Some(permit);
            guards.stream = Some(GaugeGuard::new(&forwarding.streams));
            return Ok(response);
        }
        Some(legacy::Route::Message(id)) => {
            let session = conn.state.legacy.find(id, &entry.name, &owner())?;
            session.touch();
            *on_stream = Some(session);
        }
        None => {}
    }

    // Tool policy: every tool, resource and prompt named must be allowed for this caller (a
    // batch is refused whole); then the rate limits count what is left.
    let (inspection, identity) = (cx.inspection.as_ref(), cx.identity.as_ref());
    entry.policy.authorize(inspection, identity, metrics)?;
    trace::passed(&mut cx.span, "sluice.authorize");
    entry
        .rate_limits
        .check(inspection, identity, cx.client)
        .await?;
    trace::passed(&mut cx.span, "sluice.rate_limit");
    // List replies will show this caller only what it may use.
    let list_filter = entry
        .policy
        .list_filter(&cx.method, inspection, identity, metrics);
    if let Some(filter) = &list_filter {
        filter.prepare_request(&mut parts.headers);
    }
    if let Some(session) = on_stream.as_ref() {
        return relay_legacy(
            session,
            parts,
            body,
            conn,
            entry,
            cx,
            caller,
            host,
            list_filter,
        )
        .await;
    }

    // Conduit issues tokens for its own resource URL only: an authorization request naming
    // this entry point's is translated.
    let path = entry
        .discovery
        .authorization_request(&parts.method, path, via)
        .await?;

    // Forward, and stream the answer back.
    let upstream_req = forwarding.request(parts, body, path, host.as_ref(), &conn.peer_ip);
    let span = trace::upstream_span(conn.state.tracer.as_ref(), cx);
    let mut response = exchange(
        entry,
        upstream_req,
        span,
        &caller,
        host.as_ref(),
        list_filter,
    )
    .await?;
    response.body_mut().guards_mut().permit = Some(permit);
    Ok(response)
}

/// The upstream's answer to `request`, as the caller gets it: a refused bearer forgotten,
/// challenges naming this entry point's metadata, list replies filtered. `span`, the upstream
/// call's, is passed on in `traceparent` and ends with a POST's answer, else with the head.
async fn exchange(
    entry: &Entry,
    mut request: Request<Full<Bytes>>,
    mut span: Option<Span>,
    caller: &Caller,
    host: Option<&HeaderValue>,
    list_filter: Option<ListFilter>,
) -> Result<Response<ResponseBody>, Refusal> {
    let forwarding = &entry.forwarding;
    if let Some(span) = &span {
        trace::inject(span, request.headers_mut());
    }
    // A POST's answer (a call's result) is what the span times; a GET stream can last for
    // hours, so its span ends with the head, as the request's does.
    let span_lasts_the_answer = request.method() == Method::POST;
    let sent = forwarding
        .upstream
        .send(request)
        .await
        .map_err(Refusal::Upstream);
    if let Some(span) = &mut span {
        trace::upstream_answered(span, sent.as_ref().map(Response::status));
    }
    let upstream_resp = sent?;
    if upstream_resp.status() == http::StatusCode::UNAUTHORIZED {
        entry.auth.upstream_refused(caller).await;
    }
    let mut response = forwarding.response(upstream_resp, host);
    // Upstream challenges name this entry point's metadata, whatever the upstream wrote.
    entry
        .discovery
        .rewrite_challenge(&mut response, discovery::Via::of(&forwarding.proto, host));
    if let Some(filter) = list_filter {
        response = filter.apply(response).await?;
    }
    if span_lasts_the_answer {
        response.body_mut().guards_mut().upstream_span = span;
    }
    Ok(response)
}

/// A legacy session's message that passed every check: answered 202 at once, sent on in the
/// background (after the session's `initialize`, in the upstream session it opened), its
/// answer's messages on the session's stream.
#[allow(clippy::too_many_arguments)]
async fn relay_legacy(
    session: &Arc<legacy::Session>,
    mut parts: Parts,
    body: Bytes,
    conn: &Conn,
    entry: &Arc<Entry>,
    cx: &RequestContext,
    caller: Caller,
    host: Option<HeaderValue>,
    list_filter: Option<ListFilter>,
) -> Result<Response<ResponseBody>, Refusal> {
    // A place among the session's exchanges, before its turn: a refusal keeps no turn.
    let permit = session.exchange_permit()?;
    let method = cx
        .inspection
        .as_ref()
        .and_then(Inspection::single)
        .and_then(|m| m.method())
        .map(|m| m.as_str());
    let turn = session.turn(method == Some("initialize")).await;
    legacy::prepare_request(&mut parts.headers, &turn);
    let forwarding = &entry.forwarding;
    let request = forwarding.request(
        parts,
        body,
        PathAndQuery::from_static(legacy::UPSTREAM_PATH),
        host.as_ref(),
        &conn.peer_ip,
    );
    session.remember(&request, &forwarding.upstream);
    let span = trace::upstream_span(conn.state.tracer.as_ref(), cx);
    // Once the client said it is initialized, the upstream may send on its own stream.
    let then_listen = (method == Some("notifications/initialized")).then(|| {
        entry.policy.list_filter(
            &Method::GET,
            None,
            cx.identity.as_ref(),
            &conn.state.metrics,
        )
    });
    let (entry, state) = (entry.clone(), conn.state.clone());
    session.relay(legacy::Exchange {
        turn,
        permit,
        reply_id: cx.reply_id().map(ToOwned::to_owned),
        then_listen,
        response: async move {
            let response =
                exchange(&entry, request, span, &caller, host.as_ref(), list_filter).await;
            if let Err(Refusal::Upstream(failure)) = &response {
                access::upstream_failed(&state.metrics, &entry.name, *failure);
            }
            response
        },
    });
    Ok(legacy::accepted())
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
