//! Real `redis-server` processes on loopback (Debian's, installed by scripts/setup.sh) and a
//! tiny RESP client for the tests' own checks. Without `redis-server` the tests fail, never
//! skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::PATIENCE;

/// A `redis-server` (or sentinel) process answering plain RESP on `port`; killed by PID when
/// dropped.
pub struct RedisProcess {
    child: Option<Child>,
    pub port: u16,
    /// `AUTH` arguments sent before each of the test's commands.
    auth: Vec<String>,
    /// Its working directory, where a replica's sync writes dump.rdb.
    workdir: Option<tempfile::TempDir>,
}

impl RedisProcess {
    /// Starts `redis-server` with `args` (a config file and/or `--option value` pairs, which
    /// must bind 127.0.0.1 on `port`) and waits until it answers PING.
    pub fn spawn(args: &[String], port: u16, auth: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); it is installed by scripts/setup.sh (`make setup`) and these tests need it"
                )
            });
        let process = Self {
            child: Some(child),
            port,
            auth: auth.iter().map(|a| (*a).to_owned()).collect(),
            workdir: None,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while process.command(&["PING"]).as_deref() != Some("+PONG\r\n") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {port} did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    /// A plain `redis-server` on `port` with no persistence, working in a temporary directory
    /// (replication still writes an RDB file there).
    pub fn plain(port: u16, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "--dir",
            &dir.path().display().to_string(),
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut process = Self::spawn(&args, port, &[]);
        process.workdir = Some(dir);
        process
    }

    /// A sentinel on `port` from `config` (a file it may rewrite, as sentinels do).
    pub fn sentinel(config: &Path, port: u16) -> Self {
        Self::spawn(
            &[config.display().to_string(), "--sentinel".to_owned()],
            port,
            &[],
        )
    }

    /// Sends one command; the raw reply, or `None` when Redis cannot be reached.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = Vec::new();
        let mut push = |args: &[&str]| {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        };
        let auth: Vec<&str> = self.auth.iter().map(String::as_str).collect();
        if !auth.is_empty() {
            push(&[&["AUTH"][..], &auth].concat());
        }
        push(args);
        tcp.write_all(&out).ok()?;
        let mut reply = vec![0; 16384];
        let mut got = 0;
        // AUTH's +OK first, when sent; then the command's reply.
        loop {
            let n = tcp.read(&mut reply[got..]).ok()?;
            if n == 0 {
                return None;
            }
            got += n;
            let text = String::from_utf8_lossy(&reply[..got]).into_owned();
            let text = if auth.is_empty() {
                text
            } else {
                match text.strip_prefix("+OK\r\n") {
                    Some(rest) => rest.to_owned(),
                    None => continue,
                }
            };
            if text.ends_with("\r\n") {
                return Some(text);
            }
        }
    }

    /// Kills the process (by its PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
