//! The offline form of rendering, for the CLI's `render`: every server of a set of manifests
//! with its routes, through the controller's own [`render_server`], failing on anything the
//! controller would refuse.

use std::collections::{BTreeMap, BTreeSet};

use sluice_crds::{McpRoute, McpServer};

use super::routes::cross_server_rejections;
use super::server::render_server;
use super::{Object, Observed, OnChange, RESTART_HASH_ANNOTATION, RenderOptions, Rendered};
use crate::admission::{Admitted, Problem, Problems};
use crate::key::{ObjectKey, SERVER_KIND};
use crate::manifest::Origin;
use crate::render_error::RenderError;

/// The objects for a set of servers and routes, as the offline `render` prints them.
#[derive(Clone, Debug)]
pub struct Output {
    /// Every object, servers in namespace/name order, each server's objects in apply order.
    pub objects: Vec<Object>,
    /// Things the user should know, each once.
    pub warnings: Vec<String>,
    /// Where the controller's objects will differ from these, because only the cluster
    /// knows: printed as `note:` lines, so a diff against the cluster surprises nobody.
    pub notes: Vec<String>,
}

/// Renders every server with its routes, as the controller would, and fails on what the
/// controller would refuse (a route it would reject included).
pub fn render_all(
    servers: &[McpServer],
    routes: &[McpRoute],
    options: &RenderOptions,
) -> Result<Output, RenderError> {
    let servers = sorted_unique(servers, ObjectKey::of_server)?;
    let routes = sorted_unique(routes, ObjectKey::of_route)?;
    let mut by_server: BTreeMap<ObjectKey, Vec<&McpRoute>> = servers
        .iter()
        .map(|(key, _)| (key.clone(), Vec::new()))
        .collect();
    for (key, route) in &routes {
        let server_key = ObjectKey {
            kind: SERVER_KIND,
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
    let server_keys: Vec<ObjectKey> = servers.iter().map(|(key, _)| key.clone()).collect();
    if let Some((_, error)) = cross_server_rejections(&server_keys, &routes)
        .into_iter()
        .next()
    {
        return Err(error);
    }

    let mut output = Output {
        objects: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
    };
    let mut seen_warnings = BTreeSet::new();
    for (key, server) in &servers {
        let its_routes = &by_server[key];
        let observed = Observed::from_route_statuses(its_routes.iter().copied());
        let rendered = render_server(server, its_routes, options, &observed)?;
        output.notes.extend(unknowable(key, &rendered, &observed));
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

/// What a file cannot tell about `rendered`'s objects, and the controller will know.
fn unknowable(key: &ObjectKey, rendered: &Rendered, observed: &Observed) -> Vec<String> {
    let mut notes = Vec::new();
    let read_at_start: Vec<String> = rendered
        .references
        .iter()
        .filter(|r| r.on_change == OnChange::Rollout)
        .map(|r| format!("{} {}", r.kind, r.name))
        .collect();
    if !read_at_start.is_empty() {
        notes.push(format!(
            "{key}: the pod template's {RESTART_HASH_ANNOTATION} covers the resourceVersions \
             of {} (read at start), which only the cluster knows: the \
             controller's value differs from this one",
            read_at_start.join(", ")
        ));
    }
    let assigned: Vec<&str> = rendered
        .routes
        .iter()
        .filter(|outcome| !observed.route_ports.contains_key(&outcome.route.name))
        .map(|outcome| outcome.route.name.as_str())
        .collect();
    if !assigned.is_empty() {
        notes.push(format!(
            "{key}: listener ports of {} are assigned here in name order from 8081; in a \
             cluster a route keeps the port its status.listenerPort records",
            assigned.join(", ")
        ));
    }
    for object in &rendered.objects {
        let needs = match object {
            Object::HttpRoute(_) => "the Gateway API",
            Object::ServiceMonitor(_) => "the Prometheus Operator",
            _ => continue,
        };
        notes.push(format!(
            "{key}: {} {} is applied only where the cluster serves its kind ({needs}); \
             elsewhere the controller leaves it out and says so in a condition",
            object.kind(),
            object.name()
        ));
    }
    notes
}

/// The items sorted by key; an error if a key repeats.
fn sorted_unique<T, E: Into<RenderError>>(
    items: &[T],
    key: fn(&T) -> Result<ObjectKey, E>,
) -> Result<Vec<(ObjectKey, &T)>, RenderError> {
    let mut keyed = items
        .iter()
        .map(|item| Ok((key(item).map_err(Into::into)?, item)))
        .collect::<Result<Vec<_>, RenderError>>()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = keyed.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(RenderError::Duplicate {
            object: pair[0].0.clone(),
        });
    }
    Ok(keyed)
}

// Here rather than in `admission`, so that admission stays below render.
impl Admitted {
    /// Renders every object, as `sluice-operator render` prints them. The problem names the
    /// input and document of the object it is about.
    pub fn render(&self, options: &RenderOptions) -> Result<Output, Problems> {
        render_all(&self.servers, &self.routes, options).map_err(|error| {
            // The render error names the object already; the origin adds file and document.
            let at = error
                .subject()
                .and_then(|key| self.origin_of(key))
                .map(|origin| {
                    Box::new(Origin {
                        object: None,
                        ..origin.clone()
                    })
                });
            Problems(vec![Problem::Render {
                at,
                error: Box::new(error),
            }])
        })
    }
}
