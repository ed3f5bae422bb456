//! McpRoutes of one server: conflicts, public and in-cluster URLs, ports, acceptance.

use std::collections::{BTreeMap, BTreeSet};

use sluice_crds::policy::AuthMode;
use sluice_crds::route::DiscoveryUrls;
use sluice_crds::{API_VERSION, McpRoute, McpServer};
use sluice_proxy_config::EntryPoint;

use super::names::{Owner, PLACEHOLDER_UID_WARNING, placeholder_uid};
use super::{AcceptedRoute, Observed, RouteOutcome, RouteRejection};
use crate::key::ObjectKey;
use crate::ports;
use crate::render_error::RenderError;
use crate::translate::{self, SidecarFiles, Site};

/// `http://<service>.<namespace>.svc` (`https://` when the sidecar serves TLS on the entry
/// point, whose Service port is then 443): an entry point's in-cluster base URL.
pub fn service_url(service: &str, namespace: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{service}.{namespace}.svc")
}

/// The MCP endpoint under a base URL that ends in the path prefix (or in the host for `/`).
pub fn mcp_endpoint(base: &str) -> String {
    format!("{}/mcp", base.trim_end_matches('/'))
}

/// The route's public base URL: `spec.publicUrl`, else `https://<first hostname><prefix>`
/// when it is exposed.
pub fn public_url(route: &McpRoute) -> Option<String> {
    if let Some(url) = &route.spec.public_url {
        return Some(url.clone());
    }
    route.spec.expose.as_ref()?;
    let host = route.spec.hostnames.first()?;
    Some(with_prefix(
        &format!("https://{host}"),
        &route.spec.path_prefix,
    ))
}

/// `base` followed by a path prefix (nothing for `/`).
fn with_prefix(base: &str, prefix: &str) -> String {
    if prefix == "/" {
        base.to_string()
    } else {
        format!("{base}{prefix}")
    }
}

/// Where OAuth clients look for the metadata of an entry point whose public base URL is
/// `public_url`: the well-known segment goes between the origin and the path (RFC 9728,
/// RFC 8414). OAuth mode gets every document and the redirect URI to register in
/// Phabricator; `jwt` gets the protected-resource document the sidecar serves.
pub fn discovery_urls(public_url: &str, mode: AuthMode) -> Option<DiscoveryUrls> {
    let url = url::Url::parse(public_url).ok()?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let protected_resource = Some(format!(
        "{origin}/.well-known/oauth-protected-resource{path}/mcp"
    ));
    match mode {
        AuthMode::OAuth => Some(DiscoveryUrls {
            protected_resource,
            authorization_server: Some(format!(
                "{origin}/.well-known/oauth-authorization-server{path}"
            )),
            openid_configuration: Some(format!("{origin}/.well-known/openid-configuration{path}")),
            redirect_uri: Some(format!(
                "{}/auth/callback",
                public_url.trim_end_matches('/')
            )),
        }),
        AuthMode::Jwt => Some(DiscoveryUrls {
            protected_resource,
            ..DiscoveryUrls::default()
        }),
        _ => None,
    }
}

/// The redirect URI Conduit sends Phabricator, whichever entry point a login starts on:
/// `<its server URL>/auth/callback`. The one to register in Phabricator.
fn oauth_callback(server_url: &str) -> String {
    format!("{}/auth/callback", server_url.trim_end_matches('/'))
}

/// The discovery URLs of the server's own entry point in OAuth mode: at the root forms of its
/// in-cluster base URL `service_url` (prefix `/`, no public URL; the sidecar answers with URLs
/// of the Host a caller used), and the redirect URI of Conduit's public URL.
pub fn server_discovery_urls(service_url: &str, oauth_server_url: &str) -> Option<DiscoveryUrls> {
    let urls = discovery_urls(service_url, AuthMode::OAuth)?;
    Some(DiscoveryUrls {
        redirect_uri: Some(oauth_callback(oauth_server_url)),
        ..urls
    })
}

/// Points every accepted route's redirect URI at `server_url`'s callback: Conduit sends
/// Phabricator `<its server URL>/auth/callback` whichever route a login starts on, so that is
/// the URI to register, even on a route whose own public URL differs.
pub fn register_callback_of(server_url: &str, outcomes: &mut [RouteOutcome]) {
    let callback = oauth_callback(server_url);
    for outcome in outcomes {
        if let Ok(accepted) = &mut outcome.result
            && let Some(discovery) = &mut accepted.discovery
            && discovery.redirect_uri.is_some()
        {
            discovery.redirect_uri = Some(callback.clone());
        }
    }
}

