//! The reply to a list request, filtered for the caller: a JSON reply is read whole (bounded)
//! and rewritten with its `Content-Length` fixed; an event stream is filtered event by event
//! as it flows. What cannot be filtered is refused (502), never passed on unfiltered. A GET
//! event stream (resumed POST streams, the legacy HTTP+SSE transport) has every list-shaped
//! response filtered.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Response, header};
use http_body::Body as _;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::events::{FilteredEvents, Keep};
use super::reply::{self, ListKind, Targets};
use super::rules::Kind;
use super::{Policy, Verdict, View};
use crate::body::ResponseBody;
use crate::errors::Refusal;
use crate::metrics::{Metrics, ReasonLabels, ToolLabels};
use crate::sse;

/// Largest list reply (JSON body, or one event) filtered; Conduit's `tools/list` is ~48 KB.
pub const MAX_LIST_BYTES: usize = 8 * 1024 * 1024;

/// How to filter the reply to one request's list methods.
#[derive(Debug)]
pub struct ListFilter {
    keep: Keeper,
    targets: Targets,
}

/// The caller's view, owned, for a body that outlives the request path.
#[derive(Debug)]
struct Keeper {
    policy: Arc<Policy>,
    index: usize,
    dropped: Family<ReasonLabels, Counter>,
    tools: Arc<ToolLabels>,
}

impl Keeper {
    fn view(&self) -> View<'_> {
        View {
            policy: &self.policy,
            index: self.index,
        }
    }
}

impl Keep for Keeper {
    fn keep(&self, kind: Kind, name: &str) -> bool {
        if kind == Kind::Tool {
            self.tools.admit(name);
        }
        self.view().verdict(kind, name) == Verdict::Allowed
    }

    fn emptied(&self, list: ListKind) {
        self.policy.warn_emptied(self.index, list);
    }

    fn dropped(&self, reason: &'static str) {
        let entry_point = self.policy.entry_point();
        tracing::warn!(
            entry_point = &*entry_point,
            reason,
            "dropped an event of a list reply that cannot be filtered"
        );
        self.dropped
            .get_or_create(&ReasonLabels {
                entry_point,
                reason,
            })
            .inc();
    }
}

impl ListFilter {
    pub(super) fn new(
        policy: Arc<Policy>,
        index: usize,
        targets: Targets,
        metrics: &Metrics,
    ) -> Self {
        Self {
            keep: Keeper {
                policy,
                index,
                dropped: metrics.list_events_dropped.clone(),
                tools: metrics.tools.clone(),
            },
            targets,
        }
    }

    /// Removes what the upstream may not send filtered: a compressed reply cannot be read.
    pub fn prepare_request(&self, headers: &mut HeaderMap) {
        headers.remove(header::ACCEPT_ENCODING);
    }

    /// The upstream's reply, filtered. Errors (non-2xx) and empty replies pass unchanged.
    pub async fn apply(
        self,
        response: Response<ResponseBody>,
    ) -> Result<Response<ResponseBody>, Refusal> {
        let (mut parts, body) = response.into_parts();
        let streams_only = matches!(self.targets, Targets::AnyList);
        if !parts.status.is_success()
            || body.is_end_stream()
            || streams_only && !sse::is_event_stream(&parts.headers)
        {
            return Ok(Response::from_parts(parts, body));
        }
        if parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return Err(Refusal::ListUnfilterable("it is compressed"));
        }
        if sse::is_event_stream(&parts.headers) {
            // Rewritten events change the length; the stream is sent chunked.
            parts.headers.remove(header::CONTENT_LENGTH);
            let events = FilteredEvents::new(body, self.targets, self.keep, MAX_LIST_BYTES);
            return Ok(Response::from_parts(parts, ResponseBody::boxed(events)));
        }
        if !is_json(&parts.headers) {
            return Err(Refusal::ListUnfilterable(
                "it is neither JSON nor an event stream",
            ));
        }
        let bytes = match Limited::new(body, MAX_LIST_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(Refusal::ListUnfilterable("it is too large"));
            }
            Err(_) => return Err(Refusal::ListUnfilterable("the upstream broke it off")),
        };
        let mut targets = self.targets;
        let keep = |kind: Kind, name: &str| self.keep.keep(kind, name);
        let rewritten = reply::rewrite(&bytes, &mut targets, &keep)
            .map_err(|_| Refusal::ListUnfilterable("it is not JSON"))?;
        if !targets.is_done() {
            // A JSON reply answers every request of its POST; one that does not cannot be
            // trusted to hold no unfiltered list.
            return Err(Refusal::ListUnfilterable(
                "it does not answer the list request",
            ));
        }
        if let Some(list) = rewritten.emptied {
            self.keep.emptied(list);
        }
        let bytes = rewritten.json.map_or(bytes, bytes::Bytes::from);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Ok(Response::from_parts(parts, ResponseBody::full(bytes)))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}
