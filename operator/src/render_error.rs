//! Why a spec the schema accepts still cannot become sidecar config and objects. Translate and
//! render both say it with [`RenderError`]; each error names the object and the field.

use sluice_crds::conditions::reasons;
use sluice_proxy_config::ConfigError;

use crate::key::{MissingName, ObjectKey};

/// A spec that the schema accepts but that cannot be turned into objects, or an input the
/// offline renderer cannot make sense of.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An object without `metadata.name` (only a file can hold one).
    #[error(transparent)]
    MissingName(#[from] MissingName),
    /// The same object twice in the input.
    #[error("{object} is defined more than once")]
    Duplicate { object: ObjectKey },
    /// A field value that cannot be rendered (a cross-object rule, or what the schema would
    /// have refused).
    #[error("{object}: {field}: {message}")]
    InvalidSpec {
        object: ObjectKey,
        /// The field's path, e.g. `spec.auth.oauth.publicUrl`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A policy that cannot be translated into sidecar configuration.
    #[error("{object}: {field}: {message}")]
    InvalidPolicy {
        /// The McpServer or McpRoute holding the policy.
        object: ObjectKey,
        /// The field's path, e.g. `spec.policy.rateLimits[0].period`.
        field: String,
        message: String,
    },
    /// A route whose `spec.serverRef` names no McpServer in its namespace.
    #[error("{route}: spec.serverRef.name: McpServer {server:?} not found in namespace {}", route.namespace)]
    ServerNotFound {
        route: ObjectKey,
        /// The server's name, as `spec.serverRef.name` gives it.
        server: String,
    },
    /// Two objects would create a Service with the same name.
    #[error(
        "{object}: metadata.name: its Service {service:?} would collide with the Service of {other}; rename one of them"
    )]
    ServiceNameTaken {
        /// The object whose Service cannot be created.
        object: ObjectKey,
        service: String,
        /// The object whose Service has that name.
        other: Box<ObjectKey>,
    },
    /// Two routes claim the same public host and path prefix.
    #[error(
        "{route}: spec.hostnames: host {hostname:?} with pathPrefix {path_prefix:?} is already claimed by {other}"
    )]
    ConflictingRoute {
        /// The route that loses.
        route: ObjectKey,
        /// The route that keeps the claim.
        other: Box<ObjectKey>,
        hostname: String,
        path_prefix: String,
    },
    /// No sidecar listener port is left for a route.
    #[error(
        "{route}: no free sidecar listener port is left on McpServer {server} (ports {first}-{last} are all taken)"
    )]
    NoFreePort {
        route: ObjectKey,
        /// Its server's name.
        server: String,
        /// The route ports' range, for the message.
        first: u16,
        last: u16,
    },
    /// The translated sidecar config fails the sidecar's own validation.
    #[error("{server}: the sidecar config built from it is invalid: {source}")]
    InvalidProxyConfig {
        server: ObjectKey,
        /// The sidecar's complaint.
        source: ConfigError,
    },
    /// An object could not be written as YAML.
    #[error("cannot write {what} as YAML: {message}")]
    Serialize {
        /// The object or document, as the message names it.
        what: String,
        /// The serializer's message.
        message: String,
    },
}

impl RenderError {
    /// The condition reason (`sluice_crds::conditions::reasons`) a status reports this error with.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::InvalidPolicy { .. } | RenderError::InvalidProxyConfig { .. } => {
                reasons::INVALID_POLICY
            }
            RenderError::ServerNotFound { .. } => reasons::SERVER_NOT_FOUND,
            RenderError::ServiceNameTaken { .. } | RenderError::ConflictingRoute { .. } => {
                reasons::CONFLICTING_ROUTE
            }
            RenderError::NoFreePort { .. } => reasons::NO_FREE_PORT,
            RenderError::MissingName(_)
            | RenderError::Duplicate { .. }
            | RenderError::InvalidSpec { .. }
            | RenderError::Serialize { .. } => reasons::INVALID_SPEC,
        }
    }

    /// The McpServer or McpRoute the error is about, when it names one.
    pub fn subject(&self) -> Option<&ObjectKey> {
        match self {
            RenderError::ServerNotFound { route, .. }
            | RenderError::ConflictingRoute { route, .. }
            | RenderError::NoFreePort { route, .. } => Some(route),
            RenderError::InvalidSpec { object, .. }
            | RenderError::InvalidPolicy { object, .. }
            | RenderError::ServiceNameTaken { object, .. }
            | RenderError::Duplicate { object } => Some(object),
            RenderError::InvalidProxyConfig { server, .. } => Some(server),
            RenderError::MissingName(_) | RenderError::Serialize { .. } => None,
        }
    }
}
