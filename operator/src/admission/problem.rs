//! What the offline path (read, admit, render) reports: every problem with the inputs, each
//! naming the input, the document and the field.

use std::fmt;

use super::Violation;
use crate::manifest::{Kind, ManifestError, Origin};
use crate::render_error::RenderError;

/// One problem with the inputs.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// Found while reading and splitting the inputs.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Found by checking an object against its schema.
    #[error(transparent)]
    Admission(#[from] Violation),
    /// Admitted objects that cannot be rendered (e.g. a route naming a missing server).
    #[error("{}{error}", at.as_ref().map(|at| format!("{at}: ")).unwrap_or_default())]
    Render {
        /// The input and document of the object the error is about, when known.
        at: Option<Box<Origin>>,
        error: Box<RenderError>,
    },
}

impl Problem {
    /// The document the problem is in, when it is about one.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            Self::Manifest(error) => error.origin(),
            Self::Admission(violation) => Some(&violation.at),
            Self::Render { at, .. } => at.as_deref(),
        }
    }
}

/// Every problem found in the inputs, in input order.
#[derive(Debug, thiserror::Error)]
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

/// A generated CRD schema cannot be compiled for validation: a bug in the API types, not in
/// anyone's input.
#[derive(Debug, thiserror::Error)]
#[error("the generated {kind} schema cannot be used for validation: {message}")]
pub struct SchemaError {
    pub kind: Kind,
    pub message: String,
}
