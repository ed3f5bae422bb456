//! The resource types the server serves: built-in kinds plus the versions of installed CRDs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// When `metadata.generation` moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generation {
    /// The kind has no generation (ConfigMap, Secret, Lease, ...).
    None,
    /// Starts at 1; bumped when anything but metadata (and status, if it is a subresource) changes.
    Spec,
    /// As `Spec`, and also when annotations change (Deployments: kube's strategy does this).
    SpecAndAnnotations,
}

/// Which names `metadata.name` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1035 label (Services).
    Label1035,
    /// RFC 1123 label (Namespaces).
    Label1123,
    /// Any path segment (RBAC kinds: `system:controller:foo`).
    PathSegment,
}

/// Where the `/scale` subresource reads and writes (JSON pointers into the object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScalePaths {
    /// The desired count: what a scale write sets.
    pub spec_replicas: String,
    /// The observed count.
    pub status_replicas: String,
    /// The pods' selector as `status.selector` reports it.
    pub selector: ScaleSelector,
}

/// Where a scale's `status.selector` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScaleSelector {
    /// A custom resource's `labelSelectorPath`: a string in the object (absent: none).
    Path(Option<String>),
    /// The workload kinds: `spec.selector`, a LabelSelector, written out as a string.
    SpecSelector,
}

impl ScalePaths {
    /// The workload kinds' scale (Deployment, StatefulSet, ReplicaSet).
    fn workload() -> Self {
        Self {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            selector: ScaleSelector::SpecSelector,
        }
    }
}

/// One resource at one group/version.
#[derive(Debug, Clone)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    /// The version objects are stored at; they are served at `version` by rewriting `apiVersion`.
    pub storage_version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Has a `/status` subresource: main-resource writes keep status, status writes keep the rest.
    pub status: bool,
    /// Has a `/scale` subresource, and where its numbers live in the object.
    pub scale: Option<ScalePaths>,
    pub generation: Generation,
    /// PUT without `metadata.resourceVersion` is allowed (built-ins) or refused (custom resources).
    pub unconditional_update: bool,
    pub name_rule: NameRule,
    /// Field selectors accepted besides `metadata.name` and `metadata.namespace`.
    pub selectable_fields: Vec<String>,
    /// The CRD's `openAPIV3Schema` for this version (custom resources only).
    pub schema: Option<Arc<Value>>,
    /// A custom resource (no strategic merge patch).
    pub custom: bool,
    /// The CRD that defines it (custom resources only).
    pub crd_name: Option<String>,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `apiVersion` objects are stored with.
    pub(crate) fn storage_api_version(&self) -> String {
        if self.group.is_empty() {
            self.storage_version.clone()
        } else {
            format!("{}/{}", self.group, self.storage_version)
        }
    }

    /// The storage key shared by all versions: `deployments.apps`, `configmaps`.
    pub(crate) fn key(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub(crate) fn subject<'a>(&'a self, name: &'a str) -> crate::status::Subject<'a> {
        crate::status::Subject {
            resource: &self.plural,
            group: &self.group,
            kind: &self.kind,
            name,
        }
    }
}

/// Everything served, by group, version and plural.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
    /// Preferred version per group (built-ins: their one version; CRDs: the storage version).
    preferred: BTreeMap<String, String>,
}

impl Catalog {
    /// The built-in kinds.
    pub(crate) fn with_builtins() -> Self {
        let mut catalog = Self::default();
        for ty in builtin_types() {
            catalog.insert(ty);
        }
        catalog
    }

    pub(crate) fn insert(&mut self, ty: ResourceType) {
        self.preferred
            .entry(ty.group.clone())
            .or_insert_with(|| ty.storage_version.clone());
        self.types.insert(
            (ty.group.clone(), ty.version.clone(), ty.plural.clone()),
            Arc::new(ty),
        );
    }

    /// Removes every version a CRD defined.
    pub(crate) fn remove_crd(&mut self, crd_name: &str) -> Vec<Arc<ResourceType>> {
        let gone: Vec<_> = self
            .types
            .iter()
            .filter(|(_, ty)| ty.crd_name.as_deref() == Some(crd_name))
            .map(|(k, _)| k.clone())
            .collect();
        let removed: Vec<_> = gone.iter().filter_map(|k| self.types.remove(k)).collect();
        for ty in &removed {
            let group_left = self.types.keys().any(|(g, _, _)| *g == ty.group);
            if !group_left {
                self.preferred.remove(&ty.group);
            }
        }
        removed
    }

    pub(crate) fn set_preferred(&mut self, group: &str, version: &str) {
        self.preferred
            .insert(group.to_string(), version.to_string());
    }

    pub(crate) fn get(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Any served version of the resource stored under `key`.
    pub(crate) fn by_key(&self, key: &str) -> Option<Arc<ResourceType>> {
        self.types.values().find(|ty| ty.key() == key).cloned()
    }

    /// Every served resource type.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// Groups other than core, each with its versions (preferred first).
    pub(crate) fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (g, v, _) in self.types.keys() {
            if g.is_empty() {
                continue;
            }
            let versions = groups.entry(g.clone()).or_default();
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
        groups
            .into_iter()
            .map(|(g, mut versions)| {
                if let Some(pref) = self.preferred.get(&g)
                    && let Some(i) = versions.iter().position(|v| v == pref)
                {
                    let v = versions.remove(i);
                    versions.insert(0, v);
                }
                (g, versions)
            })
            .collect()
    }

    /// The resources of one group/version.
    pub(crate) fn resources(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|((g, v, _), _)| g == group && v == version)
            .map(|(_, ty)| ty.clone())
            .collect()
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    status: bool,
    generation: Generation,
    names: NameRule,
    fields: &'static [&'static str],
}

