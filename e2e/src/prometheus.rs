//! A Prometheus server (Debian's `prometheus` package) on loopback for tests: scraping loopback
//! targets once a second, its TSDB in a temporary directory, queried through its HTTP API.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::wait::{Probe, wait_until};
use crate::{Process, Result, free_port, http, peers};

/// Starting, and waiting for what a test caused to be scraped.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const SEEN_TIMEOUT: Duration = Duration::from_secs(60);

/// A Prometheus server on loopback, its TSDB in a temporary directory.
pub struct Prometheus {
    pub process: Process,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes every `(job, namespace, port)` once a second and evaluates `rules`.
    pub fn start(targets: &[(&str, &str, u16)], rules: &Path) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\nscrape_configs:\n",
            rules.display()
        );
        for (job, namespace, port) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n        \
                 labels:\n          namespace: {namespace}\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = free_port()?;
        let mut command = Command::new(peers::prometheus()?);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h");
        let mut process = Process::spawn("prometheus", command)?;
        process.wait_for_http_ok(&format!("http://127.0.0.1:{port}/-/ready"), START_TIMEOUT)?;
        Ok(Self {
            process,
            port,
            _dir: dir,
        })
    }

    /// `GET /api/v1/<path>` with `params`; the `data` of a successful answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let url = format!("http://127.0.0.1:{}/api/v1/{path}", self.port);
        let mut request = http::agent().get(&url);
        for (name, value) in params {
            request = request.query(*name, *value);
        }
        let mut response = request.call().with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body: Value = response
            .body_mut()
            .read_json()
            .with_context(|| format!("GET {url} {params:?}: not JSON"))?;
        if status != 200 || body["status"] != "success" {
            bail!("GET {url} {params:?} answered {status}: {body}");
        }
        Ok(body["data"].clone())
    }

    /// Waits until `expr` (a filter such as `metric == 1`) returns something: Prometheus has
    /// scraped what the test caused.
    pub fn until_seen(&self, expr: &str) -> Result<()> {
        wait_until(&format!("Prometheus to see {expr}"), SEEN_TIMEOUT, || {
            Ok(if self.query(expr)?.is_empty() {
                Probe::NotYet("nothing yet".to_owned())
            } else {
                Probe::Ready(())
            })
        })
    }

    /// The instant vector (or scalar) `expr` evaluates to now.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let data = self.api("query", &[("query", expr)])?;
        Ok(match data["resultType"].as_str() {
            Some("vector" | "matrix") => data["result"].as_array().cloned().unwrap_or_default(),
            _ => vec![data["result"].clone()],
        })
    }
}
