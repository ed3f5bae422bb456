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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioTimer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::time::Instant;

    const TIMERS: Timers = Timers {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(300),
    };
    const SECOND: Duration = Duration::from_secs(1);

    /// The caller's end of a connection served as the listener serves one (hyper configured
    /// as state.rs does), every request answered 200 `ok`; its timer runs from now.
    async fn connect() -> DuplexStream {
        let (caller, server) = tokio::io::duplex(64 * 1024);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        let activity = Activity::new();
        let act = activity.clone();
        let service = service_fn(move |_: Request<Incoming>| {
            let busy = act.begin();
            async move {
                let mut response = Response::new(ResponseBody::full(Bytes::from_static(b"ok")));
                response.body_mut().guards_mut().busy = Some(busy);
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            serve(server, &builder, service, activity, TIMERS, Stop::default()).await;
        });
        // As at an accept: the connection is served at once.
        tokio::task::yield_now().await;
        caller
    }

    /// Reads until the server closes the connection; how long that took.
    async fn closed_after(caller: &mut DuplexStream) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        let read_to_end = async { while let Ok(1..) = caller.read(&mut buf).await {} };
        tokio::time::timeout(TIMERS.idle * 10, read_to_end)
            .await
            .expect("the connection was never closed");
        started.elapsed()
    }

    // Paused time: the clock jumps to the next timer whenever both ends wait.

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_after_the_head_time() {
        let mut caller = connect().await;
        let took = closed_after(&mut caller).await;
        assert!(
            (TIMERS.header_read..TIMERS.header_read + SECOND).contains(&took),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_stops_coming_is_closed_after_the_head_time() {
        let mut caller = connect().await;
        tokio::time::advance(TIMERS.header_read / 2).await;
        caller
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
            .await
            .unwrap();
        let took = closed_after(&mut caller).await;
        // The head began with the connection: its time counts from the accept, not the bytes.
        assert!(took < TIMERS.header_read / 2 + SECOND, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_outlives_the_head_time_until_it_has_been_idle() {
        let mut caller = connect().await;
        caller
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"\r\n\r\nok") {
            let n = caller.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed before answering");
            answer.extend_from_slice(&buf[..n]);
        }
        // A load balancer's pooled connection, quiet between requests: hyper's own head
        // timeout would close it after 10 s and race the next request into a 502.
        let took = closed_after(&mut caller).await;
        assert!(
            (TIMERS.idle..TIMERS.idle + SECOND).contains(&took),
            "{took:?}"
        );
    }
}
