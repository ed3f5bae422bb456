//! The audit trail: one structured event per `tools/call` (tracing target `audit`; JSON
//! objects when `log.format` is `json`): who called which tool on which entry point, what the
//! proxy decided, the status and the latency. Never argument values, tokens or other secrets.
//! Written where `log.audit` says (marked `"stream":"audit"`), and served live on the admin
//! listener's `/events` (audit_events.rs).
//!
//! Fields: `entry_point`; `client_address` (the caller's address: the peer, or what a trusted
//! proxy reported); `request_id` (as in the access line and the answer's `X-Request-Id`);
//! `identity` (absent for an anonymous caller); `tool`; `decision` (`allowed`: forwarded, or
//! tried and the upstream failed; `denied`: the tool policy; `rate_limited`;
//! `limiter_unavailable`: Redis down with `failMode: closed`; `refused`: any other refusal
//! after the body was read, such as a header mismatch); `rule` for `rate_limited`; `status` (of
//! a refusal: its own, also where the legacy HTTP+SSE transport answered the POST 202 and
//! carried the refusal on the session's stream); `latency_us` (to the response head); `batch`
//! when the call was one item of a batch (every call of the batch gets its own event). Calls
//! refused before their body is read (authentication, size limits) have no known tool: the
//! access log and metrics count them.

use http::StatusCode;

use crate::audit_events::{AuditEvent, AuditEvents};
use crate::errors::Refusal;
use crate::policy::Kind;
use crate::request::RequestContext;

/// Writes the events of a request whose answer has `status`, and hands them to the readers
/// of `/events`; `refusal` when the proxy answered itself.
pub fn record(
    events: &AuditEvents,
    cx: &RequestContext,
    refusal: Option<&Refusal>,
    status: StatusCode,
) {
    let Some(inspection) = cx.inspection.as_ref() else {
        return;
    };
    let (decision, rule) = match refusal {
        None | Some(Refusal::Upstream(_) | Refusal::ListUnfilterable(_)) => ("allowed", None),
        Some(Refusal::Denied(_)) => ("denied", None),
        Some(Refusal::RateLimited { rule, .. }) => ("rate_limited", Some(&**rule)),
        Some(Refusal::LimiterUnavailable) => ("limiter_unavailable", None),
        Some(_) => ("refused", None),
    };
    let latency_us = u64::try_from(cx.started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let identity = cx.identity.as_ref().map(|i| &*i.name);
    let batch = inspection.is_batch();
    for message in inspection.messages() {
        if message.method().map(|m| m.as_str()) != Some("tools/call") {
            continue;
        }
        let name = message.name().unwrap_or("");
        // A name outside the alphabet is shown escaped and cut short: it is caller input.
        let tool = if Kind::Tool.is_valid(name) {
            std::borrow::Cow::Borrowed(name)
        } else {
            std::borrow::Cow::Owned(
                name.chars()
                    .take(64)
                    .collect::<String>()
                    .escape_default()
                    .to_string(),
            )
        };
        tracing::info!(
            target: "audit",
            // Tells audit lines from the rest on a shared stdout (log.audit).
            stream = "audit",
            entry_point = &*cx.entry_point,
            client_address = %cx.client,
            request_id = cx.request_id.to_str().unwrap_or_default(),
            identity,
            tool = &*tool,
            decision,
            rule,
            status = status.as_u16(),
            latency_us,
            batch = batch.then_some(true),
            "tools/call"
        );
        events.publish(&AuditEvent {
            entry_point: &cx.entry_point,
            client_address: cx.client,
            request_id: cx.request_id.to_str().unwrap_or_default(),
            identity,
            tool: &tool,
            decision,
            rule,
            status: status.as_u16(),
            latency_us,
            batch,
        });
    }
}
