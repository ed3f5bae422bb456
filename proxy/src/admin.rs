//! The admin listener: `/healthz` (the process is alive), `/readyz` (the config is loaded, the
//! upstream answers MCP, no shutdown under way), `/metrics`, and what the sidecar knows of
//! its upstream: `/upstream` (what the background check learned, as JSON) and
//! `/upstream/livez` (whether the upstream answers MCP: Conduit's own startup and liveness
//! probe, since its image has no shell and serves no health route); `/events`, the audit
//! events as they happen (server-sent events, audit_events.rs).
//!
//! A rejected config file does not fail readiness: the last good config keeps serving, and
//! failing every pod of a Deployment over one bad ConfigMap would turn a typo into an outage.
//! It shows in the `/readyz` body and in `sluice_config_rejected` instead.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::audit_events::{EventsError, Filter};
use crate::body::ResponseBody;
use crate::sse::KeepAlive;
use crate::state::State;

/// Keep-alive comments on a quiet `/events` stream when `streaming.keepAlive` sets none.
const EVENTS_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Serves one admin request.
pub async fn serve<B>(req: Request<B>, state: &State) -> Response<ResponseBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => readiness(state),
        "/metrics" => metrics(state),
        "/upstream" => upstream(state),
        "/upstream/livez" => upstream_liveness(state),
        "/events" if state.snapshot.load().config.admin.audit_events => {
            events(req.uri().query(), state)
        }
        "/events" => text(
            StatusCode::NOT_FOUND,
            "the audit event stream is off (admin.auditEvents; on an McpServer, spec.proxy.auditEvents)\n"
                .into(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz, /metrics, /upstream, /upstream/livez or /events\n"
                .into(),
        ),
    }
}

fn readiness(state: &State) -> Response<ResponseBody> {
    let mut problems = Vec::new();
    if state.draining.load(Ordering::Relaxed) {
        problems.push("shutting down".to_owned());
    }
    if let Some(problem) = state.upstream_check.problem() {
        problems.push(problem);
    }
    let mut body = if problems.is_empty() {
        "ready\n".to_owned()
    } else {
        String::new()
    };
    for p in &problems {
        let _ = writeln!(body, "not ready: {p}");
    }
    {
        let status = state.status();
        if let Some(reason) = &status.config_rejected {
            let _ = writeln!(
                body,
                "config file rejected, serving the last good config: {reason}"
            );
        }
        for e in status.listen_errors.iter().chain(&status.tls_errors) {
            let _ = writeln!(body, "warning: {e}");
        }
    }
    // Secrets authentication reads (bad ones keep their last good version, as configs do).
    for p in state.auth.problems() {
        let _ = writeln!(body, "warning: {p}");
    }
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(code, body)
}

/// The upstream's liveness, for Conduit's probes: only whether it answers MCP. Draining is
/// left out on purpose: failing here during the sidecar's shutdown would restart Conduit.
fn upstream_liveness(state: &State) -> Response<ResponseBody> {
    match state.upstream_check.problem() {
        None => text(StatusCode::OK, "upstream answers MCP\n".into()),
        Some(problem) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not answering: {problem}\n"),
        ),
    }
}

fn upstream(state: &State) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from(
        state.upstream_check.report_json() + "\n",
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The audit events the query's filter lets through, from now on, with keep-alive comments.
fn events(query: Option<&str>, state: &State) -> Response<ResponseBody> {
    let reader = match Filter::from_query(query).and_then(|f| state.audit_events.subscribe(f)) {
        Ok(reader) => reader,
        Err(e @ EventsError::TooManyReaders) => {
            return text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"));
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let interval = state
        .snapshot
        .load()
        .config
        .streaming
        .keep_alive
        .map_or(EVENTS_KEEP_ALIVE, |d| d.get());
    let mut response = Response::new(ResponseBody::boxed(KeepAlive::new(reader, interval)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn metrics(state: &State) -> Response<ResponseBody> {
    let mut out = String::with_capacity(8 * 1024);
    if prometheus_client::encoding::text::encode(&mut out, &state.registry).is_err() {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode metrics\n".into(),
        );
    }
    let mut response = text(StatusCode::OK, out);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