/// A route that made it into its server's config.
#[derive(Clone, Debug)]
pub struct PlannedRoute<'a> {
    pub route: &'a McpRoute,
    pub key: ObjectKey,
    /// Owner of its objects.
    pub owner: Owner,
    /// Its port and URLs.
    pub accepted: AcceptedRoute,
    /// Its entry point in the sidecar config.
    pub entry_point: EntryPoint,
    /// The files its policy refers to.
    pub files: SidecarFiles,
}

/// The routes of `server`, accepted (with ports and entry points) or rejected. The caller
/// passes only routes whose `spec.serverRef` names this server.
pub fn plan<'a>(
    server: &McpServer,
    server_key: &ObjectKey,
    routes: &[&'a McpRoute],
    observed: &Observed,
    warnings: &mut Vec<String>,
) -> Result<(Vec<PlannedRoute<'a>>, Vec<RouteOutcome>), RenderError> {
    let mut keyed = routes
        .iter()
        .map(|route| Ok((ObjectKey::of_route(route)?, *route)))
        .collect::<Result<Vec<_>, RenderError>>()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut outcomes = Vec::new();
    let mut candidates: Vec<PlannedRoute<'a>> = Vec::new();
    let mut claims: BTreeMap<(String, String), ObjectKey> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (key, route) in keyed {
        if key.namespace != server_key.namespace || route.spec.server_ref.name != server_key.name {
            return Err(RenderError::InvalidSpec {
                object: key,
                field: "spec.serverRef.name".into(),
                message: format!(
                    "names McpServer {:?}, not {server_key}",
                    route.spec.server_ref.name
                ),
            });
        }
        if !seen.insert(key.clone()) {
            return Err(RenderError::Duplicate { object: key });
        }
        if route.metadata.namespace.is_none() {
            warnings.push(format!(
                "{key} has no metadata.namespace; rendered for namespace default"
            ));
        }
        match candidate(server, server_key, &key, route, &claims, warnings) {
            Ok(planned) => {
                for host in public_hosts(route) {
                    claims.insert((host.clone(), route.spec.path_prefix.clone()), key.clone());
                }
                candidates.push(planned);
            }
            Err(error) => outcomes.push(rejected(key, error)),
        }
    }
    let ports = ports::assign(
        candidates.iter().map(|c| c.key.name.as_str()),
        &observed.route_ports,
    );
    let mut planned = Vec::new();
    for mut candidate in candidates {
        match ports.get(&candidate.key.name).copied().flatten() {
            Some(port) => {
                candidate.accepted.listener_port = port;
                candidate.entry_point.listen.set_port(port);
                outcomes.push(RouteOutcome {
                    route: candidate.key.clone(),
                    result: Ok(candidate.accepted.clone()),
                });
                planned.push(candidate);
            }
            None => {
                let error = RenderError::NoFreePort {
                    route: candidate.key.clone(),
                    server: server_key.name.clone(),
                    first: *ports::ROUTE_PORTS.start(),
                    last: *ports::ROUTE_PORTS.end(),
                };
                outcomes.push(rejected(candidate.key, error));
            }
        }
    }
    outcomes.sort_by(|a, b| a.route.cmp(&b.route));
    Ok((planned, outcomes))
}

fn rejected(route: ObjectKey, error: RenderError) -> RouteOutcome {
    RouteOutcome {
        route,
        result: Err(RouteRejection {
            reason: error.reason(),
            error,
        }),
    }
}

