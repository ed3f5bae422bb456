//! Where built-in kinds hold quantities, and the pass that rewrites each into the form a real
//! API server stores ([`crate::quantity`]), as its decoding and `SetDefaults_ResourceList` do.
//!
//! Known by position, from the Go types: a label or ConfigMap value that merely looks like a
//! number is a string and stays as written.

use serde_json::Value;

use crate::catalog::ResourceType;
use crate::quantity::{self, Precision, Unusable};
use crate::status::ApiError;

const EVERY_ITEM: &str = "[]";
const EVERY_VALUE: &str = "*";

/// Where quantities sit, as dotted paths: `name[]` is every item of the list `name`, `*` every
/// value of a map. A path ending in `*` is a `ResourceList`, its entries rounded up to a milli.
const POD_SPEC: &[&str] = &[
    "containers[].resources.limits.*",
    "containers[].resources.requests.*",
    "containers[].env[].valueFrom.resourceFieldRef.divisor",
    "initContainers[].resources.limits.*",
    "initContainers[].resources.requests.*",
    "initContainers[].env[].valueFrom.resourceFieldRef.divisor",
    "ephemeralContainers[].resources.limits.*",
    "ephemeralContainers[].resources.requests.*",
    "ephemeralContainers[].env[].valueFrom.resourceFieldRef.divisor",
    "overhead.*",
    "resources.limits.*",
    "resources.requests.*",
    "volumes[].emptyDir.sizeLimit",
    "volumes[].downwardAPI.items[].resourceFieldRef.divisor",
    "volumes[].projected.sources[].downwardAPI.items[].resourceFieldRef.divisor",
    "volumes[].ephemeral.volumeClaimTemplate.spec.resources.limits.*",
    "volumes[].ephemeral.volumeClaimTemplate.spec.resources.requests.*",
];

/// A PersistentVolumeClaim spec's quantities, relative to it.
const CLAIM_SPEC: &[&str] = &["resources.limits.*", "resources.requests.*"];

/// A PersistentVolumeClaim status's quantities, relative to it.
const CLAIM_STATUS: &[&str] = &["capacity.*", "allocatedResources.*"];

/// A HorizontalPodAutoscaler's metric targets (autoscaling/v2), relative to its spec.
const AUTOSCALER_SPEC: &[&str] = &[
    "metrics[].*.target.value",
    "metrics[].*.target.averageValue",
];

/// Every quantity field of an object of type `ty`, as a dotted path from its root.
fn fields(ty: &ResourceType) -> Vec<String> {
    let under = |root: &str, fields: &[&str]| {
        fields
            .iter()
            .map(|path| format!("{root}.{path}"))
            .collect::<Vec<_>>()
    };
    let pod_template = "spec.template.spec";
    match (ty.group.as_str(), ty.plural.as_str()) {
        ("", "pods") => under("spec", POD_SPEC),
        ("apps", "deployments" | "daemonsets" | "replicasets") | ("batch", "jobs") => {
            under(pod_template, POD_SPEC)
        }
        ("apps", "statefulsets") => [
            under(pod_template, POD_SPEC),
            under("spec.volumeClaimTemplates[].spec", CLAIM_SPEC),
        ]
        .concat(),
        ("", "persistentvolumeclaims") => {
            [under("spec", CLAIM_SPEC), under("status", CLAIM_STATUS)].concat()
        }
        ("autoscaling", "horizontalpodautoscalers") => under("spec", AUTOSCALER_SPEC),
        _ => Vec::new(),
    }
}

/// A dotted path's steps: a key, [`EVERY_ITEM`] of a list or [`EVERY_VALUE`] of a map.
fn steps(path: &str) -> Vec<&str> {
    path.split('.')
        .flat_map(|segment| match segment.strip_suffix(EVERY_ITEM) {
            Some(list) => vec![list, EVERY_ITEM],
            None => vec![segment],
        })
        .collect()
}

