//! create, update (PUT), patch (JSON, merge, strategic) and server-side apply.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    CRD_KEY, Call, Reply, body_name, check_identity, json_reply, key_of, manager_of, parse_body,
    strict,
};
use crate::apply::{self, Applier};
use crate::catalog::ResourceType;
use crate::crd;
use crate::gc;
use crate::log::{Actor, Verb};
use crate::managed::{self, Operation};
use crate::metadata;
use crate::patch::{self, PatchType};
use crate::schema;
use crate::status::{ApiError, Cause};
use crate::store::{Origin, State, resource_version};
use crate::strategy::{self, Writer};

pub(super) fn create(
    state: &mut State,
    ty: &ResourceType,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    if ty.namespaced && call.target.namespace.is_none() {
        return Err(ApiError::method_not_allowed(
            "a namespaced resource is created under /namespaces/<namespace>/",
        ));
    }
    let obj = parse_body(call)?;
    strategy::check_type_meta(ty, &obj)?;
    check_identity(ty, call.target, &obj, None)?;
    let manager = manager_of(call)?;
    let writer = Writer {
        ty,
        subresource: None,
        manager,
        operation: Operation::Update,
        strict: strict(call),
    };
    let uid = state.new_uid();
    let prepared = strategy::prepare_create(
        &writer,
        obj,
        call.target.namespace.as_deref(),
        None,
        uid,
        || state.name_suffix(),
    )?;
    insert_new(state, ty, prepared, call, manager, Verb::Create, None)
}

/// Stores a prepared new object (unless dry run) and answers 201.
fn insert_new(
    state: &mut State,
    ty: &ResourceType,
    prepared: Value,
    call: &Call<'_>,
    manager: &str,
    verb: Verb,
    subresource: Option<&str>,
) -> Result<Reply, ApiError> {
    let key = crate::store::obj_key(&prepared);
    if state.get(ty, &key).is_some() {
        return Err(ApiError::already_exists(&ty.subject(&key.1)));
    }
    if ty.key() == CRD_KEY {
        crd::resource_types(&prepared)
            .map_err(|causes| ApiError::invalid(&ty.subject(&key.1), causes))?;
    }
    if call.query.dry_run() {
        return Ok(json_reply(201, ty, &prepared, call.view));
    }
    let origin = Origin {
        verb,
        actor: call.actor,
        manager: Some(manager),
        subresource,
    };
    let stored = state.insert(ty, prepared, origin);
    let stored = if ty.key() == CRD_KEY {
        crd_installed(state, ty, &stored)?
    } else {
        stored
    };
    Ok(json_reply(201, ty, &stored, call.view))
}

/// Serves a CRD's types and writes the status the apiextensions controllers would.
fn crd_installed(
    state: &mut State,
    ty: &ResourceType,
    crd_obj: &Arc<Value>,
) -> Result<Arc<Value>, ApiError> {
    let name = metadata::text(crd_obj, "name").unwrap_or("").to_string();
    let types = crd::resource_types(crd_obj)
        .map_err(|causes| ApiError::invalid(&ty.subject(&name), causes))?;
    for old in state.catalog.remove_crd(&name) {
        // Versions no longer served disappear; the table stays while any version is served.
        if !types.iter().any(|t| t.key() == old.key()) {
            state.drop_table(&old.key());
        }
    }
    for t in types {
        let (group, storage) = (t.group.clone(), t.storage_version.clone());
        state.catalog.insert(t);
        state.catalog.set_preferred(&group, &storage);
    }
    let mut next = (**crd_obj).clone();
    let mut status = crd::established_status(crd_obj, &crate::clock::now());
    // Conditions that already hold keep their transition time, so re-applying a CRD is a no-op.
    if let (Some(Value::Array(new)), Some(Value::Array(old))) = (
        status.get_mut("conditions"),
        crd_obj.pointer("/status/conditions"),
    ) {
        for c in new.iter_mut() {
            let same = old
                .iter()
                .find(|o| o.get("type") == c.get("type") && o.get("status") == c.get("status"));
            if let (Some(o), Some(map)) = (same, c.as_object_mut()) {
                map.insert(
                    "lastTransitionTime".into(),
                    o.get("lastTransitionTime").cloned().unwrap_or(Value::Null),
                );
            }
        }
    }
    if let Some(map) = next.as_object_mut() {
        map.insert("status".into(), status);
    }
    let writer = Writer {
        ty,
        subresource: Some("status"),
        manager: "kube-apiserver",
        operation: Operation::Update,
        strict: false,
    };
    match strategy::prepare_update(&writer, crd_obj, next, None)? {
        Some(updated) => {
            let origin = Origin {
                verb: Verb::Update,
                actor: Actor::Simulation,
                manager: Some("kube-apiserver"),
                subresource: Some("status"),
            };
            Ok(state.replace(ty, updated, origin))
        }
        None => Ok(crd_obj.clone()),
    }
}

