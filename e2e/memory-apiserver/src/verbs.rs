//! The verbs on resources: get, list, watch, create, update, patch (incl. apply), delete, deletecollection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::apply::{self, Applier};
use crate::catalog::ResourceType;
use crate::crd;
use crate::gc::{self, Propagation};
use crate::log::{Actor, Verb};
use crate::managed::{self, Operation};
use crate::metadata;
use crate::output::{self, View};
use crate::patch::{self, PatchType};
use crate::route::{Query, Target};
use crate::schema;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause};
use crate::store::{ObjKey, Origin, State, Subscription, WatchFrom, resource_version};
use crate::strategy::{self, Writer};

/// The request, as the verbs need it.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub method: &'a Method,
    pub target: &'a Target,
    pub query: &'a Query,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub view: View,
    /// Who the writes are logged as (requests: Client; the handle's own calls: Simulation).
    pub actor: Actor,
}

/// What to answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Json(u16, Bytes),
    Watch(WatchPlan),
}

/// A watch to stream.
#[derive(Debug)]
pub(crate) struct WatchPlan {
    pub ty: Arc<ResourceType>,
    pub subscription: Subscription,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub view: View,
}

const CRD_KEY: &str = "customresourcedefinitions.apiextensions.k8s.io";
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Resolves the resource type and runs the verb.
pub(crate) fn handle(state: &mut State, call: &Call<'_>) -> Result<Reply, ApiError> {
    let t = call.target;
    let ty = state
        .catalog
        .get(&t.group, &t.version, &t.plural)
        .ok_or_else(ApiError::no_such_resource)?;
    if ty.namespaced {
        if t.name.is_some() && t.namespace.is_none() {
            return Err(ApiError::no_such_resource());
        }
    } else if t.namespace.is_some() {
        return Err(ApiError::no_such_resource());
    }
    match t.subresource.as_deref() {
        None => {}
        Some("status") if ty.status => {}
        Some(_) => return Err(ApiError::no_such_resource()),
    }
    let m = call.method;
    match (t.name.as_deref(), t.subresource.is_some()) {
        (None, _) if m == Method::GET && call.query.flag("watch") => watch(state, &ty, call),
        (None, _) if m == Method::GET => list(state, &ty, call),
        (None, _) if m == Method::POST => create(state, &ty, call),
        (None, _) if m == Method::DELETE => delete_collection(state, &ty, call),
        (Some(name), _) if m == Method::GET => get(state, &ty, t, name, call.view),
        (Some(name), _) if m == Method::PUT => update(state, &ty, call, name),
        (Some(name), _) if m == Method::PATCH => patch(state, &ty, call, name),
        (Some(name), false) if m == Method::DELETE => delete(state, &ty, call, name),
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}

fn key_of(ty: &ResourceType, t: &Target, name: &str) -> ObjKey {
    let ns = if ty.namespaced {
        t.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    (ns, name.to_string())
}

fn json_reply(code: u16, ty: &ResourceType, obj: &Value, view: View) -> Reply {
    Reply::Json(code, output::object_bytes(ty, obj, view))
}

/// The default field manager: the User-Agent up to its first `/`, as the API server derives it.
fn manager_of<'a>(call: &'a Call<'_>) -> Result<&'a str, ApiError> {
    let manager = call
        .query
        .text("fieldManager")
        .or_else(|| call.user_agent.and_then(|ua| ua.split('/').next()))
        .unwrap_or("");
    if manager.chars().count() > 128 {
        return Err(ApiError::bad_request(
            "fieldManager may not be longer than 128 characters",
        ));
    }
    Ok(manager)
}

fn strict(call: &Call<'_>) -> bool {
    call.query.get("fieldValidation") == Some("Strict")
}

/// A JSON (or, for YAML content types, YAML) body.
fn parse_body(call: &Call<'_>) -> Result<Value, ApiError> {
    let yaml = call
        .content_type
        .is_some_and(|ct| ct.contains("yaml") || ct.contains("application/yaml"));
    match serde_json::from_slice::<Value>(call.body) {
        Ok(v) => Ok(v),
        Err(json_err) if yaml => {
            let text = std::str::from_utf8(call.body)
                .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiError::bad_request(format!("invalid YAML body: {e} (as JSON: {json_err})"))
            })
        }
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON body: {e}"))),
    }
}

fn body_name(obj: &Value) -> Option<&str> {
    metadata::text(obj, "name").filter(|n| !n.is_empty())
}

