//! Defaults that the API documents and the operator applies.
//!
//! Images are not schema defaults: an operator upgrade should move servers that did not pin
//! an image to the images that operator release was tested with, so the operator fills them in
//! (from its flags, set by the Helm chart) and these constants are only the fallback.

/// Conduit, the Phabricator MCP server, at the release Sluice is tested against.
pub const CONDUIT_IMAGE: &str = "ghcr.io/skroutz/conduit:0.2.2";

/// The sidecar image of the same release as this operator.
pub const PROXY_IMAGE: &str = concat!(
    "ghcr.io/sluice-dev/sluice-proxy:",
    env!("CARGO_PKG_VERSION")
);

/// Port Conduit listens on, on the pod's loopback only.
pub const CONDUIT_PORT: u16 = 8000;

/// Port `sluice-bridge` serves a `container.stdio` server on, on the pod's loopback, when
/// `container.port` is not set.
pub const BRIDGE_PORT: u16 = 3000;

/// The sidecar's listener for the server's own entry point (its in-cluster Service).
pub const SERVER_LISTENER_PORT: u16 = 8080;

/// First sidecar listener port handed to McpRoutes; each route gets its own port from here up.
pub const FIRST_ROUTE_PORT: u16 = 8081;

/// Last port handed to McpRoutes (and so the most routes one server can carry).
pub const LAST_ROUTE_PORT: u16 = 8999;

/// The sidecar's admin listener: `/healthz`, `/readyz`, `/metrics`.
pub const ADMIN_PORT: u16 = 9090;

/// UID and GID both containers run as (distroless `nonroot`).
pub const NON_ROOT_ID: i64 = 65532;

/// Default request body limit of an entry point, in bytes.
pub const MAX_BODY_BYTES: i64 = 1024 * 1024;
