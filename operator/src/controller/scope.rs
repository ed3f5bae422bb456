//! Where the operator looks (every namespace, or a list) and its caches, one per namespace.
//!
//! A kube-runtime store is filled by one watch: a list of namespaces needs one watch, and so
//! one store, per namespace ([`Scoped`] puts them back together).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use sluice_crds::{McpRoute, McpServer};

use crate::render::{HttpRoute, ServiceMonitor};
use crate::render::{MANAGED_BY, label};
use crate::{Error, Result};

/// How long a reconcile waits for the caches to fill before it gives up and retries.
const CACHE_WAIT: Duration = Duration::from_secs(30);

/// The namespaces the operator watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (one cluster-wide watch per kind).
    #[default]
    All,
    /// Only these (one watch per kind and namespace).
    Namespaces(Vec<String>),
}

impl Scope {
    /// The scope a comma-separated list names: empty means every namespace.
    pub fn from_list<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        let mut namespaces: Vec<String> = names
            .iter()
            .flat_map(|n| n.as_ref().split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = namespaces.iter().find(|n| !is_dns_label(n)) {
            return Err(Error::Option {
                option: "--namespaces (SLUICE_NAMESPACES)",
                message: format!("{bad:?} is not a namespace name (a DNS label)"),
            });
        }
        namespaces.sort();
        namespaces.dedup();
        Ok(if namespaces.is_empty() {
            Self::All
        } else {
            Self::Namespaces(namespaces)
        })
    }

    /// One entry per watch: `None` for the cluster-wide one.
    pub fn partitions(&self) -> Vec<Option<String>> {
        match self {
            Self::All => vec![None],
            Self::Namespaces(names) => names.iter().cloned().map(Some).collect(),
        }
    }

    /// Whether objects in `namespace` are in scope.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Self::All => true,
            Self::Namespaces(names) => names.iter().any(|n| n == namespace),
        }
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// An `Api` for `K` in a partition: namespaced, or across all namespaces.
pub fn api<K>(client: &Client, partition: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match partition {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The label selector of every object the operator owns.
pub fn owned_selector() -> String {
    format!("{}={MANAGED_BY}", label::MANAGED_BY)
}

/// The caches of one kind, one per partition, read as one.
#[derive(Clone)]
pub struct Scoped<K: Lookup + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    parts: Vec<(Option<String>, Store<K>)>,
}

impl<K> Debug for Scoped<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped")
            .field(
                "partitions",
                &self.parts.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<K> Default for Scoped<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn default() -> Self {
        Self { parts: Vec::new() }
    }
}

impl<K> Scoped<K>
where
    K: Lookup<DynamicType = ()> + Clone + ResourceExt + 'static,
{
    /// Adds the store of one partition.
    pub fn push(&mut self, partition: Option<String>, store: Store<K>) {
        self.parts.push((partition, store));
    }

    /// The store of one partition.
    pub fn part(&self, partition: Option<&str>) -> Option<Store<K>> {
        self.parts
            .iter()
            .find(|(part, _)| part.as_deref() == partition)
            .map(|(_, store)| store.clone())
    }

    /// The cached object, if any. `namespace` is `None` for cluster-scoped kinds.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let key = match namespace {
            Some(namespace) => ObjectRef::new(name).within(namespace),
            None => ObjectRef::new(name),
        };
        self.parts
            .iter()
            .filter(|(part, _)| match (part, namespace) {
                (Some(part), Some(namespace)) => part == namespace,
                _ => true,
            })
            .find_map(|(_, store)| store.get(&key))
    }

    /// Every cached object.
    pub fn all(&self) -> Vec<Arc<K>> {
        self.parts.iter().flat_map(|(_, s)| s.state()).collect()
    }

    /// The cached objects in `namespace` that `keep` accepts.
    pub fn filter_in(&self, namespace: &str, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.parts
            .iter()
            .filter(|(part, _)| part.as_deref().is_none_or(|p| p == namespace))
            .flat_map(|(_, store)| {
                store.state_filter(|o| {
                    ResourceExt::namespace(o).as_deref() == Some(namespace) && keep(o)
                })
            })
            .collect()
    }

    /// Every cached object that `keep` accepts.
    pub fn filter(&self, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.parts
            .iter()
            .flat_map(|(_, store)| store.state_filter(&keep))
            .collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|(_, s)| s.len()).sum()
    }

    /// Waits until every partition has been listed once.
    pub async fn wait_ready(&self, what: &'static str) -> Result<()> {
        let all =
            futures::future::try_join_all(self.parts.iter().map(|(_, s)| s.wait_until_ready()));
        match tokio::time::timeout(CACHE_WAIT, all).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::CacheNotReady { what }),
        }
    }
}

