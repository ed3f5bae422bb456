//! Structural validation: the CRD's OpenAPI schema, read the way the API server reads it.
//!
//! The API server does not validate with plain JSON Schema: it knows `nullable`,
//! `x-kubernetes-int-or-string` and `x-kubernetes-preserve-unknown-fields`, always allows
//! `apiVersion`, `kind` and `metadata` at the root, and (with kubectl's default strict field
//! validation) refuses fields the schema does not declare. [`api_server_dialect`] rewrites a
//! CRD schema into plain JSON Schema (draft 4) that means the same, so `jsonschema` can check
//! it, and [`describe`] turns its errors into the API server's wording.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::{Map, Value, json};

use super::path::FieldPath;
use crate::manifest::short_json;

const PRESERVE_UNKNOWN_FIELDS: &str = "x-kubernetes-preserve-unknown-fields";
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";

/// Rewrites a CRD's `openAPIV3Schema` into JSON Schema with the API server's meaning.
pub fn api_server_dialect(crd_schema: &Value) -> Value {
    let mut schema = crd_schema.clone();
    if let Some(root) = schema.as_object_mut() {
        // The API server validates these itself (ObjectMeta validation); `manifest` checks
        // metadata's fields and types.
        let properties = root.entry("properties").or_insert_with(|| json!({}));
        if let Some(properties) = properties.as_object_mut() {
            properties.insert("apiVersion".into(), json!({"type": "string"}));
            properties.insert("kind".into(), json!({"type": "string"}));
            properties.insert(
                "metadata".into(),
                json!({"type": "object", PRESERVE_UNKNOWN_FIELDS: true}),
            );
        }
    }
    rewrite_node(&mut schema);
    schema
}

/// Rewrites a schema node below the root (e.g. to check a `default` against it).
#[cfg(test)]
pub fn node_dialect(node: &Value) -> Value {
    let mut node = node.clone();
    rewrite_node(&mut node);
    node
}

fn rewrite_node(node: &mut Value) {
    let Some(node) = node.as_object_mut() else {
        return;
    };
    if node.get(INT_OR_STRING) == Some(&Value::Bool(true)) {
        node.insert("type".into(), json!(["integer", "string"]));
    }
    if node.remove("nullable") == Some(Value::Bool(true)) {
        allow_null(node);
    }
    let preserves_unknown = node.get(PRESERVE_UNKNOWN_FIELDS) == Some(&Value::Bool(true));
    let is_object = node.get("type") == Some(&json!("object"));
    if is_object && !preserves_unknown && !node.contains_key("additionalProperties") {
        node.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(children)) = node.get_mut(key) {
            children.values_mut().for_each(rewrite_node);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = node.get_mut(key) {
            rewrite_node(child);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = node.get_mut(key) {
            branches.iter_mut().for_each(rewrite_node);
        }
    }
}

fn allow_null(node: &mut Map<String, Value>) {
    match node.get_mut("type") {
        Some(Value::String(single)) => {
            let single = std::mem::take(single);
            node.insert("type".into(), json!([single, "null"]));
        }
        Some(Value::Array(types)) => types.push(json!("null")),
        _ => {}
    }
    if let Some(Value::Array(options)) = node.get_mut("enum") {
        options.push(Value::Null);
    }
}

/// Removes every `null` mapping value, recursively.
///
/// The API server prunes a `null` at a field that is not `nullable` (and then defaults it),
/// and never runs CEL rules on a `null`; in Sluice's API every nullable field is optional,
/// so a `null` means the same as an absent field everywhere. This keeps `labels:` with
/// nothing after it from being an error, as it is not one for kubectl.
pub fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|_, field| !field.is_null());
            fields.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// One structural error in the API server's words: the field and what is wrong with it.
