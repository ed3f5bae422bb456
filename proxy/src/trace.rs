//! Request spans (config `tracing`): one SERVER span per request, named and attributed after
//! OpenTelemetry's semantic conventions for MCP, with an event for each check it passed and a
//! CLIENT child for the upstream call, whose context the upstream receives in `traceparent`.
//!
//! A caller's well-formed `traceparent` is continued (its sampled flag decides); otherwise a
//! trace starts here, sampled by `tracing.samplingRatio`. With tracing off, `traceparent` and
//! `tracestate` pass through untouched. Spans carry no credential, argument or identity (the
//! audit trail names callers); the MCP session id is recorded as a digest, because a session
//! id is a capability some servers honour without credentials and trace stores are read widely.

use std::borrow::Cow;
use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use sluice_otlp::{Span, SpanContext, SpanKind, Tracer, Value};

use crate::errors::Refusal;
use crate::request::{Inspection, RequestContext};

/// The W3C Trace Context header.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
static MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Starts a request's span, continuing the caller's `traceparent`; `None` with tracing off.
/// What the head says is recorded now: the steps after this one remove or replace headers.
pub fn start(tracer: Option<&Tracer>, headers: &HeaderMap, cx: &RequestContext) -> Option<Span> {
    let tracer = tracer?;
    let parent = headers
        .get(&TRACEPARENT)
        .and_then(|v| SpanContext::from_traceparent(v.as_bytes()));
    // Named when it ends, once the body was read (an unsampled span is never named).
    let mut span = tracer.start_span("request", SpanKind::Server, parent);
    if span.is_recording() {
        span.set_attribute("http.request.method", cx.method.as_str().to_owned());
        span.set_attribute("url.path", cx.uri.path().to_owned());
        span.set_attribute("client.address", cx.client.to_string());
        span.set_attribute("network.transport", "tcp");
        span.set_attribute("network.protocol.name", "http");
        span.set_attribute("sluice.entry_point", cx.entry_point.to_string());
        if let Ok(id) = cx.request_id.to_str() {
            span.set_attribute("sluice.request_id", id.to_owned());
        }
        if let Some(id) = headers.get(&MCP_SESSION_ID) {
            span.set_attribute("mcp.session.id", digest(id.as_bytes()));
        }
        if let Some(Ok(version)) = headers.get(&MCP_PROTOCOL_VERSION).map(|v| v.to_str()) {
            span.set_attribute("mcp.protocol.version", version.to_owned());
        }
    }
    Some(span)
}

/// Records that the request passed a check (`sluice.authenticate`, `sluice.authorize`,
/// `sluice.rate_limit`).
pub fn passed(span: &mut Option<Span>, step: &'static str) {
    if let Some(span) = span {
        span.add_event(step, Vec::new());
    }
}

/// The span of the upstream call, a child of the request's; `None` with tracing off.
pub fn upstream_span(tracer: Option<&Tracer>, cx: &RequestContext) -> Option<Span> {
    let (tracer, parent) = (tracer?, cx.span.as_ref()?);
    let name = if parent.is_recording() {
        Cow::Owned(span_name(cx))
    } else {
        Cow::Borrowed("request")
    };
    let mut span = tracer.child(parent, name, SpanKind::Client);
    if span.is_recording() {
        set_mcp_attributes(&mut span, cx.inspection.as_ref());
    }
    Some(span)
}

/// Names `span` as the parent of what the upstream does with `headers`' request.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if let Ok(value) = HeaderValue::from_bytes(&span.context().traceparent()) {
        headers.insert(TRACEPARENT.clone(), value);
    }
}

/// Gives the upstream call's span the upstream's status, or how it failed; it ends when
/// dropped (with the upstream's answer, which holds it: body.rs).
pub fn upstream_answered(span: &mut Span, outcome: Result<StatusCode, &Refusal>) {
    match outcome {
        Ok(status) => {
            span.set_attribute("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                span.set_attribute("error.type", status.as_str().to_owned());
                span.set_error(format!("the upstream answered {status}"));
            }
        }
        Err(refusal) => {
            span.set_attribute("error.type", refusal.kind());
            span.set_error(refusal.to_string());
        }
    }
}

