//! The Sluice operator: McpServers and McpRoutes into Kubernetes objects and sidecar config.
//!
//! `manifest` reads user files, `admission` checks them as the API server would, `translate`
//! turns a server and its routes into the sidecar's config, `render` builds every object the
//! operator applies. The CLI's `render` and the controller share this one path.

pub mod admin;
pub mod admission;
pub mod apidocs;
pub mod controller;
pub mod crdgen;
pub mod error;
pub mod leader;
pub mod manifest;
pub mod metrics;
pub mod ports;
pub mod rbac;
pub mod render;
pub mod run;
pub mod translate;

pub use error::{Error, Result};
