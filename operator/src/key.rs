//! How messages and maps name a Sluice object: `McpRoute tools/public`.

use std::fmt;

use kube::api::ObjectMeta;
use sluice_crds::{McpRoute, McpServer};

/// `kind` of an McpServer.
pub const SERVER_KIND: &str = "McpServer";
/// `kind` of an McpRoute.
pub const ROUTE_KIND: &str = "McpRoute";

/// A Sluice object by kind, namespace and name; ordered that way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// [`SERVER_KIND`] or [`ROUTE_KIND`].
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn of_server(server: &McpServer) -> Result<Self, MissingName> {
        Self::of(SERVER_KIND, &server.metadata)
    }

    pub fn of_route(route: &McpRoute) -> Result<Self, MissingName> {
        Self::of(ROUTE_KIND, &route.metadata)
    }

    /// A missing namespace is `default`, as `kubectl apply` without a context namespace
    /// would have it.
    fn of(kind: &'static str, metadata: &ObjectMeta) -> Result<Self, MissingName> {
        let namespace = metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        match &metadata.name {
            Some(name) => Ok(Self {
                kind,
                namespace,
                name: name.clone(),
            }),
            None => Err(MissingName { kind, namespace }),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// An object without `metadata.name`: it has no key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} without metadata.name (in namespace {namespace})")]
pub struct MissingName {
    pub kind: &'static str,
    pub namespace: String,
}
