//! The API field reference (docs/api-reference.md), generated from the CRD schemas.
//!
//! Generated from the same schema the API server enforces, so the reference cannot drift from
//! what `kubectl explain` shows; `operator/tests/api_reference.rs` keeps the committed file
//! equal to this output.

use std::fmt::Write as _;

use serde_json::Value;

/// Why the reference could not be generated (a CRD without a usable schema).
#[derive(Debug, thiserror::Error)]
#[error("failed to generate the API reference: {0}")]
pub struct ApiReferenceError(String);

/// Fields whose type is a Kubernetes built-in: the reference names the type instead of
/// descending into it (`kubectl explain` has those).
pub const BUILT_IN_TYPES: &[(&str, &str, &str)] = &[
    (
        "McpServer",
        "spec.imagePullSecrets",
        "[]LocalObjectReference",
    ),
    ("McpServer", "spec.resources", "ResourceRequirements"),
    ("McpServer", "spec.proxy.resources", "ResourceRequirements"),
    ("McpServer", "spec.pod.tolerations", "[]Toleration"),
    ("McpServer", "spec.pod.affinity", "Affinity"),
    (
        "McpServer",
        "spec.pod.topologySpreadConstraints",
        "[]TopologySpreadConstraint",
    ),
    (
        "McpServer",
        "spec.networkPolicy.allowedClients",
        "[]NetworkPolicyPeer",
    ),
    (
        "McpServer",
        "spec.networkPolicy.metricsFrom",
        "[]NetworkPolicyPeer",
    ),
    (
        "McpServer",
        "spec.networkPolicy.egress",
        "[]NetworkPolicyEgressRule",
    ),
    (
        "McpServer",
        "spec.networkPolicy.egressDestinations.dns",
        "[]NetworkPolicyPeer",
    ),
    ("McpServer", "status.conditions", "[]Condition"),
    ("McpRoute", "spec.allowedClients", "[]NetworkPolicyPeer"),
    ("McpRoute", "status.conditions", "[]Condition"),
];

/// The whole reference as Markdown.
pub fn field_reference() -> Result<String, ApiReferenceError> {
    let mut out = String::from(
        "# API reference\n\n\
         Generated from the CRD schemas by `make generate`; do not edit. Every field, its type, \
         default, constraints and description, as `kubectl explain` shows them. Rules that span \
         several fields (CEL) are listed under each kind.\n",
    );
    for crd in sluice_crds::crds() {
        let kind = crd.spec.names.kind.clone();
        let version = crd.spec.versions.first();
        let schema = version
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ApiReferenceError(format!("{kind}: {e}")))?
            .ok_or_else(|| ApiReferenceError(format!("{kind} has no schema")))?;
        let short = crd
            .spec
            .names
            .short_names
            .clone()
            .unwrap_or_default()
            .join(", ");
        let _ = write!(
            out,
            "\n## {kind}\n\n`{}/{}`, namespaced, short names: {short}.\n\n",
            crd.spec.group,
            version.map(|v| v.name.as_str()).unwrap_or_default()
        );
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", one_line(description));
        }
        out.push_str("| Field | Type | Default | Constraints | Description |\n");
        out.push_str("|---|---|---|---|---|\n");
        let mut rules = Vec::new();
        collect_rules(&kind, "", &schema, &mut rules);
        for section in ["spec", "status"] {
            if let Some(node) = schema.pointer(&format!("/properties/{section}")) {
                rows(&kind, section, node, &mut out);
            }
        }
        if !rules.is_empty() {
            out.push_str("\nRules checked at apply time:\n\n");
            for (path, message) in rules {
                let _ = writeln!(out, "- `{path}`: {message}");
            }
        }
    }
    Ok(out)
}

fn rows(kind: &str, path: &str, node: &Value, out: &mut String) {
    let Some(properties) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, child) in properties {
        let field = format!("{path}.{name}");
        let built_in = BUILT_IN_TYPES
            .iter()
            .find(|(k, p, _)| *k == kind && *p == field)
            .map(|(_, _, t)| *t);
        let type_name = built_in.map_or_else(|| type_of(child), |t| format!("Kubernetes `{t}`"));
        let mut constraints = Vec::new();
        if required.contains(&name.as_str()) {
            constraints.push("required".to_string());
        }
        constraints.extend(constraints_of(child));
        let default = child
            .get("default")
            .map(|d| format!("`{}`", serde_json::to_string(d).unwrap_or_default()))
            .filter(|d| d.len() <= 80)
            .unwrap_or_else(|| {
                if child.get("default").is_some() {
                    "see description".into()
                } else {
                    String::new()
                }
            });
        let description = child
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        let _ = writeln!(
            out,
            "| `{field}` | {type_name} | {default} | {} | {} |",
            constraints.join(", "),
            one_line(description)
        );
        if built_in.is_some() {
            continue;
        }
        if let Some(items) = child.get("items") {
            rows(kind, &format!("{field}[]"), items, out);
        } else {
            rows(kind, &field, child, out);
        }
    }
}

fn type_of(node: &Value) -> String {
    let base = node.get("type").and_then(Value::as_str).unwrap_or("any");
    match base {
        "array" => format!("[]{}", node.get("items").map_or("any".into(), type_of)),
        "object" if node.get("additionalProperties").is_some() => {
            let value = node
                .get("additionalProperties")
                .map_or("any".into(), type_of);
            format!("map[string]{value}")
        }
        other => other.to_string(),
    }
}

fn constraints_of(node: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| format!("`{v}`"))
            .collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    for (key, label) in [
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("maxProperties", "max entries"),
    ] {
        if let Some(v) = node.get(key) {
            out.push(format!("{label} {}", number(v)));
        }
    }
    if let Some(pattern) = node.get("pattern").and_then(Value::as_str) {
        out.push(format!("pattern `{}`", pattern.replace('|', "\\|")));
    }
    out
}

/// Whole numbers without the `.0` the schema's float fields carry.
fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => value.to_string(),
    }
}

fn collect_rules(kind: &str, path: &str, node: &Value, out: &mut Vec<(String, String)>) {
    if BUILT_IN_TYPES
        .iter()
        .any(|(k, p, _)| *k == kind && *p == path)
    {
        return;
    }
    if let Some(rules) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for rule in rules {
            if let Some(message) = rule.get("message").and_then(Value::as_str) {
                let at = if path.is_empty() { "(object)" } else { path };
                out.push((at.to_string(), one_line(message)));
            }
        }
    }
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            let child_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            collect_rules(kind, &child_path, child, out);
        }
    }
    if let Some(items) = node.get("items") {
        collect_rules(kind, &format!("{path}[]"), items, out);
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_path_exists_in_its_schema() {
        let reference = field_reference().unwrap();
        for (kind, path, type_name) in BUILT_IN_TYPES {
            let row = format!("| `{path}` | Kubernetes `{type_name}` |");
            assert!(
                reference.contains(&row),
                "{kind}: {path} is not in the reference"
            );
        }
    }

    #[test]
    fn rows_carry_defaults_constraints_and_rules() {
        let reference = field_reference().unwrap();
        assert!(reference.contains("| `spec.replicas` | integer | `1` | min 0, max 100 |"));
        assert!(reference.contains("| `spec.phabricator.url` | string |  | required,"));
        assert!(reference.contains("one of `headerToken`, `oauth`"));
        assert!(reference.contains("- `spec.pathPrefix`: pathPrefix must be /"));
        assert!(
            !reference.contains("nodeAffinity"),
            "built-in types are not expanded"
        );
    }
}
