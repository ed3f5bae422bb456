//! A legacy session's event stream: the `endpoint` event, then the messages its exchanges
//! queue, with keep-alive comments between them. The stream is the session's life: when the
//! client goes, or the session was idle too long, the stream ends and so does the session.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::session::{Session, Sessions};
use crate::sse::KEEP_ALIVE;

/// A legacy session's event stream.
pub(super) struct LegacyStream {
    endpoint: Option<Bytes>,
    events: mpsc::Receiver<Bytes>,
    keep_alive: Option<(Duration, Pin<Box<Sleep>>)>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    ended: bool,
    /// Ends the session when the stream goes, however it goes.
    _end: EndOnDrop,
}

struct EndOnDrop {
    sessions: Arc<Sessions>,
    session: Arc<Session>,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.sessions.end(&self.session);
    }
}

impl LegacyStream {
    pub(super) fn new(
        sessions: Arc<Sessions>,
        session: Arc<Session>,
        events: mpsc::Receiver<Bytes>,
        endpoint: &str,
        keep_alive: Option<Duration>,
        idle_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            endpoint: Some(Bytes::from(format!(
                "event: endpoint\ndata: {endpoint}\n\n"
            ))),
            events,
            keep_alive: keep_alive.map(|every| (every, Box::pin(tokio::time::sleep(every)))),
            idle_timeout,
            idle: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            ended: false,
            _end: EndOnDrop { sessions, session },
        }
    }
}

impl Body for LegacyStream {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(endpoint) = this.endpoint.take() {
            return Poll::Ready(Some(Ok(Frame::data(endpoint))));
        }
        match this.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                this._end.session.touch();
                if let Some((every, timer)) = &mut this.keep_alive {
                    timer.as_mut().reset(Instant::now() + *every);
                }
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            // Cannot happen while the session holds its sender; end cleanly if it does.
            Poll::Ready(None) => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        while this.idle.as_mut().poll(cx).is_ready() {
            let due = this._end.session.last_active() + this.idle_timeout;
            if Instant::now() >= due {
                tracing::debug!("a legacy session was idle too long");
                this.ended = true;
                return Poll::Ready(None);
            }
            this.idle.as_mut().reset(due);
        }
        if let Some((every, timer)) = &mut this.keep_alive
            && timer.as_mut().poll(cx).is_ready()
        {
            timer.as_mut().reset(Instant::now() + *every);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(KEEP_ALIVE)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}
