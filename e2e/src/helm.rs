//! The Helm chart (`charts/sluice`) through the real Helm SDK (helm-python-sdk, Helm v4's Go
//! SDK), via `e2e/py/chart_helm.py` in `.venv-mcp2`: render as `helm install` does, lint
//! strictly, check values against `values.schema.json`, read the chart as Helm loads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Result;
use crate::peers;
use crate::process::{run_with_input, tail};
use crate::workspace::workspace_path;

/// Loading the SDK and rendering take about a second; this only stops a hang.
const HELM_TIMEOUT: Duration = Duration::from_secs(120);

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    workspace_path("charts/sluice")
}

/// The release name and namespace the tests install as (the README's
/// `helm install sluice charts/sluice -n sluice-system`).
pub const RELEASE: &str = "sluice";
/// See [`RELEASE`].
pub const NAMESPACE: &str = "sluice-system";

/// The values files in `charts/sluice/ci/`, sorted.
pub fn ci_files() -> Result<Vec<PathBuf>> {
    let dir = chart_dir().join("ci");
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `charts/sluice/ci/<name>`.
pub fn ci_values(name: &str) -> Values {
    Values::file(chart_dir().join("ci").join(name))
}

/// Every values set the chart is tested with, named: the defaults, then each `ci/` file.
pub fn scenarios() -> Result<Vec<(String, Values)>> {
    let mut scenarios = vec![("defaults".to_owned(), Values::defaults())];
    for file in ci_files()? {
        let name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        scenarios.push((name, Values::file(&file)));
    }
    Ok(scenarios)
}

/// Values for one render, lint or check: values files (merged in order, as `helm -f`), then
/// an optional JSON object on top (as `helm --set-json`).
#[derive(Debug, Clone, Default)]
pub struct Values {
    /// Values files, e.g. `charts/sluice/ci/namespaced-values.yaml`.
    pub files: Vec<PathBuf>,
    /// Applied last.
    pub json: Option<Value>,
}

impl Values {
    /// The chart's defaults only.
    pub fn defaults() -> Self {
        Self::default()
    }

    /// One values file.
    pub fn file(path: impl AsRef<Path>) -> Self {
        Self {
            files: vec![path.as_ref().to_path_buf()],
            json: None,
        }
    }

    /// A JSON object of values.
    pub fn json(json: Value) -> Self {
        Self {
            files: Vec::new(),
            json: Some(json),
        }
    }

    fn add_to(&self, command: &mut Command) {
        for file in &self.files {
            command.arg("-f").arg(file);
        }
        if let Some(json) = &self.json {
            command.arg("--set-json").arg(json.to_string());
        }
    }
}

/// What `helm install` would apply.
#[derive(Debug, Clone, Deserialize)]
pub struct Rendered {
    /// Each template's output (NOTES.txt aside), by template path (`sluice/templates/x.yaml`).
    pub manifests: BTreeMap<String, String>,
    /// The rendered NOTES.txt.
    pub notes: Option<String>,
    /// Every non-empty document of every manifest, parsed (duplicate keys refused).
    pub objects: Vec<RenderedObject>,
}

/// One rendered object and the template it came from.
#[derive(Debug, Clone, Deserialize)]
pub struct RenderedObject {
    /// The template path.
    pub source: String,
    /// The object.
    pub object: Value,
}

impl RenderedObject {
    /// `kind`.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// `metadata.namespace`, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }
}

impl Rendered {
    /// The objects of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a RenderedObject> {
        self.objects.iter().filter(move |o| o.kind() == kind)
    }

    /// The only object of `kind`; fails if there is none or several.
    pub fn one(&self, kind: &str) -> Result<&RenderedObject> {
        let found: Vec<&RenderedObject> =
            self.objects.iter().filter(|o| o.kind() == kind).collect();
        match found.as_slice() {
            [one] => Ok(one),
            _ => bail!("expected one {kind}, the chart rendered {}", found.len()),
        }
    }

    /// All manifests as one YAML stream, each document under a `# Source:` line.
    pub fn stream(&self) -> String {
        let mut stream = String::new();
        for (path, text) in &self.manifests {
            if text.trim().is_empty() {
                continue;
            }
            stream.push_str(&format!("---\n# Source: {path}\n{}\n", text.trim_end()));
        }
        stream
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RenderAnswer {
    Rendered(Rendered),
    Refused { error: String },
}

/// Renders the chart as `helm install NAME charts/sluice -n NAMESPACE` would; fails (with
/// Helm's message) if Helm refuses the values or a template fails.
pub fn render(values: &Values, release: &str, namespace: &str) -> Result<Rendered> {
    match render_answer(values, release, namespace)? {
        RenderAnswer::Rendered(rendered) => Ok(rendered),
        RenderAnswer::Refused { error } => {
            bail!("Helm refused to render the chart with {values:?}: {error}")
        }
    }
}

fn render_answer(values: &Values, release: &str, namespace: &str) -> Result<RenderAnswer> {
    let mut command = script("render")?;
    values.add_to(&mut command);
    command.args(["--name", release, "--namespace", namespace]);
    invoke(command, None)
}

/// A finding of `helm lint`.
#[derive(Debug, Clone, Deserialize)]
pub struct LintMessage {
    /// 0 unknown, 1 info, 2 warning, 3 error.
    pub severity: u8,
    /// The file it is about.
    pub path: String,
    /// What is wrong.
    pub error: String,
}

/// What `helm lint --strict` reported.
#[derive(Debug, Clone, Deserialize)]
pub struct LintReport {
    /// Every finding, info included.
    pub messages: Vec<LintMessage>,
    /// The errors that made the lint fail.
    pub errors: Vec<String>,
}

/// Severity of a lint warning; `--strict` fails on warnings and errors.
pub const LINT_WARNING: u8 = 2;

impl LintReport {
    /// The findings that fail `helm lint --strict` (warnings and errors), one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut failures: Vec<String> = self
            .messages
            .iter()
            .filter(|m| m.severity >= LINT_WARNING)
            .map(|m| format!("[{}] {}: {}", m.severity, m.path, m.error.trim()))
            .collect();
        failures.extend(self.errors.iter().map(|e| e.trim().to_owned()));
        failures
    }
}

/// `helm lint --strict --kube-version V charts/sluice` with these values.
pub fn lint(values: &Values, kube_version: &str) -> Result<LintReport> {
    let mut command = script("lint")?;
    values.add_to(&mut command);
    command.args(["--kube-version", kube_version]);
    invoke(command, None)
}

#[derive(Deserialize)]
struct CheckAnswer {
    valid: bool,
    error: Option<String>,
}

/// Checks the chart's defaults merged with `values` against `values.schema.json`, as
/// `helm install` does: `Ok(Err(message))` when the schema refuses them.
pub fn check_values(values: &Values) -> Result<std::result::Result<(), String>> {
    let mut command = script("check-values")?;
    values.add_to(&mut command);
    let answer: CheckAnswer = invoke(command, None)?;
    Ok(match (answer.valid, answer.error) {
        (true, _) => Ok(()),
        (false, error) => Err(error.unwrap_or_default()),
    })
}

/// What Helm says about one set of values: the schema's refusal and the render's, if any.
#[derive(Debug, Clone, Deserialize)]
pub struct Refusal {
    /// The schema check's message (as [`check_values`] gives it).
    pub schema_error: Option<String>,
    /// Why `helm install` would not render with these values.
    pub render_error: Option<String>,
}

/// [`check_values`] and [`render`] for many values objects at once (loading the SDK once),
/// rendered as release [`RELEASE`] in [`NAMESPACE`].
pub fn refusals(cases: &[Value]) -> Result<Vec<Refusal>> {
    let mut command = script("refusals")?;
    command
        .arg("--cases")
        .arg(Value::Array(cases.to_vec()).to_string())
        .args(["--name", RELEASE, "--namespace", NAMESPACE]);
    let answers: Vec<Refusal> = invoke(command, None)?;
    if answers.len() != cases.len() {
        bail!(
            "asked about {} values, got {} answers",
            cases.len(),
            answers.len()
        );
    }
    Ok(answers)
}

/// The chart as Helm loads it.
#[derive(Debug, Clone, Deserialize)]
pub struct ChartFiles {
    /// Chart.yaml.
    pub metadata: Value,
    /// values.yaml.
    pub values: Value,
    /// values.schema.json.
    pub schema: Value,
    /// The CRDs in the chart's `crds/`, by file name.
    pub crds: BTreeMap<String, String>,
}

/// Loads the chart with the Helm SDK.
pub fn show() -> Result<ChartFiles> {
    let mut command = Command::new(peers::python_mcp2()?);
    command
        .arg(peers::python_script("chart_helm.py")?)
        .arg("show")
        .arg(chart_dir());
    invoke(command, None)
}

/// A YAML stream's non-empty documents as JSON values (duplicate keys refused).
pub fn parse_yaml_stream(yaml: &str) -> Result<Vec<Value>> {
    let mut command = Command::new(peers::python_mcp2()?);
    command
        .arg(peers::python_script("chart_helm.py")?)
        .arg("yaml-to-json");
    invoke(command, Some(yaml.as_bytes()))
}

fn script(subcommand: &str) -> Result<Command> {
    let mut command = Command::new(peers::python_mcp2()?);
    command
        .arg(peers::python_script("chart_helm.py")?)
        .arg(subcommand)
        .arg(chart_dir());
    Ok(command)
}

fn invoke<T: DeserializeOwned>(mut command: Command, input: Option<&[u8]>) -> Result<T> {
    let output = run_with_input(&mut command, input, HELM_TIMEOUT)?;
    if !output.status.success() {
        bail!(
            "the Helm SDK script failed ({}): {command:?}\n{}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 60)
        );
    }
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("the Helm SDK script's JSON answer is unreadable: {command:?}"))
}
