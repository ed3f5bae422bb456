//! Server-sent event streams: passed through as they arrive, with a `: keep-alive` comment
//! after upstream silence so idle streams survive load balancers. A comment is only ever
//! inserted between events, never inside one. Read too, where the sidecar asks the upstream
//! itself ([`event_data`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// What is sent after silence: a comment line and a blank line, so even a client that splits
/// the stream on blank lines sees a whole (ignored) block.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Whether a response is an event stream.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// The data of each event of an event stream (`data:` lines joined by newlines); a last
/// event without its blank line counts too.
pub fn event_data(stream: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in stream.lines() {
        if line.is_empty() {
            events.extend(data.take());
        } else if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    events.extend(data);
    events
}

pin_project! {
    /// An event stream with keep-alive comments.
    pub struct KeepAlive<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: Sleep,
        interval: Duration,
        last_data: Instant,
        tail: Tail,
    }
}

impl<B> KeepAlive<B> {
    /// Wraps `inner`; a comment goes out after each `interval` of silence.
    pub fn new(inner: B, interval: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timer: tokio::time::sleep_until(now + interval),
            interval,
            last_data: now,
            tail: Tail::START,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for KeepAlive<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.as_mut().poll_frame(cx) {
            if let Some(Ok(f)) = &frame {
                if let Some(data) = f.data_ref() {
                    this.tail.push(data);
                }
                // Cheaper than resetting the timer per frame: it re-arms itself when it fires.
                *this.last_data = Instant::now();
            }
            return Poll::Ready(frame);
        }
        loop {
            ready!(this.timer.as_mut().poll(cx));
            let due = *this.last_data + *this.interval;
            let now = Instant::now();
            if now < due {
                this.timer.as_mut().reset(due);
                continue;
            }
            this.timer.as_mut().reset(now + *this.interval);
            if this.tail.at_event_boundary() {
                *this.last_data = now;
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(KEEP_ALIVE)))));
            }
            // Mid-event: the upstream owes the rest of the event; ask again later.
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// The last bytes sent, enough to tell whether the stream stands between two events.
#[derive(Clone, Copy, Debug)]
struct Tail {
    bytes: [u8; 4],
    len: usize,
}

impl Tail {
    /// The start of a stream is a boundary.
    const START: Tail = Tail {
        bytes: [0, 0, b'\n', b'\n'],
        len: 4,
    };

    fn push(&mut self, data: &[u8]) {
        if data.len() >= 4 {
            self.bytes.copy_from_slice(&data[data.len() - 4..]);
        } else {
            self.bytes.rotate_left(data.len());
            self.bytes[4 - data.len()..].copy_from_slice(data);
        }
        self.len = (self.len + data.len()).min(4);
    }

    /// Whether the bytes so far end with a blank line (an event's end), whatever mix of
    /// CRLF, LF and CR line ends the upstream uses.
    fn at_event_boundary(&self) -> bool {
        let tail = &self.bytes[4 - self.len..];
        let rest = if let Some(r) = tail.strip_suffix(b"\r\n") {
            r
        } else if let Some(r) = tail
            .strip_suffix(b"\n")
            .or_else(|| tail.strip_suffix(b"\r"))
        {
            r
        } else {
            return false;
        };
        matches!(rest.last(), Some(b'\n' | b'\r'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_join_their_data_lines() {
        assert_eq!(
            event_data("data: a\ndata: b\n\nid: 1\ndata:c\n\ndata: d"),
            ["a\nb", "c", "d"]
        );
    }

    fn boundary(chunks: &[&str]) -> bool {
        let mut t = Tail::START;
        for c in chunks {
            t.push(c.as_bytes());
        }
        t.at_event_boundary()
    }

    #[test]
    fn event_boundaries_across_line_endings_and_chunks() {
        assert!(boundary(&[]));
        assert!(boundary(&["data: x\n\n"]));
        assert!(boundary(&["data: x\r\n\r\n"]));
        assert!(boundary(&["data: x\r\r"]));
        assert!(boundary(&["data: x\n", "\n"]));
        assert!(boundary(&["data: x\r\n", "\r", "\n"]));
        assert!(!boundary(&["data: x\n"]));
        assert!(!boundary(&["data: x\r\n"]));
        assert!(!boundary(&["data: x"]));
        assert!(!boundary(&["data: x\n\ndata: y"]));
    }

    #[test]
    fn only_event_streams_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "text/event-stream; charset=utf-8".parse().unwrap(),
        );
        assert!(is_event_stream(&h));
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        assert!(!is_event_stream(&h));
    }
}
