//! Where Conduit's OAuth state lives (`spec.auth.oauth.state`): the pod's `/tmp`, or a
//! PersistentVolumeClaim the operator creates or the user names.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DeploymentStrategy;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sluice_crds::McpServer;
use sluice_crds::server::OAuthStateStorage;

use super::context::Context;
use super::names::{oauth_state_claim_name, shared_oauth_state_claim_name};
use crate::translate;

/// `FASTMCP_HOME` on the pod's `/tmp` emptyDir (header-token mode, and ephemeral state).
pub const POD_TMP_HOME: &str = "/tmp/fastmcp";
/// `FASTMCP_HOME` on a claim: a directory of its own, mounted into Conduit only.
pub const CLAIM_HOME: &str = "/var/lib/fastmcp";
/// Size of a claim the operator creates when the spec names none.
pub const DEFAULT_SIZE: &str = "1Gi";

/// Where one server's OAuth state lives.
#[derive(Clone, Debug, PartialEq)]
pub enum StateHome {
    /// The pod's `/tmp` emptyDir: lost with the pod.
    PodTmp,
    /// A claim mounted at [`CLAIM_HOME`].
    Claim(Claim),
}

/// The claim holding the state.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// Its name, in the server's namespace.
    pub name: String,
    /// ReadWriteOnce: one pod at a time, so rollouts recreate. Otherwise ReadWriteMany.
    pub one_pod: bool,
    /// What the operator creates; `None` for a claim the user named (never ours to write).
    pub created: Option<CreatedClaim>,
}

/// A claim the operator creates.
#[derive(Clone, Debug, PartialEq)]
pub struct CreatedClaim {
    /// Requested storage.
    pub size: Quantity,
    /// Its StorageClass; `None` for the cluster's default.
    pub storage_class_name: Option<String>,
}

impl StateHome {
    /// Where `server` keeps its state: a claim only in OAuth mode with `persistent` or
    /// `shared` storage.
    pub fn of(server: &McpServer) -> Self {
        let Some(oauth) = server
            .spec
            .auth
            .oauth
            .as_ref()
            .filter(|_| translate::is_oauth(server))
        else {
            return Self::PodTmp;
        };
        let state = &oauth.state;
        let server_name = server.metadata.name.as_deref().unwrap_or_default();
        let (one_pod, own_name) = match state.storage {
            OAuthStateStorage::Ephemeral => return Self::PodTmp,
            OAuthStateStorage::Persistent => (true, oauth_state_claim_name(server_name)),
            OAuthStateStorage::Shared => (false, shared_oauth_state_claim_name(server_name)),
        };
        let claim = match &state.claim_name {
            Some(name) => Claim {
                name: name.clone(),
                one_pod,
                created: None,
            },
            None => Claim {
                name: own_name,
                one_pod,
                created: Some(CreatedClaim {
                    size: state
                        .size
                        .clone()
                        .unwrap_or_else(|| Quantity(DEFAULT_SIZE.into())),
                    storage_class_name: state.storage_class_name.clone(),
                }),
            },
        };
        Self::Claim(claim)
    }

    /// `FASTMCP_HOME`.
    pub fn fastmcp_home(&self) -> &'static str {
        match self {
            Self::PodTmp => POD_TMP_HOME,
            Self::Claim(_) => CLAIM_HOME,
        }
    }

    /// The claim, when the state is on one.
    pub fn claim(&self) -> Option<&Claim> {
        match self {
            Self::PodTmp => None,
            Self::Claim(claim) => Some(claim),
        }
    }

    /// The Deployment's strategy: `Recreate` when one pod at a time may mount the volume,
    /// so a rollout never waits for a volume the old pod holds. Otherwise none is set and the
    /// API server's default (a rolling update) applies, as it always has.
    pub fn deployment_strategy(&self) -> Option<DeploymentStrategy> {
        self.claim()
            .filter(|claim| claim.one_pod)
            .map(|_| DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            })
    }
}

/// The claim the operator creates for the state, owned by the server like its other objects
/// (deleted with it, pruned when the spec stops asking for it). `None` for a claim the user
/// named, or no claim at all.
pub fn persistent_volume_claim(
    ctx: &Context<'_>,
    home: &StateHome,
) -> Option<PersistentVolumeClaim> {
    let claim = home.claim()?;
    let created = claim.created.as_ref()?;
    let access_mode = if claim.one_pod {
        "ReadWriteOnce"
    } else {
        "ReadWriteMany"
    };
    Some(PersistentVolumeClaim {
        metadata: ctx.metadata(&claim.name),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![access_mode.into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    created.size.clone(),
                )])),
                limits: None,
            }),
            storage_class_name: created.storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn server(state: serde_json::Value) -> McpServer {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "McpServer",
            "metadata": {"name": "phab", "namespace": "tools"},
            "spec": {
                "phabricator": {"url": "https://phabricator.example.com"},
                "auth": {"mode": "oauth", "oauth": {
                    "clientId": "PHID-OASC-abcdefghijklmnopqrst",
                    "clientSecretRef": {"name": "oauth", "key": "client-secret"},
                    "state": state,
                }},
            },
        }))
        .unwrap()
    }

    #[test]
    fn ephemeral_state_and_header_token_mode_stay_in_the_pod() {
        let ephemeral = StateHome::of(&server(json!({})));
        assert_eq!(ephemeral, StateHome::PodTmp);
        assert_eq!(ephemeral.fastmcp_home(), "/tmp/fastmcp");
        assert_eq!(ephemeral.deployment_strategy(), None);

        // A state left over in a spec that no longer runs OAuth is not acted on.
        let mut header_token = server(json!({"storage": "persistent"}));
        header_token.spec.auth.mode = sluice_crds::server::UpstreamAuthMode::HeaderToken;
        assert_eq!(StateHome::of(&header_token), StateHome::PodTmp);
    }

    #[test]
    fn persistent_and_shared_claims_are_named_apart() {
        // Apart because a claim's access mode cannot change: switching creates the other one.
        let persistent = StateHome::of(&server(json!({"storage": "persistent"})));
        let claim = persistent.claim().unwrap();
        assert_eq!(claim.name, "phab-oauth-state");
        assert!(claim.one_pod);
        assert_eq!(claim.created.as_ref().unwrap().size, Quantity("1Gi".into()));
        assert_eq!(persistent.fastmcp_home(), "/var/lib/fastmcp");
        assert_eq!(
            persistent.deployment_strategy().unwrap().type_.as_deref(),
            Some("Recreate")
        );

        let shared = StateHome::of(&server(
            json!({"storage": "shared", "size": "5Gi", "storageClassName": "nfs"}),
        ));
        let claim = shared.claim().unwrap();
        assert_eq!(claim.name, "phab-oauth-state-shared");
        assert!(!claim.one_pod);
        let created = claim.created.as_ref().unwrap();
        assert_eq!(created.size, Quantity("5Gi".into()));
        assert_eq!(created.storage_class_name.as_deref(), Some("nfs"));
        assert_eq!(shared.deployment_strategy(), None);
    }

    #[test]
    fn a_named_claim_is_mounted_not_created() {
        let named = StateHome::of(&server(
            json!({"storage": "persistent", "claimName": "logins"}),
        ));
        let claim = named.claim().unwrap();
        assert_eq!(claim.name, "logins");
        assert_eq!(claim.created, None);
    }
}
