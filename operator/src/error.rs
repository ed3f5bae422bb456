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
    /// A request to the Kubernetes API failed.
    #[error("failed to {action}: {error}")]
    Kube {
        /// What the operator was doing, e.g. `apply Deployment tools/phab`.
        action: String,
        /// What the client or the API server reported.
        error: Box<kube::Error>,
    },
    /// The operator's caches did not fill in time (the API server is slow or refuses a list).
    #[error("the {what} cache is not ready yet")]
    CacheNotReady {
        /// Which cache.
        what: &'static str,
    },
    /// Adding or removing the operator's finalizer, or the cleanup it guards, failed.
    #[error("finalizer of {object}: {error}")]
    Finalizer {
        /// `McpServer namespace/name`.
        object: String,
        /// What failed.
        error: Box<kube_runtime::finalizer::Error<Error>>,
    },
    /// Leader election on the Lease failed.
    #[error("leader election on Lease {lease}: {error}")]
    LeaderElection {
        /// `namespace/name` of the Lease.
        lease: String,
        /// What the lease manager reported.
        error: Box<kube_lease_manager::LeaseManagerError>,
    },
    /// The admin endpoint could not serve.
    #[error("admin endpoint on {address}: {error}")]
    Admin {
        /// The address it listens on.
        address: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// An object could not be turned into JSON (a bug in a type, never the user's input).
    #[error("cannot write {what} as JSON: {error}")]
    Json {
        /// The object.
        what: String,
        /// What serde_json reported.
        error: serde_json::Error,
    },
    /// A command-line option or environment variable has a value the operator cannot use.
    #[error("{option}: {message}")]
    Option {
        /// The flag (and its environment variable).
        option: &'static str,
        /// What is wrong with its value.
        message: String,
    },
}

impl Error {
    /// A failed Kubernetes request, saying what the operator was doing.
    pub fn kube(action: impl Into<String>, error: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            error: Box::new(error),
        }
    }

    /// Whether the failure is a write conflict (HTTP 409) worth retrying soon.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Kube { error, .. } => {
                matches!(error.as_ref(), kube::Error::Api(status) if status.code == 409)
            }
            Self::Finalizer { error, .. } => matches!(
                error.as_ref(),
                kube_runtime::finalizer::Error::AddFinalizer(kube::Error::Api(status))
                    | kube_runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(status))
                    if status.code == 409 || status.code == 422
            ),
            _ => false,
        }
    }

    /// A short label for the `reason` of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::CrdYaml { .. } | Self::Schema { .. } | Self::Json { .. } => "internal",
            Self::Invalid(_) | Self::Render { .. } | Self::Option { .. } => "invalid",
            Self::Kube { .. } if self.is_conflict() => "conflict",
            Self::Kube { .. } => "api",
            Self::CacheNotReady { .. } => "cache",
            Self::Finalizer { .. } => "finalizer",
            Self::LeaderElection { .. } => "leader",
            Self::Admin { .. } => "admin",
        }
    }
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