/// The route checked and translated, with its port still to be assigned.
fn candidate<'a>(
    server: &McpServer,
    server_key: &ObjectKey,
    key: &ObjectKey,
    route: &'a McpRoute,
    claims: &BTreeMap<(String, String), ObjectKey>,
    warnings: &mut Vec<String>,
) -> Result<PlannedRoute<'a>, RenderError> {
    let spec = &route.spec;
    let invalid = |field: &str, message: String| RenderError::InvalidSpec {
        object: key.clone(),
        field: field.into(),
        message,
    };
    if key.name == server_key.name {
        return Err(RenderError::ServiceNameTaken {
            object: key.clone(),
            service: key.name.clone(),
            other: Box::new(server_key.clone()),
        });
    }
    if let Some(expose) = &spec.expose
        && expose.ingress.is_some() == expose.http_route.is_some()
    {
        return Err(invalid(
            "spec.expose",
            "needs exactly one of ingress or httpRoute".into(),
        ));
    }
    if spec.expose.is_some() && spec.hostnames.is_empty() {
        return Err(invalid(
            "spec.hostnames",
            "an exposed route needs at least one hostname".into(),
        ));
    }
    for host in public_hosts(route) {
        if let Some(other) = claims.get(&(host.clone(), spec.path_prefix.clone())) {
            return Err(conflict(key, other, host, &spec.path_prefix));
        }
    }
    let public_url = public_url(route);
    if let Some(url) = &public_url {
        check_public_url(url, &spec.path_prefix)
            .map_err(|message| invalid("spec.publicUrl", message))?;
    }
    let service_url = service_url(&key.name, &key.namespace, spec.tls.is_some());
    let site = Site {
        object: key,
        name: &key.name,
        port: 0,
        path_prefix: &spec.path_prefix,
        public_url: public_url.as_deref(),
        service_url: &service_url,
        tls: spec.tls.as_ref(),
    };
    let (entry_point, files) = translate::entry_point(server, &site, &spec.policy)?;
    let internal_url = mcp_endpoint(&with_prefix(&service_url, &spec.path_prefix));
    let mode = translate::effective_mode(server, &spec.policy.authentication);
    let discovery = public_url
        .as_deref()
        .and_then(|url| discovery_urls(url, mode));
    let uid = route.metadata.uid.clone().unwrap_or_else(|| {
        warnings.push(PLACEHOLDER_UID_WARNING.into());
        placeholder_uid(key)
    });
    Ok(PlannedRoute {
        route,
        key: key.clone(),
        owner: Owner {
            api_version: API_VERSION.into(),
            key: key.clone(),
            uid,
        },
        accepted: AcceptedRoute {
            listener_port: 0,
            url: public_url
                .as_deref()
                .map(mcp_endpoint)
                .unwrap_or_else(|| internal_url.clone()),
            internal_url,
            public_url,
            discovery,
        },
        entry_point,
        files,
    })
}

/// The sidecar serves the route at its path prefix, so a public URL must end in exactly it.
fn check_public_url(public_url: &str, prefix: &str) -> Result<(), String> {
    let url =
        url::Url::parse(public_url).map_err(|e| format!("{public_url:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{public_url:?} must be an http(s) URL"));
    }
    if url.path() != prefix {
        return Err(format!(
            "the path of {public_url:?} must be the pathPrefix {prefix:?}"
        ));
    }
    Ok(())
}

/// The hosts a route claims at its prefix: those of an exposed route (an in-cluster route's
/// hostnames reach nothing, so they cannot conflict).
pub fn public_hosts(route: &McpRoute) -> &[String] {
    if route.spec.expose.is_some() {
        &route.spec.hostnames
    } else {
        &[]
    }
}

fn conflict(route: &ObjectKey, other: &ObjectKey, host: &str, prefix: &str) -> RenderError {
    RenderError::ConflictingRoute {
        route: route.clone(),
        other: Box::new(other.clone()),
        hostname: host.into(),
        path_prefix: prefix.into(),
    }
}

