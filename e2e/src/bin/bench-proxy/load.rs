//! The load: wrk with a Lua script that POSTs a JSON-RPC `tools/call`, each request with its
//! own id (a replayed id is not what clients send, and hangs stateful servers), and reports
//! exact percentiles from wrk's own histogram. Every request carries the API key the
//! `--policy` variant of sluice-proxy authenticates (`main.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sluice_e2e::peers;
use sluice_e2e::process::run;

/// The wrk script. `done` prints one line the bench parses; latencies are in microseconds.
const SCRIPT: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
-- The API key of the `--policy` variant; the other targets pass it on or strip it.
wrk.headers["X-API-Key"] = "bench-key-0123456789abcdef"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format(
    '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"pha_task_get","arguments":{"id":4242}}}', n))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%.1f p99_us=%.1f errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"#;

/// One wrk run's result.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub requests: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Socket errors, timeouts and non-2xx/3xx answers.
    pub errors: u64,
}

impl Sample {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// wrk, with its script written into a directory of the bench's.
pub struct Wrk {
    bin: PathBuf,
    script: PathBuf,
    pub threads: u32,
}

impl Wrk {
    pub fn new(dir: &Path, threads: u32) -> anyhow::Result<Self> {
        let script = dir.join("tools-call.lua");
        std::fs::write(&script, SCRIPT).context("cannot write the wrk script")?;
        Ok(Self {
            bin: peers::wrk()?,
            script,
            threads,
        })
    }

    /// Drives `url` with `connections` connections for `duration`.
    pub fn run(&self, url: &str, connections: u32, duration: Duration) -> anyhow::Result<Sample> {
        let threads = self.threads.min(connections).max(1);
        let mut command = Command::new(&self.bin);
        command
            .arg(format!("-t{threads}"))
            .arg(format!("-c{connections}"))
            // wrk takes whole seconds.
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .args(["--timeout", "5s", "-s"])
            .arg(&self.script)
            .arg(url);
        let output = run(&mut command, duration + Duration::from_secs(30))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "{command:?} failed ({}): {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&stdout).with_context(|| format!("unexpected wrk output from {command:?}:\n{stdout}"))
    }
}

fn parse(stdout: &str) -> anyhow::Result<Sample> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .context("no BENCH line")?;
    let field = |name: &str| -> anyhow::Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .context(format!("no {name}"))?
            .parse::<f64>()
            .with_context(|| format!("bad {name}"))
    };
    // `errors.status` counts answers of 400 and above. (No Lua `response` hook: defining one
    // makes wrk hand every body to Lua, which would slow the load generator down.)
    Ok(Sample {
        requests: field("requests")? as u64,
        seconds: field("duration_us")? / 1e6,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        errors: field("errors")? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_done_line() {
        let s = parse("Running 1s test\nBENCH requests=2000 duration_us=1000000 p50_us=95.0 p99_us=210.5 errors=1\n").unwrap();
        assert_eq!(s.requests, 2000);
        assert!((s.rps() - 2000.0).abs() < 1e-9);
        assert!((s.p99_us - 210.5).abs() < 1e-9);
        assert_eq!(s.errors, 1);
        assert!(parse("nothing").is_err());
    }
}
