//! A session of MCP's deprecated HTTP+SSE transport (2024-11-05) seen from outside, for tests
//! that need what no SDK client does (a stream read event by event, a POST an SDK would not
//! send): `GET …/sse` on a connection of its own, read on a thread of its own, so a blocking
//! test waits for the next event with a deadline. Dropping the stream disconnects it.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::{Bytes, BytesMut};
use http::{Request, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::Result;
use crate::http::HttpResponse;

/// How long opening a stream (connecting and reading the response head) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its `event:` field (`message` when absent, as the SSE spec says).
    pub event: String,
    /// Its `data:` lines, joined with `\n`.
    pub data: String,
}

impl Event {
    /// The data parsed as JSON (a `message` event's JSON-RPC message).
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.data)
            .with_context(|| format!("{} event's data is not JSON: {}", self.event, self.data))
    }
}

/// What the reading thread hands over, in stream order.
#[derive(Debug)]
enum Item {
    Event(Event),
    /// A block of `:` comment lines only (keep-alives).
    Comment(String),
    /// The stream ended: cleanly (`None`) or broken off (why).
    End(Option<String>),
}

/// What `GET …/sse` answered.
#[derive(Debug)]
pub enum Opened {
    /// 200: the stream, open.
    Stream(LegacyStream),
    /// Anything else, read whole.
    Refused(HttpResponse),
}

impl Opened {
    /// The stream, or an error with the refusal.
    pub fn stream(self) -> Result<LegacyStream> {
        match self {
            Opened::Stream(stream) => Ok(stream),
            Opened::Refused(response) => bail!(
                "GET /sse answered {}: {:?}\n{}",
                response.status,
                response.headers,
                response.body
            ),
        }
    }

    /// The refusal, or an error if the stream opened.
    pub fn refused(self) -> Result<HttpResponse> {
        match self {
            Opened::Refused(response) => Ok(response),
            Opened::Stream(stream) => bail!(
                "GET /sse opened a stream ({:?}), expected a refusal",
                stream.headers
            ),
        }
    }
}

/// An open legacy event stream.
#[derive(Debug)]
pub struct LegacyStream {
    /// The response headers (names in lower case).
    pub headers: Vec<(String, String)>,
    items: mpsc::Receiver<Item>,
    /// Comments received so far (keep-alives).
    comments: Vec<String>,
    ended: Option<Option<String>>,
    stop: Option<oneshot::Sender<()>>,
    reader: Option<thread::JoinHandle<()>>,
}

/// What the reading thread reports first.
enum Head {
    Open(Vec<(String, String)>),
    Refused(HttpResponse),
}

impl LegacyStream {
    /// `GET path` at `addr` with `headers` (and `Accept: text/event-stream`).
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Opened> {
        let request = {
            let mut request = Request::get(path)
                .header(header::HOST, addr.to_string())
                .header(header::ACCEPT, "text/event-stream");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.body(Empty::<Bytes>::new())?
        };
        let (head_tx, head_rx) = mpsc::channel::<Result<Head>>();
        let (items_tx, items) = mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let reader = thread::Builder::new()
            .name(format!("legacy-sse {path}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = head_tx.send(Err(anyhow!("cannot build a runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        () = read(addr, request, head_tx, items_tx) => {}
                        _ = stopped => {}
                    }
                });
            })
            .context("cannot start the stream's reading thread")?;
        let head = head_rx.recv_timeout(OPEN_TIMEOUT).map_err(|_| {
            anyhow!("GET {path} on {addr}: no response head within {OPEN_TIMEOUT:?}")
        })?;
        match head? {
            Head::Refused(response) => {
                let _ = reader.join();
                Ok(Opened::Refused(response))
            }
            Head::Open(headers) => Ok(Opened::Stream(Self {
                headers,
                items,
                comments: Vec::new(),
                ended: None,
                stop: Some(stop),
                reader: Some(reader),
            })),
        }
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The next event within `timeout`: `None` if none came (comments are counted, not
    /// returned); an error if the stream ended.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(how) = &self.ended {
                bail!("the stream ended ({})", how.as_deref().unwrap_or("cleanly"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.items.recv_timeout(left) {
                Ok(Item::Event(event)) => return Ok(Some(event)),
                Ok(Item::Comment(comment)) => self.comments.push(comment),
                Ok(Item::End(how)) => self.ended = Some(how),
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.ended = Some(Some("the reading thread stopped".to_owned()));
                }
            }
        }
    }

    /// The next event, which must come within `timeout`.
    pub fn expect_event(&mut self, timeout: Duration) -> Result<Event> {
        self.next_event(timeout)?
            .ok_or_else(|| anyhow!("no event within {timeout:?}"))
    }

    /// The next `message` event's JSON-RPC message, which must come within `timeout`.
    pub fn expect_message(&mut self, timeout: Duration) -> Result<serde_json::Value> {
        let event = self.expect_event(timeout)?;
        if event.event != "message" {
            bail!("expected a message event, got {event:?}");
        }
        event.json()
    }

    /// Every event that comes within `window` (none expected, usually).
    pub fn events_within(&mut self, window: Duration) -> Result<Vec<Event>> {
        let deadline = Instant::now() + window;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(events);
            }
            match self.next_event(left)? {
                Some(event) => events.push(event),
                None => return Ok(events),
            }
        }
    }

    /// The comments (keep-alives) received so far, as far as [`LegacyStream::next_event`] and
    /// friends have read; each without its `:` and leading blanks.
    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// Disconnects: the connection is closed, as a client that goes away closes it.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for LegacyStream {
    fn drop(&mut self) {
        self.shut();
    }
}

