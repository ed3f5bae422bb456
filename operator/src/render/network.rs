//! The NetworkPolicy that fences a server's pods: who may reach which listener, and where
//! the pods may connect.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sluice_crds::defaults::{ADMIN_PORT, SERVER_LISTENER_PORT};
use sluice_proxy_config::{Auth, ProxyConfig};

use super::context::Context;
use super::names::selector_labels;
use super::routes::PlannedRoute;

/// Ports of the Kubernetes API server (TokenReview): the Service port and the usual
/// endpoint port behind it (NetworkPolicy sees the endpoint after DNAT).
const API_SERVER_PORTS: [u16; 2] = [443, 6443];

/// Ingress only to the sidecar's listeners, each from the callers its entry point allows;
/// egress only to DNS and to the ports of the destinations the server uses (Phabricator and
/// the outbound proxy, Redis, identity providers, the API server, the trace collector), each
/// at the addresses `egressDestinations` gives it, else at any address.
pub fn network_policy(
    ctx: &Context<'_>,
    config: &ProxyConfig,
    routes: &[PlannedRoute<'_>],
) -> NetworkPolicy {
    let settings = &ctx.server.spec.network_policy;
    let mut ingress = Vec::new();
    let namespace_pods = || vec![pod_selector_all()];
    ingress.extend(allow(
        SERVER_LISTENER_PORT,
        Some(
            settings
                .allowed_clients
                .clone()
                .unwrap_or_else(namespace_pods),
        ),
    ));
    for route in routes {
        // An exposed route is reached through an Ingress controller or Gateway that may run
        // in any namespace: by default it is open, and the route's docs say to narrow it.
        let default = if route.route.spec.expose.is_some() {
            None
        } else {
            Some(namespace_pods())
        };
        let from = match &route.route.spec.allowed_clients {
            Some(peers) => Some(peers.clone()),
            None => default,
        };
        ingress.extend(allow(route.accepted.listener_port, from));
    }
    let every_namespace = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    };
    ingress.extend(allow(
        ADMIN_PORT,
        Some(
            settings
                .metrics_from
                .clone()
                .unwrap_or_else(|| vec![every_namespace]),
        ),
    ));

    // The destinations left open share one rule (what an McpServer without
    // `egressDestinations` has always had); each narrowed one gets its own, so narrowing
    // Phabricator leaves Redis as it was.
    let mut open = BTreeSet::new();
    let mut narrowed = Vec::new();
    for (tcp_ports, cidrs) in destinations(ctx, config) {
        if cidrs.is_empty() {
            open.extend(tcp_ports);
        } else if !tcp_ports.is_empty() {
            narrowed.push(egress_rule(tcp_ports, Some(ip_blocks(cidrs))));
        }
    }
    let mut egress = vec![NetworkPolicyEgressRule {
        ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
        to: non_empty(settings.egress_destinations.dns.clone()),
    }];
    if !open.is_empty() {
        egress.push(egress_rule(open, None));
    }
    egress.extend(narrowed);
    egress.extend(settings.egress.iter().cloned());

    NetworkPolicy {
        metadata: ctx.metadata(&ctx.key.name),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&ctx.key.name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    }
}

/// A rule letting `from` reach `port`. `None` means from anywhere. An empty list means from
/// nobody, so no rule at all: in a NetworkPolicy an empty `from` would admit everyone.
fn allow(
    port_number: u16,
    from: Option<Vec<NetworkPolicyPeer>>,
) -> Option<NetworkPolicyIngressRule> {
    if from.as_ref().is_some_and(Vec::is_empty) {
        return None;
    }
    Some(NetworkPolicyIngressRule {
        from,
        ports: Some(vec![port(port_number, "TCP")]),
    })
}

/// Every pod in the policy's namespace.
fn pod_selector_all() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }
}

fn port(number: u16, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(number))),
        protocol: Some(protocol.into()),
        ..NetworkPolicyPort::default()
    }
}

