//! `sluice-bridge run` on a free loopback port, in front of a stdio MCP server, as the
//! `mcp-server` container of a stdio McpServer runs it.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::binaries::cargo_bin;
use crate::process::Process;
use crate::{Result, ports};

/// How long the bridge gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `sluice-bridge` binary.
pub fn sluice_bridge() -> Result<PathBuf> {
    cargo_bin("sluice-bridge", "sluice-bridge")
}

/// A running bridge, killed when dropped.
#[derive(Debug)]
pub struct Bridge {
    process: Process,
    port: u16,
}

impl Bridge {
    /// Starts the bridge with `flags` (e.g. `--restart-backoff 2s`) in front of `server`
    /// (the stdio server's command and arguments), and waits until its port accepts.
    pub fn start<S: AsRef<OsStr>>(flags: &[&str], server: &[S]) -> Result<Self> {
        let port = ports::free_port()?;
        let mut command = Command::new(sluice_bridge()?);
        command
            .args(["run", "--port", &port.to_string()])
            .args(flags)
            .arg("--")
            .args(server)
            .env_remove("SLUICE_BRIDGE_LOG");
        let mut process = Process::spawn(&format!("sluice-bridge :{port}"), command)?;
        process.wait_for_port(port, START_TIMEOUT)?;
        Ok(Self { process, port })
    }

    /// The port it serves on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The process guard (its stderr holds the bridge's log and the servers' stderr).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// The lines the servers wrote to stderr, without the bridge's `[session …] ` in front.
    pub fn server_stderr(&self) -> Vec<String> {
        self.process
            .stderr()
            .lines()
            .filter_map(|line| line.strip_prefix("[session "))
            .filter_map(|rest| rest.split_once("] ").map(|(_, text)| text.to_owned()))
            .collect()
    }
}
