//! What a process has used, from `/proc`: CPU time (utime + stime, all threads), memory
//! (current and peak resident set) and open file descriptors; and this process's own file
//! descriptor limit, which load tests raise.

use anyhow::{Context as _, bail};

/// CPU time a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: count fields after its end.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after the name.
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("unexpected /proc/{pid}/stat: {stat}");
    };
    let ticks: u64 = utime.parse::<u64>()? + stime.parse::<u64>()?;
    Ok(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// Resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM`).
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        Ok(Self {
            rss_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }
}

/// How many file descriptors the process has open.
pub fn open_fds(pid: u32) -> anyhow::Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {dir}"))?
        .count())
}

/// Raises this process's soft limit on open files to at least `wanted` (capped by the hard
/// limit), for tests that hold thousands of sockets; children started afterwards inherit it.
/// Returns the soft limit now in force.
pub fn raise_fd_limit(wanted: u64) -> anyhow::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= wanted {
        return Ok(current);
    }
    let raised = limit.maximum.map_or(wanted, |max| wanted.min(max));
    limit.current = Some(raised);
    setrlimit(Resource::Nofile, limit).context("cannot raise the open-files limit")?;
    Ok(raised)
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(pid).unwrap() > 0.0);
        let m = Memory::of(pid).unwrap();
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib);
        let before = open_fds(pid).unwrap();
        let held: Vec<_> = (0..3)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        assert!(open_fds(pid).unwrap() >= before + held.len());
        assert!(raise_fd_limit(64).unwrap() >= 64);
    }
}
