//! The non-apply patch types: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.
//!
//! Strategic merge patch is what `kubectl`/client-go send for built-in kinds. Supported: lists
//! Kubernetes merges by key (containers, env, volumes, volumeMounts, ports, conditions,
//! ownerReferences, ... see [`Shape::patch_merge_key`]) are merged item by item, `finalizers`
//! merge as a set, `null` deletes, and the directives `$patch: replace|delete|merge`,
//! `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` and `$retainKeys` are accepted
//! and ignored. Every other list is replaced. Custom resources refuse it with 415, as the real
//! server does.

use serde_json::{Map, Value};

use crate::shape::Shape;
use crate::status::ApiError;

/// The patch types Kubernetes accepts, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub(crate) fn from_content_type(ct: &str) -> Option<Self> {
        let mime = ct.split(';').next().unwrap_or("").trim();
        Some(match mime {
            "application/json-patch+json" => PatchType::Json,
            "application/merge-patch+json" => PatchType::Merge,
            "application/strategic-merge-patch+json" => PatchType::Strategic,
            "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply,
            _ => return None,
        })
    }
}

/// Applies an RFC 6902 patch. A `test` for `null` at a path that does not exist passes, as in
/// the Go library the API server uses (kube-runtime's finalizer helper relies on that).
pub(crate) fn json_patch(doc: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let ops: Vec<json_patch::PatchOperation> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    let ops: Vec<json_patch::PatchOperation> = ops
        .into_iter()
        .filter(|op| match op {
            json_patch::PatchOperation::Test(t) => {
                !(t.value.is_null() && doc.pointer(t.path.as_str()).is_none())
            }
            _ => true,
        })
        .collect();
    json_patch::patch(doc, &ops)
        .map_err(|e| ApiError::unprocessable(format!("the JSON patch could not be applied: {e}")))
}

/// Applies an RFC 7386 merge patch.
pub(crate) fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// Applies a strategic merge patch.
pub(crate) fn strategic(doc: &Value, patch: &Value, shape: Shape<'_>) -> Result<Value, ApiError> {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            strategic_object(d, p, shape).map(|o| o.map_or(Value::Null, Value::Object))
        }
        (_, Value::Object(p)) => {
            let empty = Map::new();
            strategic_object(&empty, p, shape).map(|o| o.map_or(Value::Null, Value::Object))
        }
        _ => Ok(patch.clone()),
    }
}

/// Merges one object; `None` means the patch deletes it (`$patch: delete`).
fn strategic_object(
    doc: &Map<String, Value>,
    patch: &Map<String, Value>,
    shape: Shape<'_>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut out = patch.clone();
            out.remove("$patch");
            return Ok(Some(strip_directives(out)));
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown patch type: {other:?}"
            )));
        }
    }
    let mut out = doc.clone();
    for (k, pv) in patch {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(remove)) = (out.get_mut(field), pv.as_array()) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if pv.is_null() {
            out.remove(k);
            continue;
        }
        let cs = shape.field(k);
        let merged = match (doc.get(k), pv) {
            (Some(Value::Object(dm)), Value::Object(pm)) => match strategic_object(dm, pm, cs)? {
                Some(m) => Value::Object(m),
                None => {
                    out.remove(k);
                    continue;
                }
            },
            (None, Value::Object(pm)) => match strategic_object(&Map::new(), pm, cs)? {
                Some(m) => Value::Object(m),
                None => continue,
            },
            (Some(Value::Array(dl)), Value::Array(pl)) => strategic_list(dl, pl, cs)?,
            (None, Value::Array(pl)) => strategic_list(&[], pl, cs)?,
            _ => pv.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Ok(Some(out))
}

fn strategic_list(doc: &[Value], patch: &[Value], shape: Shape<'_>) -> Result<Value, ApiError> {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let items = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .map(strip_value)
            .collect();
        return Ok(Value::Array(items));
    }
    if shape.patch_merges_scalars() {
        let mut out = doc.to_vec();
        for item in patch {
            if !out.contains(item) {
                out.push(item.clone());
            }
        }
        return Ok(Value::Array(out));
    }
    let Some(key) = shape.patch_merge_key(if patch.is_empty() { doc } else { patch }) else {
        return Ok(Value::Array(
            patch.iter().cloned().map(strip_value).collect(),
        ));
    };
    let mut out = doc.to_vec();
    for item in patch {
        let Some(pm) = item.as_object() else {
            return Err(ApiError::bad_request(format!(
                "strategic merge patch: items of a list merged by {key} must be objects"
            )));
        };
        let Some(kv) = pm.get(key) else {
            return Err(ApiError::bad_request(format!(
                "strategic merge patch: map: {item} does not contain declared merge key: {key}"
            )));
        };
        let at = out.iter().position(|d| d.get(key) == Some(kv));
        match at {
            Some(i) => {
                let current = out[i].as_object().cloned().unwrap_or_default();
                match strategic_object(&current, pm, shape.items())? {
                    Some(m) => out[i] = Value::Object(m),
                    None => {
                        out.remove(i);
                    }
                }
            }
            None => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    continue;
                }
                if let Some(m) = strategic_object(&Map::new(), pm, shape.items())? {
                    out.push(Value::Object(m));
                }
            }
        }
    }
    Ok(Value::Array(out))
}

fn strip_directives(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|k, _| !k.starts_with('$'));
    for v in m.values_mut() {
        *v = strip_value(std::mem::take(v));
    }
    m
}

fn strip_value(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives(m)),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_value).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name_and_deletes_by_directive() {
        let doc = json!({"spec": {"containers": [
            {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "1"}
        ], "tolerations": [{"key": "t"}]}, "metadata": {"finalizers": ["x"]}});
        let patch = json!({"spec": {"containers": [
            {"name": "a", "env": [{"name": "Y", "value": "2"}]},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "3"}
        ], "tolerations": [{"key": "u"}]}, "metadata": {"finalizers": ["y"]}});
        let out = strategic(&doc, &patch, Shape::root(None)).expect("patches");
        assert_eq!(
            out,
            json!({"spec": {"containers": [
                {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "c", "image": "3"}
            ], "tolerations": [{"key": "u"}]}, "metadata": {"finalizers": ["x", "y"]}})
        );
    }

    #[test]
    fn strategic_null_deletes_and_replace_replaces() {
        let doc = json!({"spec": {"a": 1, "b": {"c": 1, "d": 2}}});
        let patch = json!({"spec": {"a": null, "b": {"$patch": "replace", "e": 3}}});
        let out = strategic(&doc, &patch, Shape::root(None)).expect("patches");
        assert_eq!(out, json!({"spec": {"b": {"e": 3}}}));
    }

    #[test]
    fn json_patch_test_of_missing_null_passes() {
        let mut doc = json!({"metadata": {"name": "x"}});
        let body = br#"[{"op":"test","path":"/metadata/finalizers","value":null},
                        {"op":"add","path":"/metadata/finalizers","value":["f"]}]"#;
        json_patch(&mut doc, body).expect("applies");
        assert_eq!(doc["metadata"]["finalizers"], json!(["f"]));
        let failing = br#"[{"op":"test","path":"/metadata/name","value":"y"}]"#;
        assert_eq!(
            json_patch(&mut doc, failing).expect_err("test fails").code,
            422
        );
        assert_eq!(json_patch(&mut doc, b"{").expect_err("malformed").code, 400);
    }
}