pub(super) fn update(
    state: &mut State,
    ty: &ResourceType,
    call: &Call<'_>,
    name: &str,
) -> Result<Reply, ApiError> {
    let obj = parse_body(call)?;
    strategy::check_type_meta(ty, &obj)?;
    check_identity(ty, call.target, &obj, Some(name))?;
    let key = key_of(ty, call.target, name);
    let old = state
        .get(ty, &key)
        .ok_or_else(|| ApiError::not_found(&ty.subject(name)))?;
    match metadata::text(&obj, "resourceVersion").filter(|rv| !rv.is_empty()) {
        None if !ty.unconditional_update => {
            return Err(ApiError::invalid(
                &ty.subject(name),
                vec![Cause::invalid(
                    "metadata.resourceVersion",
                    &json!("0x0"),
                    "must be specified for an update",
                )],
            ));
        }
        None => {}
        Some(rv) if rv != resource_version(&old).to_string() => {
            return Err(ApiError::stale(&ty.subject(name)));
        }
        Some(_) => {}
    }
    let manager = manager_of(call)?;
    let subresource = call.target.subresource.as_deref();
    let writer = Writer {
        ty,
        subresource,
        manager,
        operation: Operation::Update,
        strict: strict(call),
    };
    if ty.key() == CRD_KEY && subresource.is_none() {
        crd::resource_types(&obj).map_err(|causes| ApiError::invalid(&ty.subject(name), causes))?;
    }
    let prepared = strategy::prepare_update(&writer, &old, obj, None)?;
    store_update(state, ty, &old, prepared, call, manager, Verb::Update)
}

/// Stores a prepared change (nothing for a no-op or a dry run) and answers 200.
fn store_update(
    state: &mut State,
    ty: &ResourceType,
    old: &Arc<Value>,
    prepared: Option<Value>,
    call: &Call<'_>,
    manager: &str,
    verb: Verb,
) -> Result<Reply, ApiError> {
    let Some(new) = prepared else {
        return Ok(json_reply(200, ty, old, call.view));
    };
    if call.query.dry_run() {
        return Ok(json_reply(200, ty, &new, call.view));
    }
    let subresource = call.target.subresource.as_deref();
    let origin = Origin {
        verb,
        actor: call.actor,
        manager: Some(manager),
        subresource,
    };
    let stored = gc::commit_update(state, ty, new, origin);
    let stored = if ty.key() == CRD_KEY
        && subresource.is_none()
        && state.get(ty, &crate::store::obj_key(&stored)).is_some()
    {
        crd_installed(state, ty, &stored)?
    } else {
        stored
    };
    Ok(json_reply(200, ty, &stored, call.view))
}

// === patch ===

pub(super) fn patch(
    state: &mut State,
    ty: &ResourceType,
    call: &Call<'_>,
    name: &str,
) -> Result<Reply, ApiError> {
    let ct = call.content_type.unwrap_or("");
    let unsupported = || {
        ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
            if ty.custom {
                ""
            } else {
                ", application/strategic-merge-patch+json"
            }
        ))
    };
    let pt = PatchType::from_content_type(ct).ok_or_else(unsupported)?;
    if pt == PatchType::Strategic && ty.custom {
        return Err(unsupported());
    }
    if pt == PatchType::Apply {
        return server_side_apply(state, ty, call, name);
    }
    let key = key_of(ty, call.target, name);
    let old = state
        .get(ty, &key)
        .ok_or_else(|| ApiError::not_found(&ty.subject(name)))?;
    let mut candidate = (*old).clone();
    match pt {
        PatchType::Json => patch::json_patch(&mut candidate, call.body)?,
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(call.body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON merge patch: {e}")))?;
            patch::merge_patch(&mut candidate, &p);
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(call.body).map_err(|e| {
                ApiError::bad_request(format!("invalid strategic merge patch: {e}"))
            })?;
            candidate = patch::strategic(&old, &p, strategy::shape(ty))?;
        }
        PatchType::Apply => {}
    }
    if !candidate.is_object() {
        return Err(ApiError::unprocessable(
            "the patched object must be a JSON object",
        ));
    }
    let patched_rv = metadata::text(&candidate, "resourceVersion").unwrap_or("");
    if !patched_rv.is_empty() && patched_rv != resource_version(&old).to_string() {
        return Err(ApiError::stale(&ty.subject(name)));
    }
    let manager = manager_of(call)?;
    let writer = Writer {
        ty,
        subresource: call.target.subresource.as_deref(),
        manager,
        operation: Operation::Update,
        strict: strict(call),
    };
    if ty.key() == CRD_KEY && writer.subresource.is_none() {
        crd::resource_types(&candidate)
            .map_err(|causes| ApiError::invalid(&ty.subject(name), causes))?;
    }
    let prepared = strategy::prepare_update(&writer, &old, candidate, None)?;
    store_update(state, ty, &old, prepared, call, manager, Verb::Patch)
}

