//! Reading McpServer and McpRoute manifests from files and stdin.
//!
//! Inputs are multi-document YAML, as `kubectl apply -f` takes them. This module only finds
//! the objects and refuses what is not ours (wrong apiVersion or kind, no name, duplicates);
//! `admission` then checks each object against the CRD schema. Every problem names the input,
//! the document and the field, and as many problems as can be found are reported at once.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};
use serde_saphyr::Spanned;

/// Largest input accepted, per file (or stdin): manifests are small, and a cap keeps a
/// mistaken `-f` from reading a disk image into memory.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Most YAML nodes one document may hold (aliases expanded).
const MAX_NODES_PER_DOCUMENT: usize = 20_000;

/// The file name that means standard input.
pub const STDIN: &str = "-";

/// How standard input is named in messages.
const STDIN_NAME: &str = "<stdin>";

/// Fields of `metadata` a manifest may carry (those of a Kubernetes ObjectMeta).
const OBJECT_META_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

// === Inputs ===

/// One input as read: its name for messages and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// The path as given on the command line, or `<stdin>`.
    pub name: String,
    /// The whole text.
    pub text: String,
}

impl Input {
    /// An input from text already in memory (tests, the controller).
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Reads every path (`-` is stdin; a directory contributes its `.yaml`, `.yml` and `.json`
/// files in name order). Returns what could be read and a problem for each path that could
/// not.
pub fn read_inputs(paths: &[String]) -> (Vec<Input>, Vec<ManifestError>) {
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    let mut stdin_read = false;
    for path in paths {
        if path == STDIN {
            if stdin_read {
                problems.push(ManifestError::StdinTwice);
                continue;
            }
            stdin_read = true;
            push_read(
                &mut inputs,
                &mut problems,
                STDIN_NAME,
                std::io::stdin().lock(),
            );
        } else if Path::new(path).is_dir() {
            match manifest_files_in(Path::new(path)) {
                Ok(files) if files.is_empty() => problems.push(ManifestError::EmptyDirectory {
                    input: path.clone(),
                }),
                Ok(files) => {
                    for file in files {
                        read_file(&mut inputs, &mut problems, &file);
                    }
                }
                Err(source) => problems.push(ManifestError::Unreadable {
                    input: path.clone(),
                    source,
                }),
            }
        } else {
            read_file(&mut inputs, &mut problems, path);
        }
    }
    (inputs, problems)
}

fn manifest_files_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_manifest = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"));
        if is_manifest && path.is_file() {
            files.push(path.to_string_lossy().into_owned());
        }
    }
    files.sort();
    Ok(files)
}

fn read_file(inputs: &mut Vec<Input>, problems: &mut Vec<ManifestError>, path: &str) {
    match std::fs::File::open(path) {
        Ok(file) => push_read(inputs, problems, path, file),
        Err(source) => problems.push(ManifestError::Unreadable {
            input: path.to_string(),
            source,
        }),
    }
}

fn push_read(
    inputs: &mut Vec<Input>,
    problems: &mut Vec<ManifestError>,
    name: &str,
    reader: impl Read,
) {
    match read_capped(name, reader) {
        Ok(text) => inputs.push(Input::new(name, text)),
        Err(problem) => problems.push(problem),
    }
}

/// Reads at most [`MAX_INPUT_BYTES`] (one byte more tells that there was more).
fn read_capped(name: &str, reader: impl Read) -> Result<String, ManifestError> {
    let mut bytes = Vec::new();
    let cap = MAX_INPUT_BYTES as u64 + 1;
    reader
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|source| ManifestError::Unreadable {
            input: name.to_string(),
            source,
        })?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ManifestError::TooLarge {
            input: name.to_string(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8 {
        input: name.to_string(),
    })?;
    Ok(text
        .strip_prefix('\u{feff}')
        .map(str::to_string)
        .unwrap_or(text))
}

// === Objects ===

/// The kinds this operator reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `sluice.dev/v1alpha1` McpServer.
    McpServer,
    /// `sluice.dev/v1alpha1` McpRoute.
    McpRoute,
}

impl Kind {
    /// Every kind, as offered in messages.
    pub const ALL: [Kind; 2] = [Kind::McpServer, Kind::McpRoute];

