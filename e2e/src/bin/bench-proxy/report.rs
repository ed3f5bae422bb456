//! What the bench measured, and its tables: per target the median over rounds of req/s, p50,
//! p99 and CPU per request, with the ratios sluice/direct and sluice/nginx.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::load::Sample;
use crate::targets::Proxy;
use sluice_e2e::procstat::{self, mib};

/// What the load asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// `POST /mcp` answered with a JSON body.
    Json,
    /// `POST /mcp-sse` answered with one SSE event, chunked.
    Sse,
}

impl Workload {
    fn path(self) -> &'static str {
        match self {
            Workload::Json => "/mcp",
            Workload::Sse => "/mcp-sse",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Workload::Json => "POST tools/call → 198-byte JSON reply",
            Workload::Sse => "POST tools/call → the same reply as one SSE event (chunked)",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Json => "json",
            Workload::Sse => "sse",
        })
    }
}

/// A target of the load: where to send it, and whose CPU time to count.
pub struct Run {
    pub name: String,
    base: String,
    /// The process whose CPU time is counted: the proxy, or for the direct path this program,
    /// whose only busy part then is the canned upstream.
    pid: u32,
}

impl Run {
    pub fn direct(upstream: SocketAddr) -> Self {
        Self {
            name: "direct".into(),
            base: format!("http://{upstream}"),
            pid: std::process::id(),
        }
    }

    pub fn proxy(name: &str, proxy: &Proxy) -> Self {
        Self {
            name: name.into(),
            base: proxy.url(""),
            pid: proxy.pid(),
        }
    }

    pub fn url(&self, workload: Workload) -> String {
        format!("{}{}", self.base, workload.path())
    }

    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        procstat::cpu_seconds(self.pid)
    }
}

/// One measured run.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub sample: Sample,
    /// CPU time of the measured process per request, in µs.
    pub cpu_us: f64,
}

impl Measured {
    pub fn new(sample: Sample, cpu_seconds: f64) -> Self {
        let cpu_us = cpu_seconds * 1e6 / (sample.requests.max(1) as f64);
        Self { sample, cpu_us }
    }
}

impl fmt::Display for Measured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.sample;
        write!(
            f,
            "{:>9.0} req/s  p50 {:>7.1} µs  p99 {:>8.1} µs  cpu {:>5.1} µs/req  errors {}",
            s.rps(),
            s.p50_us,
            s.p99_us,
            self.cpu_us,
            s.errors
        )
    }
}

/// A target's rounds, by target name, in the order the targets were measured.
type Rounds = Vec<(String, Vec<Measured>)>;

/// Every run, by workload and connection count.
#[derive(Default)]
pub struct Report {
    runs: BTreeMap<(Workload, u32), Rounds>,
}

/// Medians of one target's rounds.
struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
    errors: u64,
}

impl Report {
    pub fn add(&mut self, workload: Workload, connections: u32, target: &str, m: Measured) {
        let targets = self.runs.entry((workload, connections)).or_default();
        match targets.iter_mut().find(|(t, _)| t == target) {
            Some((_, rounds)) => rounds.push(m),
            None => targets.push((target.to_owned(), vec![m])),
        }
    }

    /// Markdown tables, one per workload and connection count.
    pub fn tables(
        &self,
        connections: &[u32],
        workloads: &[Workload],
        rounds: usize,
        duration: Duration,
    ) -> String {
        let mut out = String::new();
        for &workload in workloads {
            for &c in connections {
                let Some(targets) = self.runs.get(&(workload, c)) else {
                    continue;
                };
                let plural = if c == 1 { "" } else { "s" };
                out += &format!(
                    "## {}, {c} connection{plural}: median of {rounds} rounds × {duration:?}\n\n",
                    workload.title()
                );
                out += "| target | req/s | p50 | p99 | CPU per request | errors |\n";
                out += "|---|---:|---:|---:|---:|---:|\n";
                let mut summaries = BTreeMap::new();
                for (name, measured) in targets {
                    let s = summarise(measured);
                    let who = if name == "direct" { " (upstream)" } else { "" };
                    out += &format!(
                        "| {name} | {:.0} | {:.0} µs | {:.0} µs | {:.1} µs{who} | {} |\n",
                        s.rps, s.p50, s.p99, s.cpu, s.errors
                    );
                    summaries.insert(name.as_str(), s);
                }
                out += "\n";
                out += &ratios(&summaries);
                out += "\n";
            }
        }
        out
    }
}

/// The nginx targets ratios are given against: with its access log, and without.
const NGINXES: [&str; 2] = ["nginx", "nginx-nolog"];

