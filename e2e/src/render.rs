//! `sluice-operator render`: the objects the operator would apply, as the YAML stream a user sees.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::Result;
use crate::binaries::sluice_operator;
use crate::process::{ensure_success, run_with_input};

/// Rendering is pure and quick; this only stops a hang.
const RENDER_TIMEOUT: Duration = Duration::from_secs(60);

/// `sluice-operator render -f FILE...`: its stdout, or an error with its stderr if it fails.
pub fn render_files(files: &[&Path]) -> Result<String> {
    if files.is_empty() {
        bail!("nothing to render");
    }
    let mut command = Command::new(sluice_operator()?);
    command.arg("render");
    for file in files {
        command.arg("-f").arg(file);
    }
    stdout_of(&mut command, None)
}

/// `sluice-operator render -f -` with `manifests` on stdin.
pub fn render_stdin(manifests: &str) -> Result<String> {
    let mut command = Command::new(sluice_operator()?);
    command.args(["render", "-f", "-"]);
    stdout_of(&mut command, Some(manifests.as_bytes()))
}

/// [`render_stdin`], as JSON documents, each ConfigMap's sidecar config parsed into
/// `parsedData` (by `e2e/py/oauth/rendered.py`, under the Python of e2e/.venv-mcp2).
pub fn render_stdin_json(manifests: &str) -> Result<Vec<serde_json::Value>> {
    let yaml = render_stdin(manifests)?;
    let mut command = Command::new(crate::peers::python_mcp2()?);
    command.arg(crate::peers::python_script("oauth/rendered.py")?);
    let output = run_with_input(&mut command, Some(yaml.as_bytes()), RENDER_TIMEOUT)?;
    ensure_success(&command, &output)?;
    serde_json::from_slice(&output.stdout).context("rendered.py printed no JSON")
}

/// Runs `sluice-operator` with `args` (and optional stdin) and returns the whole output,
/// whatever its exit status: for tests of how it refuses bad input.
pub fn operator_output(args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut command = Command::new(sluice_operator()?);
    command.args(args);
    run_with_input(&mut command, stdin.map(str::as_bytes), RENDER_TIMEOUT)
}

fn stdout_of(command: &mut Command, stdin: Option<&[u8]>) -> Result<String> {
    let output = run_with_input(command, stdin, RENDER_TIMEOUT)?;
    ensure_success(command, &output)?;
    String::from_utf8(output.stdout).with_context(|| format!("{command:?} printed non-UTF-8"))
}