/// The rule that spans servers, in one place for the controller and the offline `render`:
/// which routes lose, and why.
///
/// - A route named like a server of its namespace loses: its Service would take the server's.
/// - A public host and path prefix belong to the oldest route claiming them (earliest
///   `creationTimestamp`, then namespace/name), so an existing route never loses its host to
///   a newcomer. A route of another server claiming them loses, and claims nothing. Claims
///   among one server's own routes are [`plan`]'s to settle, so they are not counted here.
///
/// `servers` are the servers that exist; `routes` every route that may claim a host, in any
/// order (a route listed twice counts once). The controller passes one server's routes and
/// their rivals from its caches; the offline `render` passes every route of its inputs, which
/// seldom carry a `creationTimestamp`, so there the oldest is the first by namespace/name.
pub fn cross_server_rejections(
    servers: &[ObjectKey],
    routes: &[(ObjectKey, &McpRoute)],
) -> BTreeMap<ObjectKey, RenderError> {
    let server_names: BTreeMap<(&str, &str), &ObjectKey> = servers
        .iter()
        .map(|key| ((key.namespace.as_str(), key.name.as_str()), key))
        .collect();
    let mut by_age: Vec<&(ObjectKey, &McpRoute)> = routes.iter().collect();
    by_age.sort_by(|(a_key, a), (b_key, b)| {
        let created = |r: &McpRoute| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a).cmp(&created(b)).then_with(|| a_key.cmp(b_key))
    });
    by_age.dedup_by(|a, b| a.0 == b.0);
    // (host, prefix) → the route claiming it and that route's (namespace, server).
    let mut claims: BTreeMap<(&str, &str), Claim<'_>> = BTreeMap::new();
    let mut rejections = BTreeMap::new();
    for (key, route) in by_age {
        if let Some(server) = server_names.get(&(key.namespace.as_str(), key.name.as_str())) {
            rejections.insert(
                key.clone(),
                RenderError::ServiceNameTaken {
                    object: key.clone(),
                    service: key.name.clone(),
                    other: Box::new((*server).clone()),
                },
            );
            continue;
        }
        let its_server = (key.namespace.as_str(), route.spec.server_ref.name.as_str());
        let prefix = route.spec.path_prefix.as_str();
        let lost = public_hosts(route).iter().find_map(|host| {
            let (other, other_server) = claims.get(&(host.as_str(), prefix))?;
            (*other_server != its_server).then(|| conflict(key, other, host, prefix))
        });
        if let Some(error) = lost {
            rejections.insert(key.clone(), error);
            continue;
        }
        for host in public_hosts(route) {
            claims
                .entry((host.as_str(), prefix))
                .or_insert((key, its_server));
        }
    }
    rejections
}

