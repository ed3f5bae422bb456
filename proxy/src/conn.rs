//! One caller connection: HTTP/1.1 or h2 over TCP or TLS, its head-read and idle timers, and
//! graceful shutdown.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its next
//! request, so it would close a load balancer's pooled connections after `headerRead` and race
//! their next request into a 502. Here the head timer runs from accept, and later only from the
//! first byte of a new request (slowloris); a quiet connection lasts `timeouts.idle`.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::activity::{Activity, Verdict};
use crate::body::ResponseBody;

/// Connection timers.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    pub header_read: Duration,
    pub idle: Duration,
}

/// What asks a connection to close gracefully: the process shutting down, its listener being
/// removed from the config (a deleted route must stop serving, keep-alive or not), or its place
/// being needed for a new caller while it sits idle (connections.rs).
#[derive(Debug, Default)]
pub struct Stop {
    pub shutdown: Option<watch::Receiver<bool>>,
    pub retired: Option<watch::Receiver<bool>>,
    pub evicted: Option<watch::Receiver<bool>>,
}

impl Stop {
    /// Resolves once either signal is true (or its sender is gone).
    async fn requested(&mut self) {
        async fn turned(rx: &mut Option<watch::Receiver<bool>>) {
            match rx {
                Some(rx) => drop(rx.wait_for(|stop| *stop).await),
                None => std::future::pending().await,
            }
        }
        let Self {
            shutdown,
            retired,
            evicted,
        } = self;
        tokio::select! {
            () = turned(shutdown) => {}
            () = turned(retired) => {}
            () = turned(evicted) => {}
        }
    }
}

/// Serves one connection until it closes, times out, or `stop` asks (then gracefully:
/// in-flight requests finish, h2 gets GOAWAY).
pub async fn serve<T, S>(
    io: T,
    builder: &auto::Builder<TokioExecutor>,
    service: S,
    activity: Arc<Activity>,
    timers: Timers,
    mut stop: Stop,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: activity.clone(),
        first: true,
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let timer = tokio::time::sleep(timers.header_read.min(timers.idle));
    tokio::pin!(timer);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = stop.requested(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = timer.as_mut() => match activity.verdict(timers.header_read, timers.idle) {
                Verdict::Wait(d) => timer.as_mut().reset(tokio::time::Instant::now() + d),
                Verdict::HeadTimeout => {
                    tracing::debug!("closing a connection that did not send a request head in time");
                    return;
                }
                Verdict::Idle => {
                    if !closing {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    timer.as_mut().reset(tokio::time::Instant::now() + timers.header_read);
                }
            },
        }
    }
}

/// The connection's IO, noting when bytes arrive.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
    first: bool,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if self.first {
                self.first = false;
                // The h2 preface ("PRI * HTTP/2.0") is no HTTP/1.1 method.
                if buf.filled()[before..].starts_with(b"PRI ") {
                    self.activity.h2.store(true, Ordering::Relaxed);
                }
            }
            self.activity.on_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
