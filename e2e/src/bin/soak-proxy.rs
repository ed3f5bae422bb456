//! soak-proxy: sluice-proxy driven at a fixed rate for a long time (10 minutes by default) in
//! front of the in-process test upstream, with event streams opened and closed all along;
//! samples the sidecar's resident memory and open descriptors every few seconds, counts every
//! failed request or stream, and ends with the memory curve and a verdict (flat or growing).
//!
//! Not part of `make test`: `make soak` runs it, `make soak SOAK_ARGS='--duration 3m'` passes
//! options. Everything is on loopback; the one process it starts is killed by its PID when it
//! ends. Exits 1 when a request failed or memory grew.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use http::{Request, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sluice_e2e::procstat::{self, Memory, mib};
use sluice_e2e::proxy_process::{Ports, ProxyProcess};
use sluice_e2e::sse;
use sluice_e2e::upstream::TestUpstream;
use tokio::net::TcpStream;

/// Soak sluice-proxy at a fixed rate and watch its memory.
#[derive(Parser, Debug)]
#[command(name = "soak-proxy")]
struct Args {
    /// How long to drive the sidecar (e.g. 10m, 180s).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    duration: Duration,
    /// Requests per second (tools/call POSTs), spread over the connections.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Keep-alive connections the requests are spread over.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Event streams open at any time; each lasts 2 s and is replaced by a new one.
    #[arg(long, default_value_t = 20)]
    streams: u32,
    /// How often memory is sampled (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    sample_every: Duration,
    /// Growth of the resident set (last quarter of the run against the quarter after warm-up)
    /// above which the verdict is "growing", in percent.
    #[arg(long, default_value_t = 10.0)]
    tolerance_percent: f64,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let bad = || format!("{text:?} is not a whole number of seconds or minutes (90s, 10m)");
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "s" if n > 0 => Ok(Duration::from_secs(n)),
        "m" if n > 0 => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

/// Counts shared by the load tasks and the sampler.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    streams: AtomicU64,
    stream_errors: AtomicU64,
    /// Ticks the load fell behind its rate (the generator, not the sidecar, may be the cause).
    behind: AtomicU64,
    stop: AtomicBool,
}

impl Tally {
    fn error(&self, counter: &AtomicU64, what: &str) {
        // The first few are shown; all are counted.
        if counter.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("error: {what}");
        }
    }
}

