//! Deleting what a server no longer needs: objects with the operator's labels for that
//! server that the last render did not produce. Nothing without those labels is touched: a
//! PersistentVolumeClaim the user names for OAuth state has none, so it is never pruned; the
//! one the operator created goes, with its logins, when the spec stops asking for it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{DeleteParams, ListParams, Preconditions, PropagationPolicy};
use kube::{Client, Resource, ResourceExt};
use sluice_crds::API_VERSION;

use super::apply::Owned;
use super::scope::Stores;
use crate::key::{ROUTE_KIND, SERVER_KIND};
use crate::render::{HttpRoute, Object, ServiceMonitor};
use crate::render::{MANAGED_BY, label};
use crate::{Error, Result};

/// The server whose objects are pruned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// Its `metadata.uid`.
    pub uid: &'a str,
}

/// Whether `object` is one of `owner`'s: it carries `app.kubernetes.io/managed-by:
/// sluice-operator` and `sluice.dev/server: <name>`, and either lives in the server's
/// namespace with a controller reference to the server (by uid) or to an McpRoute, or is
/// cluster-scoped with `sluice.dev/namespace: <namespace>`.
pub fn belongs_to<K: Resource>(object: &K, owner: &Owner<'_>) -> bool {
    let meta = object.meta();
    let Some(labels) = meta.labels.as_ref() else {
        return false;
    };
    let label_is = |key: &str, value: &str| labels.get(key).map(String::as_str) == Some(value);
    if !label_is(label::MANAGED_BY, MANAGED_BY) || !label_is(label::SERVER, owner.name) {
        return false;
    }
    match meta.namespace.as_deref() {
        None => label_is(label::NAMESPACE, owner.namespace),
        Some(namespace) if namespace == owner.namespace => {
            meta.owner_references.iter().flatten().any(|reference| {
                reference.controller == Some(true)
                    && reference.api_version == API_VERSION
                    && ((reference.kind == SERVER_KIND
                        && reference.name == owner.name
                        && reference.uid == owner.uid)
                        || reference.kind == ROUTE_KIND)
            })
        }
        Some(_) => false,
    }
}

/// The names of `owner`'s objects among `cached` that are not in `desired`.
pub fn unwanted<K: Resource>(
    cached: &[std::sync::Arc<K>],
    owner: &Owner<'_>,
    desired: &BTreeSet<String>,
) -> Vec<(String, Option<String>)> {
    cached
        .iter()
        .filter(|object| belongs_to(object.as_ref(), owner))
        .filter(|object| object.meta().deletion_timestamp.is_none())
        .filter_map(|object| {
            let name = object.meta().name.clone()?;
            (!desired.contains(&name)).then(|| (name, object.meta().uid.clone()))
        })
        .collect()
}

/// Deletes `owner`'s objects of every kind that `desired` does not hold. Returns what it
/// deleted, as `Kind namespace/name`.
pub async fn prune(
    client: &Client,
    stores: &Stores,
    owner: &Owner<'_>,
    desired: &[Object],
) -> Result<Vec<String>> {
    let mut by_kind: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for object in desired {
        by_kind
            .entry(object.kind())
            .or_default()
            .insert(object.name().to_string());
    }
    let mut deleted = Vec::new();
    deleted.extend(prune_kind::<ServiceAccount>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<ConfigMap>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<Service>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<Deployment>(client, stores, owner, &by_kind).await?);
    // A claim still mounted lingers (pvc-protection) until the pods using it are gone.
    deleted.extend(prune_kind::<PersistentVolumeClaim>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<HorizontalPodAutoscaler>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<PodDisruptionBudget>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<NetworkPolicy>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<Ingress>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<HttpRoute>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<ServiceMonitor>(client, stores, owner, &by_kind).await?);
    deleted.extend(prune_kind::<ClusterRoleBinding>(client, stores, owner, &by_kind).await?);
    Ok(deleted)
}

async fn prune_kind<K: Owned>(
    client: &Client,
    stores: &Stores,
    owner: &Owner<'_>,
    desired: &BTreeMap<&str, BTreeSet<String>>,
) -> Result<Vec<String>> {
    let Some(cache) = K::cache(stores) else {
        return Ok(Vec::new());
    };
    let kind = K::kind(&());
    let empty = BTreeSet::new();
    let wanted = desired.get(kind.as_ref()).unwrap_or(&empty);
    let cached = cache.filter(|object| belongs_to(object, owner));
    let mut deleted = Vec::new();
    for (name, uid) in unwanted(&cached, owner, wanted) {
        let namespace = cached
            .iter()
            .find(|o| o.meta().name.as_deref() == Some(&name))
            .and_then(|o| o.namespace());
        delete::<K>(client, namespace.as_deref(), &name, uid).await?;
        deleted.push(match namespace {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        });
    }
    Ok(deleted)
}