fn check_identity(
    ty: &ResourceType,
    t: &Target,
    obj: &Value,
    name: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(url_name) = name {
        match body_name(obj) {
            Some(n) if n == url_name => {}
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({url_name})"
                )));
            }
            None => {
                return Err(ApiError::bad_request(
                    "name is required in the body of the request",
                ));
            }
        }
    }
    if ty.namespaced
        && let (Some(body_ns), Some(url_ns)) =
            (metadata::text(obj, "namespace"), t.namespace.as_deref())
        && !body_ns.is_empty()
        && body_ns != url_ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

// === get, list, watch ===

fn get(
    state: &State,
    ty: &ResourceType,
    t: &Target,
    name: &str,
    view: View,
) -> Result<Reply, ApiError> {
    let obj = state
        .get(ty, &key_of(ty, t, name))
        .ok_or_else(|| ApiError::not_found(&ty.subject(name)))?;
    Ok(json_reply(200, ty, &obj, view))
}

fn selectors(ty: &ResourceType, q: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), &ty.selectable_fields)
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

/// The opaque continue token: the list's resourceVersion and the last key returned.
fn continue_token(rv: u64, key: &ObjKey) -> String {
    format!("{rv}|{}/{}", key.0, key.1)
}

fn parse_continue(token: &str) -> Result<(u64, ObjKey), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let (rv, key) = token.split_once('|').ok_or_else(bad)?;
    let (ns, name) = key.split_once('/').ok_or_else(bad)?;
    Ok((
        rv.parse().map_err(|_| bad())?,
        (ns.to_string(), name.to_string()),
    ))
}

fn list(state: &State, ty: &ResourceType, call: &Call<'_>) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(ty, call.query)?;
    let limit = match call.query.text("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let (rv, after) = match call.query.text("continue") {
        Some(token) => {
            let (rv, key) = parse_continue(token)?;
            (rv, Some(key))
        }
        None => (state.rv, None),
    };
    let namespace = call.target.namespace.as_deref().filter(|_| ty.namespaced);
    let mut items: Vec<&Arc<Value>> = Vec::new();
    let mut next = None;
    if let Some(table) = state.table(&ty.key()) {
        let scan = match &after {
            Some(key) => table.scan_after(namespace, key),
            None => table.scan(namespace),
        };
        for (_, obj) in scan {
            if !labels.matches(metadata::labels(obj)) || !fields.matches(obj) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                if let Some(last) = items.last() {
                    next = Some(continue_token(rv, &crate::store::obj_key(last)));
                }
                break;
            }
            items.push(obj);
        }
    }
    let bytes = output::list_bytes(
        ty,
        items.iter().map(|o| o.as_ref()),
        rv,
        next.as_deref(),
        call.view,
    );
    Ok(Reply::Json(200, bytes))
}

fn watch(state: &mut State, ty: &Arc<ResourceType>, call: &Call<'_>) -> Result<Reply, ApiError> {
    let q = call.query;
    let (labels, fields) = selectors(ty, q)?;
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            &ty.subject(""),
            vec![Cause::forbidden(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            )],
        ));
    }
    let from = match q.text("resourceVersion") {
        None | Some("0") => WatchFrom::Current {
            initial_end_bookmark: send_initial,
        },
        Some(_) if send_initial => WatchFrom::Current {
            initial_end_bookmark: true,
        },
        Some(rv) => WatchFrom::After(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = match q.text("timeoutSeconds") {
        Some(s) => match s.parse::<u64>() {
            Ok(0) => DEFAULT_WATCH_TIMEOUT,
            Ok(n) => Duration::from_secs(n),
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "invalid timeoutSeconds {s:?}"
                )));
            }
        },
        None => DEFAULT_WATCH_TIMEOUT,
    };
    let namespace = call.target.namespace.as_deref().filter(|_| ty.namespaced);
    let subscription = state.watch(ty, namespace, from);
    Ok(Reply::Watch(WatchPlan {
        ty: ty.clone(),
        subscription,
        labels,
        fields,
        bookmarks,
        timeout,
        view: call.view,
    }))
}

// === create, update ===

fn create(state: &mut State, ty: &ResourceType, call: &Call<'_>) -> Result<Reply, ApiError> {
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
pub(crate) fn crd_installed(
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

fn update(
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

fn patch(
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

// === delete ===

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

fn delete(
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

fn delete_collection(
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
