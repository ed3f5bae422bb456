//! bench-proxy: sluice-proxy against a direct path and nginx, in front of one fast canned
//! upstream, driven by wrk; prints throughput, latency, CPU per request and memory.
//!
//! Rounds alternate between the targets (direct, sluice, nginx, direct, …) so that a change
//! in the machine's load hits them alike, and every figure is the median over rounds. Ratios
//! are against the direct path and nginx measured in the same run: absolute numbers from a
//! shared machine mean little. Everything listens on loopback and every process this program
//! starts is killed by its PID when it ends.
//!
//! `make bench` runs it; `make bench BENCH_ARGS='--rounds 5 --duration 10s'` passes options.

mod canned;
mod load;
mod report;
mod streams;
mod targets;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use crate::canned::Canned;
use crate::load::Wrk;
use crate::report::{Measured, Report, Run};
use crate::streams::Streams;
use crate::targets::NginxLog;
use sluice_e2e::procstat::Memory;

/// Benchmark sluice-proxy against a direct path and nginx.
#[derive(Parser, Debug)]
#[command(name = "bench-proxy")]
struct Args {
    /// Measured rounds per target and connection count.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Length of one measured run, in whole seconds (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Connection counts to drive each target with.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    connections: Vec<u32>,
    /// wrk threads (at most one per connection).
    #[arg(long, default_value_t = 1)]
    wrk_threads: u32,
    /// Also measure tool calls answered as an SSE stream (one event, chunked).
    #[arg(long)]
    sse: bool,
    /// Event streams held open at once, twice over, for the memory measurement (0: skip it).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// The sluice-proxy binary to measure; default: build it (release) from this workspace.
    #[arg(long, value_name = "PATH")]
    sluice: Option<PathBuf>,
    /// A second sluice-proxy binary to measure in the same rounds (e.g. a build of an older
    /// commit), shown as `sluice-cmp`.
    #[arg(long, value_name = "PATH")]
    compare_sluice: Option<PathBuf>,
    /// Leave nginx out (both: with and without its access log).
    #[arg(long)]
    no_nginx: bool,
    /// Also measure sluice-proxy with every policy on (`sluice+policy`): API-key
    /// authentication, a tool deny rule, a rate limit by identity that never binds, and the
    /// audit trail.
    #[arg(long)]
    policy: bool,
    /// Also measure `hyper-floor`: a bare reverse proxy on sluice-proxy's stack (hyper's
    /// server and pooled client, one thread) doing nothing else, so that sluice/hyper-floor
    /// is what sluice-proxy's own work costs.
    #[arg(long)]
    floor: bool,
    /// Also measure sluice-proxy with traces on, exporting to an OTLP sink on its own thread:
    /// `sluice+trace0` (sampling 0: trace context read, made and passed on, nothing recorded)
    /// and `sluice+trace1` (every request's two spans recorded and exported).
    #[arg(long)]
    tracing: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let bad = || format!("{text:?} is not a whole number of seconds or minutes (10s, 1m)");
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "s" if n > 0 => Ok(Duration::from_secs(n)),
        "m" if n > 0 => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

/// The sluice entry point's authentication: none, as the benchmark measures the proxy path.
const NO_POLICY: &str = "    auth:\n      mode: none\n";

/// The API key wrk sends (load.rs), which the policy variant accepts.
const BENCH_API_KEY: &str = "bench-key-0123456789abcdef";

/// The policy variant's entry point: what a production entry point turns on. The rate limit
/// counts every call by identity but is far above what the load reaches.
fn all_policies(keys_dir: &std::path::Path) -> String {
    format!(
        "    auth:\n      mode: apiKey\n      keysDir: {}\n\
         \x20   tools:\n      deny: [\"pha_passphrase_*\"]\n\
         \x20   rateLimits:\n\
         \x20     - name: per-caller\n        by: [identity]\n        requests: 100000000\n        period: 1m\n",
        keys_dir.display()
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let machine = report::Machine::now();
    println!("# bench-proxy\n");
    println!(
        "command: bench-proxy {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    println!("{machine}\n");

    let dir = tempfile::Builder::new()
        .prefix("sluice-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let canned = Canned::start()?;
    let sluice_bin = match args.sluice.clone() {
        Some(bin) => bin,
        None => {
            eprintln!("building sluice-proxy (release)…");
            sluice_e2e::sluice_proxy()?
        }
    };
    let sluice = targets::start_sluice(&sluice_bin, dir.path(), "sluice", canned.addr, NO_POLICY)?;
    // Idle: started, config loaded, listeners open, no request served yet.
    std::thread::sleep(Duration::from_millis(500));
    let sluice_idle = Memory::of(sluice.pid())?;
    let compare = match &args.compare_sluice {
        Some(bin) => Some(targets::start_sluice(
            bin,
            dir.path(),
            "sluice-cmp",
            canned.addr,
            NO_POLICY,
        )?),
        None => None,
    };
    let with_policy = if args.policy {
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).context("cannot create the API keys directory")?;
        std::fs::write(keys.join("bench"), BENCH_API_KEY).context("cannot write the API key")?;
        Some(targets::start_sluice(
            &sluice_bin,
            dir.path(),
            "sluice+policy",
            canned.addr,
            &all_policies(&keys),
        )?)
    } else {
        None
    };
    // The OTLP sink: a second canned server, so exports do not slow the upstream's thread.
    let sink = if args.tracing {
        Some(Canned::start()?)
    } else {
        None
    };
    let traced = match &sink {
        Some(sink) => [0, 1]
            .into_iter()
            .map(|ratio| {
                let tracing = format!(
                    "{NO_POLICY}tracing:\n  samplingRatio: {ratio}\n  otlp:\n    endpoint: http://{}/v1/traces\n",
                    sink.addr
                );
                let label = format!("sluice+trace{ratio}");
                let proxy = targets::start_sluice(&sluice_bin, dir.path(), &label, canned.addr, &tracing)?;
                Ok((label, proxy))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let floor = if args.floor {
        let binary = sluice_e2e::cargo_bin("sluice-e2e", "floor-proxy")?;
        Some(targets::start_floor(&binary, canned.addr)?)
    } else {
        None
    };
    let nginx_variants = if args.no_nginx {
        Vec::new()
    } else {
        vec![NginxLog::Access, NginxLog::Off]
    };
    let nginxes = nginx_variants
        .into_iter()
        .map(|log| Ok((log, targets::start_nginx(dir.path(), canned.addr, log)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The memory table's nginx: the one logging, as sluice does.
    let nginx = nginxes
        .iter()
        .find(|(log, _)| *log == NginxLog::Access)
        .map(|(_, n)| n);

    let mut runs = vec![Run::direct(canned.addr), Run::proxy("sluice", &sluice)];
    if let Some(c) = &compare {
        runs.push(Run::proxy("sluice-cmp", c));
    }
    if let Some(p) = &with_policy {
        runs.push(Run::proxy("sluice+policy", p));
    }
    for (label, proxy) in &traced {
        runs.push(Run::proxy(label, proxy));
    }
    if let Some(f) = &floor {
        runs.push(Run::proxy("hyper-floor", f));
    }
    for (log, n) in &nginxes {
        runs.push(Run::proxy(log.target(), n));
    }

    let wrk = Wrk::new(dir.path(), args.wrk_threads)?;
    let mut workloads = vec![report::Workload::Json];
    if args.sse {
        workloads.push(report::Workload::Sse);
    }
    let mut report = Report::default();
    for &workload in &workloads {
        for &connections in &args.connections {
            for run in &runs {
                // Warm-up: connections to the upstream opened, caches filled.
                wrk.run(&run.url(workload), connections, Duration::from_secs(1))?;
            }
            for round in 1..=args.rounds {
                for run in &runs {
                    let cpu_before = run.cpu_seconds()?;
                    let sample = wrk.run(&run.url(workload), connections, args.duration)?;
                    let cpu = run.cpu_seconds()? - cpu_before;
                    let measured = Measured::new(sample, cpu);
                    eprintln!(
                        "{workload} c={connections} round {round}/{} {:<10} {measured}",
                        args.rounds, run.name
                    );
                    report.add(workload, connections, &run.name, measured);
                }
            }
        }
    }
    let sluice_loaded = Memory::of(sluice.pid())?;
    let nginx_loaded = nginx.as_ref().map(|n| Memory::of(n.pid())).transpose()?;

    println!(
        "{}",
        report.tables(&args.connections, &workloads, args.rounds, args.duration)
    );
    for (label, proxy) in &traced {
        println!("{label}: {}", proxy.trace_counts()?);
    }

    let mut memory = report::MemoryTable::default();
    memory.row("idle: RSS after start", Some(sluice_idle.rss_kib), None);
    memory.row(
        "peak RSS under load (VmHWM)",
        Some(sluice_loaded.peak_kib),
        nginx_loaded.map(|m| m.peak_kib),
    );
    if args.streams > 0 {
        let client = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot build the stream clients' runtime")?;
        // Twice: the second round shows whether memory freed by the first is used again or
        // the process grows with every round.
        let twice = |proxy: &targets::Proxy| -> anyhow::Result<[Held; 2]> {
            Ok([
                hold_streams(&client, proxy, args.streams)?,
                hold_streams(&client, proxy, args.streams)?,
            ])
        };
        let sluice_rounds = twice(&sluice)?;
        let nginx_rounds = nginx.map(twice).transpose()?;
        let n = args.streams;
        for (round, label) in [(0, ""), (1, ", again")] {
            memory.row(
                &format!("RSS with {n} open SSE streams{label}"),
                Some(sluice_rounds[round].with.rss_kib),
                nginx_rounds.as_ref().map(|s| s[round].with.rss_kib),
            );
            memory.row(
                "RSS after closing them",
                Some(sluice_rounds[round].after.rss_kib),
                nginx_rounds.as_ref().map(|s| s[round].after.rss_kib),
            );
        }
        let (sluice_streams, nginx_streams) =
            (&sluice_rounds[0], nginx_rounds.as_ref().map(|s| &s[0]));
        memory.note(format!(
            "{n} streams through sluice-proxy: {:.1} KiB each over the RSS before them; \
             {} events relayed in {:?} (the upstream sends one per stream and second).",
            sluice_streams.kib_per_stream(n),
            sluice_streams.events,
            sluice_streams.held,
        ));
        if let Some(s) = nginx_streams {
            memory.note(format!(
                "{n} streams through nginx: {:.1} KiB each; {} events relayed in {:?}.",
                s.kib_per_stream(n),
                s.events,
                s.held
            ));
        }
    }
    println!("{memory}");
    println!("\n{}", report::Machine::now().load_line());
    println!("took {:.0?}", started.elapsed());
    Ok(())
}

/// Memory around holding many streams open through a proxy.
struct Held {
    before: Memory,
    with: Memory,
    after: Memory,
    events: u64,
    held: Duration,
}

impl Held {
    fn kib_per_stream(&self, n: usize) -> f64 {
        self.with.rss_kib.saturating_sub(self.before.rss_kib) as f64 / n as f64
    }
}

fn hold_streams(
    client: &tokio::runtime::Runtime,
    proxy: &targets::Proxy,
    count: usize,
) -> anyhow::Result<Held> {
    use std::sync::atomic::Ordering;
    let before = Memory::of(proxy.pid())?;
    let streams = Streams::open(client, proxy.addr(), count)?;
    let events_before = streams.events.load(Ordering::Relaxed);
    // A few events pass on every stream while they are held.
    let held = Duration::from_secs(3);
    std::thread::sleep(held);
    let with = Memory::of(proxy.pid())?;
    let events = streams.events.load(Ordering::Relaxed) - events_before;
    let failed = streams.failed.load(Ordering::Relaxed);
    streams.close(client);
    anyhow::ensure!(failed == 0, "{failed} of {count} streams failed while held");
    std::thread::sleep(Duration::from_secs(1));
    let after = Memory::of(proxy.pid())?;
    Ok(Held {
        before,
        with,
        after,
        events,
        held,
    })
}
