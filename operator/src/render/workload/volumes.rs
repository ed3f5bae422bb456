//! The pod's volumes and which container mounts what: each container sees only its own.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, EmptyDirVolumeSource, KeyToPath,
    PersistentVolumeClaimVolumeSource, ProjectedVolumeSource, SecretProjection, SecretVolumeSource,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::super::context::Context;
use super::super::names::{config_map_name, volume_name};
use super::super::oauth_state::{CLAIM_HOME, StateHome};
use super::bridge;
use crate::translate::{
    CA_BUNDLES_DIR, CONFIG_DIR, CaSource, PHABRICATOR_CA_DIR, PHABRICATOR_CA_FILE,
    SERVICE_ACCOUNT_DIR, SecretFiles, SidecarFiles, secret_dir,
};

/// Size limit of the server's `/tmp` (FastMCP's OAuth state lives there unless it has a
/// claim), and of a `container` server's writable paths without a `sizeLimit`.
pub const TMP_SIZE_LIMIT: &str = "64Mi";
/// The volume of the OAuth state's claim.
const OAUTH_STATE_VOLUME: &str = "oauth-state";
/// Lifetime of the sidecar's projected ServiceAccount token (the kubelet renews it).
const TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// Secret files: readable by the owner and the pod's fsGroup only.
const SECRET_MODE: i32 = 0o440;
/// ConfigMap files: nothing secret in them.
const CONFIG_MODE: i32 = 0o444;

/// The volumes of the pod and each container's mounts.
#[derive(Clone, Debug, Default)]
pub struct VolumePlan {
    pub volumes: Vec<Volume>,
    pub server_mounts: Vec<VolumeMount>,
    pub sidecar_mounts: Vec<VolumeMount>,
    /// The bridge's install container's, for a stdio server (none otherwise).
    pub bridge_install_mounts: Vec<VolumeMount>,
}

