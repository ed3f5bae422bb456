//! Size limits: the request head's size, and bodies read whole but bounded in size and time.
//!
//! Request bodies are read before anything goes upstream: POST bodies must be inspected whole,
//! and a caller trickling a body then ties up the proxy, not a Python worker upstream (as
//! nginx's request buffering does). Responses are never buffered.

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body::Body;
use http_body_util::BodyExt as _;

use crate::errors::Refusal;

/// Refuses a request whose line and headers take more than `max` bytes. hyper's read buffer
/// catches larger HTTP/1.1 heads earlier (and h2's header list limit larger h2 ones); this
/// makes the limit exact and the same for both.
pub fn check_head<B>(req: &Request<B>, max: usize) -> Result<(), Refusal> {
    let uri = req.uri();
    let mut size = req.method().as_str().len()
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len())
        + 12;
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len() + 4;
    }
    if size > max {
        Err(Refusal::HeadersTooLarge { max })
    } else {
        Ok(())
    }
}

/// Reads a request body of at most `limit` bytes within `timeout`. A declared length over the
/// limit is refused before a byte is read; chunked bodies are counted as they arrive.
pub async fn read_body<B>(
    body: B,
    limit: u64,
    timeout: sluice_proxy_config::Duration,
) -> Result<Bytes, Refusal>
where
    B: Body<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > limit {
        return Err(Refusal::BodyTooLarge { max: limit });
    }
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    tokio::time::timeout(timeout.get(), collect(body, limit))
        .await
        .unwrap_or(Err(Refusal::BodyTimeout(timeout)))
}

/// The body's data frames in one buffer. Each frame is copied in as it arrives rather than
/// kept: a frame is a slice of the connection's read buffer and keeps all of it alive, so a
/// body sent as one-byte chunks would otherwise hold kilobytes per byte. A body that arrives
/// as a single frame is kept as it is, without a copy.
async fn collect<B>(mut body: B, limit: u64) -> Result<Bytes, Refusal>
where
    B: Body<Data = Bytes> + Unpin,
{
    let too_large = || Refusal::BodyTooLarge { max: limit };
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| Refusal::BodyRead)?.into_data() else {
            continue; // trailers
        };
        total += data.len() as u64;
        if total > limit {
            return Err(too_large());
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    // Room for what is announced (bounded by the limit), else what has come.
                    let expected = body.size_hint().lower().saturating_add(total).min(limit);
                    joined.reserve(usize::try_from(expected).unwrap_or(0));
                    joined.extend_from_slice(&earlier);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::*;

    /// A body of one-byte frames sliced out of one buffer, as hyper slices its read buffer;
    /// at its end it notes whether anyone but itself still holds that buffer.
    struct Slices {
        origin: Bytes,
        next: usize,
        len: usize,
        held_at_end: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Body for Slices {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.next == self.len {
                let held = !self.origin.is_unique();
                self.held_at_end.store(held, Ordering::SeqCst);
                return std::task::Poll::Ready(None);
            }
            let frame = self.origin.slice(self.next..=self.next);
            self.next += 1;
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
        }
    }

    fn slices(len: usize) -> (Slices, Arc<std::sync::atomic::AtomicBool>) {
        let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let body = Slices {
            origin: Bytes::from(vec![b'x'; 64 * 1024]),
            next: 0,
            len,
            held_at_end: held.clone(),
        };
        (body, held)
    }

    #[tokio::test]
    async fn a_body_in_one_byte_frames_keeps_no_frame_while_it_is_read() {
        let (body, held) = slices(1000);
        let read = collect(body, 1 << 20).await.unwrap();
        assert_eq!(read.len(), 1000);
        assert!(
            !held.load(Ordering::SeqCst),
            "frames were kept: each holds the whole read buffer"
        );
        // One frame is kept as it is; over the limit is refused, counted across frames.
        assert_eq!(collect(slices(1).0, 1 << 20).await.unwrap().len(), 1);
        assert!(matches!(
            collect(slices(11).0, 10).await,
            Err(Refusal::BodyTooLarge { max: 10 })
        ));
    }

    #[test]
    fn head_size_counts_line_and_headers() {
        let req = Request::get("/mcp")
            .header("x-big", "a".repeat(2000))
            .body(())
            .unwrap();
        assert!(check_head(&req, 4096).is_ok());
        assert!(matches!(
            check_head(&req, 1024),
            Err(Refusal::HeadersTooLarge { max: 1024 })
        ));
    }
}