/// Rewrites every quantity of `obj` as a real API server stores it: a string in canonical
/// form (a JSON number becomes one too). A malformed quantity is refused (400), as the real
/// server's decoding refuses it; one beyond this stand-in's range is kept as written.
pub(crate) fn canonicalize(ty: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    for path in fields(ty) {
        let precision = if path.ends_with(EVERY_VALUE) {
            Precision::Milli
        } else {
            Precision::Nano
        };
        let mut refused = None;
        for_each_at(obj, &steps(&path), &mut |value| {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                _ => {
                    refused.get_or_insert(Unusable::Malformed(
                        "quantities must be strings or numbers",
                    ));
                    return;
                }
            };
            match quantity::canonical(&text, precision) {
                Ok(canonical) => *value = Value::String(canonical),
                Err(Unusable::OutOfRange) => {}
                Err(malformed) => {
                    refused.get_or_insert(malformed);
                }
            }
        });
        if let Some(Unusable::Malformed(why)) = refused {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {why}",
                kind = ty.kind,
                version = ty.version,
            )));
        }
    }
    Ok(())
}

/// Calls `visit` on every value at `path` under `value`.
fn for_each_at(value: &mut Value, path: &[&str], visit: &mut dyn FnMut(&mut Value)) {
    let Some((first, rest)) = path.split_first() else {
        visit(value);
        return;
    };
    match (*first, value) {
        (EVERY_ITEM, Value::Array(items)) => {
            for item in items {
                for_each_at(item, rest, visit);
            }
        }
        (EVERY_VALUE, Value::Object(map)) => {
            for item in map.values_mut() {
                for_each_at(item, rest, visit);
            }
        }
        (key, Value::Object(map)) => {
            if let Some(item) = map.get_mut(key) {
                for_each_at(item, rest, visit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalog::Catalog;

    fn ty(group: &str, plural: &str) -> std::sync::Arc<ResourceType> {
        Catalog::with_builtins().get(group, "v1", plural).unwrap()
    }

    #[test]
    fn a_deployments_pod_template_is_canonicalised_where_it_holds_quantities() {
        let mut obj = json!({
            "metadata": {"labels": {"cpu": "0.5"}},
            "spec": {"template": {
                "metadata": {"annotations": {"memory": "1024Mi"}},
                "spec": {
                    "containers": [{
                        "name": "a",
                        "resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"},
                                      "limits": {"cpu": 2, "memory": "1.5Gi"}},
                        "env": [{"name": "N", "value": "1000m"},
                                {"name": "C", "valueFrom": {"resourceFieldRef": {
                                    "resource": "limits.cpu", "divisor": "1000m"}}}],
                        "args": ["0.5"],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1024Mi"}},
                                {"name": "cfg", "configMap": {"name": "x"}}],
                },
            }},
        });
        canonicalize(&ty("apps", "deployments"), &mut obj).unwrap();
        let pod = &obj["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["resources"],
            json!({"requests": {"cpu": "500m", "memory": "1Gi"},
                   "limits": {"cpu": "2", "memory": "1536Mi"}})
        );
        assert_eq!(pod["containers"][0]["env"][0]["value"], "1000m");
        assert_eq!(
            pod["containers"][0]["env"][1]["valueFrom"]["resourceFieldRef"]["divisor"],
            "1"
        );
        assert_eq!(pod["containers"][0]["args"], json!(["0.5"]));
        assert_eq!(pod["volumes"][0]["emptyDir"]["sizeLimit"], "1Gi");
        // Labels and annotations are strings, whatever they look like.
        assert_eq!(obj["metadata"]["labels"]["cpu"], "0.5");
        assert_eq!(
            obj["spec"]["template"]["metadata"]["annotations"]["memory"],
            "1024Mi"
        );
    }

    #[test]
    fn a_claims_requests_are_canonicalised_and_rounded_to_a_milli() {
        let mut claim = json!({"spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1024Mi", "odd": "100u"}},
        }});
        canonicalize(&ty("", "persistentvolumeclaims"), &mut claim).unwrap();
        assert_eq!(
            claim["spec"]["resources"]["requests"],
            json!({"storage": "1Gi", "odd": "1m"})
        );
    }

    #[test]
    fn a_malformed_quantity_is_refused_and_other_kinds_are_untouched() {
        let mut obj = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "half"}}},
        ]}}}});
        let error = canonicalize(&ty("apps", "deployments"), &mut obj).unwrap_err();
        assert!(
            error.to_status()["message"]
                .as_str()
                .unwrap()
                .contains("Deployment in version \"v1\" cannot be handled as a Deployment"),
            "{error:?}"
        );
        let mut config =
            json!({"data": {"spec": "0.5"}, "spec": {"resources": {"requests": {"cpu": "0.5"}}}});
        let before = config.clone();
        canonicalize(&ty("", "configmaps"), &mut config).unwrap();
        assert_eq!(config, before);
    }
}
