//! The operator's error type.

use crate::key::MissingName;
use crate::render_error::RenderError;

/// Everything that can go wrong in the operator, except problems with the inputs of the
/// offline `render` (those are `admission::Problems`, every one of them listed).
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
    /// An object that cannot be rendered (e.g. a server without a name).
    #[error(transparent)]
    Render(Box<RenderError>),
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
            Self::CrdYaml { .. } | Self::Json { .. } => "internal",
            Self::Render(_) | Self::Option { .. } => "invalid",
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
        Self::Render(Box::new(error))
    }
}

impl From<MissingName> for Error {
    fn from(error: MissingName) -> Self {
        RenderError::from(error).into()
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
