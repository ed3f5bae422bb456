//! A CRD's structural schema applied to custom resources: pruning, defaulting and type checks.
//!
//! What the API server does before it stores a custom resource: unknown fields are dropped
//! (or refused with `fieldValidation=Strict`), `null` in a non-nullable field is dropped,
//! `default`s are filled in, and the result is checked against `type`, `enum`, `required`,
//! the numeric, length and item-count bounds. Not checked: `pattern`, `format`, `oneOf`/`anyOf`/
//! `allOf`/`not` and CEL `x-kubernetes-validations` (the operator's own admission runs those).

use serde_json::{Map, Value};

use crate::status::Cause;

/// ObjectMeta's fields; anything else under `metadata` is dropped, as the real server does.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Drops unknown fields of a whole object (`root` is the CRD's `openAPIV3Schema`);
/// returns the paths dropped.
pub(crate) fn prune(obj: &mut Value, root: &Value) -> Vec<String> {
    let mut dropped = Vec::new();
    if let Value::Object(map) = obj {
        for (k, v) in map.iter_mut() {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => prune_metadata(v, "metadata", &mut dropped),
                _ => {
                    if let Some(s) = root.get("properties").and_then(|p| p.get(k)) {
                        prune_value(v, s, k, &mut dropped);
                    }
                }
            }
        }
        let keep = |k: &str| {
            matches!(k, "apiVersion" | "kind" | "metadata")
                || root.get("properties").and_then(|p| p.get(k)).is_some()
                || preserves_unknown(root)
        };
        let unknown: Vec<String> = map.keys().filter(|k| !keep(k)).cloned().collect();
        for k in unknown {
            map.remove(&k);
            dropped.push(k);
        }
        let nulls: Vec<String> = map
            .iter()
            .filter(|(k, v)| {
                v.is_null() && !is_nullable(root.get("properties").and_then(|p| p.get(k.as_str())))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in nulls {
            map.remove(&k);
        }
    }
    dropped
}

/// Keeps only ObjectMeta's fields under `metadata`.
pub(crate) fn prune_metadata(meta: &mut Value, at: &str, dropped: &mut Vec<String>) {
    if let Value::Object(m) = meta {
        let unknown: Vec<String> = m
            .keys()
            .filter(|k| !OBJECT_META.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            m.remove(&k);
            dropped.push(format!("{at}.{k}"));
        }
    }
}

fn preserves_unknown(s: &Value) -> bool {
    s.get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn is_nullable(s: Option<&Value>) -> bool {
    s.and_then(|s| s.get("nullable")).and_then(Value::as_bool) == Some(true)
}

fn prune_value(v: &mut Value, s: &Value, at: &str, dropped: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let embedded = s
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let child_schema = props.and_then(|p| p.get(&k)).or(additional);
                let path = format!("{at}.{k}");
                if embedded && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if embedded && k == "metadata" {
                    if let Some(m) = map.get_mut(&k) {
                        prune_metadata(m, &path, dropped);
                    }
                    continue;
                }
                match child_schema {
                    Some(cs) => {
                        let null_dropped =
                            map.get(&k).is_some_and(Value::is_null) && !is_nullable(Some(cs));
                        if null_dropped {
                            map.remove(&k);
                        } else if let Some(child) = map.get_mut(&k) {
                            prune_value(child, cs, &path, dropped);
                        }
                    }
                    None if preserves_unknown(s) || additional_is_true(s) => {}
                    None => {
                        map.remove(&k);
                        dropped.push(path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_value(item, is, &format!("{at}[{i}]"), dropped);
                }
            }
        }
        _ => {}
    }
}

fn additional_is_true(s: &Value) -> bool {
    s.get("additionalProperties").and_then(Value::as_bool) == Some(true)
}

/// Fills in `default`s, top-down (a defaulted object gets its own nested defaults too).
pub(crate) fn apply_defaults(v: &mut Value, s: &Value) {
    match v {
        Value::Object(map) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if !map.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
                for (k, child) in map.iter_mut() {
                    if let Some(ps) = props.get(k) {
                        apply_defaults(child, ps);
                    }
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    apply_defaults(child, ap);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for item in items {
                    apply_defaults(item, is);
                }
            }
        }
        _ => {}
    }
}

/// Defaults for the whole object (spec, status, ...), skipping apiVersion, kind and metadata.
pub(crate) fn default_object(obj: &mut Value, root: &Value) {
    let Some(props) = root.get("properties").and_then(Value::as_object) else {
        return;
    };
    if let Value::Object(map) = obj {
        for (k, ps) in props {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if !map.contains_key(k)
                && let Some(d) = ps.get("default")
            {
                map.insert(k.clone(), d.clone());
            }
            if let Some(child) = map.get_mut(k) {
                apply_defaults(child, ps);
            }
        }
    }
}

/// Checks the whole object (spec, status, ...) against the schema.
pub(crate) fn validate_object(obj: &Value, root: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(map) = obj.as_object() else {
        return causes;
    };
    let props = root.get("properties").and_then(Value::as_object);
    for (k, v) in map {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(k)) {
            validate(v, s, k, &mut causes);
        }
    }
    check_required(map, root, "", &mut causes);
    causes
}

