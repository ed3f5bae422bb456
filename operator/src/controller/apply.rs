//! Server-side apply of rendered objects under one field manager, skipped when the live
//! object already holds every field the operator sets.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::FIELD_MANAGER;
use super::scope::{Scoped, Stores};
use crate::render::{HttpRoute, Object, ServiceMonitor};
use crate::{Error, Result};

/// A kind the operator applies and prunes.
pub trait Owned:
    Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Its cache; `None` when the cluster does not serve the kind.
    fn cache(stores: &Stores) -> Option<&Scoped<Self>>;

    /// Its API in `namespace` (ignored for cluster-scoped kinds).
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;
}

macro_rules! namespaced {
    ($kind:ty, $field:ident) => {
        namespaced!($kind, stores => Some(&stores.$field));
    };
    ($kind:ty, $stores:ident => $cache:expr) => {
        impl Owned for $kind {
            fn cache($stores: &Stores) -> Option<&Scoped<Self>> {
                $cache
            }

            fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
                match namespace {
                    Some(namespace) => Api::namespaced(client, namespace),
                    None => Api::all(client),
                }
            }
        }
    };
}

namespaced!(ServiceAccount, service_accounts);
namespaced!(ConfigMap, config_maps);
namespaced!(Service, services);
namespaced!(PersistentVolumeClaim, persistent_volume_claims);
namespaced!(Deployment, deployments);
namespaced!(PodDisruptionBudget, pod_disruption_budgets);
namespaced!(NetworkPolicy, network_policies);
namespaced!(Ingress, ingresses);
namespaced!(HttpRoute, stores => stores.http_routes.as_ref());
namespaced!(ServiceMonitor, stores => stores.service_monitors.as_ref());

impl Owned for ClusterRoleBinding {
    fn cache(stores: &Stores) -> Option<&Scoped<Self>> {
        Some(&stores.cluster_role_bindings)
    }

    fn api(client: Client, _namespace: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
}

/// What applying one object did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The live object already held every desired field: no request was made.
    Unchanged,
    /// An apply request was sent.
    Written,
}

/// Applies `object` unless its live copy in the cache already holds it.
pub async fn apply_object(client: &Client, stores: &Stores, object: &Object) -> Result<Applied> {
    match object {
        Object::ServiceAccount(o) => apply(client, stores, o).await,
        Object::ClusterRoleBinding(o) => apply(client, stores, o).await,
        Object::ConfigMap(o) => apply(client, stores, o).await,
        Object::Service(o) => apply(client, stores, o).await,
        Object::PersistentVolumeClaim(o) => apply(client, stores, o).await,
        Object::Deployment(o) => {
            switch_strategy(client, stores, o).await?;
            apply(client, stores, o).await
        }
        Object::PodDisruptionBudget(o) => apply(client, stores, o).await,
        Object::NetworkPolicy(o) => apply(client, stores, o).await,
        Object::Ingress(o) => apply(client, stores, o).await,
        Object::HttpRoute(o) => apply(client, stores, o).await,
        Object::ServiceMonitor(o) => apply(client, stores, o).await,
    }
}

/// Server-side applies `desired` under [`FIELD_MANAGER`], forcing conflicts (the operator
/// owns these objects: another manager's edit of a field it sets is drift to undo), unless
/// the cached live object already holds every field `desired` sets.
pub async fn apply<K: Owned>(client: &Client, stores: &Stores, desired: &K) -> Result<Applied> {
    let name = desired.name_any();
    let namespace = desired.namespace();
    let describe = || match &namespace {
        Some(ns) => format!("{} {ns}/{name}", K::kind(&())),
        None => format!("{} {name}", K::kind(&())),
    };
    let json = |object: &K| {
        serde_json::to_value(object).map_err(|error| Error::Json {
            what: describe(),
            error,
        })
    };
    let desired_json = json(desired)?;
    let live = K::cache(stores).and_then(|cache| cache.get(namespace.as_deref(), &name));
    if let Some(live) = live
        && live.meta().deletion_timestamp.is_none()
        && is_subset(&desired_json, &json(&live)?)
    {
        return Ok(Applied::Unchanged);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    K::api(client.clone(), namespace.as_deref())
        .patch(&name, &params, &Patch::Apply(&desired_json))
        .await
        .map_err(|e| Error::kube(format!("apply {}", describe()), e))?;
    Ok(Applied::Written)
}

/// Moves a live Deployment to the strategy type `desired` asks for, when an apply alone
/// cannot: see [`strategy_switch`]. Judged on the cache; a stale cache only means the apply
/// fails and the next reconcile, on a fresher one, gets here again.
async fn switch_strategy(client: &Client, stores: &Stores, desired: &Deployment) -> Result<()> {
    let name = desired.name_any();
    let namespace = desired.namespace();
    let Some(live) = stores.deployments.get(namespace.as_deref(), &name) else {
        return Ok(());
    };
    let Some(patch) = strategy_switch(desired, &live) else {
        return Ok(());
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    Deployment::api(client.clone(), namespace.as_deref())
        .patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            Error::kube(
                format!(
                    "switch the strategy of Deployment {}/{name}",
                    namespace.as_deref().unwrap_or_default()
                ),
                e,
            )
        })?;
    Ok(())
}

