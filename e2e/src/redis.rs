//! A throwaway Redis server on a free loopback port (no persistence), for global rate limits.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::Result;
use crate::process::Process;
use crate::wait::Probe;
use crate::{peers, ports};

/// How long Redis gets to start answering PING.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `redis-server`, killed when dropped.
#[derive(Debug)]
pub struct Redis {
    process: Process,
    port: u16,
}

impl Redis {
    /// Starts Redis on a free loopback port and waits until it answers PING.
    pub fn start() -> Result<Self> {
        Self::start_on(ports::free_port()?)
    }

    /// Starts Redis on `port` (e.g. again on the port of one a test killed), waiting for PING.
    pub fn start_on(port: u16) -> Result<Self> {
        let mut command = Command::new(peers::redis_server()?);
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            // Runs in the foreground: the guard owns its PID.
            .args(["--daemonize", "no", "--loglevel", "notice"]);
        let mut process = Process::spawn(&format!("redis-server :{port}"), command)?;
        let what = format!("redis on 127.0.0.1:{port} to answer PING");
        process.wait_while_running(&what, START_TIMEOUT, || {
            Ok(match ping(port) {
                Ok(()) => Probe::Ready(()),
                Err(error) => Probe::NotYet(format!("{error:#}")),
            })
        })?;
        Ok(Self { process, port })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends PING and expects PONG.
    pub fn ping(&self) -> Result<()> {
        ping(self.port)
    }

    /// The process guard (kill it, stop it with SIGSTOP, read its logs).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

fn ping(port: u16) -> Result<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500))
        .with_context(|| format!("failed to connect to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0_u8; 7];
    stream
        .read_exact(&mut reply)
        .with_context(|| format!("no reply to PING from {address}"))?;
    anyhow::ensure!(
        &reply == b"+PONG\r\n",
        "unexpected reply to PING from {address}: {:?}",
        String::from_utf8_lossy(&reply)
    );
    Ok(())
}
