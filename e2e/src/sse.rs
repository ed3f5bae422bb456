//! A minimal event-stream client: one `GET` on a connection of its own (as each MCP client holds
//! its server stream), noting the `id` of every event as it arrives and how the stream ended.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use bytes::{Buf as _, BytesMut};
use http::{Request, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Result;

/// How a stream that opened went.
#[derive(Debug)]
pub struct Outcome {
    /// The ids of the events received, in order (comments such as keep-alives are not events).
    pub ids: Vec<u64>,
    /// Why the stream broke off, if it did not end cleanly.
    pub broken: Option<String>,
}

/// Opens `GET path` at `addr` and reads the stream to its end, calling `on_event` with each
/// event's id. An error means the stream never opened (no connection, or not a 200).
pub async fn read(addr: SocketAddr, path: &str, mut on_event: impl FnMut(u64)) -> Result<Outcome> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .with_context(|| format!("HTTP handshake with {addr} failed"))?;
    // The connection task ends with the stream; its own error shows in the body's.
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::ACCEPT, "text/event-stream")
        .body(Empty::<bytes::Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {path} on {addr} failed"))?;
    if response.status() != http::StatusCode::OK {
        bail!("GET {path} on {addr} answered {}", response.status());
    }
    let mut body = response.into_body();
    let mut buffer = BytesMut::new();
    let mut ids = Vec::new();
    let broken = loop {
        match body.frame().await {
            None => break None,
            Some(Err(e)) => break Some(format!("{e:#}")),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buffer.extend_from_slice(&data);
                while let Some(end) = find(&buffer, b"\n\n") {
                    let event = buffer.split_to(end);
                    buffer.advance(2);
                    if let Some(id) = event_id(&event) {
                        ids.push(id);
                        on_event(id);
                    }
                }
            }
        }
    };
    Ok(Outcome { ids, broken })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `id:` field of one event block.
fn event_id(event: &[u8]) -> Option<u64> {
    std::str::from_utf8(event)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("id:"))
        .and_then(|id| id.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_id_lines_and_comments_have_none() {
        assert_eq!(event_id(b"id: 7\ndata: {}"), Some(7));
        assert_eq!(event_id(b"data: {}\nid:12"), Some(12));
        assert_eq!(event_id(b": keep-alive"), None);
        assert_eq!(find(b"a\n\nb", b"\n\n"), Some(1));
    }
}