    /// The `kind` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::McpServer => "McpServer",
            Kind::McpRoute => "McpRoute",
        }
    }

    fn parse(kind: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a document came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The input's name (path or `<stdin>`).
    pub input: String,
    /// 1-based index of the document among the input's non-empty documents.
    pub document: usize,
    /// 1-based line the document's content starts on, when known.
    pub line: Option<u64>,
    /// `Kind namespace/name`, once known.
    pub object: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.input, self.document)?;
        match (&self.object, self.line) {
            (Some(object), Some(line)) => write!(f, " ({object}, line {line})"),
            (Some(object), None) => write!(f, " ({object})"),
            (None, Some(line)) => write!(f, " (line {line})"),
            (None, None) => Ok(()),
        }
    }
}

/// A Sluice object found in the inputs, not yet checked against the schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Its kind.
    pub kind: Kind,
    /// `metadata.namespace`, defaulted when the manifest has none.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// Where it came from.
    pub origin: Origin,
    /// The manifest as JSON, with `metadata.namespace` filled in.
    pub value: Value,
}

/// The objects found in all inputs and every problem met on the way.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Objects that passed the checks of this module, in input order.
    pub objects: Vec<Object>,
    /// Every problem found, in input order.
    pub problems: Vec<ManifestError>,
}

/// Splits every input into documents and picks out the Sluice objects, filling in
/// `default_namespace` where a manifest names none. Empty documents are skipped, as kubectl
/// does; an input with no document at all is a problem.
pub fn parse(inputs: &[Input], default_namespace: &str) -> Parsed {
    let mut parsed = Parsed::default();
    if let Some(problem) = namespace_problem(default_namespace) {
        parsed.problems.push(ManifestError::DefaultNamespace {
            namespace: default_namespace.to_string(),
            problem,
        });
        return parsed;
    }
    for input in inputs {
        parse_input(input, default_namespace, &mut parsed);
    }
    refuse_duplicates(&mut parsed);
    parsed
}

fn parse_input(input: &Input, default_namespace: &str, parsed: &mut Parsed) {
    let options = serde_saphyr::options! {
        // Budgets count per document. One object is a few hundred nodes; the cap stops alias
        // bombs early (the default, 250 000, takes seconds to reach).
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_INPUT_BYTES),
            max_nodes: MAX_NODES_PER_DOCUMENT,
        },
        with_snippet: false,
    };
    let mut text = input.text.as_bytes();
    let documents = serde_saphyr::read_with_options::<_, Spanned<Value>>(&mut text, options);
    let mut count = 0;
    for result in documents {
        count += 1;
        let origin = Origin {
            input: input.name.clone(),
            document: count,
            line: None,
            object: None,
        };
        match result {
            Ok(document) => {
                let origin = Origin {
                    line: Some(document.referenced.line()),
                    ..origin
                };
                match read_object(document.value, origin, default_namespace) {
                    Ok(object) => parsed.objects.push(object),
                    Err(problems) => parsed.problems.extend(problems),
                }
            }
            Err(error) => {
                let line = error.location().map(|location| location.line());
                parsed.problems.push(ManifestError::Yaml {
                    at: Origin { line, ..origin },
                    message: yaml_message(&error),
                });
            }
        }
    }
    if count == 0 {
        parsed.problems.push(ManifestError::Empty {
            input: input.name.clone(),
        });
    }
}

/// The parser's message without its location (the origin carries the line).
fn yaml_message(error: &serde_saphyr::Error) -> String {
    error.render_with_formatter(&serde_saphyr::UserMessageFormatter)
}

fn read_object(
    value: Value,
    origin: Origin,
    default_namespace: &str,
) -> Result<Object, Vec<ManifestError>> {
    let Value::Object(mut fields) = value else {
        return Err(vec![ManifestError::NotAMapping {
            at: origin,
            found: yaml_type(&value),
        }]);
    };
    let mut problems = Vec::new();
    let kind = read_kind(&fields, &origin, &mut problems);
    let identity = read_metadata(&mut fields, &origin, default_namespace, &mut problems);
    let (Some(kind), Some((namespace, name)), true) = (kind, identity, problems.is_empty()) else {
        if let Some(kind) = kind {
            let name = fields
                .get("metadata")
                .and_then(|metadata| metadata.get("name"))
                .and_then(Value::as_str);
            let object = name.map_or_else(|| kind.to_string(), |name| format!("{kind} {name}"));
            for problem in &mut problems {
                problem.set_object(object.clone());
            }
        }
        return Err(problems);
    };
    let origin = Origin {
        object: Some(format!("{kind} {namespace}/{name}")),
        ..origin
    };
    Ok(Object {
        kind,
        namespace,
        name,
        origin,
        value: Value::Object(fields),
    })
}

