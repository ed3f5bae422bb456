//! The NetworkPolicy: each listener only from its allowed callers, egress only where needed.

mod render_fixtures;

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use render_fixtures::*;
use serde_json::{Value, json};
use sluice_crds::{McpRoute, McpServer};

fn policy_spec(server: McpServer, routes: &[McpRoute]) -> NetworkPolicySpec {
    let name = server.metadata.name.clone().expect("named");
    let docs = rendered_documents(&[server], routes);
    network_policy(&docs, &name).spec.expect("spec")
}

/// Port → who may reach it (`None`: anyone), for the TCP ingress rules.
fn ingress_by_port(spec: &NetworkPolicySpec) -> BTreeMap<i32, Option<Vec<NetworkPolicyPeer>>> {
    let mut by_port = BTreeMap::new();
    for rule in spec.ingress.iter().flatten() {
        let ports = rule.ports.clone().expect("every rule names its ports");
        assert_eq!(ports.len(), 1);
        let IntOrString::Int(port) = ports[0].port.clone().expect("port") else {
            panic!("numeric ports only")
        };
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert!(
            by_port.insert(port, rule.from.clone()).is_none(),
            "one rule per port"
        );
    }
    by_port
}

fn egress_ports(spec: &NetworkPolicySpec) -> Vec<(i32, String)> {
    spec.egress
        .iter()
        .flatten()
        .filter(|rule| rule.to.is_none())
        .flat_map(|rule| rule.ports.clone().unwrap_or_default())
        .map(|p| match p.port {
            Some(IntOrString::Int(port)) => (port, p.protocol.unwrap_or_default()),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn peers(value: Value) -> Option<Vec<NetworkPolicyPeer>> {
    Some(serde_json::from_value(value).expect("peers"))
}

#[test]
fn defaults_admit_the_namespace_to_the_server_and_every_namespace_to_metrics() {
    let spec = policy_spec(ServerBuilder::new("s").build(), &[]);
    let selector = spec
        .pod_selector
        .clone()
        .and_then(|s| s.match_labels)
        .expect("selector");
    assert_eq!(selector["app.kubernetes.io/instance"], "s");
    assert_eq!(selector.len(), 2);
    assert_eq!(
        spec.policy_types.clone().unwrap_or_default(),
        ["Ingress", "Egress"]
    );
    assert_eq!(
        ingress_by_port(&spec),
        BTreeMap::from([
            (8080, peers(json!([{"podSelector": {}}]))),
            (9090, peers(json!([{"namespaceSelector": {}}]))),
        ])
    );
    assert_eq!(
        egress_ports(&spec),
        [(53, "UDP".into()), (53, "TCP".into()), (443, "TCP".into())]
    );
}

#[test]
fn each_route_port_admits_its_own_callers() {
    let server = ServerBuilder::new("s")
        .set(
            "networkPolicy.allowedClients",
            json!([{"podSelector": {"matchLabels": {"role": "agent"}}}]),
        )
        .set(
            "networkPolicy.metricsFrom",
            json!([{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]),
        )
        .build();
    let routes = [
        RouteBuilder::new("a-internal", "s").build(),
        RouteBuilder::new("b-exposed", "s").ingress("mcp.example.com", "/ai").build(),
        RouteBuilder::new("c-narrowed", "s")
            .ingress("mcp.example.com", "/team")
            .set("allowedClients", json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]))
            .build(),
        RouteBuilder::new("d-closed", "s").set("allowedClients", json!([])).build(),
    ];
    let spec = policy_spec(server, &routes);
    // d-closed (8084) has an empty list: no rule at all (an empty `from` would admit all).
    assert_eq!(
        ingress_by_port(&spec),
        BTreeMap::from([
            (
                8080,
                peers(json!([{"podSelector": {"matchLabels": {"role": "agent"}}}]))
            ),
            (8081, peers(json!([{"podSelector": {}}]))),
            // Exposed: the Ingress controller may run anywhere, so anyone (until narrowed).
            (8082, None),
            (
                8083,
                peers(
                    json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}])
                )
            ),
            (
                9090,
                peers(json!([{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]))
            ),
        ])
    );
}

#[test]
fn empty_allowed_clients_close_the_server_port() {
    let server = ServerBuilder::new("s")
        .set("networkPolicy.allowedClients", json!([]))
        .set("networkPolicy.metricsFrom", json!([]))
        .build();
    let spec = policy_spec(server, &[]);
    assert_eq!(ingress_by_port(&spec), BTreeMap::new());
    assert_eq!(
        spec.ingress,
        Some(Vec::new()),
        "Ingress is still a policy type: nothing gets in"
    );
}