/// A claim on a host and prefix: the route, and its server's (namespace, name).
type Claim<'a> = (&'a ObjectKey, (&'a str, &'a str));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls_put_the_well_known_segment_before_the_prefix() {
        let urls = discovery_urls("https://phab.example.com/ai", AuthMode::OAuth).unwrap();
        assert_eq!(
            urls.protected_resource.as_deref(),
            Some("https://phab.example.com/.well-known/oauth-protected-resource/ai/mcp")
        );
        assert_eq!(
            urls.authorization_server.as_deref(),
            Some("https://phab.example.com/.well-known/oauth-authorization-server/ai")
        );
        assert_eq!(
            urls.openid_configuration.as_deref(),
            Some("https://phab.example.com/.well-known/openid-configuration/ai")
        );
        assert_eq!(
            urls.redirect_uri.as_deref(),
            Some("https://phab.example.com/ai/auth/callback")
        );
    }

    #[test]
    fn discovery_urls_at_the_root() {
        let urls = discovery_urls("https://mcp.example.com", AuthMode::OAuth).unwrap();
        assert_eq!(
            urls.protected_resource.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            urls.authorization_server.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-authorization-server")
        );
        assert_eq!(
            urls.redirect_uri.as_deref(),
            Some("https://mcp.example.com/auth/callback")
        );
    }

    #[test]
    fn the_servers_own_discovery_is_in_cluster_with_the_public_callback() {
        let urls =
            server_discovery_urls("http://phab.tools.svc", "https://phab.example.com/ai").unwrap();
        assert_eq!(
            urls,
            DiscoveryUrls {
                protected_resource: Some(
                    "http://phab.tools.svc/.well-known/oauth-protected-resource/mcp".into()
                ),
                authorization_server: Some(
                    "http://phab.tools.svc/.well-known/oauth-authorization-server".into()
                ),
                openid_configuration: Some(
                    "http://phab.tools.svc/.well-known/openid-configuration".into()
                ),
                redirect_uri: Some("https://phab.example.com/ai/auth/callback".into()),
            }
        );
    }

    #[test]
    fn only_oauth_and_jwt_serve_discovery() {
        let jwt = discovery_urls("https://h/a/b", AuthMode::Jwt).unwrap();
        assert_eq!(
            jwt.protected_resource.as_deref(),
            Some("https://h/.well-known/oauth-protected-resource/a/b/mcp")
        );
        assert_eq!(jwt.redirect_uri, None);
        assert_eq!(discovery_urls("https://h/a", AuthMode::ApiKey), None);
    }

    #[test]
    fn endpoints() {
        assert_eq!(mcp_endpoint("http://r.ns.svc"), "http://r.ns.svc/mcp");
        assert_eq!(
            mcp_endpoint(&with_prefix("http://r.ns.svc", "/ai")),
            "http://r.ns.svc/ai/mcp"
        );
        assert_eq!(
            mcp_endpoint(&with_prefix("http://r.ns.svc", "/")),
            "http://r.ns.svc/mcp"
        );
    }

    fn route(namespace: &str, name: &str, server: &str, hosts: &[&str], prefix: &str) -> McpRoute {
        let mut spec = serde_json::json!({"serverRef": {"name": server}, "pathPrefix": prefix});
        if !hosts.is_empty() {
            spec["hostnames"] = serde_json::json!(hosts);
            spec["expose"] = serde_json::json!({"ingress": {}});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "McpRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }))
        .unwrap()
    }

    fn server_key(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind: crate::key::SERVER_KIND,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn keyed(routes: &[McpRoute]) -> Vec<(ObjectKey, &McpRoute)> {
        routes
            .iter()
            .map(|r| (ObjectKey::of_route(r).unwrap(), r))
            .collect()
    }

    fn created_at(mut route: McpRoute, second: i64) -> McpRoute {
        let time = k8s_openapi::jiff::Timestamp::from_second(second).unwrap();
        route.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(time));
        route
    }

    #[test]
    fn across_servers_the_oldest_claim_of_a_host_and_prefix_wins() {
        let routes = [
            route("a", "second", "two", &["h.example.com"], "/ai"),
            route("a", "other-prefix", "two", &["h.example.com"], "/else"),
            route("a", "in-cluster", "two", &[], "/ai"),
            // Sorts last by namespace, but is older: age decides.
            created_at(route("b", "first", "one", &["h.example.com"], "/ai"), 0),
        ];
        let routes = routes.map(|r| match r.metadata.creation_timestamp {
            Some(_) => r,
            None => created_at(r, 60),
        });
        let servers = [server_key("a", "two"), server_key("b", "one")];
        let lost = cross_server_rejections(&servers, &keyed(&routes));
        assert_eq!(lost.len(), 1, "{lost:?}");
        let (loser, error) = lost.iter().next().unwrap();
        assert_eq!(loser.name, "second");
        assert!(
            matches!(error, RenderError::ConflictingRoute { other, .. } if other.name == "first")
        );
        assert_eq!(error.reason(), "ConflictingRoute");
    }

    #[test]
    fn without_creation_times_the_first_by_namespace_and_name_wins() {
        let routes = [
            route("b", "first", "one", &["h.example.com"], "/ai"),
            route("a", "second", "two", &["h.example.com"], "/ai"),
        ];
        let servers = [server_key("a", "two"), server_key("b", "one")];
        let lost = cross_server_rejections(&servers, &keyed(&routes));
        let losers: Vec<&str> = lost.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(losers, ["first"]);
    }

    #[test]
    fn claims_among_one_servers_routes_are_left_to_plan() {
        let routes = [
            route("a", "x", "one", &["h.example.com"], "/ai"),
            route("a", "y", "one", &["h.example.com"], "/ai"),
        ];
        assert!(cross_server_rejections(&[server_key("a", "one")], &keyed(&routes)).is_empty());
    }

    #[test]
    fn a_route_named_like_a_server_loses_and_claims_nothing() {
        let routes = [
            route("a", "two", "one", &["h.example.com"], "/"),
            route("a", "next", "three", &["h.example.com"], "/"),
        ];
        let servers = [
            server_key("a", "one"),
            server_key("a", "two"),
            server_key("a", "three"),
        ];
        let lost = cross_server_rejections(&servers, &keyed(&routes));
        let names: Vec<&str> = lost.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["two"]);
        assert!(matches!(
            lost.values().next(),
            Some(RenderError::ServiceNameTaken { .. })
        ));
        // A server of the same name in another namespace takes nothing.
        let elsewhere = [route("b", "two", "one", &[], "/")];
        assert!(cross_server_rejections(&servers, &keyed(&elsewhere)).is_empty());
    }

    #[test]
    fn public_urls_must_end_in_the_prefix() {
        assert!(check_public_url("https://h/ai", "/ai").is_ok());
        assert!(check_public_url("https://h", "/").is_ok());
        assert!(check_public_url("https://h/x/ai", "/ai").is_err());
        assert!(check_public_url("https://h/ai", "/").is_err());
    }
}
