//! The `/scale` subresource: an `autoscaling/v1` Scale read from and written into the object.
//!
//! As the API server does it, a scale write is an update of the object's replica count only,
//! recorded in the object's managed fields under the writer's manager with subresource
//! `scale` (an autoscaler's update takes the field over from whoever owned it).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Call, Reply, key_of, manager_of, parse_body, strict};
use crate::catalog::{ResourceType, ScalePaths, ScaleSelector};
use crate::gc;
use crate::log::Verb;
use crate::managed::Operation;
use crate::metadata;
use crate::patch::{self, PatchType};
use crate::status::{ApiError, Cause};
use crate::store::{Origin, State, resource_version};
use crate::strategy::{self, Writer};

const SCALE: &str = "scale";

/// GET: the object's Scale.
pub(super) fn get(
    state: &State,
    ty: &ResourceType,
    call: &Call<'_>,
    name: &str,
) -> Result<Reply, ApiError> {
    let (paths, object) = scaled(state, ty, call, name)?;
    Ok(reply(&paths, &object))
}

/// PUT (a whole Scale) or PATCH (JSON or merge patch of the Scale): sets the replica count.
pub(super) fn write(
    state: &mut State,
    ty: &ResourceType,
    call: &Call<'_>,
    name: &str,
) -> Result<Reply, ApiError> {
    let (paths, old) = scaled(state, ty, call, name)?;
    let current = scale_of(&paths, &old);
    let (wanted, verb) = if call.method == http::Method::PUT {
        (parse_body(call)?, Verb::Update)
    } else {
        let mut patched = current.clone();
        match PatchType::from_content_type(call.content_type.unwrap_or("")) {
            Some(PatchType::Json) => patch::json_patch(&mut patched, call.body)?,
            Some(PatchType::Merge | PatchType::Strategic) => {
                let p: Value = serde_json::from_slice(call.body)
                    .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
                patch::merge_patch(&mut patched, &p);
            }
            _ => {
                return Err(ApiError::unsupported_media_type(
                    "the scale subresource takes application/json-patch+json or application/merge-patch+json",
                ));
            }
        }
        (patched, Verb::Patch)
    };
    let rv = metadata::text(&wanted, "resourceVersion").unwrap_or("");
    if !rv.is_empty() && rv != resource_version(&old).to_string() {
        return Err(ApiError::stale(&ty.subject(name)));
    }
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(
                &ty.subject(name),
                vec![Cause::invalid(
                    "spec.replicas",
                    wanted.pointer("/spec/replicas").unwrap_or(&Value::Null),
                    "must be a non-negative integer",
                )],
            )
        })?;
    let mut candidate = (*old).clone();
    set_pointer(&mut candidate, &paths.spec_replicas, json!(replicas));
    let manager = manager_of(call)?;
    let writer = Writer {
        ty,
        subresource: Some(SCALE),
        manager,
        operation: Operation::Update,
        strict: strict(call),
    };
    let Some(new) = strategy::prepare_update(&writer, &old, candidate, None)? else {
        return Ok(reply(&paths, &old));
    };
    if call.query.dry_run() {
        return Ok(reply(&paths, &new));
    }
    let origin = Origin {
        verb,
        actor: call.actor,
        manager: Some(manager),
        subresource: Some(SCALE),
    };
    let stored = gc::commit_update(state, ty, new, origin);
    Ok(reply(&paths, &stored))
}

fn scaled(
    state: &State,
    ty: &ResourceType,
    call: &Call<'_>,
    name: &str,
) -> Result<(ScalePaths, Arc<Value>), ApiError> {
    let paths = ty.scale.clone().ok_or_else(ApiError::no_such_resource)?;
    let object = state
        .get(ty, &key_of(ty, call.target, name))
        .ok_or_else(|| ApiError::not_found(&ty.subject(name)))?;
    Ok((paths, object))
}

fn reply(paths: &ScalePaths, object: &Value) -> Reply {
    Reply::Json(200, bytes::Bytes::from(scale_of(paths, object).to_string()))
}

/// The object's Scale, as `autoscaling/v1` words it.
fn scale_of(paths: &ScalePaths, object: &Value) -> Value {
    let count = |pointer: &str| object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let selector = match &paths.selector {
        ScaleSelector::Path(Some(pointer)) => object
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string),
        ScaleSelector::Path(None) => None,
        ScaleSelector::SpecSelector => object.pointer("/spec/selector").map(selector_string),
    };
    let meta = |field: &str| {
        object
            .pointer(&format!("/metadata/{field}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut status = json!({"replicas": count(&paths.status_replicas)});
    if let (Some(selector), Some(map)) = (selector, status.as_object_mut()) {
        map.insert("selector".into(), json!(selector));
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta("name"),
            "namespace": meta("namespace"),
            "uid": meta("uid"),
            "resourceVersion": meta("resourceVersion"),
            "creationTimestamp": meta("creationTimestamp"),
        },
        "spec": {"replicas": count(&paths.spec_replicas)},
        "status": status,
    })
}

/// A LabelSelector as its string form (`k=v,k2 in (a,b)`), as `metav1.FormatLabelSelector`.
fn selector_string(selector: &Value) -> String {
    let mut terms: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for expression in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expression.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = expression
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let values = values.join(",");
        terms.push(match expression.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({values})"),
            Some("NotIn") => format!("{key} notin ({values})"),
            Some("DoesNotExist") => format!("!{key}"),
            _ => key.to_string(),
        });
    }
    terms.sort();
    terms.join(",")
}

/// Sets `value` at `pointer`, creating the maps on the way.
fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let mut node = object;
    let mut segments = pointer.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let Some(map) = node.as_object_mut() else {
            return;
        };
        if segments.peek().is_none() {
            map.insert(segment.to_string(), value);
            return;
        }
        node = map.entry(segment.to_string()).or_insert_with(|| json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_reads_as_kubectl_prints_it() {
        let selector = json!({
            "matchLabels": {"app": "web", "tier": "front"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["a", "b"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        });
        assert_eq!(
            selector_string(&selector),
            "!legacy,app=web,env in (a,b),tier=front"
        );
    }

    #[test]
    fn replicas_are_set_where_the_path_says() {
        let mut object = json!({"spec": {"x": 1}});
        set_pointer(&mut object, "/spec/replicas", json!(3));
        assert_eq!(object, json!({"spec": {"x": 1, "replicas": 3}}));
        let mut bare = json!({});
        set_pointer(&mut bare, "/spec/replicas", json!(2));
        assert_eq!(bare, json!({"spec": {"replicas": 2}}));
    }
}