fn ratios(s: &BTreeMap<&str, Summary>) -> String {
    let mut out = String::new();
    let (Some(direct), Some(sluice)) = (s.get("direct"), s.get("sluice")) else {
        return out;
    };
    out += &format!(
        "- sluice/direct: {:.2} × req/s; sluice adds {:.0} µs at p50 over direct\n",
        sluice.rps / direct.rps,
        sluice.p50 - direct.p50
    );
    for name in NGINXES {
        if let Some(nginx) = s.get(name) {
            out += &format!(
                "- {name} adds {:.0} µs at p50 over direct\n",
                nginx.p50 - direct.p50
            );
        }
    }
    out += &against_nginx(s, "sluice", sluice);
    if let Some(policy) = s.get("sluice+policy") {
        out += &format!(
            "- sluice+policy/direct: {:.2} × req/s, adds {:.0} µs at p50; sluice+policy/sluice: {:.2} × req/s, {:.2} × CPU per request\n",
            policy.rps / direct.rps,
            policy.p50 - direct.p50,
            policy.rps / sluice.rps,
            policy.cpu / sluice.cpu
        );
        out += &against_nginx(s, "sluice+policy", policy);
    }
    if let Some(floor) = s.get("hyper-floor") {
        out += &format!(
            "- sluice/hyper-floor: {:.2} × req/s, {:.2} × CPU per request (sluice-proxy's own work: {:.1} µs of CPU per request)\n",
            sluice.rps / floor.rps,
            sluice.cpu / floor.cpu,
            sluice.cpu - floor.cpu
        );
        out += &against_nginx(s, "hyper-floor", floor);
    }
    for (name, traced) in s.iter().filter(|(n, _)| n.starts_with("sluice+trace")) {
        out += &format!(
            "- {name}/sluice: {:.2} × req/s, {:.2} × CPU per request, adds {:.0} µs at p50\n",
            traced.rps / sluice.rps,
            traced.cpu / sluice.cpu,
            traced.p50 - sluice.p50
        );
    }
    if let Some(cmp) = s.get("sluice-cmp") {
        out += &format!(
            "- sluice/sluice-cmp: {:.2} × req/s, {:.2} × CPU per request\n",
            sluice.rps / cmp.rps,
            sluice.cpu / cmp.cpu
        );
    }
    out
}

/// `target`'s req/s and CPU per request against each nginx measured.
fn against_nginx(s: &BTreeMap<&str, Summary>, target: &str, summary: &Summary) -> String {
    let mut out = String::new();
    for name in NGINXES {
        if let Some(nginx) = s.get(name) {
            out += &format!(
                "- {target}/{name}: {:.2} × req/s, {:.2} × CPU per request\n",
                summary.rps / nginx.rps,
                summary.cpu / nginx.cpu
            );
        }
    }
    out
}

fn summarise(rounds: &[Measured]) -> Summary {
    let med = |f: fn(&Measured) -> f64| median(rounds.iter().map(f).collect());
    Summary {
        rps: med(|m| m.sample.rps()),
        p50: med(|m| m.sample.p50_us),
        p99: med(|m| m.sample.p99_us),
        cpu: med(|m| m.cpu_us),
        errors: rounds.iter().map(|m| m.sample.errors).sum(),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The memory table: sluice-proxy and nginx side by side.
#[derive(Default)]
pub struct MemoryTable {
    rows: Vec<(String, Option<u64>, Option<u64>)>,
    notes: Vec<String>,
}

impl MemoryTable {
    pub fn row(&mut self, what: &str, sluice_kib: Option<u64>, nginx_kib: Option<u64>) {
        self.rows.push((what.to_owned(), sluice_kib, nginx_kib));
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }
}

impl fmt::Display for MemoryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "## Memory\n")?;
        writeln!(f, "| | sluice-proxy | nginx |")?;
        writeln!(f, "|---|---:|---:|")?;
        let cell = |kib: &Option<u64>| kib.map_or_else(|| "—".to_owned(), mib);
        for (what, s, n) in &self.rows {
            writeln!(f, "| {what} | {} | {} |", cell(s), cell(n))?;
        }
        writeln!(f)?;
        for note in &self.notes {
            writeln!(f, "- {note}")?;
        }
        Ok(())
    }
}

/// The machine the bench ran on.
pub struct Machine {
    cpus: usize,
    model: String,
    kernel: String,
    load: String,
}

impl Machine {
    pub fn now() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown CPU".into(), |(_, m)| m.trim().to_owned());
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or("?".into(), |k| k.trim().to_owned()),
            load: std::fs::read_to_string("/proc/loadavg").map_or("?".into(), |l| {
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            }),
        }
    }

    pub fn load_line(&self) -> String {
        format!("load average (1, 5, 15 min): {}", self.load)
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "machine: {} CPUs ({}), Linux {}; {}",
            self.cpus,
            self.model,
            self.kernel,
            self.load_line()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
