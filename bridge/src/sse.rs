//! Server-sent events out of a channel: the body of every POST that carries a request and of
//! the GET stream. The channel is bounded, so a caller that reads slowly slows the stdio
//! server's stdout (it waits on its pipe) instead of growing the bridge's memory.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::mpsc;

/// One JSON-RPC message as an SSE `message` event.
pub fn event(message: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(message.len() + 24);
    event.extend_from_slice(b"event: message\ndata: ");
    event.extend_from_slice(message);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// A response body that sends what arrives on the channel and ends when every sender is gone.
#[derive(Debug)]
pub struct EventStream {
    events: mpsc::Receiver<Bytes>,
}

impl EventStream {
    /// A stream and the sender that feeds it; `buffer` events may wait unread.
    pub fn channel(buffer: usize) -> (mpsc::Sender<Bytes>, Self) {
        let (sender, events) = mpsc::channel(buffer);
        (sender, Self { events })
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn sends_events_until_the_senders_are_gone() {
        let (sender, stream) = EventStream::channel(4);
        sender.send(event(b"{\"a\":1}")).await.expect("open");
        drop(sender);
        let body = stream.collect().await.expect("infallible").to_bytes();
        assert_eq!(&body[..], b"event: message\ndata: {\"a\":1}\n\n");
    }
}
