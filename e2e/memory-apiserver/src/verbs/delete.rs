//! delete (preconditions, propagation) and deletecollection.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use super::read::selectors;
use super::{Call, Reply, json_reply, key_of};
use crate::catalog::ResourceType;
use crate::gc::{self, Propagation};
use crate::metadata;
use crate::output;
use crate::status::ApiError;
use crate::store::{ObjKey, State, resource_version};

/// DeleteOptions from the body (empty means defaults).
fn delete_options(call: &Call<'_>) -> Result<Value, ApiError> {
    if call.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(call.body)
        .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))
}

fn propagation(opts: &Value) -> Result<Propagation, ApiError> {
    match opts.get("propagationPolicy").and_then(Value::as_str) {
        Some("Foreground") => Ok(Propagation::Foreground),
        Some("Orphan") => Ok(Propagation::Orphan),
        Some("Background") => Ok(Propagation::Background),
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown propagationPolicy {other:?}"
        ))),
        None if opts.get("orphanDependents").and_then(Value::as_bool) == Some(true) => {
            Ok(Propagation::Orphan)
        }
        None => Ok(Propagation::Background),
    }
}

pub(super) fn delete(
    state: &mut State,
    ty: &ResourceType,
    call: &Call<'_>,
    name: &str,
) -> Result<Reply, ApiError> {
    let opts = delete_options(call)?;
    let key = key_of(ty, call.target, name);
    let subject = ty.subject(name);
    let obj = state
        .get(ty, &key)
        .ok_or_else(|| ApiError::not_found(&subject))?;
    let want = |field: &str| {
        opts.pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
    };
    let have_uid = metadata::text(&obj, "uid").unwrap_or("");
    if let Some(uid) = want("uid")
        && uid != have_uid
    {
        return Err(ApiError::conflict(
            &subject,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {have_uid}"
            ),
        ));
    }
    let have_rv = resource_version(&obj).to_string();
    if let Some(rv) = want("resourceVersion")
        && rv != have_rv
    {
        return Err(ApiError::conflict(
            &subject,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have_rv}"
            ),
        ));
    }
    let propagation = propagation(&opts)?;
    let dry_run = call.query.dry_run()
        || opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    if dry_run {
        return Ok(json_reply(200, ty, &obj, call.view));
    }
    let deleted = gc::delete(state, ty, &key, propagation, call.actor)?
        .ok_or_else(|| ApiError::not_found(&subject))?;
    if deleted.removed {
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": ty.group, "kind": ty.plural, "uid": have_uid},
        });
        Ok(Reply::Json(200, Bytes::from(status.to_string())))
    } else {
        Ok(json_reply(200, ty, &deleted.object, call.view))
    }
}

pub(super) fn delete_collection(
    state: &mut State,
    ty: &ResourceType,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    let opts = delete_options(call)?;
    let propagation = propagation(&opts)?;
    let (labels, fields) = selectors(ty, call.query)?;
    let namespace = call.target.namespace.as_deref().filter(|_| ty.namespaced);
    let keys: Vec<(ObjKey, Arc<Value>)> = state
        .table(&ty.key())
        .map(|t| {
            t.scan(namespace)
                .filter(|(_, o)| labels.matches(metadata::labels(o)) && fields.matches(o))
                .map(|(k, o)| (k.clone(), o.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut items = Vec::new();
    for (key, obj) in keys {
        if call.query.dry_run() {
            items.push(obj);
            continue;
        }
        if let Some(d) = gc::delete(state, ty, &key, propagation, call.actor)? {
            items.push(d.object);
        }
    }
    let bytes = output::list_bytes(
        ty,
        items.iter().map(|o| o.as_ref()),
        state.rv,
        None,
        call.view,
    );
    Ok(Reply::Json(200, bytes))
}
