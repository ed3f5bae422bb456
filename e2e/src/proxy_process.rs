//! A sluice-proxy process with a config of the test's, for load and fault tests: one entry point
//! and the admin listener on free loopback ports, its config file where the test wants it (a
//! plain file, or a Kubernetes-style `..data` symlink), and what tests read on the admin side:
//! `/readyz` and samples of `/metrics`. (For a sidecar with every policy on, see
//! [`crate::sidecar`].)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::http::{self, HttpResponse};
use crate::process::Process;
use crate::{Result, free_port, sluice_proxy};

/// Starting the binary and opening its listeners.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The entry point's name in [`ProxyProcess::config`].
pub const ENTRY_POINT: &str = "main";

/// `upstream.check` lines for an upstream check a test can watch turn within seconds: every
/// 500ms, 400ms each, two misses in a row to fail.
pub const QUICK_CHECK: &str = "    interval: 500ms\n    timeout: 400ms\n    failureThreshold: 2\n";

/// A running sluice-proxy.
pub struct ProxyProcess {
    pub process: Process,
    /// The entry point's port (127.0.0.1).
    pub port: u16,
    /// The admin port (127.0.0.1).
    pub admin: u16,
    /// The temporary directory holding its config, when [`ProxyProcess::in_front_of`] made one;
    /// removed after the process (declared after it, so dropped after it).
    _config_dir: Option<tempfile::TempDir>,
}

/// Free ports for a sidecar's entry point and admin listener.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub entry: u16,
    pub admin: u16,
}

impl Ports {
    /// Two free loopback ports.
    pub fn free() -> Result<Self> {
        Ok(Self {
            entry: free_port()?,
            admin: free_port()?,
        })
    }
}

impl ProxyProcess {
    /// A config with one entry point [`ENTRY_POINT`] (no authentication) in front of
    /// `upstream`; `top` adds top-level YAML (timeouts, shutdown, redis …), `entry` adds lines
    /// under the entry point (indented four spaces).
    pub fn config(upstream: &str, ports: Ports, top: &str, entry: &str) -> String {
        Self::config_checked(upstream, "", ports, top, entry)
    }

    /// [`ProxyProcess::config`] with `check` as the lines of `upstream.check` (indented four
    /// spaces, e.g. [`QUICK_CHECK`]); none: the defaults.
    pub fn config_checked(
        upstream: &str,
        check: &str,
        ports: Ports,
        top: &str,
        entry: &str,
    ) -> String {
        let check = if check.is_empty() {
            String::new()
        } else {
            format!("  check:\n{check}")
        };
        format!(
            "upstream:\n  url: {upstream}\n{check}admin:\n  listen: 127.0.0.1:{admin}\n{top}\
             entryPoints:\n  - name: {ENTRY_POINT}\n    listen: 127.0.0.1:{port}\n    auth:\n      mode: none\n{entry}",
            admin = ports.admin,
            port = ports.entry,
        )
    }

    /// Starts the sluice-proxy binary on the config at `config_path` (already written, for
    /// `ports`), with `args` added, and waits until the entry point accepts and `/healthz`
    /// answers. `/readyz` is the test's to look at: it fails while the upstream is down.
    pub fn start(config_path: &Path, ports: Ports, args: &[&str]) -> Result<Self> {
        let mut command = Command::new(sluice_proxy()?);
        command
            .arg("--config")
            .arg(config_path)
            .args(args)
            .env_remove("RUST_LOG");
        let mut process = Process::spawn(&format!("sluice-proxy :{}", ports.entry), command)?;
        process.wait_for_port(ports.entry, START_TIMEOUT)?;
        process.wait_for_http_ok(
            &format!("http://127.0.0.1:{}/healthz", ports.admin),
            START_TIMEOUT,
        )?;
        Ok(Self {
            process,
            port: ports.entry,
            admin: ports.admin,
            _config_dir: None,
        })
    }

    /// Starts in front of `upstream` on free ports, on the config [`ProxyProcess::config`]
    /// writes with `top` and `entry`, kept in a temporary directory of its own: what most load
    /// and fault tests need.
    pub fn in_front_of(upstream: &str, top: &str, entry: &str) -> Result<Self> {
        Self::in_front_of_checked(upstream, "", top, entry)
    }

    /// [`ProxyProcess::in_front_of`] with `check` as the lines of `upstream.check` (see
    /// [`ProxyProcess::config_checked`]).
    pub fn in_front_of_checked(
        upstream: &str,
        check: &str,
        top: &str,
        entry: &str,
    ) -> Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a directory for the config")?;
        let ports = Ports::free()?;
        let config = Self::config_checked(upstream, check, ports, top, entry);
        let mut proxy = Self::start_with(dir.path(), &config, ports, &[])?;
        proxy._config_dir = Some(dir);
        Ok(proxy)
    }

    /// Writes `config` to `dir/sluice.yaml` and starts on it.
    pub fn start_with(dir: &Path, config: &str, ports: Ports, args: &[&str]) -> Result<Self> {
        let path: PathBuf = dir.join("sluice.yaml");
        std::fs::write(&path, config)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Self::start(&path, ports, args)
    }

    /// `http://127.0.0.1:<entry port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET /readyz`.
    pub fn readyz(&self) -> Result<HttpResponse> {
        self.admin_get("/readyz")
    }

    /// Waits until `/readyz` answers 200: the first upstream check runs after the listeners
    /// open, so a test that needs a ready sidecar waits for it rather than asking once.
    pub fn wait_ready(&mut self) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin);
        self.process.wait_for_http_ok(&url, START_TIMEOUT)
    }

    /// `GET <path>` on the admin port (`/upstream`, `/upstream/livez` …).
    pub fn admin_get(&self, path: &str) -> Result<HttpResponse> {
        http::get(&format!("http://127.0.0.1:{}{path}", self.admin), &[])
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> Result<String> {
        Ok(http::get(&format!("http://127.0.0.1:{}/metrics", self.admin), &[])?.body)
    }

    /// The value of one sample of `/metrics`, named with its labels exactly as exposed (e.g.
    /// `sluice_open_streams{entry_point="main"}`); `None` when it is not exposed (yet).
    pub fn metric(&self, sample: &str) -> Result<Option<f64>> {
        Ok(sample_value(&self.metrics()?, sample))
    }

    /// Like [`ProxyProcess::metric`], with an absent sample read as 0 (a counter not yet counted).
    pub fn count(&self, sample: &str) -> Result<f64> {
        Ok(self.metric(sample)?.unwrap_or(0.0))
    }
}

/// The value of `sample` in metrics `text`.
pub fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_match_name_and_labels_exactly() {
        let text = "# HELP x\nsluice_open_streams{entry_point=\"main\"} 3\n\
                    sluice_open_streams{entry_point=\"main2\"} 5\nsluice_config_rejected 1\n";
        assert_eq!(
            sample_value(text, "sluice_open_streams{entry_point=\"main\"}"),
            Some(3.0)
        );
        assert_eq!(sample_value(text, "sluice_config_rejected"), Some(1.0));
        assert_eq!(sample_value(text, "sluice_open_streams"), None);
    }
}
