//! List replies inside server-sent event streams: events are split incrementally as bytes
//! arrive, the event carrying a list response is rewritten, and every other event is passed on
//! unchanged as soon as it is complete — except what cannot be trusted to hold no unfiltered
//! list: on a list request's stream, a response to no awaited request (a second answer to one,
//! or an id the upstream read differently) and data that is not JSON are dropped and counted.
//!
//! An event is only ever held until its own end (an SSE client dispatches nothing earlier), never
//! behind another one. Line ends may be LF, CRLF or CR, split anywhere across chunks.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;

use super::reply::{self, Targets};
use super::rules::Kind;
use crate::sse::{Splitter, field, lines, message_data};

/// What a list reply is filtered with: the list kinds' verdicts, and a note when a list that
/// offered items came out empty.
pub trait Keep: Send + 'static {
    fn keep(&self, kind: Kind, name: &str) -> bool;
    fn emptied(&self, list: reply::ListKind);
    /// An event was dropped: `unreadable` (its data is not JSON) or `stray` (a response to
    /// none of the awaited requests).
    fn dropped(&self, reason: &'static str);
}

pin_project! {
    /// An event stream whose list replies are filtered.
    pub struct FilteredEvents<B, K> {
        #[pin]
        inner: B,
        filtering: Filtering<K>,
        finished: bool,
    }
}

struct Filtering<K> {
    splitter: Splitter,
    targets: Targets,
    keep: K,
}

impl<B, K: Keep> FilteredEvents<B, K> {
    /// Filters the replies to `targets` in `inner`; an event larger than `max_event` bytes
    /// while targets are pending ends the stream (with an error reply to each awaited one).
    pub fn new(inner: B, targets: Targets, keep: K, max_event: usize) -> Self {
        Self {
            inner,
            filtering: Filtering {
                splitter: Splitter::new(max_event),
                targets,
                keep,
            },
            finished: false,
        }
    }
}

impl<B: Body<Data = Bytes>, K: Keep> Body for FilteredEvents<B, K> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if *this.finished {
                return Poll::Ready(None);
            }
            let f = &mut *this.filtering;
            let data = match ready!(this.inner.as_mut().poll_frame(cx)) {
                // An event cut off by the end of the stream is discarded by clients: drop it.
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
            };
            let mut out = BytesMut::new();
            let Filtering {
                splitter,
                targets,
                keep,
            } = f;
            let pushed = splitter.push(&data, &mut out, |event, out| {
                process(event, targets, keep, out);
            });
            if pushed.is_err() {
                // Too large to judge: answer what is pending with an error and end the stream.
                if let Targets::Ids(ids) = targets {
                    for t in ids.drain(..).filter(|t| t.kind.is_some()) {
                        out.extend_from_slice(&error_event(&t));
                    }
                }
                *this.finished = true;
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }
}

/// One complete event: the list reply rewritten, anything else copied.
fn process<K: Keep>(event: &[u8], targets: &mut Targets, keep: &K, out: &mut BytesMut) {
    // Events without data, or with none to read (the 2025-11-25 priming event), pass.
    let Some(data) = message_data(event) else {
        out.extend_from_slice(event);
        return;
    };
    // Fail closed: what cannot be read, or answers nothing awaited, is never passed on
    // unfiltered — its id may be one the upstream read differently from the proxy.
    let rewritten = match reply::rewrite(&data, targets, &|kind, name| keep.keep(kind, name)) {
        Ok(rewritten) if rewritten.stray => {
            keep.dropped("stray");
            return;
        }
        Ok(rewritten) => rewritten,
        Err(_) => {
            keep.dropped("unreadable");
            return;
        }
    };
    if let Some(list) = rewritten.emptied {
        keep.emptied(list);
    }
    let Some(json) = rewritten.json else {
        out.extend_from_slice(event);
        return;
    };
    // The same fields in the same order, the data lines replaced by the new data.
    let mut wrote_data = false;
    for line in lines(event) {
        match field(line.content) {
            Some(("data", _)) if wrote_data => {}
            Some(("data", _)) => {
                wrote_data = true;
                for part in json.split(|b| *b == b'\n' || *b == b'\r') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(part);
                    out.extend_from_slice(line.end);
                }
            }
            _ => out.extend_from_slice(line.whole),
        }
    }
}