/// `/tmp`, the OAuth state's claim and the CA bundle for Conduit (`/tmp`, the writable
/// paths and, for a stdio server, the bridge for a `container` server); the config, the CA
/// bundle, each needed Secret and the TokenReview credentials for the sidecar. All mounts
/// are read-only except `/tmp`, the writable paths, the state's and the bridge installer's.
pub fn plan(ctx: &Context<'_>, files: &SidecarFiles, state: &StateHome) -> VolumePlan {
    let mut plan = VolumePlan::default();
    let writable = ctx
        .server
        .spec
        .container
        .iter()
        .flat_map(|c| &c.writable_paths);
    let tmp_listed = writable.clone().any(|w| w.path == "/tmp");
    if !tmp_listed {
        plan.volumes.push(empty_dir("tmp", None));
        plan.server_mounts.push(mount("tmp", "/tmp", false));
    }
    for (i, path) in writable.enumerate() {
        // By index: paths may be longer than a volume name, and the spec keeps their order.
        let name = format!("writable-{i}");
        plan.volumes.push(match &path.claim_name {
            Some(claim) => Volume {
                name: name.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: None,
                }),
                ..Volume::default()
            },
            None => empty_dir(&name, path.size_limit.clone()),
        });
        plan.server_mounts.push(mount(&name, &path.path, false));
    }
    if super::is_stdio(&ctx.server.spec) {
        plan.volumes.push(empty_dir(
            bridge::VOLUME,
            Some(Quantity(bridge::VOLUME_SIZE_LIMIT.into())),
        ));
        plan.bridge_install_mounts
            .push(mount(bridge::VOLUME, bridge::DIR, false));
        // Read-only: the server runs the bridge and must not be able to replace it.
        plan.server_mounts
            .push(mount(bridge::VOLUME, bridge::DIR, true));
    }

    // Conduit's alone: the logins' tokens have no business in the sidecar.
    if let Some(claim) = state.claim() {
        plan.volumes.push(Volume {
            name: OAUTH_STATE_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name.clone(),
                read_only: None,
            }),
            ..Volume::default()
        });
        plan.server_mounts
            .push(mount(OAUTH_STATE_VOLUME, CLAIM_HOME, false));
    }

    plan.volumes.push(Volume {
        name: "sluice-proxy-config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(&ctx.key.name),
            default_mode: Some(CONFIG_MODE),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    // The whole directory, not a subPath: the kubelet then updates the file in place.
    plan.sidecar_mounts
        .push(mount("sluice-proxy-config", CONFIG_DIR, true));

    let ca_bundle = ctx.server.spec.phabricator.as_ref();
    if let Some(ca) = ca_bundle.and_then(|p| p.ca_bundle.as_ref()) {
        let item = |key: &str| {
            Some(vec![KeyToPath {
                key: key.into(),
                path: PHABRICATOR_CA_FILE.into(),
                mode: None,
            }])
        };
        let mut volume = Volume {
            name: "phabricator-ca".into(),
            ..Volume::default()
        };
        if let Some(r) = &ca.config_map_key_ref {
            volume.config_map = Some(ConfigMapVolumeSource {
                name: r.name.clone(),
                items: item(&r.key),
                default_mode: Some(CONFIG_MODE),
                ..ConfigMapVolumeSource::default()
            });
        } else if let Some(r) = &ca.secret_key_ref {
            volume.secret = Some(SecretVolumeSource {
                secret_name: Some(r.name.clone()),
                items: item(&r.key),
                default_mode: Some(SECRET_MODE),
                ..SecretVolumeSource::default()
            });
        }
        plan.volumes.push(volume);
        plan.server_mounts
            .push(mount("phabricator-ca", PHABRICATOR_CA_DIR, true));
        if files.phabricator_ca {
            plan.sidecar_mounts
                .push(mount("phabricator-ca", PHABRICATOR_CA_DIR, true));
        }
    }

    for (secret, wanted) in &files.secrets {
        let name = volume_name("secret-", secret);
        let items = match wanted {
            SecretFiles::Whole => None,
            SecretFiles::Keys(keys) => Some(
                keys.iter()
                    .map(|key| KeyToPath {
                        key: key.clone(),
                        path: key.clone(),
                        mode: None,
                    })
                    .collect(),
            ),
        };
        plan.volumes.push(Volume {
            name: name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items,
                default_mode: Some(SECRET_MODE),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        plan.sidecar_mounts
            .push(mount(&name, &secret_dir(secret).to_string_lossy(), true));
    }

    if files.service_account_token {
        plan.volumes.push(service_account_token_volume());
        plan.sidecar_mounts
            .push(mount("service-account-token", SERVICE_ACCOUNT_DIR, true));
    }

    if !files.ca_bundles.is_empty() {
        plan.volumes.push(ca_bundles_volume(&files.ca_bundles));
        plan.sidecar_mounts
            .push(mount("ca-bundles", CA_BUNDLES_DIR, true));
    }
    plan
}

/// The CA bundles the sidecar trusts (a JWT issuer's), each key of its ConfigMap or Secret
/// projected under its file name. A projected volume, not a subPath: updates reach the files.
fn ca_bundles_volume(bundles: &BTreeMap<String, CaSource>) -> Volume {
    let sources = bundles
        .iter()
        .map(|(file, source)| {
            let items = |key: &str| {
                Some(vec![KeyToPath {
                    key: key.into(),
                    path: file.clone(),
                    mode: None,
                }])
            };
            match source {
                CaSource::ConfigMap { name, key } => VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: name.clone(),
                        items: items(key),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                CaSource::Secret { name, key } => VolumeProjection {
                    secret: Some(SecretProjection {
                        name: name.clone(),
                        items: items(key),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
            }
        })
        .collect();
    Volume {
        name: "ca-bundles".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(SECRET_MODE),
            sources: Some(sources),
        }),
        ..Volume::default()
    }
}

/// The sidecar's own token (audience: the API server) and the cluster CA, as TokenReview
/// needs them. The pod does not automount a token: only this container gets one.
fn service_account_token_volume() -> Volume {
    Volume {
        name: "service-account-token".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(SECRET_MODE),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        audience: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

/// An emptyDir of at most `size_limit` (default [`TMP_SIZE_LIMIT`]).
fn empty_dir(name: &str, size_limit: Option<Quantity>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(size_limit.unwrap_or_else(|| Quantity(TMP_SIZE_LIMIT.into()))),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}
