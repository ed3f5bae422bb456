//! Server-side apply of rendered objects under one field manager, skipped when the live
//! object already holds every field the operator sets and the operator owns no field it no
//! longer sets.

mod owned_fields;
mod quantity;

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use self::owned_fields::operators_apply_for_cache;
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
namespaced!(HorizontalPodAutoscaler, horizontal_pod_autoscalers);
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
    /// The live object already held every desired field, and the operator owned no other:
    /// no request was made.
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
            hand_over_replicas(client, stores, o).await?;
            apply(client, stores, o).await
        }
        Object::HorizontalPodAutoscaler(o) => apply(client, stores, o).await,
        Object::PodDisruptionBudget(o) => apply(client, stores, o).await,
        Object::NetworkPolicy(o) => apply(client, stores, o).await,
        Object::Ingress(o) => apply(client, stores, o).await,
        Object::HttpRoute(o) => apply(client, stores, o).await,
        Object::ServiceMonitor(o) => apply(client, stores, o).await,
    }
}

/// Server-side applies `desired` under [`FIELD_MANAGER`], forcing conflicts (the operator
/// owns these objects: another manager's edit of a field it sets is drift to undo), unless
/// the cached live object already holds every field `desired` sets and the operator owns no
/// field `desired` leaves out: only the apply removes a field the operator stopped rendering
/// (see [`owned_fields`]).
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
        && sets_every_owned_field(live.meta(), &desired_json, &describe)
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

/// Whether `desired` still sets every field the operator's applies own on the live object
/// `live` describes; logs the first it does not, which the apply will remove.
fn sets_every_owned_field(
    live: &ObjectMeta,
    desired: &Value,
    describe: &dyn Fn() -> String,
) -> bool {
    let Some(owned) = owned_fields::owned_by_operator(live) else {
        return true;
    };
    match owned_fields::first_unset(&owned, desired) {
        None => true,
        Some(field) => {
            tracing::debug!(object = %describe(), %field, "applying: a field the operator owns is no longer rendered");
            false
        }
    }
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

/// The field manager that keeps a Deployment's `spec.replicas` between the operator letting
/// go of it and an autoscaler taking it.
pub const REPLICAS_HANDOVER_MANAGER: &str = "sluice-operator-replicas-handover";

/// Hands the live replica count to [`REPLICAS_HANDOVER_MANAGER`] before the operator applies
/// a Deployment without `spec.replicas` (an autoscaler's) while it still owns the field.
/// Server-side apply removes a field its only owner stops applying, and the API server
/// defaults the count back to 1: every pod but one would go until the autoscaler scales up
/// again. Applying the same value under a second manager first makes it co-owned, so the
/// operator's apply merely lets go ("transferring ownership" in the Kubernetes server-side
/// apply docs); the autoscaler's first scale then takes it over from that manager. Judged on
/// the cache, like [`switch_strategy`].
async fn hand_over_replicas(client: &Client, stores: &Stores, desired: &Deployment) -> Result<()> {
    let name = desired.name_any();
    let namespace = desired.namespace();
    let Some(live) = stores.deployments.get(namespace.as_deref(), &name) else {
        return Ok(());
    };
    let Some(patch) = replicas_handover(desired, &live) else {
        return Ok(());
    };
    let params = PatchParams::apply(REPLICAS_HANDOVER_MANAGER).force();
    Deployment::api(client.clone(), namespace.as_deref())
        .patch(&name, &params, &Patch::Apply(&patch))
        .await
        .map_err(|e| {
            Error::kube(
                format!(
                    "hand the replicas of Deployment {}/{name} over to the autoscaler",
                    namespace.as_deref().unwrap_or_default()
                ),
                e,
            )
        })?;
    Ok(())
}

/// The apply that keeps `live`'s replica count once the operator stops applying it: `None`
/// unless `desired` leaves replicas out while the operator's applies still own them.
fn replicas_handover(desired: &Deployment, live: &Deployment) -> Option<Value> {
    let desired_sets_replicas = desired.spec.as_ref().and_then(|s| s.replicas).is_some();
    if desired_sets_replicas {
        return None;
    }
    let owns_replicas = owned_fields::owned_by_operator(&live.metadata)
        .is_some_and(|fields| fields.pointer("/f:spec/f:replicas").is_some());
    let replicas = live.spec.as_ref().and_then(|s| s.replicas)?;
    owns_replicas.then(|| {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": live.metadata.name, "namespace": live.metadata.namespace},
            "spec": {"replicas": replicas},
        })
    })
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
/// operator's, and an item added by someone else is drift). An empty map, list or string, or
/// null, in `desired` matches an absent field: the API server drops them (Go's `omitempty`;
/// a user's toleration with `effect: ""` comes back without `effect`). A quantity field matches
/// the same amount however written: the API server stores quantities in canonical form
/// (`0.5` as `500m`), so text would never match and every reconcile would write again (see
/// [`quantity`]).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    is_subset_at(&mut Vec::new(), desired, live)
}

