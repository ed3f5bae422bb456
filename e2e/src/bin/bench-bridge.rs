//! bench-bridge: what sluice-bridge adds to a stdio MCP server, in latency and memory.
//!
//! The same `tools/call` (server-everything's `echo`, or the Python SDK server's) made one at a
//! time, over and over: straight over the server's stdin and stdout (the baseline, what the
//! SDK's stdio client does), over HTTP to the bridge, and over HTTP to the sidecar in front of
//! the bridge (what a caller in the cluster goes through). Rounds alternate the lanes so the
//! machine's load hits them alike; every figure is the median over rounds, and the bridge's
//! cost is the difference to the baseline measured in the same run. Memory: the bridge's
//! resident set idle, with one session and with eight (each session is a server process of
//! its own, reported apart). Loopback only; every process it starts ends when it does.
//!
//! `cargo run --release -p sluice-e2e --bin bench-bridge -- --rounds 5 --calls 2000`

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::{Value, json};
use sluice_e2e::procstat::{Memory, mib};
use sluice_e2e::{Bridge, Sidecar, peers};

#[derive(Parser, Debug)]
#[command(name = "bench-bridge")]
struct Args {
    /// Measured rounds per lane.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Calls per round and lane, one at a time.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// The stdio server: `everything` (server-everything, Node 22) or `python` (Python SDK 2.x).
    #[arg(long, default_value = "everything")]
    server: String,
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench-bridge","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (server, call): (Vec<OsString>, Value) = match args.server.as_str() {
        "everything" => (
            vec![
                peers::node22()?.into(),
                peers::server_everything_cli()?.into(),
                "stdio".into(),
            ],
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        ),
        "python" => (
            vec![
                peers::python_mcp2()?.into(),
                peers::python_script("stdio/server.py")?.into(),
            ],
            json!({"name": "echo", "arguments": {"text": "hi"}}),
        ),
        other => bail!("--server {other}: use everything or python"),
    };

    let mut bridge = Bridge::start(&["--max-processes", "16"], &server)?;
    let bridge_pid = bridge.process().pid();
    let idle = Memory::of(bridge_pid)?;
    let sidecar = Sidecar::permissive(bridge.port())?;
    let mut stdio = StdioServer::start(&server)?;
    let mut direct = Http::open(&bridge.url(), None)?;
    let mut proxied = Http::open(&sidecar.url(), Some(Sidecar::AUTHORIZATION))?;
    let two_sessions = Memory::of(bridge_pid)?;

    // Warm-up: the first calls of a Node or Python process run cold code.
    for n in 0..200 {
        stdio.call(n, &call)?;
        direct.call(n, &call)?;
        proxied.call(n, &call)?;
    }
    let mut lanes: [(&str, Vec<Quantiles>); 3] = [
        ("stdio, direct", Vec::new()),
        ("HTTP, bridge", Vec::new()),
        ("HTTP, sidecar + bridge", Vec::new()),
    ];
    for round in 0..args.rounds {
        // Each round starts with a different lane.
        for offset in 0..3 {
            let lane = (round + offset) % 3;
            let mut took = Vec::with_capacity(args.calls);
            for n in 0..args.calls as u64 {
                let start = Instant::now();
                match lane {
                    0 => stdio.call(n, &call)?,
                    1 => direct.call(n, &call)?,
                    _ => proxied.call(n, &call)?,
                }
                took.push(start.elapsed());
            }
            lanes[lane].1.push(Quantiles::of(took));
        }
    }

    // Memory with eight sessions (their processes are the server's, reported apart).
    let mut more = Vec::new();
    for _ in 0..6 {
        more.push(Http::open(&bridge.url(), None)?);
    }
    let eight = Memory::of(bridge_pid)?;
    let servers = children_rss_kib(bridge_pid)?;

