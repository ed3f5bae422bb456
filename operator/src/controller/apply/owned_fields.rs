//! What the operator's applies own, and whether a rendered object still sets all of it.
//!
//! Server-side apply removes a field its applier owned and no longer applies, but `apply`
//! skips the request when the live object already holds every desired field: a field the
//! operator stops rendering (a toleration the user removed) would stay forever. The
//! operator's own `managedFields` entry says what it owns; a field there that the rendered
//! object no longer sets means the apply must be sent, so that the API server removes it.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use kube::api::ObjectMeta;
use serde_json::{Map, Value};

use crate::controller::FIELD_MANAGER;

/// Key fields the API server fills in when a keyed list item leaves them out, and with what:
/// a port's `protocol` is part of its key (`k:{"containerPort":8080,"protocol":"TCP"}`) even
/// when the applied item has none.
const KEY_DEFAULTS: &[(&str, &str)] = &[("protocol", "TCP")];

/// Whether `entry` records the operator's own applies: its field manager, operation `Apply`,
/// on the object itself (a status written through the subresource is another entry).
fn is_operators_apply(entry: &ManagedFieldsEntry) -> bool {
    entry.manager.as_deref() == Some(FIELD_MANAGER)
        && entry.operation.as_deref() == Some("Apply")
        && entry.subresource.as_deref().unwrap_or_default().is_empty()
}

/// The operator's apply entry as the caches keep it, `None` for any other entry: its manager
/// and operation, to be found again, and its fields as compact JSON text (a `FieldsV1`
/// holding a string). As a tree the fields would take ten times the memory — every map in
/// it is a B-tree node of its own, a Deployment's has some fifty — and they are read only
/// when an object looks unchanged, at most once per object and reconcile.
pub fn operators_apply_for_cache(entry: &ManagedFieldsEntry) -> Option<ManagedFieldsEntry> {
    if !is_operators_apply(entry) {
        return None;
    }
    let text = serde_json::to_string(&entry.fields_v1.as_ref()?.0).ok()?;
    Some(ManagedFieldsEntry {
        manager: entry.manager.clone(),
        operation: entry.operation.clone(),
        fields_v1: Some(FieldsV1(Value::String(text))),
        ..ManagedFieldsEntry::default()
    })
}

/// The fields (a FieldsV1 tree) the operator's applies own on the object `metadata` belongs
/// to, if it applied it: read from a cached object's text
/// ([`operators_apply_for_cache`]) or taken as they are from one fetched whole.
pub fn owned_by_operator(metadata: &ObjectMeta) -> Option<Cow<'_, Value>> {
    let fields = metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|entry| is_operators_apply(entry))?
        .fields_v1
        .as_ref()?;
    match &fields.0 {
        // Text the cache wrote from a JSON value: it parses.
        Value::String(text) => serde_json::from_str(text).ok().map(Cow::Owned),
        tree => Some(Cow::Borrowed(tree)),
    }
}

/// The first field of `owned` (a FieldsV1 tree) that `desired` does not set, spelt as in
/// FieldsV1 with dots between the steps (`f:spec.f:template.f:spec.f:tolerations`); `None`
/// when it sets them all.
///
/// A field is set when `desired` has it, whatever its value: an empty or null value is
/// applied, and owned, like any other (`emptyDir: {}`), so it is no reason to apply again;
/// a field owned below it is missing, though. Steps: `f:<name>` a field of a map,
/// `k:<json>` the item of a keyed list whose key fields hold those values, `v:<json>` an
/// item of a set, `i:<n>` an item by position, `.` the node itself (already found). A step
/// this does not understand counts as missing: an apply is always right, skipping one only
/// when sure.
pub fn first_unset(owned: &Value, desired: &Value) -> Option<String> {
    // `{}`: the node is owned as a whole (a leaf, an atomic list), nothing below it.
    let Value::Object(steps) = owned else {
        return None;
    };
    steps
        .iter()
        .filter(|(step, _)| step.as_str() != ".")
        .find_map(|(step, below)| match child(desired, step) {
            None => Some(step.clone()),
            Some(node) => first_unset(below, node).map(|rest| format!("{step}.{rest}")),
        })
}

/// The node of `desired` that the FieldsV1 step `step` names, if it is there.
fn child<'a>(desired: &'a Value, step: &str) -> Option<&'a Value> {
    if let Some(field) = step.strip_prefix("f:") {
        return desired.as_object()?.get(field);
    }
    let items = desired.as_array()?;
    if let Some(key) = step.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        return items.iter().find(|item| has_key(item, &key));
    }
    if let Some(value) = step.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        return items.iter().find(|item| **item == value);
    }
    let index: usize = step.strip_prefix("i:")?.parse().ok()?;
    items.get(index)
}