fn check_required(map: &Map<String, Value>, s: &Value, at: &str, causes: &mut Vec<Cause>) {
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str()
            && !matches!(r, "apiVersion" | "kind" | "metadata")
            && !map.contains_key(r)
        {
            let field = if at.is_empty() {
                r.to_string()
            } else {
                format!("{at}.{r}")
            };
            causes.push(Cause::required(field, ""));
        }
    }
}

fn type_ok(v: &Value, s: &Value) -> bool {
    if s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return v.is_string() || v.is_i64() || v.is_u64();
    }
    match s.get("type").and_then(Value::as_str) {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    }
}

fn validate(v: &Value, s: &Value, at: &str, causes: &mut Vec<Cause>) {
    if v.is_null() {
        if !is_nullable(Some(s)) && s.get("type").is_some() {
            causes.push(Cause::invalid(at, v, "must not be null"));
        }
        return;
    }
    if !type_ok(v, s) {
        let ty = s
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("int-or-string");
        causes.push(Cause::invalid(
            at,
            v,
            format!("{at} in body must be of type {ty}"),
        ));
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        causes.push(Cause::not_supported(at, v, allowed));
    }
    let num = |key: &str| s.get(key).and_then(Value::as_f64);
    let count = |key: &str| s.get(key).and_then(Value::as_u64);
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = num("minimum") {
                let exclusive = s.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
                if x < min || (exclusive && x <= min) {
                    causes.push(Cause::invalid(
                        at,
                        v,
                        format!("{at} in body should be greater than or equal to {min}"),
                    ));
                }
            }
            if let Some(max) = num("maximum") {
                let exclusive = s.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
                if x > max || (exclusive && x >= max) {
                    causes.push(Cause::invalid(
                        at,
                        v,
                        format!("{at} in body should be less than or equal to {max}"),
                    ));
                }
            }
        }
        Value::String(text) => {
            let len = text.chars().count() as u64;
            if count("minLength").is_some_and(|min| len < min) {
                causes.push(Cause::invalid(
                    at,
                    v,
                    format!(
                        "{at} in body should be at least {} chars long",
                        count("minLength").unwrap_or(0)
                    ),
                ));
            }
            if count("maxLength").is_some_and(|max| len > max) {
                causes.push(Cause::invalid(
                    at,
                    v,
                    format!(
                        "{at} in body may not be longer than {}",
                        count("maxLength").unwrap_or(0)
                    ),
                ));
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if count("minItems").is_some_and(|min| len < min) {
                causes.push(Cause::invalid(
                    at,
                    v,
                    format!(
                        "{at} in body should have at least {} items",
                        count("minItems").unwrap_or(0)
                    ),
                ));
            }
            if count("maxItems").is_some_and(|max| len > max) {
                causes.push(Cause::invalid(
                    at,
                    v,
                    format!(
                        "{at} in body must have at most {} items",
                        count("maxItems").unwrap_or(0)
                    ),
                ));
            }
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item, is, &format!("{at}[{i}]"), causes);
                }
            }
        }
        Value::Object(map) => {
            check_required(map, s, at, causes);
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in map {
                if s.get("x-kubernetes-embedded-resource")
                    .and_then(Value::as_bool)
                    == Some(true)
                    && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                {
                    continue;
                }
                if let Some(cs) = props.and_then(|p| p.get(k)).or(additional) {
                    validate(child, cs, &format!("{at}.{k}"), causes);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "maxLength": 10},
                "replicas": {"type": "integer", "default": 1, "minimum": 0},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true},
                "note": {"type": "string", "nullable": true},
                "tls": {"type": "object", "default": {}, "properties": {
                    "enabled": {"type": "boolean", "default": false}
                }}
            }},
            "status": {"type": "object", "nullable": true, "properties": {"ready": {"type": "boolean"}}}
        }})
    }

    #[test]
    fn prunes_unknown_fields_and_non_nullable_nulls() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "X",
            "metadata": {"name": "a", "bogus": 1},
            "spec": {"image": "i", "unknown": 1, "extra": {"anything": {"goes": 1}}, "mode": null, "note": null},
            "other": 1
        });
        let mut dropped = prune(&mut obj, &schema());
        dropped.sort();
        assert_eq!(dropped, ["metadata.bogus", "other", "spec.unknown"]);
        assert_eq!(
            obj["spec"],
            json!({"image": "i", "extra": {"anything": {"goes": 1}}, "note": null})
        );
    }

    #[test]
    fn defaults_nest() {
        let mut obj = json!({"spec": {"image": "i"}});
        default_object(&mut obj, &schema());
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["tls"], json!({"enabled": false}));
    }

    #[test]
    fn validates_types_enums_bounds_and_required() {
        let obj = json!({"spec": {"replicas": "two", "mode": "c", "port": 8080, "image": "much-too-long"}});
        let causes = validate_object(&obj, &schema());
        let mut fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["spec.image", "spec.mode", "spec.replicas"]);
        let missing = validate_object(&json!({"spec": {}}), &schema());
        assert_eq!(missing[0].field, "spec.image");
        assert_eq!(missing[0].reason, "FieldValueRequired");
    }
}
