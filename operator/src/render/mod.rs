//! Builds every Kubernetes object the operator applies for an McpServer and its routes.
//!
//! Pure and deterministic: the same specs give the same objects, in the same order, with the
//! same bytes. [`render_server`] is the core the controller calls for one server with what the
//! cluster knows ([`Observed`]); [`render_all`] is the offline form the CLI's `render` uses on
//! manifests, through that very function.

mod config;
mod disruption;
mod error;
mod expose;
mod monitoring;
pub mod names;
mod network;
mod oauth_state;
mod object;
mod rbac;
mod routes;
mod server;
mod service;
mod workload;

use std::collections::{BTreeMap, BTreeSet};

use sluice_crds::defaults::{CONDUIT_IMAGE, PROXY_IMAGE};
use sluice_crds::route::DiscoveryUrls;
use sluice_crds::{McpRoute, McpServer};
use sluice_proxy_config::ProxyConfig;

pub use error::RenderError;
pub use expose::{
    BackendRef, HttpPathMatch, HttpRoute, HttpRouteMatch, HttpRouteRule, HttpRouteSpec,
    ParentReference,
};
pub use monitoring::{ServiceMonitor, ServiceMonitorEndpoint, ServiceMonitorSpec};
pub use names::ObjectKey;
pub use object::{Object, to_yaml_stream};
pub use routes::{KIND as ROUTE_KIND, cross_server_rejections, key as route_key, public_hosts};
pub use server::{KIND as SERVER_KIND, key as server_key, render_server};
pub use workload::{CONDUIT, RESTART_HASH_ANNOTATION, SIDECAR};

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
    /// A version (resourceVersion or content hash) of each referenced Secret, by name. Those
    /// that need a rollout to take effect go into the pod template's restart hash.
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
    /// CamelCase reason.
    pub reason: &'static str,
    /// For humans.
    pub message: String,
}

/// What became of one route.
#[derive(Debug)]
pub struct RouteOutcome {
    /// The route.
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
    /// A new rollout (Conduit reads it only at start: env variables, its CA bundle).
    Rollout,
    /// Nothing: the sidecar re-reads the mounted files.
    Reload,
}

/// The objects for a set of servers and routes, as the offline `render` prints them.
#[derive(Clone, Debug)]
pub struct Output {
    /// Every object, servers in namespace/name order, each server's objects in apply order.
    pub objects: Vec<Object>,
    /// Things the user should know, each once.
    pub warnings: Vec<String>,
}

/// Renders every server with its routes, as the controller would, and fails on what the
/// controller would refuse (a route it would reject included).
pub fn render_all(
    servers: &[McpServer],
    routes: &[McpRoute],
    options: &RenderOptions,
) -> Result<Output, RenderError> {
    let servers = sorted_unique(servers, server::key)?;
    let routes = sorted_unique(routes, routes::key)?;
    let mut by_server: BTreeMap<ObjectKey, Vec<&McpRoute>> = servers
        .iter()
        .map(|(key, _)| (key.clone(), Vec::new()))
        .collect();
    for (key, route) in &routes {
        let server_key = ObjectKey {
            kind: server::KIND,
            namespace: key.namespace.clone(),
            name: route.spec.server_ref.name.clone(),
        };
        let Some(list) = by_server.get_mut(&server_key) else {
            return Err(RenderError::ServerNotFound {
                route: key.clone(),
                server: server_key.name,
            });
        };
        list.push(route);
    }
    routes::check_across_servers(&servers, &routes)?;

    let mut output = Output {
        objects: Vec::new(),
        warnings: Vec::new(),
    };
    let mut seen_warnings = BTreeSet::new();
    for (key, server) in &servers {
        let its_routes = &by_server[key];
        let observed = Observed::from_route_statuses(its_routes.iter().copied());
        let rendered = render_server(server, its_routes, options, &observed)?;
        for outcome in rendered.routes {
            if let Err(rejection) = outcome.result {
                return Err(rejection.error);
            }
        }
        let notices = rendered
            .degraded
            .iter()
            .map(|n| format!("{key}: {}: {}", n.reason, n.message));
        for warning in rendered.warnings.into_iter().chain(notices) {
            if seen_warnings.insert(warning.clone()) {
                output.warnings.push(warning);
            }
        }
        output.objects.extend(rendered.objects);
    }
    Ok(output)
}

/// The items sorted by key; an error if a key repeats.
fn sorted_unique<T>(
    items: &[T],
    key: fn(&T) -> Result<ObjectKey, RenderError>,
) -> Result<Vec<(ObjectKey, &T)>, RenderError> {
    let mut keyed = items
        .iter()
        .map(|item| Ok((key(item)?, item)))
        .collect::<Result<Vec<_>, _>>()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = keyed.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(RenderError::Duplicate {
            object: pair[0].0.clone(),
        });
    }
    Ok(keyed)
}
