//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, under Node 22) run
//! against a server, and its results read back from the `checks.json` of every scenario.
//!
//! The suite's `server` mode builds its MCP client without any way to add a header; to pass an
//! authenticating sidecar the runner is started with `e2e/js/inject-header.cjs` preloaded, which
//! adds one header to every request to one origin.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::process::{run, tail};
use crate::{Result, peers};

/// The whole `--suite all` takes seconds; this only stops a hung runner.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);

/// One check of a scenario, as `checks.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Check {
    /// The check's id (e.g. `tools-call-simple-text`, `server-sse-priming-event`).
    pub id: String,
    /// `SUCCESS`, `FAILURE`, `WARNING`, `SKIPPED` or `INFO` (a log entry, not a verdict).
    pub status: String,
    /// Why it failed or warned.
    #[serde(rename = "errorMessage", default)]
    pub error_message: Option<String>,
}

impl Check {
    /// Whether the check is a verdict rather than a log of what went over the wire.
    pub fn is_verdict(&self) -> bool {
        self.status != "INFO"
    }
}

/// Each scenario's checks, by scenario name.
pub type SuiteResults = BTreeMap<String, Vec<Check>>;

/// Whether a scenario passed: it has no failed check.
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|check| check.status != "FAILURE")
}

/// Runs every server scenario (`--suite all`) against `url`, with `header` ("Name: value")
/// added to the runner's requests to `url`'s origin, writing results under `out_dir`.
///
/// The runner's exit status is not an error (failed scenarios are data here); a run that left
/// no results is.
pub fn run_server_suite(url: &str, header: &str, out_dir: &Path) -> Result<SuiteResults> {
    let origin = url
        .find("/mcp")
        .map(|end| &url[..end])
        .with_context(|| format!("{url} does not end in /mcp"))?;
    let mut command = Command::new(peers::node22()?);
    command
        .arg("--require")
        .arg(peers::inject_header_preload()?)
        .arg(peers::conformance_cli()?)
        .args(["server", "--suite", "all", "--url", url, "-o"])
        .arg(out_dir)
        .env("SLUICE_E2E_INJECT_HEADER", header)
        .env("SLUICE_E2E_INJECT_HEADER_ORIGIN", origin);
    let output = run(&mut command, SUITE_TIMEOUT)?;
    let results = read_results(out_dir)?;
    if results.is_empty() {
        bail!(
            "the conformance suite left no results in {} ({}):\n{}\n{}",
            out_dir.display(),
            output.status,
            tail(&String::from_utf8_lossy(&output.stdout), 40),
            tail(&String::from_utf8_lossy(&output.stderr), 40)
        );
    }
    Ok(results)
}

/// Reads `<out_dir>/server-<scenario>-<timestamp>/checks.json` for every scenario.
pub fn read_results(out_dir: &Path) -> Result<SuiteResults> {
    let mut results = SuiteResults::new();
    let entries = std::fs::read_dir(out_dir)
        .with_context(|| format!("failed to list {}", out_dir.display()))?;
    for entry in entries {
        let dir = entry?.path();
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let scenario = scenario_of(name)
            .with_context(|| format!("unexpected result directory {}", dir.display()))?;
        let path = dir.join("checks.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let checks: Vec<Check> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a list of checks", path.display()))?;
        if results.insert(scenario.to_owned(), checks).is_some() {
            bail!(
                "scenario {scenario} has two result directories in {}",
                out_dir.display()
            );
        }
    }
    Ok(results)
}

/// The scenario of a result directory's name, `server-<scenario>-<YYYY-MM-DDTHH-MM-SS-mmmZ>`.
fn scenario_of(dir_name: &str) -> Option<&str> {
    let rest = dir_name.strip_prefix("server-")?;
    // The timestamp is the last six dash-separated parts.
    let mut end = rest.len();
    for part in 0..6 {
        let dash = rest[..end].rfind('-')?;
        if part == 0 && !rest[dash + 1..end].ends_with('Z') {
            return None;
        }
        end = dash;
    }
    Some(&rest[..end]).filter(|scenario| !scenario.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_come_from_result_directories() {
        assert_eq!(
            scenario_of("server-tools-call-simple-text-2026-11-21T23-07-00-450Z"),
            Some("tools-call-simple-text")
        );
        assert_eq!(
            scenario_of("server-ping-2026-11-21T23-07-00-450Z"),
            Some("ping")
        );
        assert_eq!(scenario_of("client-ping-2026-11-21T23-07-00-450Z"), None);
        assert_eq!(scenario_of("server-ping"), None);
    }

    #[test]
    fn results_are_read_per_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let scenario = dir.path().join("server-ping-2026-11-21T23-07-00-450Z");
        std::fs::create_dir(&scenario).unwrap();
        std::fs::write(
            scenario.join("checks.json"),
            r#"[{"id":"ping","name":"Ping","status":"FAILURE","errorMessage":"no"},
                {"id":"outgoing-request","status":"INFO"}]"#,
        )
        .unwrap();
        let results = read_results(dir.path()).unwrap();
        let checks = &results["ping"];
        assert_eq!(checks.len(), 2);
        assert!(!passed(checks));
        assert_eq!(checks[0].error_message.as_deref(), Some("no"));
        assert!(checks[0].is_verdict() && !checks[1].is_verdict());
    }
}
