//! `@modelcontextprotocol/server-everything` (the reference MCP server: sessions, resumable SSE,
//! every feature) on a free loopback port, in Streamable HTTP mode at `/mcp`.

use std::process::Command;
use std::time::Duration;

use crate::Result;
use crate::process::Process;
use crate::{peers, ports};

/// How long server-everything gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server-everything, killed when dropped.
#[derive(Debug)]
pub struct ServerEverything {
    process: Process,
    port: u16,
}

impl ServerEverything {
    /// Starts it under Node 22 on a free port and waits until the port accepts connections.
    pub fn start() -> Result<Self> {
        let port = ports::free_port()?;
        let mut command = Command::new(peers::node22()?);
        command
            // It calls `listen(PORT)`, which would bind every interface; the preload pins it to
            // 127.0.0.1.
            .arg("--require")
            .arg(peers::loopback_preload()?)
            .arg(peers::server_everything_cli()?)
            .arg("streamableHttp")
            .env("PORT", port.to_string());
        let mut process = Process::spawn(&format!("server-everything :{port}"), command)?;
        process.wait_for_port(port, START_TIMEOUT)?;
        Ok(Self { process, port })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The process guard.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
