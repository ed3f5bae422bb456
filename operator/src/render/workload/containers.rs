//! The two containers: the MCP server (Conduit, or the user's `container`, a stdio one under
//! the bridge) on loopback, and the sidecar in front of it.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle,
    LifecycleHandler, ObjectFieldSelector, Probe, ResourceFieldSelector, SecretKeySelector,
    SecurityContext, SleepAction, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sluice_crds::McpServerSpec;
use sluice_crds::container::ServerContainer;
use sluice_crds::defaults::{ADMIN_PORT, CONDUIT_PORT, NON_ROOT_ID, SERVER_LISTENER_PORT};
use sluice_crds::server::{Phabricator, PullPolicy, Sessions};
use sluice_proxy_config::ProxyConfig;

use super::super::context::Context;
use super::{PodInputs, bridge, non_empty, runtime_default_seccomp};
use crate::translate::{self, CONFIG_DIR, CONFIG_FILE, PHABRICATOR_CA_DIR, PHABRICATOR_CA_FILE};

/// Name of the Conduit container.
pub const CONDUIT: &str = "conduit";
/// Name of a `container` server's container.
pub const MCP_SERVER: &str = "mcp-server";
/// Name of the sidecar container.
pub const SIDECAR: &str = "sluice-proxy";

/// How long Conduit's preStop sleep lasts: the sidecar's drain delay plus its grace period,
/// so Conduit serves until the sidecar has finished every request in flight.
pub fn pre_stop_seconds(config: &ProxyConfig) -> i64 {
    let total = config.shutdown.drain_delay.get() + config.shutdown.grace_period.get();
    i64::try_from(total.as_millis().div_ceil(1000)).unwrap_or(i64::MAX)
}

/// The name of the server's container.
pub fn server_name(spec: &McpServerSpec) -> &'static str {
    if spec.container.is_some() {
        MCP_SERVER
    } else {
        CONDUIT
    }
}

/// The MCP server: Conduit, or the user's `container`.
pub fn server(ctx: &Context<'_>, inputs: &PodInputs<'_>, mounts: Vec<VolumeMount>) -> Container {
    match (&ctx.server.spec.container, &ctx.server.spec.phabricator) {
        (Some(container), _) => any_server(ctx, inputs, container, mounts),
        (None, phabricator) => conduit(ctx, inputs, phabricator.as_ref(), mounts),
    }
}