/// Checks `apiVersion` and `kind`; returns the kind when both are ours.
fn read_kind(
    fields: &Map<String, Value>,
    at: &Origin,
    problems: &mut Vec<ManifestError>,
) -> Option<Kind> {
    let supported_kinds = || {
        let kinds: Vec<String> = Kind::ALL.iter().map(|kind| format!("\"{kind}\"")).collect();
        format!(
            "supported values: {} (of apiVersion {})",
            kinds.join(", "),
            sluice_crds::API_VERSION
        )
    };
    let api_version = required_string(fields, "apiVersion", "apiVersion", at, problems);
    let kind = required_string(fields, "kind", "kind", at, problems);
    if let Some(api_version) = api_version
        && api_version != sluice_crds::API_VERSION
    {
        problems.push(ManifestError::field(
            at,
            "apiVersion",
            format!(
                "Unsupported value: \"{api_version}\": supported values: \"{}\" (only {} McpServer and McpRoute are accepted)",
                sluice_crds::API_VERSION,
                sluice_crds::API_VERSION
            ),
        ));
    }
    let kind = kind?;
    match Kind::parse(kind) {
        Some(kind) if api_version == Some(sluice_crds::API_VERSION) => Some(kind),
        Some(_) => None,
        None => {
            problems.push(ManifestError::field(
                at,
                "kind",
                format!("Unsupported value: \"{kind}\": {}", supported_kinds()),
            ));
            None
        }
    }
}

/// The string at `fields[key]`; `path` names the field in messages.
fn required_string<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
    path: &str,
    at: &Origin,
    problems: &mut Vec<ManifestError>,
) -> Option<&'a str> {
    let problem = match fields.get(key) {
        Some(Value::String(value)) if !value.is_empty() => return Some(value),
        None | Some(Value::Null) => "Required value".to_string(),
        Some(Value::String(_)) => "Required value".to_string(),
        Some(other) => wrong_type(other, "string"),
    };
    problems.push(ManifestError::field(at, path, problem));
    None
}

/// Checks `metadata`, fills in the namespace, and returns `(namespace, name)`.
fn read_metadata(
    fields: &mut Map<String, Value>,
    at: &Origin,
    default_namespace: &str,
    problems: &mut Vec<ManifestError>,
) -> Option<(String, String)> {
    let metadata = match fields.get_mut("metadata") {
        None | Some(Value::Null) => {
            problems.push(ManifestError::field(
                at,
                "metadata",
                "Required value".to_string(),
            ));
            return None;
        }
        Some(Value::Object(metadata)) => metadata,
        Some(other) => {
            problems.push(ManifestError::field(
                at,
                "metadata",
                wrong_type(other, "object"),
            ));
            return None;
        }
    };
    let before = problems.len();
    for (key, value) in metadata.iter() {
        let field = format!("metadata.{key}");
        if !OBJECT_META_FIELDS.contains(&key.as_str()) {
            problems.push(ManifestError::field(
                at,
                &field,
                "unknown field".to_string(),
            ));
        } else if matches!(key.as_str(), "labels" | "annotations") {
            check_string_map(value, &field, at, problems);
        }
    }
    let name = required_string(metadata, "name", "metadata.name", at, problems).map(str::to_string);
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => Some(default_namespace.to_string()),
        Some(Value::String(namespace)) => match namespace_problem(namespace) {
            None => Some(namespace.clone()),
            Some(problem) => {
                let message = format!("Invalid value: \"{namespace}\": {problem}");
                problems.push(ManifestError::field(at, "metadata.namespace", message));
                None
            }
        },
        Some(other) => {
            problems.push(ManifestError::field(
                at,
                "metadata.namespace",
                wrong_type(other, "string"),
            ));
            None
        }
    };
    let (Some(name), Some(namespace), true) = (name, namespace, problems.len() == before) else {
        return None;
    };
    metadata.insert("namespace".to_string(), Value::String(namespace.clone()));
    Some((namespace, name))
}

fn check_string_map(value: &Value, field: &str, at: &Origin, problems: &mut Vec<ManifestError>) {
    match value {
        Value::Null => {}
        Value::Object(entries) => {
            for (key, entry) in entries {
                if !entry.is_string() {
                    problems.push(ManifestError::field(
                        at,
                        &format!("{field}.{key}"),
                        wrong_type(entry, "string"),
                    ));
                }
            }
        }
        other => problems.push(ManifestError::field(at, field, wrong_type(other, "object"))),
    }
}

/// Why `namespace` cannot be a Kubernetes namespace (a DNS-1123 label), if it cannot.
fn namespace_problem(namespace: &str) -> Option<&'static str> {
    let valid_chars = namespace
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let valid = !namespace.is_empty()
        && namespace.len() <= 63
        && valid_chars
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    (!valid).then_some(
        "a namespace must be a DNS label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
    )
}