/// One memory sample.
struct Sample {
    seconds: u64,
    rss_kib: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("# soak-proxy\n");
    println!(
        "command: soak-proxy {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let streams = u64::from(args.streams);
    procstat::raise_fd_limit(4 * streams + 4 * u64::from(args.connections) + 1024)?;
    let dir = tempfile::Builder::new()
        .prefix("sluice-soak-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let upstream = TestUpstream::start()?;
    let ports = Ports::free()?;
    eprintln!("building and starting sluice-proxy…");
    let config = ProxyProcess::config(&upstream.url(), ports, "", "");
    let proxy = ProxyProcess::start_with(dir.path(), &config, ports, &[])?;
    let pid = proxy.process.pid();
    let addr = SocketAddr::from(([127, 0, 0, 1], proxy.port));
    println!(
        "rate {} req/s over {} connections, {} streams open, for {:?}; sampling every {:?}\n",
        args.rate, args.connections, args.streams, args.duration, args.sample_every
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let tally = Arc::new(Tally::default());
    let per_connection = f64::from(args.rate) / f64::from(args.connections.max(1));
    let period = Duration::from_secs_f64(1.0 / per_connection.max(0.001));
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let tally = tally.clone();
        tasks.push(runtime.spawn(drive(addr, period, u64::from(c) << 40, tally)));
    }
    for _ in 0..args.streams {
        let tally = tally.clone();
        tasks.push(runtime.spawn(churn_streams(addr, tally)));
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    println!("| t (s) | RSS | fds | requests | errors | streams | stream errors |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    loop {
        let memory = Memory::of(pid)?;
        let fds = procstat::open_fds(pid)?;
        let seconds = started.elapsed().as_secs();
        println!(
            "| {seconds} | {} | {fds} | {} | {} | {} | {} |",
            mib(memory.rss_kib),
            tally.requests.load(Ordering::Relaxed),
            tally.errors.load(Ordering::Relaxed),
            tally.streams.load(Ordering::Relaxed),
            tally.stream_errors.load(Ordering::Relaxed),
        );
        samples.push(Sample {
            seconds,
            rss_kib: memory.rss_kib,
        });
        if started.elapsed() >= args.duration {
            break;
        }
        std::thread::sleep(args.sample_every.min(args.duration - started.elapsed()));
    }
    tally.stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    runtime.shutdown_timeout(Duration::from_secs(5));
    let peak = Memory::of(pid)?.peak_kib;

    let requests = tally.requests.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed) + tally.stream_errors.load(Ordering::Relaxed);
    println!(
        "\nrequests: {requests} ({:.0}/s), streams: {}, errors: {errors}, ticks behind: {}",
        requests as f64 / elapsed,
        tally.streams.load(Ordering::Relaxed),
        tally.behind.load(Ordering::Relaxed)
    );
    println!(
        "memory curve (s: MiB): {}",
        samples
            .iter()
            .map(|s| format!("{}:{:.1}", s.seconds, s.rss_kib as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let growth = Growth::of(&samples).context("too few samples for a verdict")?;
    println!(
        "RSS after warm-up {} → last quarter {} ({:+.1} %), slope {:+.0} KiB/min, peak {}",
        mib(growth.early_kib),
        mib(growth.late_kib),
        growth.percent(),
        growth.slope_kib_per_min,
        mib(peak)
    );
    let growing = growth.percent() > args.tolerance_percent;
    println!(
        "verdict: memory {}, {}",
        if growing { "GROWING" } else { "flat" },
        if errors == 0 {
            "no errors".to_owned()
        } else {
            format!("{errors} ERRORS")
        }
    );
    if growing || errors > 0 {
        bail!("the soak failed");
    }
    Ok(())
}

/// Memory growth over a run: the mean resident set of the last quarter of the samples
/// against that of the first quarter after warm-up (the first fifth: pools, caches and
/// allocator arenas filling), and the least-squares slope over the samples after warm-up.
struct Growth {
    early_kib: u64,
    late_kib: u64,
    slope_kib_per_min: f64,
}

impl Growth {
    fn of(samples: &[Sample]) -> Option<Self> {
        let settled = &samples[samples.len() / 5..];
        let quarter = settled.len() / 4;
        if quarter == 0 {
            return None;
        }
        let mean = |s: &[Sample]| s.iter().map(|s| s.rss_kib).sum::<u64>() / s.len() as u64;
        let n = settled.len() as f64;
        let mean_t = settled.iter().map(|s| s.seconds as f64).sum::<f64>() / n;
        let mean_m = settled.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
        let (mut num, mut den) = (0.0, 0.0);
        for s in settled {
            num += (s.seconds as f64 - mean_t) * (s.rss_kib as f64 - mean_m);
            den += (s.seconds as f64 - mean_t).powi(2);
        }
        Some(Self {
            early_kib: mean(&settled[..quarter]),
            late_kib: mean(&settled[settled.len() - quarter..]),
            slope_kib_per_min: if den > 0.0 { num / den * 60.0 } else { 0.0 },
        })
    }

    fn percent(&self) -> f64 {
        (self.late_kib as f64 - self.early_kib as f64) / self.early_kib.max(1) as f64 * 100.0
    }
}

/// Sends a `tools/call` every `period` on one keep-alive connection (reopened after a failure)
/// until told to stop; every answer must be the upstream's to that very request.
async fn drive(addr: SocketAddr, period: Duration, first_id: u64, tally: Arc<Tally>) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut id = first_id;
    let mut connection = None;
    let mut last_tick = tokio::time::Instant::now();
    while !tally.stop.load(Ordering::Relaxed) {
        let tick = ticks.tick().await;
        if tick.duration_since(last_tick) > period * 3 / 2 {
            tally.behind.fetch_add(1, Ordering::Relaxed);
        }
        last_tick = tick;
        id += 1;
        if connection.is_none() {
            match connect(addr).await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    tally.error(&tally.errors, &format!("{e:#}"));
                    continue;
                }
            }
        }
        let Some(sender) = connection.as_mut() else {
            continue;
        };
        match call(sender, addr, id).await {
            Ok(()) => {
                tally.requests.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                connection = None;
                if !tally.stop.load(Ordering::Relaxed) {
                    tally.error(&tally.errors, &format!("request {id}: {e:#}"));
                }
            }
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn call(sender: &mut Sender, addr: SocketAddr, id: u64) -> anyhow::Result<()> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"pha_task_get","arguments":{{"id":4242}}}}}}"#
    );
    let request = Request::post("/mcp")
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(Full::new(Bytes::from(body)))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let reply: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("status {status}: {}", String::from_utf8_lossy(&bytes)))?;
    if status != http::StatusCode::OK || reply["id"] != id {
        bail!("status {status}: {reply}");
    }
    Ok(())
}

/// Opens a 2 s stream of 10 events, checks it got all of them, and opens the next.
async fn churn_streams(addr: SocketAddr, tally: Arc<Tally>) {
    let expected: Vec<u64> = (0..10).collect();
    while !tally.stop.load(Ordering::Relaxed) {
        match sse::read(addr, "/stream?events=10&interval_ms=200", |_| {}).await {
            Ok(outcome) if outcome.broken.is_none() && outcome.ids == expected => {
                tally.streams.fetch_add(1, Ordering::Relaxed);
            }
            Ok(outcome) => tally.error(&tally.stream_errors, &format!("stream: {outcome:?}")),
            Err(e) => {
                tally.error(&tally.stream_errors, &format!("stream: {e:#}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: &[u64]) -> Vec<Sample> {
        rss.iter()
            .enumerate()
            .map(|(i, &rss_kib)| Sample {
                seconds: i as u64 * 5,
                rss_kib,
            })
            .collect()
    }

    #[test]
    fn growth_skips_warm_up_and_sees_a_climb() {
        // Warm-up jump, then flat.
        let flat = Growth::of(&samples(&[
            1000, 5000, 10000, 10000, 10000, 10000, 10000, 10000, 10000, 10000,
        ]))
        .unwrap();
        assert_eq!(flat.percent(), 0.0);
        assert_eq!(flat.slope_kib_per_min, 0.0);
        let climbing = Growth::of(&samples(
            &(0..20).map(|i| 10000 + i * 500).collect::<Vec<_>>(),
        ))
        .unwrap();
        assert!(climbing.percent() > 30.0 && climbing.slope_kib_per_min > 0.0);
        assert!(Growth::of(&samples(&[1, 2])).is_none());
    }

    #[test]
    fn durations_are_seconds_or_minutes() {
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("0s").is_err());
    }
}
