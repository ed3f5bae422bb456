//! The canned upstream: a minimal hyper HTTP/1.1 server (the harness's accept loop,
//! [`sluice_e2e::http_server`]) on its own thread and current-thread runtime, answering as fast
//! as it can so the proxies' own cost shows.
//!
//! - `POST /mcp`: a fixed JSON-RPC `tools/call` result (about 200 bytes, `application/json`);
//! - `POST /mcp-sse`: the same result as one SSE `message` event, chunked, as MCP servers
//!   stream a reply;
//! - `GET /stream`: an event stream held open, one small event at once and then one per
//!   [`STREAM_INTERVAL`], until the caller goes away.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use sluice_e2e::http_server;
use tokio::net::TcpListener;

/// The reply to every `tools/call`: what a small Phabricator task lookup returns.
pub const REPLY: &str = concat!(
    r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"#,
    r#""T4242 Fix the flaky deploy check (open, normal, assigned to alice, tagged ci)"}],"#,
    r#""isError":false,"structuredContent":{"id":4242}}}"#
);

/// How often a held-open stream sends an event.
pub const STREAM_INTERVAL: Duration = Duration::from_secs(1);

/// A running canned upstream; it lives as long as the program.
pub struct Canned {
    pub addr: SocketAddr,
}

impl Canned {
    /// Starts the server on a free loopback port, on a thread of its own.
    pub fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("cannot bind the canned upstream on 127.0.0.1")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the canned upstream's runtime")?;
        std::thread::Builder::new()
            .name("canned-upstream".into())
            .spawn(move || runtime.block_on(serve(listener)))
            .context("cannot start the canned upstream's thread")?;
        Ok(Self { addr })
    }
}

async fn serve(listener: std::net::TcpListener) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        eprintln!("canned upstream: cannot register its listener");
        return;
    };
    http_server::serve(listener, answer).await;
}

async fn answer(req: Request<Incoming>) -> Result<Response<CannedBody>, Infallible> {
    let (parts, body) = req.into_parts();
    // Read the request whole, as a real server does (and as keep-alive needs).
    let _ = body.collect().await;
    let response = match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/mcp") => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(CannedBody::Full(Some(Bytes::from_static(REPLY.as_bytes())))),
        (&Method::POST, "/mcp-sse") => Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(CannedBody::Chunk(Some(sse_event(REPLY)))),
        (&Method::GET, "/stream") => Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(CannedBody::Held {
                first: true,
                ticks: tokio::time::interval_at(
                    tokio::time::Instant::now() + STREAM_INTERVAL,
                    STREAM_INTERVAL,
                ),
            }),
        // The OTLP sink of the `--tracing` variants: every export accepted (body read).
        (&Method::POST, "/v1/traces") => Response::builder().body(CannedBody::Full(None)),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(CannedBody::Full(None)),
    };
    Ok(response.unwrap_or_else(|_| Response::new(CannedBody::Full(None))))
}

fn sse_event(data: &str) -> Bytes {
    Bytes::from(format!("event: message\ndata: {data}\n\n"))
}

/// The canned bodies.
pub enum CannedBody {
    /// A complete body with a `Content-Length`.
    Full(Option<Bytes>),
    /// One chunk of unknown length (sent chunked, like a streamed reply).
    Chunk(Option<Bytes>),
    /// Events forever.
    Held {
        first: bool,
        ticks: tokio::time::Interval,
    },
}

impl Body for CannedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            CannedBody::Full(data) | CannedBody::Chunk(data) => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
            }
            CannedBody::Held { first, ticks } => {
                if std::mem::take(first) {
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                        b"event: ready\ndata: {}\n\n",
                    )))));
                }
                match ticks.poll_tick(cx) {
                    Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                        b"event: tick\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n",
                    ))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, CannedBody::Full(None) | CannedBody::Chunk(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            CannedBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            _ => SizeHint::default(),
        }
    }
}
