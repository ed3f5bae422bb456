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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::body::ResponseBody;

const NONE: u64 = u64::MAX;

/// What a connection is doing, shared by its reader, its requests and its timer.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    busy: AtomicUsize,
    /// Milliseconds since `epoch` when the connection last went quiet.
    idle_since: AtomicU64,
    /// When the first byte of a request head arrived (`NONE`: not reading a head).
    head_since: AtomicU64,
    /// Bytes arrived while busy: maybe the start of a pipelined request.
    read_while_busy: AtomicBool,
    /// h2 multiplexes and pings: once it has carried a request, only the idle timer applies.
    h2: AtomicBool,
    /// A request has begun on the connection.
    began: AtomicBool,
}

/// Marks a connection busy while a request is served (held by the response body).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Activity {
    /// A fresh connection: it owes a request head from now on.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            read_while_busy: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            began: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn on_read(&self) {
        if self.busy.load(Ordering::Relaxed) > 0 {
            self.read_while_busy.store(true, Ordering::Relaxed);
        } else if self.head_since.load(Ordering::Relaxed) == NONE {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// Since when the connection has carried no request (`None` while it carries one): since
    /// it was accepted, if it never has.
    pub fn quiet_since(&self) -> Option<Instant> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let quiet = self.idle_since.load(Ordering::Relaxed);
        Some(self.epoch + Duration::from_millis(quiet))
    }

    /// A request head has arrived: the connection is busy until the guard drops.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.began.store(true, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        self.read_while_busy.store(false, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// What the timer should do now.
    fn verdict(&self, header_read: Duration, idle: Duration) -> Verdict {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Verdict::Wait(idle);
        }
        let now = self.now();
        let mut wait = Duration::MAX;
        let head = self.head_since.load(Ordering::Relaxed);
        // An h2 connection owes its first request within the head time too (one that only
        // sent the preface would otherwise hold its place until the idle time); after that its
        // pings and window updates are no request heads.
        let head_timer = !self.h2.load(Ordering::Relaxed) || !self.began.load(Ordering::Relaxed);
        if head != NONE && head_timer {
            let waited = Duration::from_millis(now.saturating_sub(head));
            match header_read.checked_sub(waited) {
                Some(left) if !left.is_zero() => wait = left,
                _ => return Verdict::HeadTimeout,
            }
        }
        let quiet =
            Duration::from_millis(now.saturating_sub(self.idle_since.load(Ordering::Relaxed)));
        match idle.checked_sub(quiet) {
            Some(left) if !left.is_zero() => Verdict::Wait(wait.min(left)),
            _ => Verdict::Idle,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        if a.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            let now = a.now();
            a.idle_since.store(now, Ordering::Relaxed);
            if a.read_while_busy.swap(false, Ordering::Relaxed) {
                a.head_since.store(now, Ordering::Relaxed);
            }
        }
    }
}

enum Verdict {
    Wait(Duration),
    HeadTimeout,
    Idle,
}

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

    const T: Timers = Timers {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(300),
    };

    #[test]
    fn a_new_connection_owes_a_head_and_a_busy_one_owes_nothing() {
        let a = Activity::new();
        assert!(matches!(a.verdict(T.header_read, T.idle), Verdict::Wait(d) if d <= T.header_read));
        assert!(matches!(
            a.verdict(Duration::ZERO, T.idle),
            Verdict::HeadTimeout
        ));
        let busy = a.begin();
        assert!(matches!(
            a.verdict(Duration::ZERO, Duration::ZERO),
            Verdict::Wait(_)
        ));
        drop(busy);
        // Quiet after a request: only the idle timer runs.
        assert!(matches!(a.verdict(Duration::ZERO, T.idle), Verdict::Wait(d) if d > T.header_read));
        assert!(matches!(
            a.verdict(Duration::ZERO, Duration::ZERO),
            Verdict::Idle
        ));
        a.on_read();
        assert!(matches!(
            a.verdict(Duration::ZERO, T.idle),
            Verdict::HeadTimeout
        ));
    }

    #[test]
    fn an_h2_connection_owes_its_first_request_in_time_then_only_the_idle_timer_runs() {
        let a = Activity::new();
        a.h2.store(true, Ordering::Relaxed);
        a.on_read(); // the preface and SETTINGS
        assert!(matches!(
            a.verdict(Duration::ZERO, T.idle),
            Verdict::HeadTimeout
        ));
        drop(a.begin());
        a.on_read(); // a PING
        assert!(matches!(
            a.verdict(Duration::ZERO, T.idle),
            Verdict::Wait(_)
        ));
    }

    #[test]
    fn bytes_read_while_busy_start_the_head_timer_when_the_request_ends() {
        let a = Activity::new();
        let busy = a.begin();
        a.on_read();
        drop(busy);
        assert!(matches!(
            a.verdict(Duration::ZERO, T.idle),
            Verdict::HeadTimeout
        ));
    }
}
