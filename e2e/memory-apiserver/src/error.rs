//! The crate's one error type, for the calls a test makes on [`MemoryApiServer`](crate::MemoryApiServer).

/// What went wrong in a call on the server handle (requests over HTTP get Status answers instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the loopback listener failed.
    #[error("failed to bind the in-memory API server to 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// The server refused the object, exactly as it would refuse it over HTTP.
    #[error("the in-memory API server refused {what}: {message} ({code} {reason})")]
    Refused {
        /// What was being written, e.g. `CustomResourceDefinition mcpservers.sluice.dev`.
        what: String,
        /// The HTTP status code of the refusal.
        code: u16,
        /// The Status reason (`Invalid`, `NotFound`, ...).
        reason: String,
        /// The Status message.
        message: String,
    },
    /// An object given to the server could not be serialised to JSON.
    #[error("failed to serialise {what} to JSON: {source}")]
    Serialize {
        /// What was being serialised.
        what: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn refused(what: impl Into<String>, err: &crate::status::ApiError) -> Self {
        Self::Refused {
            what: what.into(),
            code: err.code,
            reason: err.reason.to_string(),
            message: err.message.clone(),
        }
    }
}