/// `root` is the object that was validated (to tell list indexes from map keys).
pub fn describe(error: &jsonschema::ValidationError<'_>, root: &Value) -> Vec<(FieldPath, String)> {
    let field = FieldPath::from_json_pointer(error.instance_path().as_str(), root);
    let instance = error.instance();
    let value = short_json(instance);
    let detail = match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| property.to_string());
            return vec![(field.child(&name), "Required value".into())];
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            return unexpected
                .iter()
                .map(|name| {
                    (
                        field.child(name),
                        "unknown field (not declared in the schema)".into(),
                    )
                })
                .collect();
        }
        ValidationErrorKind::Type { kind } => {
            format!(
                "Invalid value: {value}: must be of type {}",
                expected_types(kind)
            )
        }
        ValidationErrorKind::Enum { options } => {
            let supported: Vec<String> = options
                .as_array()
                .into_iter()
                .flatten()
                .filter(|option| !option.is_null())
                .map(Value::to_string)
                .collect();
            format!(
                "Unsupported value: {value}: supported values: {}",
                supported.join(", ")
            )
        }
        ValidationErrorKind::Minimum { limit } => {
            format!(
                "Invalid value: {value}: must be greater than or equal to {}",
                number(limit)
            )
        }
        ValidationErrorKind::Maximum { limit } => {
            format!(
                "Invalid value: {value}: must be less than or equal to {}",
                number(limit)
            )
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!(
                "Invalid value: {value}: must be greater than {}",
                number(limit)
            )
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!(
                "Invalid value: {value}: must be less than {}",
                number(limit)
            )
        }
        ValidationErrorKind::MinLength { limit } => {
            format!("Invalid value: {value}: must be at least {limit} characters long")
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("Too long: may not be more than {limit} characters")
        }
        ValidationErrorKind::MinItems { limit } => {
            format!(
                "Invalid value: {}: must have at least {limit} items",
                count(instance)
            )
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!(
                "Too many: {}: must have at most {limit} items",
                count(instance)
            )
        }
        ValidationErrorKind::MinProperties { limit } => {
            format!(
                "Invalid value: {}: must have at least {limit} entries",
                count(instance)
            )
        }
        ValidationErrorKind::MaxProperties { limit } => {
            format!(
                "Too many: {}: must have at most {limit} entries",
                count(instance)
            )
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("Invalid value: {value}: should match '{pattern}'")
        }
        ValidationErrorKind::Format { format } => {
            format!("Invalid value: {value}: must be a valid {format}")
        }
        ValidationErrorKind::UniqueItems => {
            format!("Duplicate value: {value}: items must be unique")
        }
        _ => format!("Invalid value: {value}: {error}"),
    };
    vec![(field, detail)]
}

/// A schema limit as written in the API (`100`, not the `100.0` schemars stores).
fn number(limit: &Value) -> String {
    match limit.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() < 1e15 => format!("{}", float as i64),
        _ => limit.to_string(),
    }
}

fn expected_types(kind: &TypeKind) -> String {
    let names: Vec<&str> = match kind {
        TypeKind::Single(single) => vec![single.as_str()],
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| t.as_str())
            .filter(|t| *t != "null")
            .collect(),
    };
    names.join(" or ")
}

fn count(value: &Value) -> usize {
    match value {
        Value::Array(items) => items.len(),
        Value::Object(fields) => fields.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_types_also_accept_null() {
        let schema = api_server_dialect(&json!({
            "type": "object",
            "properties": {"a": {"type": "string", "nullable": true}, "b": {"type": "string"}}
        }));
        assert_eq!(schema["properties"]["a"]["type"], json!(["string", "null"]));
        assert_eq!(schema["properties"]["b"]["type"], json!("string"));
        assert!(schema["properties"]["a"].get("nullable").is_none());
    }

    #[test]
    fn objects_refuse_undeclared_fields_unless_they_preserve_them() {
        let schema = api_server_dialect(&json!({
            "type": "object",
            "properties": {
                "closed": {"type": "object", "properties": {"x": {"type": "string"}}},
                "open": {"type": "object", PRESERVE_UNKNOWN_FIELDS: true},
                "map": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        }));
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(
            schema["properties"]["closed"]["additionalProperties"],
            json!(false)
        );
        assert!(
            schema["properties"]["open"]
                .get("additionalProperties")
                .is_none()
        );
        assert_eq!(
            schema["properties"]["map"]["additionalProperties"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn the_root_always_allows_the_object_envelope() {
        let schema = api_server_dialect(
            &json!({"type": "object", "properties": {"spec": {"type": "object"}}}),
        );
        let validator = jsonschema::validator_for(&schema).unwrap();
        let object = json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "n", "labels": {}}, "spec": {}});
        assert!(validator.is_valid(&object));
        assert!(!validator.is_valid(&json!({"spec": {}, "extra": 1})));
    }

    #[test]
    fn int_or_string_takes_either() {
        let schema = api_server_dialect(&json!({INT_OR_STRING: true}));
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&json!(80)));
        assert!(validator.is_valid(&json!("http")));
        assert!(!validator.is_valid(&json!(true)));
    }

    #[test]
    fn nulls_are_dropped_from_mappings_only() {
        let mut value = json!({"a": null, "b": {"c": null, "d": 1}, "e": [null, {"f": null}]});
        drop_nulls(&mut value);
        assert_eq!(value, json!({"b": {"d": 1}, "e": [null, {}]}));
    }
}
