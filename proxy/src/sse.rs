//! Server-sent event streams: passed through as they arrive, with a `: keep-alive` comment
//! after upstream silence so idle streams survive load balancers. A comment is only ever
//! inserted between events, never inside one. Read too, where the sidecar asks the upstream
//! itself ([`event_data`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
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

// === events, split incrementally ===

/// Appends `json` as one `message` event: a `data:` line per line of it (clients join them
/// with LF, which JSON reads as whitespace).
pub fn write_message(json: &[u8], out: &mut BytesMut) {
    out.extend_from_slice(b"event: message\n");
    for part in json.split(|b| *b == b'\n' || *b == b'\r') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(part);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
}

/// The data of a complete event of type `message` (or none), its lines joined with LF;
/// `None` for other types and for events without data (comments, priming events).
pub fn message_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    let mut is_message = true;
    for line in lines(event) {
        match field(line.content) {
            Some(("data", value)) => match &mut data {
                None => data = Some(value.to_vec()),
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
            },
            Some(("event", value)) => is_message = value.is_empty() || value == b"message",
            _ => {}
        }
    }
    data.filter(|d| is_message && !d.iter().all(u8::is_ascii_whitespace))
}

/// A line of an event: its content, its line end, and both.
pub struct Line<'a> {
    pub content: &'a [u8],
    pub end: &'a [u8],
    pub whole: &'a [u8],
}

/// The lines of a complete event (which ends with a line end).
pub fn lines(event: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let at = rest
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
            .unwrap_or(rest.len());
        let end_len = match &rest[at..] {
            [b'\r', b'\n', ..] => 2,
            [] => 0,
            _ => 1,
        };
        let (whole, tail) = rest.split_at(at + end_len);
        rest = tail;
        Some(Line {
            content: &whole[..at],
            end: &whole[at..],
            whole,
        })
    })
}

/// `name: value` of a field line (one space after the colon is not part of the value);
/// `None` for comments.
pub fn field(line: &[u8]) -> Option<(&str, &[u8])> {
    if line.first() == Some(&b':') {
        return None;
    }
    let (name, value) = match line.iter().position(|b| *b == b':') {
        Some(at) => {
            let value = &line[at + 1..];
            (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &b""[..]),
    };
    Some((std::str::from_utf8(name).ok()?, value))
}

/// Splits a byte stream into events, keeping only the event in progress.
#[derive(Debug)]
pub struct Splitter {
    buf: BytesMut,
    /// How far `buf` has been scanned.
    scan: usize,
    /// Where the line being scanned starts.
    line_start: usize,
    /// The last line ended with CR: an LF right after it belongs to that line end.
    after_cr: bool,
    max: usize,
}

/// The event in progress grew past the limit.
#[derive(Debug)]
pub struct TooLarge;

impl Splitter {
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scan: 0,
            line_start: 0,
            after_cr: false,
            max,
        }
    }

    /// Adds `data`; hands each complete event (its bytes up to and including the blank line)
    /// to `event`. Bytes between events that belong to no event go to `out` directly.
    pub fn push(
        &mut self,
        mut data: &[u8],
        out: &mut BytesMut,
        mut event: impl FnMut(&[u8], &mut BytesMut),
    ) -> Result<(), TooLarge> {
        if self.after_cr && self.buf.is_empty() && data.first() == Some(&b'\n') {
            // The LF of a CRLF that ended the last event.
            out.extend_from_slice(b"\n");
            data = &data[1..];
            self.after_cr = false;
        }
        self.buf.extend_from_slice(data);
        while self.scan < self.buf.len() {
            let b = self.buf[self.scan];
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    self.scan += 1;
                    self.line_start = self.scan;
                    continue;
                }
            }
            if b != b'\n' && b != b'\r' {
                self.scan += 1;
                continue;
            }
            let blank = self.scan == self.line_start;
            self.scan += 1;
            self.after_cr = b == b'\r';
            if !blank {
                self.line_start = self.scan;
                continue;
            }
            if self.after_cr && self.buf.get(self.scan) == Some(&b'\n') {
                self.scan += 1;
                self.after_cr = false;
            }
            let complete = self.buf.split_to(self.scan);
            self.scan = 0;
            self.line_start = 0;
            event(&complete, out);
        }
        if self.buf.len() > self.max {
            return Err(TooLarge);
        }
        Ok(())
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
    fn message_data_joins_lines_and_skips_other_types_and_empty_events() {
        let data = |e: &str| message_data(e.as_bytes()).map(|d| String::from_utf8(d).unwrap());
        assert_eq!(
            data("event: message\ndata: {\ndata: }\n\n").as_deref(),
            Some("{\n}")
        );
        assert_eq!(data("id: 1\r\ndata:{}\r\n\r\n").as_deref(), Some("{}"));
        assert_eq!(data("event: endpoint\ndata: /messages/\n\n"), None);
        assert_eq!(data("id: 1\ndata: \n\n"), None, "a priming event");
        assert_eq!(data(": keep-alive\n\n"), None);
        let mut out = BytesMut::new();
        write_message(b"{\r\n}", &mut out);
        assert_eq!(&out[..], b"event: message\ndata: {\ndata: \ndata: }\n\n");
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