async fn read(
    addr: SocketAddr,
    request: Request<Empty<Bytes>>,
    head: mpsc::Sender<Result<Head>>,
    items: mpsc::Sender<Item>,
) {
    let response = async {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .with_context(|| format!("HTTP handshake with {addr} failed"))?;
        // Runs on this thread's runtime, and ends with it.
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .with_context(|| format!("GET on {addr} failed"))
    }
    .await;
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            let _ = head.send(Err(e));
            return;
        }
    };
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let mut body = response.into_body();
    if status != 200 {
        let read = body.collect().await;
        let _ = head.send(match read {
            Ok(collected) => Ok(Head::Refused(HttpResponse {
                status,
                headers,
                body: String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
            })),
            Err(e) => Err(anyhow!("failed to read the {status} refusal's body: {e}")),
        });
        return;
    }
    if head.send(Ok(Head::Open(headers))).is_err() {
        return;
    }
    let mut buffer = BytesMut::new();
    let end = loop {
        match body.frame().await {
            None => break None,
            Some(Err(e)) => break Some(format!("{e:#}")),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buffer.extend_from_slice(&data);
                while let Some((block, rest)) = split_block(&buffer) {
                    let item = parse_block(&String::from_utf8_lossy(&buffer[..block]));
                    let _ = buffer.split_to(rest);
                    if let Some(item) = item
                        && items.send(item).is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let _ = items.send(Item::End(end));
}

/// The end of the first event block in `buffer` and where the next one starts: blocks end
/// with a blank line, and lines end with `\n`, `\r\n` or `\r` (servers differ).
fn split_block(buffer: &[u8]) -> Option<(usize, usize)> {
    [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"]
        .iter()
        .filter_map(|separator| {
            let at = buffer
                .windows(separator.len())
                .position(|w| w == *separator)?;
            Some((at, at + separator.len()))
        })
        .min()
}

/// One event block as an item; `None` for a block with neither data nor comments.
fn parse_block(block: &str) -> Option<Item> {
    let (mut event, mut data, mut comments) = (None, Vec::new(), Vec::new());
    for line in block.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(comment) = line.strip_prefix(':') {
            comments.push(comment.trim_start());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if event.is_none() && data.is_empty() {
        return (!comments.is_empty()).then(|| Item::Comment(comments.join("\n")));
    }
    Some(Item::Event(Event {
        event: event.unwrap_or_else(|| "message".to_owned()),
        data: data.join("\n"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_end_at_blank_lines_of_any_line_ending() {
        assert_eq!(split_block(b"event: a\n\nrest"), Some((8, 10)));
        assert_eq!(split_block(b"event: a\r\n\r\nrest"), Some((8, 12)));
        assert_eq!(split_block(b"event: a\r\n"), None);
    }

    #[test]
    fn events_comments_and_defaults() {
        let Some(Item::Event(event)) =
            parse_block("event: endpoint\r\ndata: /ai/messages/?session_id=00")
        else {
            panic!("not an event");
        };
        assert_eq!(event.event, "endpoint");
        assert_eq!(event.data, "/ai/messages/?session_id=00");
        let Some(Item::Event(event)) = parse_block("data: {\"a\":\ndata: 1}") else {
            panic!("not an event");
        };
        assert_eq!(event.event, "message");
        assert_eq!(event.json().unwrap()["a"], 1);
        assert!(matches!(parse_block(": keep-alive"), Some(Item::Comment(c)) if c == "keep-alive"));
        assert!(parse_block("id: 3").is_none());
    }
}
