//! Which McpServer an event concerns: the mappers of the controllers' triggers, and what
//! they need to remember between reconciles (who refers to which Secret, which server a
//! route was last rendered into).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use kube::api::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use sluice_crds::{McpRoute, McpServer};

use crate::render::{MANAGED_BY, label};
use crate::render::{OnChange, Reference, public_hosts};

/// `(namespace, name)`.
type Key = (String, String);

/// What reconciles learned that the mappers need.
#[derive(Debug, Default)]
pub struct Index {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `(namespace, kind, name)` of a Secret or ConfigMap → servers referring to it.
    referrers: BTreeMap<(String, &'static str, String), BTreeSet<String>>,
    /// Server → what its last render referred to.
    references: BTreeMap<Key, Vec<Reference>>,
    /// Route → the server it was last rendered into.
    route_servers: BTreeMap<Key, String>,
}

impl Index {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what server `namespace/server` refers to and which routes it serves now.
    pub fn record(
        &self,
        namespace: &str,
        server: &str,
        references: &[Reference],
        routes: &[String],
    ) {
        let mut inner = self.inner();
        inner.forget_references(namespace, server);
        for reference in references {
            inner
                .referrers
                .entry((namespace.into(), reference.kind, reference.name.clone()))
                .or_default()
                .insert(server.into());
        }
        inner
            .references
            .insert((namespace.into(), server.into()), references.to_vec());
        inner
            .route_servers
            .retain(|(ns, _), s| !(ns == namespace && s == server));
        for route in routes {
            inner
                .route_servers
                .insert((namespace.into(), route.clone()), server.into());
        }
    }

    /// Forgets a deleted server.
    pub fn forget(&self, namespace: &str, server: &str) {
        let mut inner = self.inner();
        inner.forget_references(namespace, server);
        inner
            .route_servers
            .retain(|(ns, _), s| !(ns == namespace && s == server));
    }

