//! The `sluice-proxy` binary as a sidecar in front of one upstream on loopback, with every policy
//! switched on but set so that nothing a well-behaved client does is refused: API-key auth (the
//! client sends [`Sidecar::AUTHORIZATION`]), the Origin check (its public URL is its loopback
//! address, as the operator sets it to the address clients use), tool, resource and prompt
//! allow lists matching everything, a rate limit far above what a test sends, a body limit, and the audit trail (JSON
//! logs at `info`). A test that compares a client's view through it with the direct path then
//! shows what the policies' machinery itself changes — which should be nothing.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::process::Process;
use crate::{Result, free_port, http, sluice_proxy};

/// How long the sidecar gets to start (it may be the first to need the freshly built binary).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The API key the sidecar accepts (client `e2e`).
const API_KEY: &str = "e2e-key-0123456789abcdef";

/// A running sidecar, killed when dropped.
#[derive(Debug)]
pub struct Sidecar {
    process: Process,
    port: u16,
    admin: u16,
    // Holds the config and the keys directory for as long as the sidecar runs.
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// The header a client sends to pass the sidecar's authentication.
    pub const AUTHORIZATION: &str = "Authorization: Bearer e2e-key-0123456789abcdef";

    /// Starts a permissive sidecar (see the module docs) forwarding to
    /// `http://127.0.0.1:<upstream_port>`, and waits until it is healthy.
    pub fn permissive(upstream_port: u16) -> Result<Self> {
        Self::start(upstream_port, "")
    }

    /// [`Sidecar::permissive`], checking that the upstream answers MCP every `interval`, each
    /// check taking at most `timeout`, and counting it as not answering after
    /// `failure_threshold` misses in a row.
    pub fn permissive_checking(
        upstream_port: u16,
        interval: &str,
        timeout: &str,
        failure_threshold: u32,
    ) -> Result<Self> {
        let check = format!(
            "  check:\n    interval: {interval}\n    timeout: {timeout}\n    failureThreshold: {failure_threshold}\n"
        );
        Self::start(upstream_port, &check)
    }

    fn start(upstream_port: u16, upstream_extra: &str) -> Result<Self> {
        let dir = tempfile::tempdir().context("failed to create the sidecar's directory")?;
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).context("failed to create the keys directory")?;
        std::fs::write(keys.join("e2e"), API_KEY).context("failed to write the API key")?;
        let (port, admin) = (free_port()?, free_port()?);
        let config = format!(
            "upstream:\n  url: http://127.0.0.1:{upstream_port}\n{upstream_extra}\
             admin:\n  listen: 127.0.0.1:{admin}\n\
             log:\n  level: info\n  format: json\n\
             limits:\n  maxBodyBytes: 1048576\n\
             entryPoints:\n\
             \x20 - name: main\n\
             \x20   listen: 127.0.0.1:{port}\n\
             \x20   publicUrl: http://127.0.0.1:{port}\n\
             \x20   maxBodyBytes: 4194304\n\
             \x20   auth:\n      mode: apiKey\n      keysDir: {keys}\n\
             \x20   tools:\n      allow: [\"*\"]\n      resources:\n        allow: [\"*\"]\n      prompts:\n        allow: [\"*\"]\n\
             \x20   rateLimits:\n\
             \x20     - name: generous\n        by: [identity]\n        requests: 100000\n        period: 1m\n\
             \x20       methods: [tools/call, resources/read, prompts/get]\n",
            keys = keys.display(),
        );
        let path = dir.path().join("sidecar.yaml");
        std::fs::write(&path, config).context("failed to write the sidecar's config")?;
        let mut command = Command::new(sluice_proxy()?);
        command.arg("--config").arg(&path).env_remove("RUST_LOG");
        let mut process = Process::spawn(&format!("sluice-proxy :{port}"), command)?;
        process.wait_for_port(port, START_TIMEOUT)?;
        process.wait_for_http_ok(&format!("http://127.0.0.1:{admin}/healthz"), START_TIMEOUT)?;
        Ok(Self {
            process,
            port,
            admin,
            _dir: dir,
        })
    }

    /// Its MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Its origin, `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET <path>` on its admin port (`/upstream`, `/readyz` …).
    pub fn admin_get(&self, path: &str) -> Result<http::HttpResponse> {
        http::get(&format!("http://127.0.0.1:{}{path}", self.admin), &[])
    }

    /// Its Prometheus metrics, as text.
    pub fn metrics(&self) -> Result<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin);
        Ok(http::get(&url, &[])?.expect_status(200)?.body)
    }

    /// The audit events it logged (JSON log lines of target `audit`), once `complete` says
    /// they are all there or 10 s have passed: the sidecar writes its log lines in batches.
    pub fn audit_events_until(
        &self,
        complete: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        self.log_lines_until("audit", complete)
    }

    /// Its JSON log lines of `target` (`audit`, `sluice::access` …), once `complete` says they
    /// are all there or 10 s have passed.
    pub fn log_lines_until(
        &self,
        target: &str,
        complete: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let logs = self.process.stdout() + &self.process.stderr();
            let events: Vec<serde_json::Value> = logs
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|event| event["target"] == target)
                .collect();
            if complete(&events) || std::time::Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The process guard.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