fn server_side_apply(
    state: &mut State,
    ty: &ResourceType,
    call: &Call<'_>,
    name: &str,
) -> Result<Reply, ApiError> {
    let Some(manager) = call.query.text("fieldManager") else {
        return Err(ApiError::bad_request(
            "PATCH requests with apply content type require fieldManager",
        ));
    };
    manager_of(call)?;
    let mut config = parse_body(call)?;
    strategy::check_type_meta(ty, &config)?;
    // Applied to an existing object, the configuration may leave the name out: the API server
    // merges it onto the live object, which has it (kube-lease-manager's lock does this). Only
    // an apply that creates needs it in the body.
    if body_name(&config).is_none()
        && state.get(ty, &key_of(ty, call.target, name)).is_some()
        && let Some(map) = config.as_object_mut()
    {
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("name".into(), json!(name));
        }
    }
    check_identity(ty, call.target, &config, Some(name))?;
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let subresource = call.target.subresource.as_deref();
    if let Some(map) = config.as_object_mut() {
        if subresource == Some("status") {
            map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "resourceVersion"));
            }
        } else if ty.status {
            map.remove("status");
        }
    }
    if let Some(root) = ty.schema.as_deref() {
        let dropped = schema::prune(&mut config, root);
        if strict(call) && !dropped.is_empty() {
            return Err(ApiError::bad_request(format!(
                "strict decoding error: unknown field \"{}\"",
                dropped.join("\", \"")
            )));
        }
    } else {
        metadata::strip_nulls(&mut config);
    }
    let key = key_of(ty, call.target, name);
    let old = state.get(ty, &key);
    let precondition = metadata::text(&config, "resourceVersion")
        .filter(|rv| !rv.is_empty())
        .map(String::from);
    if let Some(rv) = &precondition
        && old
            .as_ref()
            .is_none_or(|o| *rv != resource_version(o).to_string())
    {
        return Err(ApiError::stale(&ty.subject(name)));
    }
    if let Some(Value::Object(meta)) = config.get_mut("metadata") {
        meta.remove("resourceVersion");
    }
    let applier = Applier {
        manager,
        force: call.query.flag("force"),
        subresource,
        api_version: "",
    };
    let writer = Writer {
        ty,
        subresource,
        manager,
        operation: Operation::Apply,
        strict: strict(call),
    };
    let subject = ty.subject(name);
    let shape = strategy::shape(ty);
    match old {
        None => {
            if subresource.is_some() {
                return Err(ApiError::not_found(&subject));
            }
            let (merged, entries) =
                apply::apply(&json!({}), &config, shape, Vec::new(), &applier, &subject)?;
            let uid = state.new_uid();
            let prepared = strategy::prepare_create(
                &writer,
                merged,
                call.target.namespace.as_deref(),
                Some(entries),
                uid,
                || state.name_suffix(),
            )?;
            insert_new(state, ty, prepared, call, manager, Verb::Create, None)
        }
        Some(old) => {
            let entries = managed::decode(&old).map_err(ApiError::internal)?;
            let (merged, entries) =
                apply::apply(&old, &config, shape, entries, &applier, &subject)?;
            if ty.key() == CRD_KEY && subresource.is_none() {
                crd::resource_types(&merged)
                    .map_err(|causes| ApiError::invalid(&subject, causes))?;
            }
            let prepared = strategy::prepare_update(&writer, &old, merged, Some(entries))?;
            store_update(state, ty, &old, prepared, call, manager, Verb::Apply)
        }
    }
}