/// A `container` server as its spec says, with what every server gets: the hardening, the
/// preStop sleep and the probes the sidecar answers. Nothing Phabricator's. A stdio server's
/// command and arguments are the bridge's, which runs the user's.
fn any_server(
    ctx: &Context<'_>,
    inputs: &PodInputs<'_>,
    container: &ServerContainer,
    mounts: Vec<VolumeMount>,
) -> Container {
    let spec = &ctx.server.spec;
    let mut security_context = hardened();
    if let Some(uid) = container.run_as_user {
        security_context.run_as_user = Some(uid);
    }
    let (command, args) = match &container.stdio {
        Some(stdio) => bridge::command_and_args(container, stdio),
        None => (container.command.clone(), container.args.clone()),
    };
    Container {
        name: MCP_SERVER.into(),
        image: Some(ctx.server_image.clone()),
        image_pull_policy: Some(pull_policy(spec.image_pull_policy).into()),
        command: non_empty(command),
        args: non_empty(args),
        env: non_empty(container.env.clone()),
        env_from: non_empty(container.env_from.clone()),
        lifecycle: Some(pre_stop_sleep(inputs.config)),
        startup_probe: Some(upstream_probe(2, 90)),
        liveness_probe: Some(upstream_probe(10, 3)),
        resources: Some(spec.resources.clone()),
        security_context: Some(security_context),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// Sleep before the stop signal, so the server serves until the sidecar has finished every
/// request in flight. A sleep action, not `sh -c sleep`: images need no shell.
fn pre_stop_sleep(config: &ProxyConfig) -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: pre_stop_seconds(config),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

/// Conduit, listening on the pod's loopback only.
fn conduit(
    ctx: &Context<'_>,
    inputs: &PodInputs<'_>,
    phabricator: Option<&Phabricator>,
    mounts: Vec<VolumeMount>,
) -> Container {
    let spec = &ctx.server.spec;
    let sessions = match spec.sessions {
        Sessions::Stateless => "--stateless",
        Sessions::Stateful => "--no-stateless",
    };
    let args = [
        "--transport",
        "http",
        "--host",
        "127.0.0.1",
        "--port",
        &CONDUIT_PORT.to_string(),
        sessions,
    ]
    .map(String::from)
    .to_vec();
    Container {
        name: CONDUIT.into(),
        image: Some(ctx.server_image.clone()),
        image_pull_policy: Some(pull_policy(spec.image_pull_policy).into()),
        args: Some(args),
        env: Some(conduit_env(ctx, inputs, phabricator)),
        lifecycle: Some(pre_stop_sleep(inputs.config)),
        // Answered by the sidecar on Conduit's behalf: see `upstream_probe`.
        startup_probe: Some(upstream_probe(2, 90)),
        liveness_probe: Some(upstream_probe(10, 3)),
        resources: Some(spec.resources.clone()),
        security_context: Some(hardened()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The path of the sidecar's admin port that answers whether the server answers MCP.
pub const UPSTREAM_LIVENESS_PATH: &str = "/upstream/livez";

/// A probe of Conduit that the sidecar answers: Conduit's image has no shell (no exec probe)
/// and no health route, and a TCP probe passes while a wedged event loop still accepts
/// connections. The sidecar checks Conduit at the MCP level (`proxy.upstreamCheck`) and
/// answers `/upstream/livez` on its admin port with the verdict; the kubelet probes by the
/// pod's IP, so Conduit's probe may name the sidecar's port (by number: a named port is
/// looked up in the probed container). As the startup probe it holds liveness off until
/// Conduit first answered (up to 3 minutes); as the liveness probe it restarts Conduit once
/// the sidecar has seen it miss `failureThreshold` checks and the kubelet three probes more.
/// A sidecar that is down fails it too, for as long as the kubelet's failure threshold
/// allows; a sidecar restart is quicker than that.
fn upstream_probe(period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(UPSTREAM_LIVENESS_PATH.into()),
            port: IntOrString::Int(i32::from(ADMIN_PORT)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn conduit_env(
    ctx: &Context<'_>,
    inputs: &PodInputs<'_>,
    phabricator: Option<&Phabricator>,
) -> Vec<EnvVar> {
    let mut env = phabricator
        .map(|p| value("PHABRICATOR_URL", translate::phabricator_api_url(&p.url)))
        .into_iter()
        .collect::<Vec<_>>();
    env.extend([
        value("FASTMCP_CHECK_FOR_UPDATES", "off".into()),
        // Where the OAuth proxy keeps its state (see oauth_state).
        value("FASTMCP_HOME", inputs.state.fastmcp_home().into()),
        // Only the sidecar, on loopback, may set X-Forwarded-*.
        value("FORWARDED_ALLOW_IPS", "127.0.0.1".into()),
    ]);
    if let Some(proxy) = phabricator.and_then(|p| p.proxy.as_ref()) {
        env.push(value("PHABRICATOR_PROXY", proxy.clone()));
    }
    if phabricator.is_some_and(|p| p.insecure_skip_verify) {
        env.push(value("PHABRICATOR_DISABLE_CERT_VERIFY", "true".into()));
    }
    if phabricator.is_some_and(|p| p.ca_bundle.is_some()) {
        env.push(value(
            "SSL_CERT_FILE",
            format!("{PHABRICATOR_CA_DIR}/{PHABRICATOR_CA_FILE}"),
        ));
    }
    if let Some(oauth) = ctx
        .server
        .spec
        .auth
        .oauth
        .as_ref()
        .filter(|_| translate::is_oauth(ctx.server))
    {
        env.push(value(
            "PHABRICATOR_OAUTH_CLIENT_ID",
            oauth.client_id.clone(),
        ));
        env.push(EnvVar {
            name: "PHABRICATOR_OAUTH_CLIENT_SECRET".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: oauth.client_secret_ref.name.clone(),
                    key: oauth.client_secret_ref.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
        env.push(value("PHABRICATOR_OAUTH_SCOPE", oauth.scopes.join(" ")));
        if let Some(url) = inputs.oauth_public_url {
            env.push(value("PHABRICATOR_MCP_SERVER_URL", url.into()));
        }
    }
    env
}

/// The sidecar: every listener, the admin port with the probes, the config and the files
/// its policies need.
pub fn sidecar(ctx: &Context<'_>, inputs: &PodInputs<'_>, mounts: Vec<VolumeMount>) -> Container {
    let spec = &ctx.server.spec;
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    Container {
        name: SIDECAR.into(),
        image: Some(ctx.proxy_image.clone()),
        image_pull_policy: Some(pull_policy(spec.image_pull_policy).into()),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        env: non_empty(
            worker_threads(spec)
                .into_iter()
                .chain(trace_resource(inputs.config))
                .collect(),
        ),
        // Route listener ports are deliberately not listed: a Service may target an unlisted
        // port, so adding a route changes no pod template.
        ports: Some(vec![
            container_port("http", SERVER_LISTENER_PORT),
            container_port("admin", ADMIN_PORT),
        ]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(spec.proxy.resources.clone()),
        security_context: Some(hardened()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// Every container: non-root, read-only root, no privilege escalation, no capabilities, the
/// runtime's default seccomp profile. No spec field reaches this but `container.runAsUser`,
/// which replaces the UID (still non-root) of a `container` server.
pub(super) fn hardened() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NON_ROOT_ID),
        run_as_group: Some(NON_ROOT_ID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

pub(super) fn pull_policy(policy: PullPolicy) -> &'static str {
    match policy {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
}

/// With traces on, the pod's name as a resource attribute: the config is the same for every
/// pod, the environment is not. `POD_NAME` first, so `$(POD_NAME)` expands.
fn trace_resource(config: &ProxyConfig) -> Vec<EnvVar> {
    if config.tracing.is_none() {
        return Vec::new();
    }
    vec![
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: "metadata.name".into(),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
        value(
            "OTEL_RESOURCE_ATTRIBUTES",
            "k8s.pod.name=$(POD_NAME)".into(),
        ),
    ]
}

/// With a CPU limit, one traffic thread per CPU of it: Kubernetes hands the limit over rounded
/// up to whole CPUs (divisor 1), so 1500m gives two. Without one, the proxy's default, one
/// thread: the sidecar is then only sure of its request (50m by default), and the node's CPU
/// count says nothing about what it will get.
fn worker_threads(spec: &McpServerSpec) -> Option<EnvVar> {
    let resources = &spec.proxy.resources;
    let limited = resources
        .limits
        .as_ref()
        .is_some_and(|l| l.contains_key("cpu"));
    limited.then(|| EnvVar {
        name: "SLUICE_WORKER_THREADS".into(),
        value_from: Some(EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some(SIDECAR.into()),
                resource: "limits.cpu".into(),
                divisor: Some(Quantity("1".into())),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    })
}

fn value(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}
