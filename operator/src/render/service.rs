//! The server's Service and one Service per route.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sluice_crds::defaults::{ADMIN_PORT, SERVER_LISTENER_PORT};
use sluice_crds::server::SessionAffinity;

use super::context::Context;
use super::names::selector_labels;
use super::routes::PlannedRoute;

/// The port a plain-HTTP entry point's Service exposes.
pub const SERVICE_PORT: i32 = 80;
/// The port of an entry point on which the sidecar serves TLS itself.
pub const TLS_SERVICE_PORT: i32 = 443;

/// An entry point's Service port number: 443 when the sidecar serves TLS on it, else 80.
pub fn entry_port_number(tls: bool) -> i32 {
    if tls { TLS_SERVICE_PORT } else { SERVICE_PORT }
}

/// An entry point's Service port: `http` on 80, or `https` on 443 with `appProtocol: https`
/// (what Gateway implementations and meshes read to speak TLS to the backend).
fn entry_port(tls: bool, target: u16) -> ServicePort {
    if !tls {
        return port("http", SERVICE_PORT, target);
    }
    ServicePort {
        app_protocol: Some("https".into()),
        ..port("https", TLS_SERVICE_PORT, target)
    }
}
/// Name of the server Service's metrics port (the ServiceMonitor scrapes it).
pub const METRICS_PORT_NAME: &str = "metrics";

/// `<server>`: port 80 (`http`; 443 `https` with `spec.tls`) → the sidecar's server entry
/// point, 9090 (`metrics`) → admin.
pub fn server_service(ctx: &Context<'_>) -> Service {
    let ports = vec![
        entry_port(ctx.server.spec.tls.is_some(), SERVER_LISTENER_PORT),
        port(METRICS_PORT_NAME, i32::from(ADMIN_PORT), ADMIN_PORT),
    ];
    Service {
        metadata: ctx.metadata(&ctx.key.name),
        spec: Some(spec(ctx, ports)),
        ..Service::default()
    }
}

/// `<route>`: port 80 (443 with `spec.tls`) → the route's own listener port. The pod spec does not list that port
/// (a Service may target any port), so adding a route needs no rollout.
pub fn route_service(ctx: &Context<'_>, route: &PlannedRoute<'_>) -> Service {
    let tls = route.route.spec.tls.is_some();
    let ports = vec![entry_port(tls, route.accepted.listener_port)];
    Service {
        metadata: ctx.route_metadata(route),
        spec: Some(spec(ctx, ports)),
        ..Service::default()
    }
}

fn spec(ctx: &Context<'_>, ports: Vec<ServicePort>) -> ServiceSpec {
    // Stateful sessions and ephemeral OAuth state live in one pod: every entry point must
    // keep a caller on it, not only the server's own Service.
    let session_affinity = match ctx.server.spec.session_affinity {
        SessionAffinity::None => None,
        SessionAffinity::ClientIp => Some("ClientIP".to_string()),
    };
    ServiceSpec {
        type_: Some("ClusterIP".into()),
        selector: Some(selector_labels(&ctx.key.name)),
        ports: Some(ports),
        session_affinity,
        ..ServiceSpec::default()
    }
}

fn port(name: &str, port: i32, target: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(i32::from(target))),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}
