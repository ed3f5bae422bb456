//! Builds every Kubernetes object the operator applies for an McpServer and its routes.
//!
//! Pure and deterministic: the same specs give the same objects, in the same order, with the
//! same bytes. [`render_server`] is the core the controller calls for one server with what the
//! cluster knows ([`Observed`]); [`render_all`] is the offline form the CLI's `render` uses on
//! manifests, through that very function.
//!
//! Inside, the layers run one way: this file declares what a render takes and gives;
//! `names`, `routes` and `context` know one server's names, routes and labels; the builders
//! (one file per kind) build from a [`context::Context`]; `server` calls them in apply order;
//! `offline` calls `server` for every server of a set of manifests.

mod autoscaling;
mod config;
mod context;
mod disruption;
mod expose;
mod monitoring;
mod names;
mod network;
mod oauth_state;
mod object;
mod offline;
mod rbac;
mod routes;
mod server;
mod service;
mod workload;

use std::collections::BTreeMap;

use sluice_crds::McpRoute;
use sluice_crds::defaults::{CONDUIT_IMAGE, PROXY_IMAGE};
use sluice_crds::route::DiscoveryUrls;
use sluice_proxy_config::ProxyConfig;

pub use self::expose::{
    BackendRef, HttpPathMatch, HttpRoute, HttpRouteMatch, HttpRouteRule, HttpRouteSpec,
    ParentReference,
};
pub use self::monitoring::{ServiceMonitor, ServiceMonitorEndpoint, ServiceMonitorSpec};
pub use self::names::{MANAGED_BY, label, pod_selector};
pub use self::object::{Object, to_yaml_stream};
pub use self::offline::{Output, render_all};
pub(crate) use self::routes::{cross_server_rejections, public_hosts};
pub use self::server::render_server;
pub use self::workload::RESTART_HASH_ANNOTATION;
pub use crate::key::ObjectKey;
pub use crate::render_error::RenderError;

/// Settings of the operator itself that rendering needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Conduit image for servers that do not pin one.
    pub conduit_image: String,
    /// Sidecar image for servers that do not pin one.
    pub proxy_image: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            conduit_image: CONDUIT_IMAGE.into(),
            proxy_image: PROXY_IMAGE.into(),
        }
    }
}

/// What only a live cluster knows, for one server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Listener ports routes hold today (`McpRoute.status.listenerPort`), by route name.
    pub route_ports: BTreeMap<String, u16>,
    /// The resourceVersion of each referenced Secret, by name. Those that need a rollout to
    /// take effect go into the pod template's restart hash.
    pub secret_versions: BTreeMap<String, String>,
    /// The same for referenced ConfigMaps.
    pub config_map_versions: BTreeMap<String, String>,
}

impl Observed {
    /// The listener ports the routes' statuses record.
    pub fn from_route_statuses<'a>(routes: impl IntoIterator<Item = &'a McpRoute>) -> Self {
        let route_ports = routes
            .into_iter()
            .filter_map(|route| {
                let name = route.metadata.name.clone()?;
                let port = route.status.as_ref()?.listener_port?;
                Some((name, u16::try_from(port).ok()?))
            })
            .collect();
        Self {
            route_ports,
            ..Self::default()
        }
    }
}

/// Everything rendered for one server.
#[derive(Debug)]
pub struct Rendered {
    /// The objects to apply, in apply order.
    pub objects: Vec<Object>,
    /// The sidecar config (also inside the ConfigMap).
    pub config: ProxyConfig,
    /// The in-cluster MCP endpoint of the server's own Service.
    pub server_url: String,
    /// OAuth discovery URLs of the server's own entry point and the redirect URI to register,
    /// in OAuth mode.
    pub discovery: Option<DiscoveryUrls>,
    /// What became of each route, in name order.
    pub routes: Vec<RouteOutcome>,
    /// Reasons to mark the server Degraded (e.g. `Insecure`, `Unauthenticated`).
    pub degraded: Vec<Notice>,
    /// Other things the user should know.
    pub warnings: Vec<String>,
    /// The Secrets and ConfigMaps the objects refer to, and what a change to each needs.
    pub references: Vec<Reference>,
}

/// A reason (from `sluice_crds::conditions::reasons`) with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub reason: &'static str,
    pub message: String,
}

/// What became of one route.
#[derive(Debug)]
pub struct RouteOutcome {
    pub route: ObjectKey,
    /// Accepted with its endpoints, or rejected with the reason.
    pub result: Result<AcceptedRoute, RouteRejection>,
}

/// A route that is part of the server's config.
#[derive(Clone, Debug, PartialEq)]
pub struct AcceptedRoute {
    /// Its sidecar listener port.
    pub listener_port: u16,
    /// Its in-cluster MCP endpoint, `http://<route>.<namespace>.svc<prefix>/mcp`.
    pub internal_url: String,
    /// Its public base URL (origin + prefix), when it has one.
    pub public_url: Option<String>,
    /// The MCP endpoint clients use: the public one when there is one, else the in-cluster one.
    pub url: String,
    /// OAuth discovery URLs and the redirect URI, when the route serves discovery.
    pub discovery: Option<DiscoveryUrls>,
}

/// Why a route was left out of its server's config.
#[derive(Debug)]
pub struct RouteRejection {
    /// CamelCase reason for the `Accepted` condition.
    pub reason: &'static str,
    /// The error, naming the field.
    pub error: RenderError,
}

impl RouteRejection {
    /// The message for the route's `Accepted` condition: the error, naming object and field.
    pub fn message(&self) -> String {
        self.error.to_string()
    }
}

/// A Secret or ConfigMap the rendered objects refer to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// `Secret` or `ConfigMap`.
    pub kind: &'static str,
    /// Its name, in the server's namespace.
    pub name: String,
    /// What a change to it needs.
    pub on_change: OnChange,
}

/// What a change to a referenced object needs to take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OnChange {
    /// A new rollout (read only at start: the server's env variables, Conduit's CA bundle,
    /// the sidecar's trace export headers).
    Rollout,
    /// Nothing: the sidecar re-reads the mounted files.
    Reload,
}