fn egress_rule(
    tcp_ports: BTreeSet<u16>,
    to: Option<Vec<NetworkPolicyPeer>>,
) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        ports: Some(tcp_ports.into_iter().map(|p| port(p, "TCP")).collect()),
        to,
    }
}

/// `None` for an empty list: an empty `to` would allow every address, which is what leaving
/// it out says anyway.
fn non_empty(peers: Vec<NetworkPolicyPeer>) -> Option<Vec<NetworkPolicyPeer>> {
    (!peers.is_empty()).then_some(peers)
}

fn ip_blocks(cidrs: &[String]) -> Vec<NetworkPolicyPeer> {
    cidrs
        .iter()
        .map(|cidr| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.clone(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        })
        .collect()
}

/// The destinations the pods connect out to, each as the TCP ports it is reached on and the
/// CIDRs `egressDestinations` narrows it to (empty: any address), in a fixed order:
/// Phabricator (Conduit, and the sidecar's `user.whoami`) with the outbound proxy, identity
/// providers, Redis, the API server, the trace collector.
fn destinations<'a>(
    ctx: &'a Context<'_>,
    config: &ProxyConfig,
) -> [(BTreeSet<u16>, &'a [String]); 5] {
    let spec = &ctx.server.spec;
    let cidrs = &spec.network_policy.egress_destinations;

    // A `container` server's own destinations are unknown: `networkPolicy.egress` opens them.
    let mut phabricator = BTreeSet::new();
    if let Some(p) = &spec.phabricator {
        phabricator.extend(url_port(&p.url));
        phabricator.extend(p.proxy.as_deref().and_then(url_port));
    }
    let mut identity_providers = BTreeSet::new();
    let mut api_server = BTreeSet::new();
    for entry_point in &config.entry_points {
        match &entry_point.auth {
            Auth::Jwt(jwt) => {
                identity_providers.extend(url_port(&jwt.issuer));
                if let Some(jwks) = &jwt.jwks_url {
                    identity_providers.extend(url_port(jwks));
                }
            }
            Auth::ServiceAccount(_) => api_server.extend(API_SERVER_PORTS),
            _ => {}
        }
    }
    // With Sentinel: the sentinels' ports and the one the servers they name listen on.
    let redis = config
        .redis
        .iter()
        .flat_map(|redis| {
            redis
                .address
                .iter()
                .chain(redis.sentinel.iter().flat_map(|s| &s.addresses))
        })
        .filter_map(|address| address.rsplit_once(':'))
        .filter_map(|(_, p)| p.parse::<u16>().ok())
        .chain(
            spec.redis
                .iter()
                .flat_map(|r| &r.sentinel)
                .map(|s| s.server_port),
        )
        .collect();
    let trace_collector = config
        .tracing
        .iter()
        .filter_map(|tracing| url_port(&tracing.otlp.endpoint))
        .collect();
    [
        (phabricator, &cidrs.phabricator),
        (identity_providers, &cidrs.identity_providers),
        (redis, &cidrs.redis),
        (api_server, &cidrs.kubernetes_api),
        (trace_collector, &cidrs.trace_collector),
    ]
}

/// The port a URL connects to; SOCKS proxies default to 1080.
fn url_port(text: &str) -> Option<u16> {
    let url = url::Url::parse(text).ok()?;
    url.port_or_known_default().or(match url.scheme() {
        "socks5" | "socks5h" => Some(1080),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ports() {
        assert_eq!(url_port("https://phab.example.com"), Some(443));
        assert_eq!(url_port("http://phab.example.com:8080/x"), Some(8080));
        assert_eq!(url_port("socks5://proxy.internal"), Some(1080));
        assert_eq!(url_port("socks5h://proxy.internal:9050"), Some(9050));
        assert_eq!(url_port("not a url"), None);
    }

    #[test]
    fn an_empty_peer_list_admits_nobody() {
        assert_eq!(allow(8080, Some(Vec::new())), None);
        let open = allow(8081, None).unwrap();
        assert_eq!(open.from, None);
    }
}