const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

const EVENTS_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "type",
];

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
];

fn builtin_types() -> Vec<ResourceType> {
    use Generation::{None as NoGen, Spec, SpecAndAnnotations};
    use NameRule::{Label1035, Label1123, PathSegment, Subdomain};
    let b = |group, version, kind, plural, short, namespaced, status, generation, names, fields| {
        Builtin {
            group,
            version,
            kind,
            plural,
            short,
            namespaced,
            status,
            generation,
            names,
            fields,
        }
    };
    #[rustfmt::skip]
    let table = [
        b("", "v1", "Namespace", "namespaces", &["ns"][..], false, true, NoGen, Label1123, &["status.phase"][..]),
        b("", "v1", "Pod", "pods", &["po"], true, true, NoGen, Subdomain, POD_FIELDS),
        b("", "v1", "ServiceAccount", "serviceaccounts", &["sa"], true, false, NoGen, Subdomain, &[]),
        b("", "v1", "ConfigMap", "configmaps", &["cm"], true, false, NoGen, Subdomain, &[]),
        b("", "v1", "Secret", "secrets", &[], true, false, NoGen, Subdomain, &["type"]),
        b("", "v1", "Service", "services", &["svc"], true, true, NoGen, Label1035, &[]),
        b("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", &["pvc"], true, true, NoGen, Subdomain, &[]),
        b("", "v1", "Event", "events", &["ev"], true, false, NoGen, Subdomain, CORE_EVENT_FIELDS),
        b("apps", "v1", "Deployment", "deployments", &["deploy"], true, true, SpecAndAnnotations, Subdomain, &[]),
        b("apps", "v1", "StatefulSet", "statefulsets", &["sts"], true, true, Spec, Subdomain, &[]),
        b("apps", "v1", "DaemonSet", "daemonsets", &["ds"], true, true, Spec, Subdomain, &[]),
        b("apps", "v1", "ReplicaSet", "replicasets", &["rs"], true, true, Spec, Subdomain, &[]),
        b("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["hpa"], true, true, Spec, Subdomain, &[]),
        b("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", &["pdb"], true, true, Spec, Subdomain, &[]),
        b("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", &["netpol"], true, false, Spec, Subdomain, &[]),
        b("networking.k8s.io", "v1", "Ingress", "ingresses", &["ing"], true, true, Spec, Subdomain, &[]),
        b("networking.k8s.io", "v1", "IngressClass", "ingressclasses", &[], false, false, Spec, Subdomain, &[]),
        b("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", &[], false, false, NoGen, PathSegment, &[]),
        b("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", &[], false, false, NoGen, PathSegment, &[]),
        b("rbac.authorization.k8s.io", "v1", "Role", "roles", &[], true, false, NoGen, PathSegment, &[]),
        b("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", &[], true, false, NoGen, PathSegment, &[]),
        b("coordination.k8s.io", "v1", "Lease", "leases", &[], true, false, NoGen, Subdomain, &[]),
        b("events.k8s.io", "v1", "Event", "events", &["ev"], true, false, NoGen, Subdomain, EVENTS_FIELDS),
        b("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", &["crd", "crds"], false, true, Spec, Subdomain, &[]),
    ];
    table
        .into_iter()
        .map(|b| ResourceType {
            group: b.group.into(),
            version: b.version.into(),
            storage_version: b.version.into(),
            kind: b.kind.into(),
            list_kind: format!("{}List", b.kind),
            plural: b.plural.into(),
            singular: b.kind.to_ascii_lowercase(),
            short_names: b.short.iter().map(|s| (*s).into()).collect(),
            categories: if matches!(
                b.plural,
                "pods" | "services" | "deployments" | "statefulsets" | "daemonsets" | "replicasets"
            ) {
                vec!["all".into()]
            } else {
                Vec::new()
            },
            namespaced: b.namespaced,
            status: b.status,
            scale: matches!(b.plural, "deployments" | "statefulsets" | "replicasets")
                .then(ScalePaths::workload),
            generation: b.generation,
            unconditional_update: true,
            name_rule: b.names,
            selectable_fields: b.fields.iter().map(|s| (*s).into()).collect(),
            schema: None,
            custom: false,
            crd_name: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_served_under_their_group_version() {
        let catalog = Catalog::with_builtins();
        let deploy = catalog
            .get("apps", "v1", "deployments")
            .expect("deployments served");
        assert_eq!(deploy.kind, "Deployment");
        assert_eq!(deploy.key(), "deployments.apps");
        assert!(catalog.get("", "v1", "configmaps").is_some());
        assert!(
            catalog
                .get("gateway.networking.k8s.io", "v1", "httproutes")
                .is_none()
        );
        let groups = catalog.groups();
        assert!(groups.iter().any(|(g, v)| g == "policy" && v == &["v1"]));
        assert!(!groups.iter().any(|(g, _)| g.is_empty()));
    }
}