/// The merge patch that moves `live` to `desired`'s strategy type, when server-side apply
/// cannot do it alone. A Deployment created without a strategy got `rollingUpdate` defaulted
/// by the API server, owned by no field manager: an apply of `type: Recreate` keeps it, and
/// the API server refuses Recreate with `rollingUpdate`. Removing it and setting the type must
/// be one write. That write (an update) leaves the operator owning the type outside its
/// applies, so the way back is patched too: a Deployment that should roll again is set to
/// `RollingUpdate` (the API server defaults the rest).
fn strategy_switch(desired: &Deployment, live: &Deployment) -> Option<Value> {
    let strategy = |d: &Deployment| d.spec.as_ref().and_then(|s| s.strategy.clone());
    let (desired, live) = (strategy(desired), strategy(live).unwrap_or_default());
    let recreate = |type_: Option<&str>| type_ == Some("Recreate");
    let wants_recreate = recreate(desired.as_ref().and_then(|s| s.type_.as_deref()));
    let live_recreates = recreate(live.type_.as_deref());
    if wants_recreate && (!live_recreates || live.rolling_update.is_some()) {
        return Some(json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}));
    }
    if !wants_recreate && live_recreates {
        return Some(json!({"spec": {"strategy": {"type": "RollingUpdate"}}}));
    }
    None
}

/// Whether every field `desired` sets is in `live` with the same value.
///
/// Maps: each key of `desired` must be in `live` (extra keys are the API server's defaults
/// or other managers' fields). Lists: the same length, item by item (a list's order is the
/// operator's, and an item added by someone else is drift). An empty map, empty list or null
/// in `desired` matches an absent field: the API server drops them.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(key, value)| {
            have.get(key)
                .map_or_else(|| is_empty(value), |live| is_subset(value, live))
        }),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        (want, have) => is_empty(want) && is_empty(have) || want == have,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;

    fn with_strategy(type_: Option<&str>, rolling_update: bool) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                strategy: Some(DeploymentStrategy {
                    type_: type_.map(str::to_string),
                    rolling_update: rolling_update.then(|| RollingUpdateDeployment {
                        max_surge: Some(IntOrString::String("25%".into())),
                        max_unavailable: Some(IntOrString::String("25%".into())),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    #[test]
    fn switching_to_recreate_drops_the_defaulted_rolling_update_in_the_same_write() {
        let desired = with_strategy(Some("Recreate"), false);
        let defaulted = with_strategy(Some("RollingUpdate"), true);
        assert_eq!(
            strategy_switch(&desired, &defaulted),
            Some(json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}))
        );
        // Already recreating: the apply does the rest.
        assert_eq!(
            strategy_switch(&desired, &with_strategy(Some("Recreate"), false)),
            None
        );
    }

    #[test]
    fn a_deployment_that_should_roll_again_is_set_back_to_rolling_update() {
        let rolling = Deployment::default();
        assert_eq!(
            strategy_switch(&rolling, &with_strategy(Some("Recreate"), false)),
            Some(json!({"spec": {"strategy": {"type": "RollingUpdate"}}}))
        );
        assert_eq!(
            strategy_switch(&rolling, &with_strategy(Some("RollingUpdate"), true)),
            None
        );
        assert_eq!(strategy_switch(&rolling, &Deployment::default()), None);
    }

    #[test]
    fn defaults_and_foreign_fields_in_live_are_fine() {
        let desired =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1}});
        let live = json!({
            "metadata": {"name": "a", "labels": {"x": "1", "other": "2"}, "uid": "u", "resourceVersion": "9"},
            "spec": {"replicas": 1, "revisionHistoryLimit": 10},
            "status": {"readyReplicas": 1},
        });
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_or_missing_value_is_drift() {
        let desired = json!({"spec": {"replicas": 3, "template": {"image": "a:1"}}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 1, "template": {"image": "a:1"}}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 3, "template": {}}})
        ));
        assert!(!is_subset(&desired, &json!({})));
        assert!(!is_subset(&json!({"a": "1"}), &json!({"a": 1})));
    }

    #[test]
    fn lists_compare_item_by_item_and_by_length() {
        let desired = json!({"containers": [{"name": "a", "image": "x"}, {"name": "b"}]});
        let defaulted = json!({"containers": [
            {"name": "a", "image": "x", "terminationMessagePath": "/dev/termination-log"},
            {"name": "b", "imagePullPolicy": "IfNotPresent"},
        ]});
        assert!(is_subset(&desired, &defaulted));
        let reordered = json!({"containers": [{"name": "b"}, {"name": "a", "image": "x"}]});
        assert!(!is_subset(&desired, &reordered));
        let extra =
            json!({"containers": [{"name": "a", "image": "x"}, {"name": "b"}, {"name": "c"}]});
        assert!(!is_subset(&desired, &extra));
        assert!(!is_subset(
            &json!({"args": ["--a"]}),
            &json!({"args": ["--a", "--b"]})
        ));
    }

    #[test]
    fn empty_desired_values_match_absent_fields() {
        let desired = json!({"metadata": {"annotations": {}, "finalizers": [], "x": null}});
        assert!(is_subset(&desired, &json!({"metadata": {}})));
        assert!(is_subset(&json!({"a": []}), &json!({"a": null})));
        assert!(!is_subset(&json!({"a": ["x"]}), &json!({})));
    }
}