/// Deletes one object, only if it is still the one that was judged (same uid). Gone already,
/// or replaced since: nothing to do.
async fn delete<K: Owned>(
    client: &Client,
    namespace: Option<&str>,
    name: &str,
    uid: Option<String>,
) -> Result<()> {
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match K::api(client.clone(), namespace)
        .delete(name, &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete {} {name}", K::kind(&())), e)),
    }
}

/// Deletes every cluster-scoped object of a server that is going away, found by a fresh list
/// (not the cache: one created a moment ago must not be left behind).
pub async fn cleanup_cluster_objects(client: &Client, owner: &Owner<'_>) -> Result<Vec<String>> {
    let api = ClusterRoleBinding::api(client.clone(), None);
    let selector = format!(
        "{}={MANAGED_BY},{}={},{}={}",
        label::MANAGED_BY,
        label::SERVER,
        owner.name,
        label::NAMESPACE,
        owner.namespace
    );
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube("list ClusterRoleBindings to clean up", e))?;
    let mut deleted = Vec::new();
    for binding in list.items.iter().filter(|b| belongs_to(*b, owner)) {
        let name = binding.name_any();
        delete::<ClusterRoleBinding>(client, None, &name, binding.uid()).await?;
        deleted.push(format!("ClusterRoleBinding {name}"));
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    use super::*;

    const OWNER: Owner<'static> = Owner {
        namespace: "tools",
        name: "phab",
        uid: "uid-1",
    };

    fn ours() -> Vec<(String, String)> {
        vec![
            (label::MANAGED_BY.into(), MANAGED_BY.into()),
            (label::SERVER.into(), "phab".into()),
        ]
    }

    fn reference(kind: &str, name: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: API_VERSION.into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn service(
        name: &str,
        namespace: &str,
        labels: Vec<(String, String)>,
        owner: Option<OwnerReference>,
    ) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                uid: Some(format!("{name}-uid")),
                labels: Some(labels.into_iter().collect()),
                owner_references: owner.map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            ..Service::default()
        })
    }

    #[test]
    fn only_undesired_objects_with_our_labels_and_owner_are_pruned() {
        let cached = vec![
            service(
                "phab",
                "tools",
                ours(),
                Some(reference(SERVER_KIND, "phab", "uid-1")),
            ),
            service(
                "old-route",
                "tools",
                ours(),
                Some(reference(ROUTE_KIND, "old-route", "r")),
            ),
            service(
                "gone",
                "tools",
                ours(),
                Some(reference(SERVER_KIND, "phab", "uid-1")),
            ),
            // Not ours: no labels, another manager, another server, another namespace,
            // a previous server of the same name, no owner.
            service(
                "plain",
                "tools",
                vec![],
                Some(reference(SERVER_KIND, "phab", "uid-1")),
            ),
            service(
                "helm",
                "tools",
                vec![
                    (label::MANAGED_BY.into(), "Helm".into()),
                    (label::SERVER.into(), "phab".into()),
                ],
                Some(reference(SERVER_KIND, "phab", "uid-1")),
            ),
            service(
                "sibling",
                "tools",
                vec![
                    (label::MANAGED_BY.into(), MANAGED_BY.into()),
                    (label::SERVER.into(), "other".into()),
                ],
                Some(reference(SERVER_KIND, "other", "uid-2")),
            ),
            service(
                "elsewhere",
                "prod",
                ours(),
                Some(reference(SERVER_KIND, "phab", "uid-1")),
            ),
            service(
                "stale-uid",
                "tools",
                ours(),
                Some(reference(SERVER_KIND, "phab", "uid-0")),
            ),
            service("orphan", "tools", ours(), None),
        ];
        let desired = BTreeSet::from(["phab".to_string()]);
        let names: Vec<String> = unwanted(&cached, &OWNER, &desired)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["old-route", "gone"]);
    }

    #[test]
    fn cluster_objects_are_matched_by_their_namespace_label() {
        let binding = |namespace: &str| ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("sluice-{namespace}-phab-tokenreview")),
                labels: Some(
                    ours()
                        .into_iter()
                        .chain([(label::NAMESPACE.to_string(), namespace.to_string())])
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..ClusterRoleBinding::default()
        };
        assert!(belongs_to(&binding("tools"), &OWNER));
        assert!(!belongs_to(&binding("prod"), &OWNER));
    }

    #[test]
    fn a_desired_pdb_stays_and_an_undesired_one_goes() {
        let pdb = Arc::new(PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("phab".into()),
                namespace: Some("tools".into()),
                labels: Some(ours().into_iter().collect()),
                owner_references: Some(vec![reference(SERVER_KIND, "phab", "uid-1")]),
                ..ObjectMeta::default()
            },
            ..PodDisruptionBudget::default()
        });
        let cached = vec![pdb];
        assert!(unwanted(&cached, &OWNER, &BTreeSet::from(["phab".to_string()])).is_empty());
        assert_eq!(unwanted(&cached, &OWNER, &BTreeSet::new()).len(), 1);
    }
}
