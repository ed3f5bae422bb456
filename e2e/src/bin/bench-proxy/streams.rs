//! Many open event streams at once: `GET /stream` on separate HTTP/1.1 connections, as many
//! MCP clients each holding their server stream, opened from this program with hyper clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// How long opening every stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Streams being opened at once.
const OPENING_AT_ONCE: usize = 50;

/// Open streams; dropping this closes them all.
pub struct Streams {
    tasks: JoinSet<()>,
    /// Events received over all streams.
    pub events: Arc<AtomicU64>,
    /// Streams that ended or failed.
    pub failed: Arc<AtomicU64>,
}

impl Streams {
    /// Opens `count` streams to `addr` and waits until each has its first event.
    pub fn open(runtime: &Runtime, addr: SocketAddr, count: usize) -> anyhow::Result<Self> {
        let ready = Arc::new(AtomicU64::new(0));
        let events = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let started = Instant::now();
        let target = u64::try_from(count)?;
        for i in 0..count {
            // Keep at most OPENING_AT_ONCE streams between connect and first event.
            while i as u64 - ready.load(Ordering::Relaxed) - failed.load(Ordering::Relaxed)
                >= OPENING_AT_ONCE as u64
            {
                if started.elapsed() > OPEN_TIMEOUT {
                    bail!("opening {count} streams to {addr} took longer than {OPEN_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let (ready, events, failed) = (ready.clone(), events.clone(), failed.clone());
            tasks.spawn_on(
                async move {
                    if let Err(e) = hold(addr, &ready, &events).await {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("a stream to {addr} failed: {e:#}");
                        }
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                },
                runtime.handle(),
            );
        }
        while ready.load(Ordering::Relaxed) < target {
            if failed.load(Ordering::Relaxed) > 0 {
                bail!(
                    "{} of {count} streams to {addr} failed or ended",
                    failed.load(Ordering::Relaxed)
                );
            }
            if started.elapsed() > OPEN_TIMEOUT {
                bail!(
                    "only {} of {count} streams to {addr} opened within {OPEN_TIMEOUT:?}",
                    ready.load(Ordering::Relaxed)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Self {
            tasks,
            events,
            failed,
        })
    }

    /// Closes every stream and waits (bounded) until their tasks are gone.
    pub fn close(mut self, runtime: &Runtime) {
        self.tasks.abort_all();
        runtime.block_on(async {
            let all_gone = async { while self.tasks.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(Duration::from_secs(10), all_gone).await;
        });
    }
}

/// One stream: connect, ask, count events until the stream ends (an error: it should not).
async fn hold(addr: SocketAddr, ready: &AtomicU64, events: &AtomicU64) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let work = async move {
        let request = Request::get("/stream")
            .header(header::HOST, addr.to_string())
            .header(header::ACCEPT, "text/event-stream")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        if !response.status().is_success() {
            bail!("GET /stream answered {}", response.status());
        }
        let mut body = response.into_body();
        let mut first = true;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            let n = data.windows(2).filter(|w| w == b"\n\n").count() as u64;
            if n > 0 {
                events.fetch_add(n, Ordering::Relaxed);
                if std::mem::take(&mut first) {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        bail!("the stream ended")
    };
    tokio::select! {
        result = conn => {
            result?;
            bail!("the connection closed")
        }
        result = work => result,
    }
}
