//! The in-memory API server (`e2e/memory-apiserver`) as a process of its own, for tests that run
//! the `sluice-operator` binary against it: its URL, a kubeconfig naming it, and `create` for
//! what `kubectl create` would send. Where it is simpler than a real API server is written down
//! in its crate's docs; a test must not depend on those differences.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{Process, Result, cargo_bin, http};

/// Building (when needed) and starting it.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The in-memory API server as a process, and a kubeconfig naming it.
pub struct ApiServer {
    pub process: Process,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// A kubeconfig naming it (plain HTTP, namespace `default`): `KUBECONFIG` for the operator.
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl ApiServer {
    pub fn start() -> Result<Self> {
        let binary = cargo_bin("sluice-memory-apiserver", "sluice-memory-apiserver")?;
        let mut process = Process::spawn("sluice-memory-apiserver", Command::new(binary))?;
        process.wait_for_output("listening on ", START_TIMEOUT)?;
        let url = process
            .stdout()
            .lines()
            .find_map(|line| line.strip_prefix("listening on "))
            .context("no address printed")?
            .trim()
            .to_owned();
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n  - name: memory\n    cluster:\n      \
                 server: {url}\nusers:\n  - name: test\n    user: {{}}\ncontexts:\n  - name: memory\n    \
                 context:\n      cluster: memory\n      user: test\n      namespace: default\n\
                 current-context: memory\n"
            ),
        )?;
        Ok(Self {
            process,
            url,
            kubeconfig,
            _dir: dir,
        })
    }

    /// Creates `object` at `path` (a collection URL path), as `kubectl create` would.
    pub fn create(&self, path: &str, object: &Value) -> Result<()> {
        let response = http::post_json(&format!("{}{path}", self.url), object, &[])?;
        if response.status != 201 {
            bail!(
                "POST {path} answered {}: {}",
                response.status,
                response.body
            );
        }
        Ok(())
    }
}
