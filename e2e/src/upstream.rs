//! An in-process upstream for load and fault tests of sluice-proxy: a small hyper HTTP/1.1
//! server on loopback whose answers the caller controls per request, and which a test can kill
//! (every connection and the listener gone at once, as when a process dies) and start again on
//! the same port.
//!
//! - `POST <any path>`: a JSON-RPC result echoing the request's `id`; an `x-test-delay-ms: N`
//!   header holds the answer back N ms first (a slow upstream, a long request in flight);
//! - `GET <any path>?events=N&interval_ms=M`: an event stream of N events (`id: i`, `data:
//!   {"n":i}`), the first at once and then one every M ms (default 1000), ending after the last;
//!   without `events` it never ends.
//!
//! [`TestUpstream::hang`] makes it accept connections and read requests but never answer (a
//! wedged server), until switched back.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::{Result, http_server};

/// The header that delays a POST's answer, in milliseconds.
pub const DELAY_HEADER: &str = "x-test-delay-ms";

/// How long killing the upstream may take to close its sockets.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// A running upstream; dropping it kills it.
pub struct TestUpstream {
    addr: SocketAddr,
    runtime: Option<Runtime>,
    /// Set: requests are read and never answered.
    hanging: Arc<AtomicBool>,
}

impl TestUpstream {
    /// Starts on a free loopback port.
    pub fn start() -> Result<Self> {
        Self::start_on(0)
    }

    /// Starts on `127.0.0.1:port` (e.g. the port of one a test killed).
    pub fn start_on(port: u16) -> Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .with_context(|| format!("cannot bind the test upstream on 127.0.0.1:{port}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // Its own runtime, so killing it drops exactly its tasks and sockets; one worker is
        // plenty for thousands of mostly idle streams.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-upstream")
            .enable_all()
            .build()
            .context("cannot build the test upstream's runtime")?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let hanging = Arc::new(AtomicBool::new(false));
        let switch = hanging.clone();
        runtime.spawn(http_server::serve(listener, move |req| {
            answer(req, switch.clone())
        }));
        Ok(Self {
            addr,
            runtime: Some(runtime),
            hanging,
        })
    }

    /// From now on, reads each request and never answers it (`true`), or answers again
    /// (`false`; requests already held stay unanswered).
    pub fn hang(&self, hanging: bool) {
        self.hanging.store(hanging, Ordering::SeqCst);
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the listener and every connection, streams mid-event included, and returns once
    /// they are closed.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(KILL_TIMEOUT);
        }
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    hanging: Arc<AtomicBool>,
) -> std::result::Result<Response<TestBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if hanging.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let response = match parts.method {
        Method::POST => {
            let delay = parts
                .headers
                .get(DELAY_HEADER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if let Some(ms) = delay {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let id = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(Value::Null);
            let reply = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {"content": [{"type": "text", "text": "ok"}], "isError": false},
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(TestBody::Full(Some(Bytes::from(reply.to_string()))))
        }
        Method::GET => {
            let query = parts.uri.query().unwrap_or("");
            let param = |name: &str| -> Option<u64> {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
            };
            let interval = Duration::from_millis(param("interval_ms").unwrap_or(1000).max(1));
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(TestBody::Events {
                    next: 0,
                    total: param("events"),
                    ticks: tokio::time::interval(interval),
                })
        }
        _ => Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .body(TestBody::Full(None)),
    };
    Ok(response.unwrap_or_else(|_| Response::new(TestBody::Full(None))))
}

/// The upstream's bodies.
pub enum TestBody {
    /// A complete body.
    Full(Option<Bytes>),
    /// Events `next..total`, one per tick (the interval's first tick is immediate).
    Events {
        next: u64,
        total: Option<u64>,
        ticks: tokio::time::Interval,
    },
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            TestBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            TestBody::Events { next, total, ticks } => {
                if total.is_some_and(|t| *next >= t) {
                    return Poll::Ready(None);
                }
                match ticks.poll_tick(cx) {
                    Poll::Ready(_) => {
                        let event = format!("id: {next}\ndata: {{\"n\":{next}}}\n\n");
                        *next += 1;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            TestBody::Full(data) => data.is_none(),
            TestBody::Events { next, total, .. } => total.is_some_and(|t| *next >= t),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            TestBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            TestBody::Events { .. } => SizeHint::default(),
        }
    }
}
