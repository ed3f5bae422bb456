//! What each request leaves behind: request metrics and one access log line. Never a token,
//! a header value or a body value; the tool name is the one body field logged, and the client
//! address (an address parsed from a trusted proxy's header at most) the one header field.

use std::sync::Arc;

use http::StatusCode;

use crate::errors::UpstreamFailure;
use crate::metrics::{self, LatencyLabels, Metrics, RequestLabels, UpstreamErrorLabels};
use crate::request::RequestContext;

/// Counts a request when its response head (with `status`) is ready.
pub fn count(m: &Metrics, cx: &RequestContext, status: StatusCode) {
    let inspection = cx.inspection.as_ref();
    m.requests
        .get_or_create(&RequestLabels {
            entry_point: cx.entry_point.clone(),
            http_method: metrics::http_method(&cx.method),
            mcp_method: inspection.map_or("", |i| i.method_label()),
            tool: m.tools.label(inspection.and_then(|i| i.tool())),
            status: metrics::status_class(status),
        })
        .inc();
}

/// Observes the request's latency and writes its access line, once it is answered: at the
/// response head, or when a streamed answer is over (stack.rs decides which).
pub fn answered(m: &Metrics, cx: &RequestContext, status: StatusCode) {
    let elapsed = cx.started.elapsed();
    let inspection = cx.inspection.as_ref();
    let mcp_method = inspection.map_or("", |i| i.method_label());
    m.latency
        .get_or_create(&LatencyLabels {
            entry_point: cx.entry_point.clone(),
            mcp_method,
        })
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "sluice::access",
        entry_point = &*cx.entry_point,
        client_address = %cx.client,
        request_id = cx.request_id.to_str().unwrap_or_default(),
        method = cx.method.as_str(),
        // The path only: a query may carry codes or tokens.
        path = cx.uri.path(),
        mcp_method,
        tool = inspection.and_then(|i| i.tool()),
        status = status.as_u16(),
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    );
}

/// Counts an upstream failure on `entry_point`.
pub fn upstream_failed(metrics: &Metrics, entry_point: &Arc<str>, failure: UpstreamFailure) {
    metrics
        .upstream_errors
        .get_or_create(&UpstreamErrorLabels {
            entry_point: entry_point.clone(),
            kind: failure.label(),
        })
        .inc();
    tracing::warn!(
        entry_point = &**entry_point,
        kind = failure.label(),
        "{failure}"
    );
}
