//! A route's public exposure: a networking.k8s.io Ingress or a Gateway-API HTTPRoute.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use sluice_crds::route::{HttpRouteExpose, IngressExpose};

use super::Object;
use super::context::Context;
use super::routes::PlannedRoute;
use super::service::entry_port_number;

/// The Ingress or HTTPRoute of an exposed route; `None` for an in-cluster route.
pub fn exposure(ctx: &Context<'_>, route: &PlannedRoute<'_>) -> Option<Object> {
    let expose = route.route.spec.expose.as_ref()?;
    if let Some(ingress) = &expose.ingress {
        return Some(Object::Ingress(self::ingress(ctx, route, ingress)));
    }
    expose
        .http_route
        .as_ref()
        .map(|http| Object::HttpRoute(http_route(ctx, route, http)))
}

/// Paths outside the prefix that belong to a prefixed route: where OAuth clients look for
/// its metadata, with the well-known segment before the prefix (RFC 9728, RFC 8414, OpenID
/// Connect discovery). A route at `/` already receives everything.
pub fn discovery_paths(prefix: &str) -> Vec<String> {
    if prefix == "/" {
        return Vec::new();
    }
    vec![
        format!("/.well-known/oauth-protected-resource{prefix}/mcp"),
        format!("/.well-known/oauth-protected-resource{prefix}"),
        format!("/.well-known/oauth-authorization-server{prefix}"),
        format!("/.well-known/openid-configuration{prefix}"),
    ]
}

fn metadata_with(
    ctx: &Context<'_>,
    route: &PlannedRoute<'_>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> ObjectMeta {
    let mut metadata = ctx.route_metadata(route);
    if !annotations.is_empty() {
        metadata.annotations = Some(annotations.clone());
    }
    metadata
}

fn ingress(ctx: &Context<'_>, route: &PlannedRoute<'_>, settings: &IngressExpose) -> Ingress {
    let spec = &route.route.spec;
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: route.key.name.clone(),
            port: Some(ServiceBackendPort {
                number: Some(entry_port_number(spec.tls.is_some())),
                ..ServiceBackendPort::default()
            }),
        }),
        ..IngressBackend::default()
    };
    let path = |path: String, path_type: &str| HTTPIngressPath {
        backend: backend.clone(),
        path: Some(path),
        path_type: path_type.into(),
    };
    let mut paths = vec![path(spec.path_prefix.clone(), "Prefix")];
    paths.extend(
        discovery_paths(&spec.path_prefix)
            .into_iter()
            .map(|p| path(p, "Exact")),
    );
    let rules = spec
        .hostnames
        .iter()
        .map(|host| IngressRule {
            host: Some(host.clone()),
            http: Some(HTTPIngressRuleValue {
                paths: paths.clone(),
            }),
        })
        .collect();
    let tls = settings.tls_secret_name.as_ref().map(|secret| {
        vec![IngressTLS {
            hosts: Some(spec.hostnames.clone()),
            secret_name: Some(secret.clone()),
        }]
    });
    Ingress {
        metadata: metadata_with(ctx, route, &settings.annotations),
        spec: Some(IngressSpec {
            ingress_class_name: settings.class_name.clone(),
            rules: Some(rules),
            tls,
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

fn http_route(
    ctx: &Context<'_>,
    route: &PlannedRoute<'_>,
    settings: &HttpRouteExpose,
) -> HttpRoute {
    use k8s_openapi::Resource;
    let spec = &route.route.spec;
    let matched = |match_type: &str, value: String| HttpRouteMatch {
        path: HttpPathMatch {
            match_type: match_type.into(),
            value,
        },
    };
    let mut matches = vec![matched("PathPrefix", spec.path_prefix.clone())];
    matches.extend(
        discovery_paths(&spec.path_prefix)
            .into_iter()
            .map(|p| matched("Exact", p)),
    );
    HttpRoute {
        api_version: HttpRoute::API_VERSION.into(),
        kind: HttpRoute::KIND.into(),
        metadata: metadata_with(ctx, route, &settings.annotations),
        spec: HttpRouteSpec {
            parent_refs: settings
                .parent_refs
                .iter()
                .map(|p| ParentReference {
                    name: p.name.clone(),
                    namespace: p.namespace.clone(),
                    section_name: p.section_name.clone(),
                    port: p.port,
                })
                .collect(),
            hostnames: spec.hostnames.clone(),
            rules: vec![HttpRouteRule {
                matches,
                backend_refs: vec![BackendRef {
                    name: route.key.name.clone(),
                    port: entry_port_number(spec.tls.is_some()),
                }],
            }],
        },
    }
}

// === Gateway API types (only the fields Sluice sets) ===

/// A `gateway.networking.k8s.io/v1` HTTPRoute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Always `gateway.networking.k8s.io/v1`.
    pub api_version: String,
    /// Always `HTTPRoute`.
    pub kind: String,
    pub metadata: ObjectMeta,
    /// Where it attaches and what it routes.
    pub spec: HttpRouteSpec,
}

/// An HTTPRoute's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// Gateways (or listeners) it attaches to.
    pub parent_refs: Vec<ParentReference>,
    /// Host names it serves.
    pub hostnames: Vec<String>,
    pub rules: Vec<HttpRouteRule>,
}

/// A reference to a Gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// The Gateway's name.
    pub name: String,
    /// Its namespace; absent: the route's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One of its listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// One of its ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// Requests matching any of `matches` go to `backend_refs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Request matches (any).
    pub matches: Vec<HttpRouteMatch>,
    /// Where matching requests go.
    pub backend_refs: Vec<BackendRef>,
}

/// A request match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    pub path: HttpPathMatch,
}

/// A path match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathMatch {
    /// `PathPrefix` or `Exact`.
    #[serde(rename = "type")]
    pub match_type: String,
    pub value: String,
}

/// A Service backend in the route's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// The Service's name.
    pub name: String,
    /// The Service's port.
    pub port: i32,
}

impl k8s_openapi::Resource for HttpRoute {
    const API_VERSION: &'static str = "gateway.networking.k8s.io/v1";
    const GROUP: &'static str = "gateway.networking.k8s.io";
    const KIND: &'static str = "HTTPRoute";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "httproutes";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for HttpRoute {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_paths_for_prefixes() {
        assert!(discovery_paths("/").is_empty());
        assert_eq!(
            discovery_paths("/team/ai"),
            [
                "/.well-known/oauth-protected-resource/team/ai/mcp",
                "/.well-known/oauth-protected-resource/team/ai",
                "/.well-known/oauth-authorization-server/team/ai",
                "/.well-known/openid-configuration/team/ai",
            ]
        );
    }
}
