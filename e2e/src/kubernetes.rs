//! Strict offline validation of Kubernetes objects against the schemas of the Kubernetes versions
//! Sluice supports, through `e2e/py/validate_k8s.py` (kubernetes-validate) in `.venv-mcp2`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::Result;
use crate::peers;
use crate::process::{run_with_input, tail};

/// The oldest and newest Kubernetes versions Sluice's rendered objects must be valid for.
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Loading the schemas takes well under a second per version; this only stops a hang.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the validator said about a YAML stream.
#[derive(Debug, Clone, Deserialize)]
pub struct ValidationReport {
    /// The Kubernetes versions validated against.
    pub versions: Vec<String>,
    /// One entry per non-empty document.
    pub documents: Vec<DocumentReport>,
    /// Documents that were empty (e.g. after a trailing `---`).
    pub empty_documents: usize,
}

/// One document of the stream.
#[derive(Debug, Clone, Deserialize)]
pub struct DocumentReport {
    /// The file name, or `<stdin>`.
    pub source: String,
    /// The document's position in its stream, from 0.
    pub index: usize,
    /// `apiVersion`, if the document has one.
    pub api_version: Option<String>,
    /// `kind`, if the document has one.
    pub kind: Option<String>,
    /// `metadata.namespace`, if any.
    pub namespace: Option<String>,
    /// `metadata.name`, if any.
    pub name: Option<String>,
    /// The outcome per Kubernetes version.
    pub results: BTreeMap<String, VersionResult>,
}

/// The outcome for one document and one Kubernetes version.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionResult {
    /// Valid, invalid, or not validated because the kind has no bundled schema.
    pub status: Status,
    /// Every error (`field.path: message`) when invalid.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// See [`VersionResult::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Passed strict validation.
    Valid,
    /// Failed it; see the errors.
    Invalid,
    /// The kind has no bundled schema (a custom resource): not validated at all.
    NoSchema,
}

impl DocumentReport {
    /// `source#index apiVersion Kind namespace/name`, for messages.
    pub fn label(&self) -> String {
        let name = self.name.as_deref().unwrap_or("<no name>");
        let name = match &self.namespace {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name.to_owned(),
        };
        format!(
            "{}#{} {} {} {name}",
            self.source,
            self.index,
            self.api_version.as_deref().unwrap_or("<no apiVersion>"),
            self.kind.as_deref().unwrap_or("<no kind>"),
        )
    }

    /// `(apiVersion, kind)`.
    pub fn type_key(&self) -> (String, String) {
        (
            self.api_version.clone().unwrap_or_default(),
            self.kind.clone().unwrap_or_default(),
        )
    }
}

impl ValidationReport {
    /// Every error of every invalid document, one `label @ version: error` line each.
    pub fn failures(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for document in &self.documents {
            for (version, result) in &document.results {
                for error in &result.errors {
                    lines.push(format!("{} @ {version}: {error}", document.label()));
                }
            }
        }
        lines
    }

    /// Fails, listing every error, if any document is invalid for any version.
    pub fn ensure_valid(&self) -> Result<()> {
        let failures = self.failures();
        if failures.is_empty() {
            return Ok(());
        }
        let mut message = format!("{} schema errors:", failures.len());
        for failure in failures {
            let _ = write!(message, "\n  {failure}");
        }
        bail!(message)
    }

    /// `(apiVersion, kind)` of every document that some version could not validate (no schema).
    pub fn unvalidated_types(&self) -> BTreeSet<(String, String)> {
        self.documents
            .iter()
            .filter(|document| {
                document
                    .results
                    .values()
                    .any(|result| result.status == Status::NoSchema)
            })
            .map(DocumentReport::type_key)
            .collect()
    }

    /// How many documents were valid for every version.
    pub fn fully_valid(&self) -> usize {
        self.documents
            .iter()
            .filter(|document| {
                !document.results.is_empty()
                    && document
                        .results
                        .values()
                        .all(|result| result.status == Status::Valid)
            })
            .count()
    }
}

/// Validates the YAML stream `yaml` for `versions` (see [`KUBERNETES_VERSIONS`]). An invalid
/// object is not an error here: it is in the report ([`ValidationReport::ensure_valid`]).
pub fn validate_yaml(yaml: &str, versions: &[&str]) -> Result<ValidationReport> {
    let mut command = validator(versions)?;
    command.arg("-");
    invoke(command, Some(yaml.as_bytes()))
}

/// Validates YAML files for `versions`.
pub fn validate_files(files: &[&Path], versions: &[&str]) -> Result<ValidationReport> {
    if files.is_empty() {
        bail!("no files to validate");
    }
    let mut command = validator(versions)?;
    command.args(files);
    invoke(command, None)
}

fn validator(versions: &[&str]) -> Result<Command> {
    if versions.is_empty() {
        bail!("no Kubernetes versions to validate against");
    }
    let mut command = Command::new(peers::python_mcp2()?);
    command
        .arg(peers::python_script("validate_k8s.py")?)
        .arg("--json");
    for version in versions {
        command.args(["--kube-version", version]);
    }
    Ok(command)
}

fn invoke(mut command: Command, input: Option<&[u8]>) -> Result<ValidationReport> {
    let output = run_with_input(&mut command, input, VALIDATE_TIMEOUT)?;
    // 0: all valid, 1: something invalid (in the report); anything else: no report.
    if !matches!(output.status.code(), Some(0 | 1)) {
        bail!(
            "the validator failed ({}): {command:?}\n{}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 60)
        );
    }
    let report: ValidationReport = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("the validator's JSON report is unreadable: {command:?}"))?;
    let invalid = !report.failures().is_empty();
    if invalid != (output.status.code() == Some(1)) {
        bail!(
            "the validator's exit status ({}) disagrees with its report",
            output.status
        );
    }
    Ok(report)
}