#[test]
fn egress_follows_phabricator_the_proxy_and_what_policies_need() {
    let server = ServerBuilder::new("s")
        .set("phabricator.url", json!("https://phab.internal:8443"))
        .set("phabricator.proxy", json!("socks5://proxy.internal"))
        .set("redis", json!({"address": "redis.infra.svc:6380"}))
        .set(
            "policy.authentication",
            json!({"mode": "jwt", "jwt": {"issuer": "https://idp.example.com", "audiences": ["mcp"],
                "jwksUrl": "https://keys.example.com:9443/jwks.json"}}),
        )
        .set(
            "networkPolicy.egress",
            json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432}]}]),
        )
        .build();
    let route = RouteBuilder::new("bots", "s")
        .set(
            "policy.authentication",
            json!({"mode": "serviceAccount", "serviceAccount": {"allowed": ["ci/*"]}}),
        )
        .build();
    let spec = policy_spec(server, &[route]);
    let tcp: Vec<i32> = egress_ports(&spec)
        .into_iter()
        .filter(|(_, protocol)| protocol == "TCP")
        .map(|(port, _)| port)
        .collect();
    // DNS, the API server (443, 6443), the issuer (443), Phabricator (8443), SOCKS (1080),
    // Redis (6380), the JWKS host (9443).
    assert_eq!(tcp, [53, 443, 1080, 6380, 6443, 8443, 9443]);
    let extra = spec
        .egress
        .clone()
        .expect("egress")
        .into_iter()
        .find(|r| r.to.is_some())
        .expect("user rule");
    assert_eq!(
        serde_json::to_value(extra).expect("json")["to"][0]["ipBlock"]["cidr"],
        "10.0.0.0/8"
    );
}

#[test]
fn egress_reaches_the_sentinels_and_the_servers_they_name() {
    let tcp = |redis: Value| -> Vec<i32> {
        let server = ServerBuilder::new("s").set("redis", redis).build();
        egress_ports(&policy_spec(server, &[]))
            .into_iter()
            .filter(|(_, protocol)| protocol == "TCP")
            .map(|(port, _)| port)
            .collect()
    };
    // DNS, Phabricator (443), the sentinels (26379, 26380), the servers (6379 by default).
    assert_eq!(
        tcp(
            json!({"sentinel": {"masterName": "rl", "addresses": ["s-0.sentinel:26379", "s-1.sentinel:26380"]}})
        ),
        [53, 443, 6379, 26379, 26380]
    );
    assert_eq!(
        tcp(
            json!({"sentinel": {"masterName": "rl", "addresses": ["sentinel:26379"], "serverPort": 7000}})
        ),
        [53, 443, 7000, 26379]
    );
}

#[test]
fn egress_reaches_the_trace_collector() {
    let tcp = |endpoint: &str| -> Vec<i32> {
        let server = ServerBuilder::new("s")
            .set("proxy.tracing", json!({"endpoint": endpoint}))
            .build();
        egress_ports(&policy_spec(server, &[]))
            .into_iter()
            .filter(|(_, protocol)| protocol == "TCP")
            .map(|(port, _)| port)
            .collect()
    };
    // DNS, Phabricator (443), the collector.
    assert_eq!(
        tcp("http://otel-collector.observability.svc:4318/v1/traces"),
        [53, 443, 4318]
    );
    assert_eq!(
        tcp("http://otel-collector.observability.svc"),
        [53, 80, 443]
    );
    assert_eq!(tcp("https://otlp.example.com/v1/traces"), [53, 443]);
}

#[test]
fn no_network_policy_when_disabled() {
    let server = ServerBuilder::new("s")
        .set("networkPolicy.enabled", json!(false))
        .build();
    let docs = rendered_documents(&[server], &[]);
    assert!(of_kind(&docs, "NetworkPolicy").is_empty());
}

/// A server that uses every destination: Phabricator behind a SOCKS proxy, Redis, a JWT
/// issuer with its keys elsewhere, TokenReview (a route in mode `serviceAccount`), a trace
/// collector; and one rule of the user's own.
fn every_destination(destinations: Option<Value>) -> NetworkPolicySpec {
    let mut server = ServerBuilder::new("s")
        .set("phabricator.url", json!("https://phab.internal:8443"))
        .set("phabricator.proxy", json!("socks5://proxy.internal"))
        .set("redis", json!({"address": "redis.infra.svc:6380"}))
        .set(
            "policy.authentication",
            json!({"mode": "jwt", "jwt": {"issuer": "https://idp.example.com", "audiences": ["mcp"],
                "jwksUrl": "https://keys.example.com:9443/jwks.json"}}),
        )
        .set(
            "proxy.tracing",
            json!({"endpoint": "http://otel-collector.observability.svc:4318"}),
        )
        .set(
            "networkPolicy.egress",
            json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432}]}]),
        );
    if let Some(destinations) = destinations {
        server = server.set("networkPolicy.egressDestinations", destinations);
    }
    let route = RouteBuilder::new("bots", "s")
        .set(
            "policy.authentication",
            json!({"mode": "serviceAccount", "serviceAccount": {"allowed": ["ci/*"]}}),
        )
        .build();
    policy_spec(server.build(), &[route])
}

fn egress_json(spec: &NetworkPolicySpec) -> Value {
    serde_json::to_value(spec.egress.clone().expect("egress")).expect("json")
}