/// Completes the request's span once its answer's head (with `status`) is ready: its name
/// and MCP attributes (from what the body said), the status, and why the proxy refused it.
/// The span ends when `cx` is dropped: with the head, or when a streamed answer is over.
pub fn finish(cx: &mut RequestContext, status: StatusCode, refusal: Option<&Refusal>) {
    if !cx.span.as_ref().is_some_and(Span::is_recording) {
        return;
    }
    let name = span_name(cx);
    let Some(span) = cx.span.as_mut() else {
        return;
    };
    span.set_name(name);
    set_mcp_attributes(span, cx.inspection.as_ref());
    span.set_attribute("http.response.status_code", status.as_u16());
    if let Some(refusal) = refusal {
        span.set_attribute("error.type", refusal.kind());
        if cx.inspection.is_some() {
            span.set_attribute("rpc.response.status_code", refusal.code().to_string());
        }
        span.set_error(refusal.to_string());
    } else if status.is_server_error() {
        span.set_attribute("error.type", status.as_str().to_owned());
        span.set_error(format!("the upstream answered {status}"));
    }
}

/// Marks the request's span failed: the upstream broke its answer off after the head.
pub fn broken_off(cx: &mut RequestContext) {
    if let Some(span) = cx.span.as_mut().filter(|s| s.is_recording()) {
        span.set_attribute("error.type", "upstream_body");
        span.set_error("the upstream broke its answer off".to_owned());
    }
}

/// `{mcp.method.name} {target}` for one MCP message (the target: a tool's or prompt's name),
/// `batch` for a batch, and the HTTP method for anything else.
fn span_name(cx: &RequestContext) -> String {
    let Some(inspection) = cx.inspection.as_ref() else {
        return cx.method.as_str().to_owned();
    };
    let Some(message) = inspection.single() else {
        return "batch".to_owned();
    };
    let Some(method) = message.method() else {
        return "response".to_owned();
    };
    match (method.as_str(), message.name()) {
        (m @ ("tools/call" | "prompts/get"), Some(target)) => format!("{m} {target}"),
        (m, _) => m.to_owned(),
    }
}

fn set_mcp_attributes(span: &mut Span, inspection: Option<&Inspection>) {
    let Some(inspection) = inspection else {
        return;
    };
    let Some(message) = inspection.single() else {
        let size = i64::try_from(inspection.messages().len()).unwrap_or(i64::MAX);
        span.set_attribute("sluice.batch.size", size);
        return;
    };
    if let Some(method) = message.method() {
        span.set_attribute("mcp.method.name", method.as_str().to_owned());
        let name = message.name().map(str::to_owned);
        match (method.as_str(), name) {
            ("tools/call", Some(tool)) => {
                span.set_attribute("gen_ai.tool.name", tool);
                span.set_attribute("gen_ai.operation.name", "execute_tool");
            }
            ("prompts/get", Some(prompt)) => span.set_attribute("gen_ai.prompt.name", prompt),
            ("resources/read", Some(uri)) => span.set_attribute("mcp.resource.uri", uri),
            _ => {}
        }
    }
    if let Some(id) = message.id() {
        // The id as text: a string without its quotes, a number as written.
        let raw = id.get();
        let text = serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned());
        span.set_attribute("jsonrpc.request.id", Value::from(text));
    }
}

/// The first 16 bytes of a SHA-256, in hex: the same session gets the same digest.
fn digest(bytes: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = String::with_capacity(32);
    for b in &hash.as_ref()[..16] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The tracer `config` describes, exporting from now on; `None`, logged, when its headers or
/// CA cannot be read (requests are served untraced rather than not at all).
pub fn tracer(
    config: &sluice_proxy_config::Tracing,
    metrics: sluice_otlp::ExportMetrics,
) -> Option<Tracer> {
    let built = (|| {
        let otlp = &config.otlp;
        let mut export =
            sluice_otlp::ExportSettings::new(sluice_otlp::endpoint_uri(&otlp.endpoint)?);
        if let Some(dir) = &otlp.headers_dir {
            export.headers = sluice_otlp::headers_from_dir(dir)?;
        }
        if let Some(path) = &otlp.ca_file {
            export.extra_ca_pem =
                Some(std::fs::read(path).map_err(|e| sluice_otlp::Error::Read {
                    path: path.clone(),
                    message: e.to_string(),
                })?);
        }
        export.timeout = otlp.timeout.get();
        export.batch_delay = otlp.batch_delay.get();
        export.max_batch = otlp.max_batch;
        export.max_queue = otlp.max_queue;
        let env = |name| std::env::var(name).ok();
        let settings = sluice_otlp::TracerSettings {
            export,
            sampling_ratio: config.sampling_ratio,
            resource: sluice_otlp::resource(
                "sluice-proxy",
                &config.resource_attributes,
                env("OTEL_RESOURCE_ATTRIBUTES").as_deref(),
                env("OTEL_SERVICE_NAME").as_deref(),
            ),
            scope: "sluice-proxy",
        };
        Tracer::start(settings, metrics)
    })();
    match built {
        Ok(tracer) => Some(tracer),
        Err(e) => {
            tracing::error!(error = %e, "tracing is configured but cannot start; requests are served untraced");
            None
        }
    }
}
