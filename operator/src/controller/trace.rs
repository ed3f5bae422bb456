//! A reconcile's OpenTelemetry span: one per reconcile, naming the object and how it ended,
//! with each object the reconcile applied as an event. Nothing is recorded without a tracer.

use kube::runtime::controller::Action;
use sluice_otlp::{Span, SpanKind, Value};

use super::Context;
use super::apply::Applied;
use crate::render::Object;
use crate::{Error, Result};

/// The span of one reconcile; inert when tracing is off or the trace is not sampled.
#[derive(Debug)]
pub(crate) struct ReconcileSpan(Option<Span>);

impl ReconcileSpan {
    /// Starts the span of a reconcile of `kind` (`McpServer`, `McpRoute`) `namespace/name`.
    pub fn start(ctx: &Context, kind: &'static str, namespace: &str, name: &str) -> Self {
        let span = ctx.options.tracer.as_ref().map(|tracer| {
            let mut span = tracer.start_span(format!("reconcile {kind}"), SpanKind::Internal, None);
            span.set_attribute("k8s.namespace.name", namespace.to_owned());
            span.set_attribute("sluice.object.kind", kind);
            span.set_attribute("sluice.object.name", name.to_owned());
            span
        });
        Self(span.filter(Span::is_recording))
    }

    /// Records an apply of `object`: whether a request changed it, or why it failed.
    pub fn applied(&mut self, object: &Object, outcome: &Result<Applied>) {
        let Some(span) = &mut self.0 else { return };
        let mut attributes = vec![
            ("sluice.object.kind", Value::from(object.kind())),
            ("sluice.object.name", Value::from(object.name().to_owned())),
            (
                "sluice.apply.changed",
                Value::from(matches!(outcome, Ok(Applied::Written))),
            ),
        ];
        if let Err(error) = outcome {
            attributes.push(("sluice.apply.error", Value::from(error.to_string())));
        }
        span.add_event("apply", attributes);
    }

    /// Ends the span with the reconcile's result.
    pub fn finish(self, result: &Result<Action>) {
        let Some(mut span) = self.0 else { return };
        match result {
            Ok(_) => span.set_attribute("sluice.reconcile.result", "ok"),
            Err(error) => {
                span.set_attribute("sluice.reconcile.result", "error");
                span.set_attribute("sluice.reconcile.error", Error::metric_label(error));
                span.set_error(error.to_string());
            }
        }
        span.end();
    }
}
