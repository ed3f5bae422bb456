//! What every builder knows about the server being rendered: its key, owner, images and the
//! labels and metadata its objects carry.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sluice_crds::McpServer;

use super::names::{self, COMPONENT_ROUTE, COMPONENT_SERVER, Owner};
use super::routes::PlannedRoute;
use crate::key::ObjectKey;

/// The server being rendered, as its builders need it.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub server: &'a McpServer,
    pub key: ObjectKey,
    /// Owner of the server's own objects (a route's objects are owned by the route).
    pub owner: Owner,
    /// `app.kubernetes.io/version`: the server image's tag.
    pub version: Option<String>,
    /// `spec.container.image`; for Conduit `spec.image`, else the operator's default.
    pub server_image: String,
    /// `spec.proxy.image`, else the operator's default.
    pub proxy_image: String,
}

impl Context<'_> {
    /// Labels of the server's own objects.
    pub fn labels(&self) -> BTreeMap<String, String> {
        names::common_labels(&self.key.name, COMPONENT_SERVER, self.version.as_deref())
    }

    /// Metadata of a server object named `name`.
    pub fn metadata(&self, name: &str) -> ObjectMeta {
        self.owner.metadata(name, self.labels())
    }

    /// Metadata of a route's object: the route's name, labels and ownership.
    pub fn route_metadata(&self, route: &PlannedRoute<'_>) -> ObjectMeta {
        let mut labels =
            names::common_labels(&self.key.name, COMPONENT_ROUTE, self.version.as_deref());
        labels.insert(names::label::ROUTE.into(), route.key.name.clone());
        route.owner.metadata(&route.key.name, labels)
    }
}
