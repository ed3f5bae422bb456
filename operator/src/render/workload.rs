//! The server's ServiceAccount and Deployment: the MCP server behind the sidecar in one pod
//! (with, for a stdio server, the bridge's installer as an init container).

mod bridge;
mod containers;
mod volumes;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use sluice_crds::defaults::NON_ROOT_ID;
use sluice_proxy_config::ProxyConfig;

use super::context::Context;
use super::names::selector_labels;
use super::oauth_state::StateHome;
use crate::translate::SidecarFiles;

/// Pod-template annotation holding the hash of what needs a rollout to take effect.
pub const RESTART_HASH_ANNOTATION: &str = "sluice.dev/restart-hash";
/// Pod annotation naming the container `kubectl logs` and `exec` pick by default.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// Seconds the server is given to stop after its preStop sleep.
const CONDUIT_STOP_SECONDS: i64 = 5;

/// What the pod needs besides the server spec.
#[derive(Clone, Copy, Debug)]
pub struct PodInputs<'a> {
    /// The sidecar config (its shutdown timing sets the server's preStop sleep).
    pub config: &'a ProxyConfig,
    /// The files the config refers to, to mount into the sidecar.
    pub files: &'a SidecarFiles,
    /// `PHABRICATOR_MCP_SERVER_URL` in OAuth mode.
    pub oauth_public_url: Option<&'a str>,
    /// Where Conduit's OAuth state lives.
    pub state: &'a StateHome,
    /// Value of the restart-hash annotation.
    pub restart_hash: &'a str,
}

/// The server's ServiceAccount. It mounts no token anywhere by default.
pub fn service_account(ctx: &Context<'_>) -> ServiceAccount {
    ServiceAccount {
        metadata: ctx.metadata(&ctx.key.name),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The server's Deployment.
pub fn deployment(ctx: &Context<'_>, inputs: &PodInputs<'_>) -> Deployment {
    let spec = &ctx.server.spec;
    let overrides = &spec.pod;
    let mut labels = overrides.labels.clone();
    labels.extend(ctx.labels());
    let mut annotations = overrides.annotations.clone();
    annotations.insert(
        DEFAULT_CONTAINER_ANNOTATION.into(),
        containers::server_name(spec).into(),
    );
    annotations.insert(RESTART_HASH_ANNOTATION.into(), inputs.restart_hash.into());
    let volumes = volumes::plan(ctx, inputs.files, inputs.state);
    let stop_seconds = containers::pre_stop_seconds(inputs.config);
    let pod = PodSpec {
        service_account_name: Some(ctx.key.name.clone()),
        automount_service_account_token: Some(false),
        // The server needs no Service environment variables; they only leak the namespace's
        // layout (a `container` server is told its peers' addresses in `env`).
        enable_service_links: Some(false),
        security_context: Some(pod_security_context(inputs.state)),
        init_containers: is_stdio(spec).then(|| {
            vec![bridge::install_container(
                ctx,
                volumes.bridge_install_mounts.clone(),
            )]
        }),
        containers: vec![
            containers::server(ctx, inputs, volumes.server_mounts.clone()),
            containers::sidecar(ctx, inputs, volumes.sidecar_mounts.clone()),
        ],
        volumes: Some(volumes.volumes),
        termination_grace_period_seconds: Some(stop_seconds + CONDUIT_STOP_SECONDS),
        image_pull_secrets: non_empty(spec.image_pull_secrets.clone()),
        node_selector: (!overrides.node_selector.is_empty())
            .then(|| overrides.node_selector.clone()),
        tolerations: non_empty(overrides.tolerations.clone()),
        affinity: overrides.affinity.clone(),
        topology_spread_constraints: non_empty(
            overrides
                .topology_spread_constraints
                .iter()
                .cloned()
                .map(|mut constraint| {
                    let selects_nothing = constraint.label_selector.as_ref().is_none_or(|s| {
                        s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                            && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
                    });
                    if selects_nothing {
                        constraint.label_selector = Some(LabelSelector {
                            match_labels: Some(selector_labels(&ctx.key.name)),
                            ..LabelSelector::default()
                        });
                    }
                    constraint
                })
                .collect(),
        ),
        priority_class_name: overrides.priority_class_name.clone(),
        ..PodSpec::default()
    };
    Deployment {
        metadata: ctx.metadata(&ctx.key.name),
        spec: Some(DeploymentSpec {
            // With an autoscaler the count is its own: leaving the field out of the apply
            // gives it up (the controller hands it over first, so it is not reset to 1).
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&ctx.key.name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            strategy: inputs.state.deployment_strategy(),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// Non-root (65532) with a matching fsGroup, so mounted files are readable and a fresh state
/// volume is writable, and the runtime's default seccomp profile.
fn pod_security_context(state: &StateHome) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NON_ROOT_ID),
        run_as_group: Some(NON_ROOT_ID),
        fs_group: Some(NON_ROOT_ID),
        // The state volume only grows (one file per entry, expired ones stay): hand it to the
        // group once, not file by file on every start.
        fs_group_change_policy: state.claim().map(|_| "OnRootMismatch".into()),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    }
}

/// Whether the server is a stdio one, run behind the bridge.
fn is_stdio(spec: &sluice_crds::McpServerSpec) -> bool {
    spec.container.as_ref().is_some_and(|c| c.stdio.is_some())
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}
