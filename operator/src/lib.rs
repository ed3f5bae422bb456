//! The Sluice operator: McpServers and McpRoutes into Kubernetes objects and sidecar config.
//!
//! `manifest` reads user files, `admission` checks them as the API server would, `translate`
//! turns a server and its routes into the sidecar's config, `render` builds every object the
//! operator applies, `controller` applies them. The CLI's `render` and the controller share
//! this one path, and imports follow it: a module uses only those before it (ARCHITECTURE.md,
//! "The operator").

// The ground floor: what every layer names its objects and errors with.
mod error;
mod key;
mod ports;
mod render_error;

// The path from a manifest to the cluster.
pub mod admission;
pub mod controller;
pub mod manifest;
pub mod render;
pub mod translate;

// Around the controller.
mod admin;
pub mod leader;
pub mod metrics;
pub mod run;

// Generated from the code: CRDs, API reference, RBAC.
pub mod apidocs;
pub mod crdgen;
pub mod rbac;

pub use error::{Error, Result};