    println!(
        "bench-bridge: {} calls x {} rounds per lane, server {}, one call at a time\n",
        args.calls, args.rounds, args.server
    );
    println!("| lane | p50 | p90 | p99 | p50 added to stdio |\n|---|---|---|---|---|");
    let base = median(lanes[0].1.iter().map(|q| q.p50));
    for (name, rounds) in &lanes {
        let p50 = median(rounds.iter().map(|q| q.p50));
        let p90 = median(rounds.iter().map(|q| q.p90));
        let p99 = median(rounds.iter().map(|q| q.p99));
        println!(
            "| {name} | {} | {} | {} | {} ({:.2}x) |",
            us(p50),
            us(p90),
            us(p99),
            us(p50.saturating_sub(base)),
            p50.as_secs_f64() / base.as_secs_f64()
        );
    }
    println!(
        "\nbridge memory (RSS): idle {}, two sessions {}, eight sessions {} (peak {}); \
         per session {} in the bridge; the eight server processes hold {} ({} each)",
        mib(idle.rss_kib),
        mib(two_sessions.rss_kib),
        mib(eight.rss_kib),
        mib(eight.peak_kib),
        mib(eight.rss_kib.saturating_sub(idle.rss_kib) / 8),
        mib(servers.iter().sum()),
        mib(servers.iter().sum::<u64>() / servers.len().max(1) as u64),
    );
    drop(more);
    Ok(())
}

/// A stdio server spoken to directly, as the SDK's stdio client does.
struct StdioServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl StdioServer {
    fn start(server: &[OsString]) -> anyhow::Result<Self> {
        let mut child = Command::new(&server[0])
            .args(&server[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the stdio server")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut this = Self {
            child,
            stdin,
            stdout,
        };
        this.send(INITIALIZE)?;
        this.answer()?;
        this.send(INITIALIZED)?;
        Ok(this)
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// The next line that is a response.
    fn answer(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("the stdio server closed stdout");
            }
            let message: Value = serde_json::from_str(&line)?;
            if message.get("result").is_some() || message.get("error").is_some() {
                return Ok(message);
            }
        }
    }

    fn call(&mut self, id: u64, call: &Value) -> anyhow::Result<()> {
        let request =
            json!({"jsonrpc": "2.0", "id": id + 1, "method": "tools/call", "params": call});
        self.send(&request.to_string())?;
        check(&self.answer()?)
    }
}

impl Drop for StdioServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MCP session over Streamable HTTP, on one kept-alive connection.
struct Http {
    url: String,
    agent: ureq::Agent,
    session: String,
    authorization: Option<(String, String)>,
}

impl Http {
    fn open(url: &str, authorization: Option<&str>) -> anyhow::Result<Self> {
        let authorization = authorization
            .and_then(|header| header.split_once(": "))
            .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let mut this = Self {
            url: url.to_owned(),
            agent: sluice_e2e::http::agent(),
            session: String::new(),
            authorization,
        };
        let (session, _) = this.post(INITIALIZE)?;
        this.session = session.context("no Mcp-Session-Id")?;
        this.post(INITIALIZED)?;
        Ok(this)
    }

    fn post(&self, body: &str) -> anyhow::Result<(Option<String>, String)> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", sluice_e2e::http::MCP_ACCEPT);
        if !self.session.is_empty() {
            request = request
                .header("mcp-session-id", &self.session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        if let Some((name, value)) = &self.authorization {
            request = request.header(name, value);
        }
        let mut response = request.send(body)?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((session, response.body_mut().read_to_string()?))
    }

    fn call(&mut self, id: u64, call: &Value) -> anyhow::Result<()> {
        let request =
            json!({"jsonrpc": "2.0", "id": id + 1, "method": "tools/call", "params": call});
        let (_, body) = self.post(&request.to_string())?;
        let data = body
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .next_back()
            .with_context(|| format!("no event in {body}"))?;
        check(&serde_json::from_str(data)?)
    }
}

fn check(response: &Value) -> anyhow::Result<()> {
    if response.get("result").is_none() {
        bail!("the call failed: {response}");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Quantiles {
    p50: Duration,
    p90: Duration,
    p99: Duration,
}

impl Quantiles {
    fn of(mut took: Vec<Duration>) -> Self {
        took.sort();
        let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
        }
    }
}

fn median(values: impl Iterator<Item = Duration>) -> Duration {
    let mut values: Vec<Duration> = values.collect();
    values.sort();
    values[values.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}

/// The resident sets of `pid`'s child processes, in KiB.
fn children_rss_kib(pid: u32) -> anyhow::Result<Vec<u64>> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
    children
        .split_whitespace()
        .map(|child| Ok(Memory::of(child.parse()?)?.rss_kib))
        .collect()
}