fn tcp(ports: &[u16]) -> Value {
    ports
        .iter()
        .map(|port| json!({"port": port, "protocol": "TCP"}))
        .collect()
}

fn dns_ports() -> Value {
    json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
}

fn user_rule() -> Value {
    json!({"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432}]})
}

#[test]
fn without_egress_destinations_every_port_is_open_to_any_address_in_one_rule() {
    // What every McpServer rendered before `egressDestinations` existed: DNS anywhere, every
    // destination's port anywhere, then the user's rules.
    assert_eq!(
        egress_json(&every_destination(None)),
        json!([
            {"ports": dns_ports()},
            {"ports": tcp(&[443, 1080, 4318, 6380, 6443, 8443, 9443])},
            user_rule(),
        ])
    );
}

#[test]
fn each_destination_with_cidrs_gets_a_rule_of_its_own() {
    let kube_dns = json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    });
    let spec = every_destination(Some(json!({
        "phabricator": ["192.0.2.10/32", "192.0.2.20/32"],
        "identityProviders": ["198.51.100.0/24"],
        "redis": ["10.244.0.0/16"],
        "kubernetesApi": ["172.18.0.2/32", "fd00:10:96::/112"],
        "traceCollector": ["2001:db8:4318::/48"],
        "dns": [kube_dns],
    })));
    let to = |cidrs: &[&str]| -> Value {
        cidrs
            .iter()
            .map(|cidr| json!({"ipBlock": {"cidr": cidr}}))
            .collect()
    };
    assert_eq!(
        egress_json(&spec),
        json!([
            {"ports": dns_ports(), "to": [kube_dns]},
            // Phabricator and its SOCKS proxy are one destination.
            {"ports": tcp(&[1080, 8443]), "to": to(&["192.0.2.10/32", "192.0.2.20/32"])},
            // The issuer and the JWKS host.
            {"ports": tcp(&[443, 9443]), "to": to(&["198.51.100.0/24"])},
            {"ports": tcp(&[6380]), "to": to(&["10.244.0.0/16"])},
            {"ports": tcp(&[443, 6443]), "to": to(&["172.18.0.2/32", "fd00:10:96::/112"])},
            {"ports": tcp(&[4318]), "to": to(&["2001:db8:4318::/48"])},
            user_rule(),
        ])
    );
    assert_eq!(
        egress_ports(&spec),
        Vec::new(),
        "every rule says where its connections may go"
    );
}

#[test]
fn narrowing_one_destination_leaves_the_others_open() {
    let spec = every_destination(Some(json!({"phabricator": ["192.0.2.10/32"]})));
    assert_eq!(
        egress_json(&spec),
        json!([
            {"ports": dns_ports()},
            // The identity providers (443, 9443), Redis, the API server (443, 6443) and the
            // collector stay open.
            {"ports": tcp(&[443, 4318, 6380, 6443, 9443])},
            {"ports": tcp(&[1080, 8443]), "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]},
            user_rule(),
        ])
    );
}

#[test]
fn a_port_shared_with_an_open_destination_stays_open() {
    // Phabricator and the JWT issuer are both on 443: narrowing Phabricator alone writes its
    // rule, but the issuer's keeps 443 open to any address (rules add up). The README says so.
    let server = ServerBuilder::new("s")
        .set(
            "policy.authentication",
            json!({"mode": "jwt", "jwt": {"issuer": "https://idp.example.com", "audiences": ["mcp"]}}),
        )
        .set(
            "networkPolicy.egressDestinations",
            json!({"phabricator": ["192.0.2.10/32"]}),
        )
        .build();
    assert_eq!(
        egress_json(&policy_spec(server, &[])),
        json!([
            {"ports": dns_ports()},
            {"ports": tcp(&[443])},
            {"ports": tcp(&[443]), "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]},
        ])
    );
}

#[test]
fn cidrs_of_a_destination_the_server_does_not_use_write_no_rule() {
    // No Redis, no JWT, no ServiceAccounts, no traces: only Phabricator's rule, narrowed, and
    // an IPv6-only DNS server.
    let server = ServerBuilder::new("s")
        .set(
            "networkPolicy.egressDestinations",
            json!({
                "phabricator": ["2001:db8::/32"],
                "identityProviders": ["198.51.100.0/24"],
                "redis": ["10.244.0.0/16"],
                "kubernetesApi": ["172.18.0.2/32"],
                "traceCollector": ["10.96.0.0/12"],
                "dns": [{"ipBlock": {"cidr": "fd00:53::10/128"}}],
            }),
        )
        .build();
    assert_eq!(
        egress_json(&policy_spec(server, &[])),
        json!([
            {"ports": dns_ports(), "to": [{"ipBlock": {"cidr": "fd00:53::10/128"}}]},
            {"ports": tcp(&[443]), "to": [{"ipBlock": {"cidr": "2001:db8::/32"}}]},
        ])
    );
}
