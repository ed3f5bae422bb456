//! The response body: upstream bytes as they arrive, an event stream with keep-alives, or an
//! answer the proxy made. It carries the request's guards, so a request counts as in flight
//! (and its connection as busy) until the caller has the last byte or goes away, and what is
//! due then: the upstream call's span, and the record of an answer that streams.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use sluice_otlp::Span;

use crate::activity::Busy;
use crate::in_flight::Permit;
use crate::metrics::GaugeGuard;
use crate::sse::KeepAlive;

/// What a response body holds on to until it is finished.
#[derive(Debug, Default)]
pub struct Guards {
    /// Marks the caller's connection busy (not idle).
    pub busy: Option<Busy>,
    /// A place among `limits.maxInFlight`.
    pub permit: Option<Permit>,
    /// `sluice_open_streams`.
    pub stream: Option<GaugeGuard>,
    /// Counts the upstream breaking off the body (`sluice_upstream_errors_total{kind="body"}`).
    pub broken: Option<Counter>,
    /// The upstream call's span: it lasts as long as the upstream's answer does.
    pub upstream_span: Option<Span>,
    /// What is due when the answer is over (stack.rs: a streamed answer's latency, access line
    /// and span). Last, so it runs after the places above are given back.
    pub at_end: Option<Box<dyn AtEnd>>,
}

/// Work due when an answer is over: sent whole, broken off by the upstream, or left by the
/// caller (dropped).
pub trait AtEnd: Send + std::fmt::Debug {
    /// The upstream broke the answer off before its end.
    fn broken_off(&mut self);
}

pin_project! {
    /// A response body.
    pub struct ResponseBody {
        #[pin]
        kind: Kind,
        guards: Guards,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Full { data: Option<Bytes> },
        Upstream { #[pin] body: Incoming },
        Stream { #[pin] body: KeepAlive<Incoming> },
        Boxed { #[pin] body: UnsyncBoxBody<Bytes, hyper::Error> },
    }
}

impl ResponseBody {
    /// A complete body the proxy made.
    pub fn full(data: Bytes) -> Self {
        let data = (!data.is_empty()).then_some(data);
        Self {
            kind: Kind::Full { data },
            guards: Guards::default(),
        }
    }

    /// The upstream's body, passed through frame by frame.
    pub fn upstream(body: Incoming) -> Self {
        Self {
            kind: Kind::Upstream { body },
            guards: Guards::default(),
        }
    }

    /// The upstream's event stream, with keep-alive comments.
    pub fn stream(body: KeepAlive<Incoming>) -> Self {
        Self {
            kind: Kind::Stream { body },
            guards: Guards::default(),
        }
    }

    /// Any body, e.g. an upstream body rewritten on the way (a filtered list reply).
    pub fn boxed(body: impl Body<Data = Bytes, Error = hyper::Error> + Send + 'static) -> Self {
        Self {
            kind: Kind::Boxed {
                body: UnsyncBoxBody::new(body),
            },
            guards: Guards::default(),
        }
    }

    /// The guards, to fill in.
    pub fn guards_mut(&mut self) -> &mut Guards {
        &mut self.guards
    }

    /// Whether the proxy made this body whole (a refusal, a 202): nothing of it is still to
    /// come from the upstream.
    pub fn is_made_here(&self) -> bool {
        matches!(self.kind, Kind::Full { .. })
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = match this.kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Upstream { body } => body.poll_frame(cx),
            KindProj::Stream { body } => body.poll_frame(cx),
            KindProj::Boxed { body } => body.poll_frame(cx),
        };
        if let Poll::Ready(Some(Err(_))) = &polled {
            if let Some(broken) = &this.guards.broken {
                broken.inc();
            }
            if let Some(at_end) = &mut this.guards.at_end {
                at_end.broken_off();
            }
        }
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            // Finished: release the guards now rather than whenever the server drops the body.
            *this.guards = Guards::default();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Upstream { body } => body.is_end_stream(),
            Kind::Stream { body } => body.is_end_stream(),
            Kind::Boxed { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Upstream { body } => body.size_hint(),
            Kind::Stream { .. } => SizeHint::default(),
            Kind::Boxed { body } => body.size_hint(),
        }
    }
}
