//! The operator's error type.

use std::fmt;

use crate::admission::Violation;
use crate::manifest::{Kind, ManifestError, Origin};
use crate::render::RenderError;

/// Everything that can go wrong in the operator.
///
/// Each message includes its cause, so none is chained as a `source` (it would print twice).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A generated CRD could not be written as YAML.
    #[error("failed to write the CRD {name} as YAML: {error}")]
    CrdYaml {
        /// `metadata.name` of the CRD.
        name: String,
        /// What the YAML serialiser reported.
        error: serde_saphyr::SerializeError,
    },
    /// A generated CRD schema cannot be compiled for validation (a bug in the API types).
    #[error("the generated {kind} schema cannot be used for validation: {message}")]
    Schema {
        /// The kind whose schema failed.
        kind: Kind,
        /// Why.
        message: String,
    },
    /// The inputs hold objects that cannot be admitted; every problem found is listed.
    #[error("{0}")]
    Invalid(Problems),
    /// Admitted objects that cannot be rendered (e.g. a route naming a missing server).
    #[error("{}{error}", at.as_ref().map(|at| format!("{at}: ")).unwrap_or_default())]
    Render {
        /// The input and document of the object the error is about, when known.
        at: Option<Box<Origin>>,
        /// What render refused.
        error: Box<RenderError>,
    },
}

impl From<RenderError> for Error {
    fn from(error: RenderError) -> Self {
        Self::Render {
            at: None,
            error: Box::new(error),
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem with the inputs, naming the input, the document and the field.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// Found while reading and splitting the inputs.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Found by checking an object against its schema.
    #[error(transparent)]
    Admission(#[from] Violation),
}

impl Problem {
    /// The document the problem is in, when it is about one.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            Self::Manifest(error) => error.origin(),
            Self::Admission(violation) => Some(&violation.at),
        }
    }
}

/// Every problem found in the inputs, in input order.
#[derive(Debug)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