    /// The servers whose last render referred to `kind namespace/name`.
    pub fn referrers(&self, namespace: &str, kind: &'static str, name: &str) -> Vec<String> {
        self.inner()
            .referrers
            .get(&(namespace.into(), kind, name.into()))
            .map(|servers| servers.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// What server `namespace/server` referred to last time, rollout-relevant or not.
    pub fn references(&self, namespace: &str, server: &str) -> Vec<Reference> {
        self.inner()
            .references
            .get(&(namespace.into(), server.into()))
            .cloned()
            .unwrap_or_default()
    }

    /// The server route `namespace/route` was last rendered into.
    pub fn route_server(&self, namespace: &str, route: &str) -> Option<String> {
        self.inner()
            .route_servers
            .get(&(namespace.into(), route.into()))
            .cloned()
    }
}

impl Inner {
    fn forget_references(&mut self, namespace: &str, server: &str) {
        if let Some(old) = self.references.remove(&(namespace.into(), server.into())) {
            for reference in old {
                let key = (namespace.to_string(), reference.kind, reference.name);
                if let Some(servers) = self.referrers.get_mut(&key) {
                    servers.remove(server);
                    if servers.is_empty() {
                        self.referrers.remove(&key);
                    }
                }
            }
        }
    }
}

/// The Secrets and ConfigMaps whose version goes into the pod's restart hash.
pub fn rollout_references(references: &[Reference]) -> impl Iterator<Item = &Reference> {
    references
        .iter()
        .filter(|r| r.on_change == OnChange::Rollout)
}

// === mappers ===

/// The server an object of the operator's belongs to, by its labels: `sluice.dev/server`, in
/// the object's namespace (or, for a cluster-scoped object, in `sluice.dev/namespace`).
/// Objects without `app.kubernetes.io/managed-by: sluice-operator` belong to none.
pub fn server_of(metadata: &ObjectMeta) -> Option<ObjectRef<McpServer>> {
    let labels = metadata.labels.as_ref()?;
    if labels.get(label::MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    let server = labels.get(label::SERVER)?;
    let namespace = metadata
        .namespace
        .as_ref()
        .or_else(|| labels.get(label::NAMESPACE))?;
    Some(ObjectRef::new(server).within(namespace))
}

/// The servers a route event concerns: the one it names, the one it was last rendered into
/// (it may have moved), and those whose routes claim one of its public hosts at its prefix
/// (a conflict between them may now be settled differently).
pub fn servers_of_route(
    route: &McpRoute,
    routes: &[std::sync::Arc<McpRoute>],
    index: &Index,
) -> Vec<ObjectRef<McpServer>> {
    let Some(namespace) = route.metadata.namespace.as_deref() else {
        return Vec::new();
    };
    let mut servers = BTreeSet::new();
    servers.insert((namespace.to_string(), route.spec.server_ref.name.clone()));
    if let Some(name) = route.metadata.name.as_deref()
        && let Some(previous) = index.route_server(namespace, name)
    {
        servers.insert((namespace.to_string(), previous));
    }
    let hosts: BTreeSet<&str> = public_hosts(route).iter().map(String::as_str).collect();
    if !hosts.is_empty() {
        for other in routes {
            let shares = other.spec.path_prefix == route.spec.path_prefix
                && public_hosts(other)
                    .iter()
                    .any(|h| hosts.contains(h.as_str()));
            if shares && let Some(ns) = other.metadata.namespace.clone() {
                servers.insert((ns, other.spec.server_ref.name.clone()));
            }
        }
    }
    servers
        .into_iter()
        .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
        .collect()
}

/// The servers whose routes are named like server `metadata` (in its namespace): their
/// route's Service would take the server's name, so a server coming or going changes them.
pub fn servers_with_route_named(
    metadata: &ObjectMeta,
    routes: &[std::sync::Arc<McpRoute>],
) -> Vec<ObjectRef<McpServer>> {
    let (Some(namespace), Some(name)) = (metadata.namespace.as_deref(), metadata.name.as_deref())
    else {
        return Vec::new();
    };
    routes
        .iter()
        .filter(|r| {
            r.metadata.namespace.as_deref() == Some(namespace)
                && r.metadata.name.as_deref() == Some(name)
        })
        .map(|r| ObjectRef::new(&r.spec.server_ref.name).within(namespace))
        .collect()
}

/// The routes that name server `metadata`.
pub fn routes_of_server(
    metadata: &ObjectMeta,
    routes: &[std::sync::Arc<McpRoute>],
) -> Vec<ObjectRef<McpRoute>> {
    let (Some(namespace), Some(name)) = (metadata.namespace.as_deref(), metadata.name.as_deref())
    else {
        return Vec::new();
    };
    routes
        .iter()
        .filter(|r| {
            r.metadata.namespace.as_deref() == Some(namespace) && r.spec.server_ref.name == name
        })
        .filter_map(|r| Some(ObjectRef::new(r.metadata.name.as_deref()?).within(namespace)))
        .collect()
}

/// The servers that refer to Secret or ConfigMap `metadata`.
pub fn referrers_of(
    kind: &'static str,
    metadata: &ObjectMeta,
    index: &Index,
) -> Vec<ObjectRef<McpServer>> {
    let (Some(namespace), Some(name)) = (metadata.namespace.as_deref(), metadata.name.as_deref())
    else {
        return Vec::new();
    };
    index
        .referrers(namespace, kind, name)
        .into_iter()
        .map(|server| ObjectRef::new(&server).within(namespace))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn meta(namespace: Option<&str>, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(Into::into),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    fn route(
        namespace: &str,
        name: &str,
        server: &str,
        hosts: &[&str],
        prefix: &str,
    ) -> Arc<McpRoute> {
        let mut spec = json!({"serverRef": {"name": server}, "pathPrefix": prefix});
        if !hosts.is_empty() {
            spec["hostnames"] = json!(hosts);
            spec["expose"] = json!({"ingress": {}});
        }
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "McpRoute",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }))
            .unwrap(),
        )
    }