/// An error reply to a target, as an event.
fn error_event(target: &reply::Target) -> BytesMut {
    let body = crate::errors::error_body(
        crate::errors::code::INTERNAL_ERROR,
        &"the list reply is too large to filter",
        Some(&target.id),
    );
    let mut out = BytesMut::with_capacity(body.len() + 24);
    crate::sse::write_message(&body, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;
    use serde_json::value::RawValue;

    use super::*;
    use crate::policy::reply::{ListKind, Target};

    #[derive(Clone, Default)]
    struct NoSecrets(Arc<Mutex<Vec<ListKind>>>);

    impl Keep for NoSecrets {
        fn keep(&self, _: Kind, name: &str) -> bool {
            !name.starts_with("pha_passphrase")
        }
        fn emptied(&self, list: ListKind) {
            self.0.lock().unwrap().push(list);
        }
        fn dropped(&self, _: &'static str) {}
    }

    fn target(id: &str) -> Targets {
        Targets::Ids(vec![Target::new(
            &RawValue::from_string(id.into()).unwrap(),
            ListKind::Tools,
        )])
    }

    /// A body yielding fixed chunks.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    /// Runs `chunks` through the filter; returns each output frame.
    async fn run(chunks: &[&[u8]], targets: Targets, max: usize) -> Vec<Bytes> {
        let inner = Chunks(chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect());
        let mut body = FilteredEvents::new(inner, targets, NoSecrets::default(), max);
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(frame.unwrap().into_data().unwrap());
        }
        out
    }

    const REPLY: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"pha_task_get"},{"name":"pha_passphrase_get"}]}}"#;
    const FILTERED: &str =
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"pha_task_get"}]}}"#;
    const LATER: &str = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;

    fn joined(frames: &[Bytes]) -> String {
        frames
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn the_reply_is_rewritten_and_other_events_pass_unchanged() {
        let progress = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        let stream = format!(
            "id: 0\nretry: 100\ndata:\n\n{progress}: comment\n\nevent: message\nid: 9\ndata: {REPLY}\n\nevent: message\ndata: {LATER}\n\n"
        );
        let out = run(&[stream.as_bytes()], target("3"), 1 << 20).await;
        assert_eq!(
            joined(&out),
            format!(
                "id: 0\nretry: 100\ndata:\n\n{progress}: comment\n\nevent: message\nid: 9\ndata: {FILTERED}\n\nevent: message\ndata: {LATER}\n\n"
            )
        );
    }

    #[tokio::test]
    async fn what_cannot_be_matched_or_read_while_a_reply_is_awaited_is_dropped() {
        // The reply to id 3 under another id (one the upstream read differently), data that
        // is not JSON, a response without an id, a second answer: none of it goes out. A
        // server's request does.
        let stray = REPLY.replace(r#""id":3"#, r#""id":0"#);
        let request =
            r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#;
        let stream = format!(
            "event: message\ndata: {stray}\n\nevent: message\ndata: not json\n\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"result\":{{}}}}\n\nevent: message\ndata: {request}\n\nevent: message\ndata: {REPLY}\n\nevent: message\ndata: {stray}\n\n"
        );
        let out = run(&[stream.as_bytes()], target("3"), 1 << 20).await;
        assert_eq!(
            joined(&out),
            format!("event: message\ndata: {request}\n\nevent: message\ndata: {FILTERED}\n\n")
        );
    }

    #[tokio::test]
    async fn a_reply_split_into_tiny_chunks_with_crlf_and_cr_line_ends() {
        for end in ["\n", "\r\n", "\r"] {
            let stream = format!(
                "event: message{end}data: {{\"jsonrpc\":\"2.0\",\"method\":\"x\"}}{end}{end}event: message{end}data: {REPLY}{end}{end}: tail{end}{end}"
            );
            for size in [1, 2, 3, 7, 64] {
                let chunks: Vec<&[u8]> = stream.as_bytes().chunks(size).collect();
                let out = run(&chunks, target("3"), 1 << 20).await;
                assert_eq!(
                    joined(&out),
                    stream.replace(REPLY, FILTERED),
                    "line end {end:?}, chunk size {size}"
                );
            }
        }
    }

    #[tokio::test]
    async fn events_before_the_reply_are_not_held_back() {
        let first = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n";
        let reply = format!("data: {REPLY}\n\n");
        let (a, b) = reply.as_bytes().split_at(20);
        let out = run(&[first.as_bytes(), a, b], target("3"), 1 << 20).await;
        // The notification came out as its own frame, before the reply was complete.
        assert_eq!(out[0], first);
        assert_eq!(joined(&out[1..]), format!("data: {FILTERED}\n\n"));
    }

    #[tokio::test]
    async fn multi_line_data_is_joined_and_events_after_the_reply_still_pass() {
        let reply = "data: {\"jsonrpc\":\"2.0\",\"id\":3,\ndata: \"result\":{\"tools\":[{\"name\":\"pha_passphrase_get\"}]}}\n\ndata: {\"jsonrpc\":\"2.0\",\"me";
        let out = run(
            &[reply.as_bytes(), b"thod\":\"notifications/x\"}\n\n"],
            target("3"),
            1 << 20,
        )
        .await;
        assert_eq!(
            joined(&out),
            "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[]}}\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}\n\n"
        );
    }

    #[tokio::test]
    async fn an_oversized_event_ends_the_stream_with_an_error_reply() {
        let big = format!("data: {{\"pad\":\"{}\"", "x".repeat(100));
        let out = run(&[big.as_bytes(), b"}\n\n"], target("3"), 64).await;
        let text = joined(&out);
        assert!(text.starts_with("event: message\ndata: {"), "{text}");
        assert!(text.contains("\"id\":3"), "{text}");
        assert!(text.contains("-32603"), "{text}");
        assert!(!text.contains("pad"), "{text}");
    }

    #[tokio::test]
    async fn streams_without_requests_have_every_list_reply_filtered() {
        let reply = format!("id: 5\ndata: {REPLY}\n\n");
        let note =
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
        let stream = format!("{note}{reply}{reply}");
        let out = run(&[stream.as_bytes()], Targets::AnyList, 1 << 20).await;
        let filtered = format!("id: 5\ndata: {FILTERED}\n\n");
        assert_eq!(joined(&out), format!("{note}{filtered}{filtered}"));
    }

    #[test]
    fn fields_and_comments() {
        assert_eq!(field(b"data: x"), Some(("data", &b"x"[..])));
        assert_eq!(field(b"data:x"), Some(("data", &b"x"[..])));
        assert_eq!(field(b"data:  x"), Some(("data", &b" x"[..])));
        assert_eq!(field(b"data"), Some(("data", &b""[..])));
        assert_eq!(field(b": hi"), None);
    }
}
