//! The Sluice API: `McpServer` and `McpRoute` in `sluice.dev/v1alpha1`.
//!
//! Only types live here. `///` comments on fields are written for users: they become the
//! CRD's descriptions and `kubectl explain` text. Validation that the API server must enforce
//! (ranges, patterns, enums, CEL rules) is declared on the types so that it lands in the
//! generated schema; nothing here knows how the objects are turned into a Deployment.

pub mod conditions;
pub mod container;
pub mod defaults;
pub mod policy;
pub mod refs;
pub mod route;
pub mod server;
pub mod tls;

pub use policy::Policy;
pub use route::{McpRoute, McpRouteSpec, McpRouteStatus};
pub use server::{McpServer, McpServerSpec, McpServerStatus};

/// The API group of every Sluice resource.
pub const GROUP: &str = "sluice.dev";
/// The one API version served so far.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "sluice.dev/v1alpha1";

/// Every CRD this crate defines, in a stable order (servers first).
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![McpServer::crd(), McpRoute::crd()]
}
