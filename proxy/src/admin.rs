//! The admin listener: `/healthz` (the process is alive), `/readyz` (the config is loaded, the
//! upstream answers, no shutdown under way) and `/metrics`.
//!
//! A rejected config file does not fail readiness: the last good config keeps serving, and
//! failing every pod of a Deployment over one bad ConfigMap would turn a typo into an outage.
//! It shows in the `/readyz` body and in `sluice_config_rejected` instead.

use std::fmt::Write as _;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tokio::time::Instant;

use crate::body::ResponseBody;
use crate::state::State;

/// How long an upstream probe result is reused, so probes cannot hammer the upstream.
const PROBE_TTL: Duration = Duration::from_secs(1);

/// Serves one admin request.
pub async fn serve<B>(req: Request<B>, state: &State) -> Response<ResponseBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => readiness(state).await,
        "/metrics" => metrics(state),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

async fn readiness(state: &State) -> Response<ResponseBody> {
    let mut problems = Vec::new();
    if state.draining.load(Ordering::Relaxed) {
        problems.push("shutting down".to_owned());
    }
    if let Err(reason) = probe(state).await {
        problems.push(reason);
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

async fn probe(state: &State) -> Result<(), String> {
    {
        let cached = state.probe.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, result)) = &*cached
            && at.elapsed() < PROBE_TTL
        {
            return result.clone();
        }
    }
    let upstream = state.snapshot.load().upstream.clone();
    let result = upstream.probe().await;
    *state.probe.lock().unwrap_or_else(PoisonError::into_inner) =
        Some((Instant::now(), result.clone()));
    result
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
