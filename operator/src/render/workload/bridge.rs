//! A stdio server behind `sluice-bridge`: the init container that copies the bridge out of
//! the sidecar's image, and the server container's command that runs the user's under it.
//!
//! Why an init container: the bridge must run inside the server's image (it starts the
//! image's command as a child process), and no image carries it. The sidecar's image does,
//! statically linked so that it runs on any libc; `sluice-bridge install` copies it into an
//! emptyDir the server's container mounts read-only.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sluice_crds::container::{ServerContainer, Stdio};
use sluice_crds::defaults::BRIDGE_PORT;

use super::super::context::Context;
use super::containers::{hardened, pull_policy};

/// Name of the init container that installs the bridge.
pub const INSTALL: &str = "sluice-bridge-install";
/// The emptyDir the bridge is installed into.
pub const VOLUME: &str = "sluice-bridge";
/// Most the bridge's emptyDir may hold: one static binary.
pub const VOLUME_SIZE_LIMIT: &str = "32Mi";
/// Where the bridge's emptyDir is mounted, in both containers.
pub const DIR: &str = "/sluice/bridge";
/// The bridge in the sidecar's image.
const IMAGE_PATH: &str = "/usr/local/bin/sluice-bridge";

/// The installed bridge, as the server's container runs it.
fn installed() -> String {
    format!("{DIR}/sluice-bridge")
}

/// The init container: the sidecar's image copying its bridge into [`VOLUME`], hardened as
/// every container is, with resources for a copy of one file.
pub fn install_container(ctx: &Context<'_>, mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: INSTALL.into(),
        image: Some(ctx.proxy_image.clone()),
        image_pull_policy: Some(pull_policy(ctx.server.spec.image_pull_policy).into()),
        command: Some(vec![IMAGE_PATH.into(), "install".into(), DIR.into()]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities([("cpu", "10m"), ("memory", "16Mi")])),
            limits: Some(quantities([("memory", "32Mi")])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(hardened()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The server container's `command` and `args`: the bridge, serving Streamable HTTP on the
/// loopback port, with the user's command and arguments after `--` as the stdio server.
pub fn command_and_args(container: &ServerContainer, stdio: &Stdio) -> (Vec<String>, Vec<String>) {
    let port = container.port.unwrap_or(i32::from(BRIDGE_PORT));
    let mut args = vec![
        "run".to_string(),
        "--port".into(),
        port.to_string(),
        "--max-processes".into(),
        stdio.max_processes.to_string(),
        "--idle-timeout".into(),
        stdio.idle_timeout.clone(),
        "--".into(),
    ];
    args.extend(container.command.iter().cloned());
    args.extend(container.args.iter().cloned());
    (vec![installed()], args)
}

fn quantities<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, Quantity> {
    pairs
        .into_iter()
        .map(|(name, amount)| (name.to_string(), Quantity(amount.into())))
        .collect()
}