/// [`is_subset`] for the field at `path` (keys from the root, [`quantity::ITEM`] for a list
/// item), which says whether it holds a quantity.
fn is_subset_at<'a>(path: &mut Vec<&'a str>, desired: &'a Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(key, value)| {
            path.push(key);
            let held = have
                .get(key)
                .map_or_else(|| is_empty(value), |live| is_subset_at(path, value, live));
            path.pop();
            held
        }),
        (Value::Array(want), Value::Array(have)) => {
            path.push(quantity::ITEM);
            let held = want.len() == have.len()
                && want.iter().zip(have).all(|(w, h)| is_subset_at(path, w, h));
            path.pop();
            held
        }
        (Value::String(want), Value::String(have)) if want != have => {
            quantity::at(path).is_some_and(|precision| quantity::same_amount(want, have, precision))
        }
        (want, have) => is_empty(want) && is_empty(have) || want == have,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        Value::String(text) => text.is_empty(),
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
    fn quantities_match_the_same_amount_where_the_api_server_keeps_them() {
        let pod = |cpu: &str, memory: &str, label: &str, arg: &str| {
            json!({
                "metadata": {"labels": {"size": label}},
                "spec": {"template": {"spec": {
                    "containers": [{
                        "args": [arg],
                        "resources": {"requests": {"cpu": cpu, "memory": memory}},
                    }],
                    "volumes": [{"emptyDir": {"sizeLimit": memory}}],
                }}},
            })
        };
        let live = pod("500m", "1Gi", "1", "0.5");
        assert!(is_subset(&pod("0.5", "1024Mi", "1", "0.5"), &live));
        assert!(is_subset(&pod("500m", "1Gi", "1", "0.5"), &live));
        // Another amount is drift; so is text that only looks like a number elsewhere.
        assert!(!is_subset(&pod("0.6", "1024Mi", "1", "0.5"), &live));
        assert!(!is_subset(&pod("0.5", "1000Mi", "1", "0.5"), &live));
        assert!(!is_subset(&pod("0.5", "1024Mi", "1.0", "0.5"), &live));
        assert!(!is_subset(&pod("0.5", "1024Mi", "1", "500m"), &live));

        let claim = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        assert!(is_subset(&claim("1024Mi"), &claim("1Gi")));
        assert!(!is_subset(&claim("1024Mi"), &claim("1G")));
    }

    #[test]
    fn empty_desired_values_match_absent_fields() {
        let desired = json!({"metadata": {"annotations": {}, "finalizers": [], "x": null}});
        assert!(is_subset(&desired, &json!({"metadata": {}})));
        assert!(is_subset(&json!({"a": []}), &json!({"a": null})));
        assert!(!is_subset(&json!({"a": ["x"]}), &json!({})));
        // Strings the API server omits when empty: a toleration of everything, a priority
        // class left blank. An empty string is still not any other value.
        let tolerations = json!({"spec": {"priorityClassName": "", "tolerations": [
            {"key": "", "operator": "Exists", "effect": ""},
        ]}});
        let live = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert!(is_subset(&tolerations, &live));
        assert!(!is_subset(
            &json!({"effect": ""}),
            &json!({"effect": "NoSchedule"})
        ));
    }
}