/// Every cache the reconcilers read. Owned kinds hold only objects with the operator's label;
/// referenced Secrets and ConfigMaps hold only names and resource versions.
#[derive(Clone, Debug, Default)]
pub struct Stores {
    pub servers: Scoped<McpServer>,
    pub routes: Scoped<McpRoute>,
    pub service_accounts: Scoped<ServiceAccount>,
    /// Owned ConfigMaps (the sidecar configs).
    pub config_maps: Scoped<ConfigMap>,
    pub services: Scoped<Service>,
    /// Owned PersistentVolumeClaims (OAuth state).
    pub persistent_volume_claims: Scoped<PersistentVolumeClaim>,
    pub deployments: Scoped<Deployment>,
    pub horizontal_pod_autoscalers: Scoped<HorizontalPodAutoscaler>,
    pub pod_disruption_budgets: Scoped<PodDisruptionBudget>,
    pub network_policies: Scoped<NetworkPolicy>,
    pub ingresses: Scoped<Ingress>,
    /// Owned HTTPRoutes, when the Gateway API is installed.
    pub http_routes: Option<Scoped<HttpRoute>>,
    /// Owned ServiceMonitors, when the Prometheus Operator's CRDs are installed.
    pub service_monitors: Option<Scoped<ServiceMonitor>>,
    /// Owned ClusterRoleBindings (TokenReview).
    pub cluster_role_bindings: Scoped<ClusterRoleBinding>,
    /// Every Secret's name and resource version: never its data, labels or annotations
    /// (`kubectl apply` keeps a copy of the data in an annotation).
    pub secrets: Scoped<PartialObjectMeta<Secret>>,
    /// Every ConfigMap's name and resource version, for the ones specs refer to.
    pub referenced_config_maps: Scoped<PartialObjectMeta<ConfigMap>>,
}

impl Stores {
    /// Waits until every cache has been listed once: a reconcile on half-filled caches would
    /// drop routes from a config, prune objects it cannot see, or roll pods for Secrets it
    /// has not seen yet.
    pub async fn wait_ready(&self) -> Result<()> {
        self.servers.wait_ready("McpServer").await?;
        self.routes.wait_ready("McpRoute").await?;
        self.service_accounts.wait_ready("ServiceAccount").await?;
        self.config_maps.wait_ready("ConfigMap").await?;
        self.services.wait_ready("Service").await?;
        self.persistent_volume_claims
            .wait_ready("PersistentVolumeClaim")
            .await?;
        self.deployments.wait_ready("Deployment").await?;
        self.horizontal_pod_autoscalers
            .wait_ready("HorizontalPodAutoscaler")
            .await?;
        self.pod_disruption_budgets
            .wait_ready("PodDisruptionBudget")
            .await?;
        self.network_policies.wait_ready("NetworkPolicy").await?;
        self.ingresses.wait_ready("Ingress").await?;
        if let Some(store) = &self.http_routes {
            store.wait_ready("HTTPRoute").await?;
        }
        if let Some(store) = &self.service_monitors {
            store.wait_ready("ServiceMonitor").await?;
        }
        self.cluster_role_bindings
            .wait_ready("ClusterRoleBinding")
            .await?;
        self.secrets.wait_ready("Secret metadata").await?;
        self.referenced_config_maps
            .wait_ready("ConfigMap metadata")
            .await
    }

    /// How many objects all caches hold together.
    pub fn len(&self) -> usize {
        self.servers.len()
            + self.routes.len()
            + self.service_accounts.len()
            + self.config_maps.len()
            + self.services.len()
            + self.persistent_volume_claims.len()
            + self.deployments.len()
            + self.horizontal_pod_autoscalers.len()
            + self.pod_disruption_budgets.len()
            + self.network_policies.len()
            + self.ingresses.len()
            + self.http_routes.as_ref().map_or(0, Scoped::len)
            + self.service_monitors.as_ref().map_or(0, Scoped::len)
            + self.cluster_role_bindings.len()
            + self.secrets.len()
            + self.referenced_config_maps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_from_lists() {
        assert_eq!(Scope::from_list::<&str>(&[]).unwrap(), Scope::All);
        assert_eq!(Scope::from_list(&[""]).unwrap(), Scope::All);
        assert_eq!(
            Scope::from_list(&["b,a", " a "]).unwrap(),
            Scope::Namespaces(vec!["a".into(), "b".into()])
        );
        assert!(Scope::from_list(&["Tools"]).is_err());
        assert!(Scope::from_list(&["-x"]).is_err());
    }

    #[test]
    fn partitions_and_membership() {
        assert_eq!(Scope::All.partitions(), vec![None]);
        let scope = Scope::Namespaces(vec!["a".into(), "b".into()]);
        assert_eq!(
            scope.partitions(),
            vec![Some("a".to_string()), Some("b".to_string())]
        );
        assert!(scope.contains("a"));
        assert!(!scope.contains("c"));
        assert!(Scope::All.contains("c"));
    }
}