fn refuse_duplicates(parsed: &mut Parsed) {
    let mut first_seen: BTreeMap<(Kind, String, String), Origin> = BTreeMap::new();
    let mut unique = Vec::with_capacity(parsed.objects.len());
    for object in std::mem::take(&mut parsed.objects) {
        let key = (object.kind, object.namespace.clone(), object.name.clone());
        match first_seen.get(&key) {
            Some(first) => parsed.problems.push(ManifestError::Duplicate {
                at: object.origin,
                first: Box::new(first.clone()),
            }),
            None => {
                first_seen.insert(key, object.origin.clone());
                unique.push(object);
            }
        }
    }
    parsed.objects = unique;
}

/// What a document is, in YAML words, for a message.
fn yaml_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string (is this YAML?)",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A value's JSON type, as the API server names it.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(value: &Value, expected: &str) -> String {
    format!(
        "Invalid value: {}: must be of type {expected}, not {}",
        short_json(value),
        json_type(value)
    )
}

/// A value shortened for a message: scalars in full (long strings cut), collections by type.
pub fn short_json(value: &Value) -> String {
    const MAX_CHARS: usize = 64;
    match value {
        Value::String(text) if text.chars().count() > MAX_CHARS => {
            let cut: String = text.chars().take(MAX_CHARS).collect();
            format!("{:?}", format!("{cut}..."))
        }
        Value::Array(_) | Value::Object(_) => format!("\"{}\"", json_type(value)),
        scalar => scalar.to_string(),
    }
}

// === Problems ===

/// A problem with the inputs, before any schema is applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A path could not be read.
    #[error("{input}: cannot read: {source}")]
    Unreadable {
        /// The path.
        input: String,
        /// Why.
        source: std::io::Error,
    },
    /// A directory holds no manifest files.
    #[error("{input}: the directory holds no .yaml, .yml or .json files")]
    EmptyDirectory {
        /// The directory.
        input: String,
    },
    /// `-` was given more than once.
    #[error("stdin (`-f -`) can be read only once")]
    StdinTwice,
    /// An input is over [`MAX_INPUT_BYTES`].
    #[error("{input}: larger than the limit of {limit} bytes per input")]
    TooLarge {
        /// The input.
        input: String,
        /// The limit.
        limit: usize,
    },
    /// An input is not UTF-8 text.
    #[error("{input}: not UTF-8 text")]
    NotUtf8 {
        /// The input.
        input: String,
    },
    /// An input holds no document (or only empty ones).
    #[error("{input}: holds no objects (the input is empty)")]
    Empty {
        /// The input.
        input: String,
    },
    /// A document is not valid YAML (or breaks a parser limit).
    #[error("{at}: invalid YAML: {message}")]
    Yaml {
        /// Where.
        at: Origin,
        /// The parser's message.
        message: String,
    },
    /// A document is a scalar or a list instead of an object.
    #[error(
        "{at}: not a Kubernetes object: expected a mapping with apiVersion, kind, metadata and spec, found {found}"
    )]
    NotAMapping {
        /// Where.
        at: Origin,
        /// What was found, e.g. `a list`.
        found: &'static str,
    },
    /// A field of the object's envelope (apiVersion, kind, metadata) is wrong.
    #[error("{at}: {field}: {problem}")]
    Field {
        /// Where.
        at: Origin,
        /// Dotted path of the field.
        field: String,
        /// What is wrong, in the API server's words.
        problem: String,
    },
    /// The same kind, namespace and name appear twice.
    #[error("{at}: Duplicate value: the same object is also defined at {first}")]
    Duplicate {
        /// The second definition.
        at: Origin,
        /// The first definition.
        first: Box<Origin>,
    },
    /// The `--namespace` given is not a namespace name.
    #[error("--namespace: Invalid value: \"{namespace}\": {problem}")]
    DefaultNamespace {
        /// The value given.
        namespace: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl ManifestError {
    /// The document the problem is in, when it is about one.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            Self::Yaml { at, .. }
            | Self::NotAMapping { at, .. }
            | Self::Field { at, .. }
            | Self::Duplicate { at, .. } => Some(at),
            _ => None,
        }
    }

    fn field(at: &Origin, field: &str, problem: String) -> Self {
        Self::Field {
            at: at.clone(),
            field: field.to_string(),
            problem,
        }
    }

    fn set_object(&mut self, object: String) {
        if let Self::Field { at, .. } = self {
            at.object = Some(object);
        }
    }
}
