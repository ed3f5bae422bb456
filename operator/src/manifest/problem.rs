//! What can be wrong with an input before its schema is applied, and how values are shown
//! in messages.

use serde_json::Value;

use super::Origin;

/// A problem with the inputs, before any schema is applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A path could not be read.
    #[error("{input}: cannot read: {error}")]
    Unreadable {
        input: String,
        error: std::io::Error,
    },
    /// A directory holds no manifest files.
    #[error("{input}: the directory holds no .yaml, .yml or .json files")]
    EmptyDirectory { input: String },
    /// `-` was given more than once.
    #[error("stdin (`-f -`) can be read only once")]
    StdinTwice,
    /// An input is over [`MAX_INPUT_BYTES`](super::MAX_INPUT_BYTES).
    #[error("{input}: larger than the limit of {limit} bytes per input")]
    TooLarge { input: String, limit: usize },
    /// An input is not UTF-8 text.
    #[error("{input}: not UTF-8 text")]
    NotUtf8 { input: String },
    /// An input holds no document (or only empty ones).
    #[error("{input}: holds no objects (the input is empty)")]
    Empty { input: String },
    /// A document is not valid YAML (or breaks a parser limit).
    #[error("{at}: invalid YAML: {message}")]
    Yaml {
        at: Origin,
        /// The parser's message.
        message: String,
    },
    /// A document is a scalar or a list instead of an object.
    #[error(
        "{at}: not a Kubernetes object: expected a mapping with apiVersion, kind, metadata and spec, found {found}"
    )]
    NotAMapping {
        at: Origin,
        /// What was found, e.g. `a list`.
        found: &'static str,
    },
    /// A field of the object's envelope (apiVersion, kind, metadata) is wrong.
    #[error("{at}: {field}: {problem}")]
    Field {
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

    pub(super) fn field(at: &Origin, field: &str, problem: String) -> Self {
        Self::Field {
            at: at.clone(),
            field: field.to_string(),
            problem,
        }
    }

    pub(super) fn set_object(&mut self, object: String) {
        if let Self::Field { at, .. } = self {
            at.object = Some(object);
        }
    }
}

// === Values in messages ===

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