/// Whether the list item `item` has the key `key` (key field → value), a key field it leaves
/// out counting as its default.
fn has_key(item: &Value, key: &Map<String, Value>) -> bool {
    let Some(fields) = item.as_object() else {
        return false;
    };
    key.iter().all(|(name, want)| match fields.get(name) {
        Some(have) if !have.is_null() => have == want,
        _ => KEY_DEFAULTS
            .iter()
            .any(|(field, default)| field == name && want.as_str() == Some(default)),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn unset(owned: Value, desired: &Value) -> Option<String> {
        first_unset(&owned, desired)
    }

    /// The operator's entry on a Deployment it applied, as an API server writes it: nested
    /// maps, `.` where a node is owned itself, keyed containers, env and ports.
    fn deployment_fields() -> Value {
        json!({
            "f:metadata": {
                "f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}},
                "f:ownerReferences": {"k:{\"uid\":\"u-1\"}": {}},
            },
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:annotations": {"f:sluice.dev/restart-hash": {}}},
                    "f:spec": {
                        "f:containers": {
                            "k:{\"name\":\"conduit\"}": {
                                ".": {},
                                "f:name": {},
                                "f:env": {
                                    "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}},
                                    "k:{\"name\":\"B\"}": {
                                        ".": {},
                                        "f:name": {},
                                        "f:valueFrom": {"f:secretKeyRef": {}},
                                    },
                                },
                                "f:ports": {
                                    "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {
                                        ".": {},
                                        "f:containerPort": {},
                                    },
                                },
                                "f:resources": {"f:limits": {"f:cpu": {}}},
                            },
                        },
                        "f:tolerations": {},
                        "f:volumes": {"k:{\"name\":\"tmp\"}": {".": {}, "f:emptyDir": {}, "f:name": {}}},
                    },
                },
            },
        })
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "phab",
                "labels": {"app.kubernetes.io/managed-by": "sluice-operator"},
                "ownerReferences": [{"uid": "u-1", "name": "phab"}],
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"annotations": {"sluice.dev/restart-hash": "h"}},
                    "spec": {
                        "containers": [{
                            "name": "conduit",
                            "env": [
                                {"name": "A", "value": "1"},
                                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                            ],
                            "ports": [{"containerPort": 8080}],
                            "resources": {"limits": {"cpu": "1"}},
                        }],
                        "tolerations": [{"key": "a", "operator": "Exists"}],
                        "volumes": [{"name": "tmp", "emptyDir": {}}],
                    },
                },
            },
        })
    }

    #[test]
    fn what_was_applied_sets_every_field_it_owns() {
        assert_eq!(unset(deployment_fields(), &deployment()), None);
        // Nothing owned: nothing missing.
        assert_eq!(unset(json!({}), &deployment()), None);
    }

    #[test]
    fn a_removed_field_is_missing() {
        let mut desired = deployment();
        let pod = &mut desired["spec"]["template"]["spec"];
        pod.as_object_mut().unwrap().remove("tolerations");
        assert_eq!(
            unset(deployment_fields(), &desired).as_deref(),
            Some("f:spec.f:template.f:spec.f:tolerations")
        );
        let mut desired = deployment();
        desired["spec"].as_object_mut().unwrap().remove("replicas");
        assert_eq!(
            unset(deployment_fields(), &desired).as_deref(),
            Some("f:spec.f:replicas")
        );
    }

    #[test]
    fn a_removed_keyed_item_or_a_field_inside_one_is_missing() {
        let env = "/spec/template/spec/containers/0/env";
        let mut without_b = deployment();
        let list = without_b.pointer_mut(env).unwrap().as_array_mut().unwrap();
        list.retain(|item| item["name"] != "B");
        assert_eq!(
            unset(deployment_fields(), &without_b).as_deref(),
            Some(
                "f:spec.f:template.f:spec.f:containers.k:{\"name\":\"conduit\"}.f:env.k:{\"name\":\"B\"}"
            )
        );

        let mut without_value = deployment();
        let a = without_value.pointer_mut(&format!("{env}/0")).unwrap();
        a.as_object_mut().unwrap().remove("value");
        assert_eq!(
            unset(deployment_fields(), &without_value).as_deref(),
            Some(
                "f:spec.f:template.f:spec.f:containers.k:{\"name\":\"conduit\"}.f:env.k:{\"name\":\"A\"}.f:value"
            )
        );

        let mut without_limit = deployment();
        let limits = "/spec/template/spec/containers/0/resources/limits";
        without_limit
            .pointer_mut(limits)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("cpu");
        assert!(
            unset(deployment_fields(), &without_limit)
                .is_some_and(|path| path.ends_with("f:resources.f:limits.f:cpu"))
        );
    }

    #[test]
    fn keyed_items_are_found_by_their_key_not_their_place() {
        let mut reordered = deployment();
        let env = "/spec/template/spec/containers/0/env";
        reordered
            .pointer_mut(env)
            .unwrap()
            .as_array_mut()
            .unwrap()
            .reverse();
        assert_eq!(unset(deployment_fields(), &reordered), None);
        // Another port: the owned one (8080/TCP, its protocol defaulted) is gone.
        let mut other_port = deployment();
        *other_port
            .pointer_mut("/spec/template/spec/containers/0/ports/0/containerPort")
            .unwrap() = json!(9090);
        assert!(unset(deployment_fields(), &other_port).is_some_and(|path| {
            path.ends_with("f:ports.k:{\"containerPort\":8080,\"protocol\":\"TCP\"}")
        }));
        // The same port over UDP is another item too.
        let mut udp = deployment();
        *udp.pointer_mut("/spec/template/spec/containers/0/ports/0")
            .unwrap() = json!({"containerPort": 8080, "protocol": "UDP"});
        assert!(unset(deployment_fields(), &udp).is_some());
    }

    #[test]
    fn empty_values_are_set_but_fields_owned_below_them_are_not() {
        // `emptyDir: {}` is applied, and owned, as it is: no reason to apply again.
        let owned = json!({"f:spec": {"f:emptyDir": {}, "f:nodeSelector": {"f:zone": {}}}});
        let desired = json!({"spec": {"emptyDir": {}, "nodeSelector": {"zone": "a"}}});
        assert_eq!(unset(owned.clone(), &desired), None);
        for node_selector in [json!({}), Value::Null, json!("zone")] {
            let desired = json!({"spec": {"emptyDir": {}, "nodeSelector": node_selector}});
            assert_eq!(
                unset(owned.clone(), &desired).as_deref(),
                Some("f:spec.f:nodeSelector.f:zone")
            );
        }
    }

    #[test]
    fn set_items_and_items_by_position() {
        let owned = json!({"f:metadata": {"f:finalizers": {
            ".": {},
            "v:\"sluice.dev/a\"": {},
            "v:\"sluice.dev/b\"": {},
        }}});
        let both = json!({"metadata": {"finalizers": ["sluice.dev/b", "sluice.dev/a"]}});
        assert_eq!(unset(owned.clone(), &both), None);
        let one = json!({"metadata": {"finalizers": ["sluice.dev/a"]}});
        assert_eq!(
            unset(owned, &one).as_deref(),
            Some("f:metadata.f:finalizers.v:\"sluice.dev/b\"")
        );

        let owned = json!({"f:args": {"i:1": {}}});
        assert_eq!(unset(owned.clone(), &json!({"args": ["a", "b"]})), None);
        assert_eq!(
            unset(owned, &json!({"args": ["a"]})).as_deref(),
            Some("f:args.i:1")
        );
    }

    #[test]
    fn a_step_it_cannot_read_counts_as_missing() {
        let desired = json!({"spec": {"ports": [{"port": 80}]}});
        for step in ["x:port", "k:{not json", "i:first"] {
            let owned = json!({"f:spec": {"f:ports": {step: {}}}});
            assert!(unset(owned, &desired).is_some(), "{step}");
        }
    }

    #[test]
    fn the_operators_entry_is_its_apply_on_the_object_itself() {
        let entry =
            |manager: &str, operation: &str, subresource: Option<&str>| ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some(operation.into()),
                subresource: subresource.map(str::to_string),
                fields_v1: Some(FieldsV1(json!({"f:spec": {}}))),
                ..ManagedFieldsEntry::default()
            };
        assert!(is_operators_apply(&entry(FIELD_MANAGER, "Apply", None)));
        assert!(is_operators_apply(&entry(FIELD_MANAGER, "Apply", Some(""))));
        assert!(!is_operators_apply(&entry(
            FIELD_MANAGER,
            "Apply",
            Some("status")
        )));
        assert!(!is_operators_apply(&entry(FIELD_MANAGER, "Update", None)));
        assert!(!is_operators_apply(&entry("kubectl", "Apply", None)));

        let metadata = ObjectMeta {
            managed_fields: Some(vec![
                entry(FIELD_MANAGER, "Apply", Some("status")),
                entry(FIELD_MANAGER, "Apply", None),
            ]),
            ..ObjectMeta::default()
        };
        assert_eq!(
            owned_by_operator(&metadata).as_deref(),
            Some(&json!({"f:spec": {}}))
        );
        assert_eq!(owned_by_operator(&ObjectMeta::default()), None);
    }

    #[test]
    fn the_cache_keeps_the_operators_fields_as_text_and_reads_them_back() {
        let fields = deployment_fields();
        let fetched = ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            api_version: Some("apps/v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields.clone())),
            ..ManagedFieldsEntry::default()
        };
        let cached = operators_apply_for_cache(&fetched).unwrap();
        assert!(matches!(
            &cached.fields_v1,
            Some(FieldsV1(Value::String(_)))
        ));
        assert_eq!((&cached.api_version, &cached.fields_type), (&None, &None));
        let metadata = ObjectMeta {
            managed_fields: Some(vec![cached]),
            ..ObjectMeta::default()
        };
        let owned = owned_by_operator(&metadata).unwrap();
        assert!(matches!(owned, Cow::Owned(_)));
        assert_eq!(*owned, fields);
        assert_eq!(first_unset(&owned, &deployment()), None);

        let status = ManagedFieldsEntry {
            subresource: Some("status".into()),
            ..fetched
        };
        assert_eq!(operators_apply_for_cache(&status), None);
    }
}