    fn names(refs: Vec<ObjectRef<McpServer>>) -> Vec<String> {
        refs.into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect()
    }

    #[test]
    fn labelled_objects_map_to_their_server() {
        let ours = meta(
            Some("tools"),
            "phab",
            &[(label::MANAGED_BY, MANAGED_BY), (label::SERVER, "phab")],
        );
        assert_eq!(
            names(server_of(&ours).into_iter().collect()),
            ["tools/phab"]
        );
        let cluster = meta(
            None,
            "sluice-tools-phab-tokenreview",
            &[
                (label::MANAGED_BY, MANAGED_BY),
                (label::SERVER, "phab"),
                (label::NAMESPACE, "tools"),
            ],
        );
        assert_eq!(
            names(server_of(&cluster).into_iter().collect()),
            ["tools/phab"]
        );
    }

    #[test]
    fn objects_without_our_manager_label_map_to_nothing() {
        let theirs = meta(Some("tools"), "phab", &[(label::SERVER, "phab")]);
        assert!(server_of(&theirs).is_none());
        let other_manager = meta(
            Some("tools"),
            "phab",
            &[(label::MANAGED_BY, "helm"), (label::SERVER, "phab")],
        );
        assert!(server_of(&other_manager).is_none());
    }

    #[test]
    fn a_route_concerns_its_server_its_previous_server_and_rivals_for_its_host() {
        let index = Index::default();
        index.record("tools", "old", &[], &["r".to_string()]);
        let moved = route("tools", "r", "new", &["h.example.com"], "/ai");
        let routes = vec![
            moved.clone(),
            route("other", "rival", "theirs", &["h.example.com"], "/ai"),
            route(
                "other",
                "elsewhere",
                "unrelated",
                &["h.example.com"],
                "/else",
            ),
            route("tools", "plain", "quiet", &[], "/ai"),
        ];
        assert_eq!(
            names(servers_of_route(&moved, &routes, &index)),
            ["other/theirs", "tools/new", "tools/old"]
        );
    }

    #[test]
    fn servers_named_like_a_route_concern_its_server() {
        let routes = vec![
            route("tools", "phab", "main", &[], "/"),
            route("x", "phab", "y", &[], "/"),
        ];
        assert_eq!(
            names(servers_with_route_named(
                &meta(Some("tools"), "phab", &[]),
                &routes
            )),
            ["tools/main"]
        );
    }

    #[test]
    fn a_server_concerns_the_routes_naming_it() {
        let routes = vec![
            route("tools", "a", "phab", &[], "/"),
            route("tools", "b", "other", &[], "/"),
            route("x", "c", "phab", &[], "/"),
        ];
        let found: Vec<String> = routes_of_server(&meta(Some("tools"), "phab", &[]), &routes)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(found, ["a"]);
    }

    #[test]
    fn referrers_follow_the_last_render() {
        let index = Index::default();
        let secret = |name: &str, on_change| Reference {
            kind: "Secret",
            name: name.into(),
            on_change,
        };
        index.record("tools", "phab", &[secret("oauth", OnChange::Rollout)], &[]);
        index.record("tools", "other", &[secret("oauth", OnChange::Reload)], &[]);
        let oauth = meta(Some("tools"), "oauth", &[]);
        assert_eq!(
            names(referrers_of("Secret", &oauth, &index)),
            ["tools/other", "tools/phab"]
        );
        assert!(referrers_of("ConfigMap", &oauth, &index).is_empty());

        index.record("tools", "phab", &[secret("keys", OnChange::Reload)], &[]);
        assert_eq!(
            names(referrers_of("Secret", &oauth, &index)),
            ["tools/other"]
        );
        index.forget("tools", "other");
        assert!(referrers_of("Secret", &oauth, &index).is_empty());
        assert_eq!(index.references("tools", "phab").len(), 1);
    }
}
