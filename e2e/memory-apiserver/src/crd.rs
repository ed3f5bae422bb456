//! CustomResourceDefinitions: which resource types a CRD object serves, and the status the server gives it.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::catalog::{Generation, NameRule, ResourceType, ScalePaths, ScaleSelector};
use crate::status::Cause;

/// The resource types (one per served version) a CRD defines, or why the CRD is invalid.
pub(crate) fn resource_types(crd: &Value) -> Result<Vec<ResourceType>, Vec<Cause>> {
    let mut causes = Vec::new();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let group = text(&spec, "group");
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    let plural = text(&names, "plural");
    let kind = text(&names, "kind");
    let scope = text(&spec, "scope");
    if group.is_empty() {
        causes.push(Cause::required("spec.group", ""));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    }
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::not_supported(
            "spec.scope",
            &json!(scope),
            &[json!("Cluster"), json!("Namespaced")],
        ));
    }
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            format!("must be spec.names.plural+\".\"+spec.group ({plural}.{group})"),
        ));
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage: Vec<String> = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| text(v, "name"))
        .collect();
    if !versions.is_empty() && storage.len() != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!(storage),
            "must have exactly one version marked as storage version",
        ));
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let storage_version = storage.concat();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let singular = match text(&names, "singular") {
        s if s.is_empty() => kind.to_ascii_lowercase(),
        s => s,
    };
    let list_kind = match text(&names, "listKind") {
        s if s.is_empty() => format!("{kind}List"),
        s => s,
    };
    let mut types = Vec::new();
    for v in &versions {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let selectable = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        types.push(ResourceType {
            group: group.clone(),
            version: text(v, "name"),
            storage_version: storage_version.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            namespaced: scope == "Namespaced",
            status: v.pointer("/subresources/status").is_some(),
            scale: v.pointer("/subresources/scale").map(|scale| ScalePaths {
                spec_replicas: json_path_pointer(scale, "specReplicasPath"),
                status_replicas: json_path_pointer(scale, "statusReplicasPath"),
                selector: ScaleSelector::Path(
                    scale
                        .get("labelSelectorPath")
                        .map(|_| json_path_pointer(scale, "labelSelectorPath")),
                ),
            }),
            generation: Generation::Spec,
            unconditional_update: false,
            name_rule: NameRule::Subdomain,
            selectable_fields: selectable,
            schema: v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
            custom: true,
            crd_name: Some(name.to_string()),
        });
    }
    Ok(types)
}

/// A scale path (`.spec.replicas`, the simple JSONPath CRDs allow there) as a JSON pointer.
fn json_path_pointer(scale: &Value, field: &str) -> String {
    let path = scale.get(field).and_then(Value::as_str).unwrap_or_default();
    path.split('.')
        .filter(|segment| !segment.is_empty())
        .fold(String::new(), |pointer, segment| pointer + "/" + segment)
}

/// The status the apiextensions controllers would write: names accepted, established.
pub(crate) fn established_status(crd: &Value, now: &str) -> Value {
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({
            "type": type_,
            "status": "True",
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        })
    };
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": storage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(scope: &str) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "scope": scope,
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1beta1", "served": false, "storage": false}
                ]
            }
        })
    }

    #[test]
    fn served_versions_become_types() {
        let types = resource_types(&crd("Namespaced")).expect("valid");
        assert_eq!(types.len(), 1);
        let ty = &types[0];
        assert_eq!(
            (ty.kind.as_str(), ty.list_kind.as_str()),
            ("Widget", "WidgetList")
        );
        assert!(ty.namespaced && ty.status && ty.custom);
        assert_eq!(ty.short_names, ["wd"]);
    }

    #[test]
    fn a_bad_scope_is_refused() {
        let causes = resource_types(&crd("Galaxy")).expect_err("invalid");
        assert_eq!(causes[0].field, "spec.scope");
    }
}
