//! What the API server's registry strategies do before an object is stored.
//!
//! Server-set metadata (uid, creationTimestamp, generation, deletion fields), status kept
//! apart from the main resource when it is a subresource, CRD pruning, defaulting and
//! validation, ObjectMeta validation, managedFields tracking, and the no-op check: a write
//! that changes nothing is not stored (no new resourceVersion, no watch event).

use serde_json::{Map, Value, json};

use crate::builtin;
use crate::catalog::{Generation, ResourceType};
use crate::clock;
use crate::managed::{self, Actor, Entry, Operation};
use crate::metadata;
use crate::schema;
use crate::shape::Shape;
use crate::status::{ApiError, Cause};

/// The writer, as managedFields and validation need it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    pub ty: &'a ResourceType,
    pub subresource: Option<&'a str>,
    pub manager: &'a str,
    pub operation: Operation,
    /// `fieldValidation=Strict`: unknown fields of custom resources are refused, not dropped.
    pub strict: bool,
}

impl Writer<'_> {
    fn actor(&self) -> Actor<'_> {
        Actor {
            manager: self.manager,
            api_version: "",
            subresource: self.subresource,
        }
    }
}

/// The shape of objects of this type.
pub(crate) fn shape(ty: &ResourceType) -> Shape<'_> {
    Shape::root(ty.schema.as_deref())
}

/// Checks `apiVersion` and `kind` of a request body against the resource addressed.
pub(crate) fn check_type_meta(ty: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body",
        ));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'apiVersion' is missing in the request body",
        ));
    }
    if kind != ty.kind || api_version != ty.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or kind {kind} is not {}",
            ty.api_version(),
            ty.kind
        )));
    }
    if let Some(meta) = map.get("metadata")
        && !meta.is_object()
        && !meta.is_null()
    {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(())
}

/// CRD pruning, defaulting and validation; strict mode refuses unknown fields.
fn custom_resource_rules(w: &Writer<'_>, obj: &mut Value, name: &str) -> Result<(), ApiError> {
    let Some(root) = w.ty.schema.as_deref() else {
        return Ok(());
    };
    let dropped = schema::prune(obj, root);
    if w.strict && !dropped.is_empty() {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            dropped
                .iter()
                .map(|d| format!("unknown field \"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    schema::default_object(obj, root);
    let causes = schema::validate_object(obj, root);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&w.ty.subject(name), causes));
    }
    Ok(())
}

/// Normalisation and ObjectMeta validation shared by create and update.
fn common_rules(w: &Writer<'_>, obj: &mut Value, name: &str) -> Result<(), ApiError> {
    if w.ty.custom {
        custom_resource_rules(w, obj, name)?;
    } else {
        let mut dropped = Vec::new();
        if let Some(meta) = obj.get_mut("metadata") {
            schema::prune_metadata(meta, "metadata", &mut dropped);
        }
        metadata::strip_nulls(obj);
        builtin::default_and_validate(w.ty, obj, name)?;
    }
    metadata::normalize(obj);
    let meta = obj
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let causes = metadata::validate(&meta, w.ty.name_rule, w.ty.namespaced);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&w.ty.subject(name), causes));
    }
    Ok(())
}

fn meta_of(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    metadata::meta_mut(obj).ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Prepares a new object: name (or generateName), namespace, server fields, status reset.
/// `entries` are the managedFields of an apply that creates; None tracks the create as an Update.
pub(crate) fn prepare_create(
    w: &Writer<'_>,
    mut obj: Value,
    namespace: Option<&str>,
    entries: Option<Vec<Entry>>,
    uid: String,
    suffix: impl FnOnce() -> String,
) -> Result<Value, ApiError> {
    let now = clock::now();
    let supplied = if entries.is_none() {
        managed::decode(&obj).map_err(ApiError::bad_request)?
    } else {
        Vec::new()
    };
    {
        let meta = meta_of(&mut obj)?;
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name
            && let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
        {
            let name = format!("{prefix}{}", suffix());
            meta.insert("name".into(), json!(name));
        }
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        match (w.ty.namespaced, namespace) {
            (true, Some(ns)) => {
                meta.insert("namespace".into(), json!(ns));
            }
            _ => {
                meta.remove("namespace");
            }
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now));
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
            "resourceVersion",
        ] {
            meta.remove(f);
        }
        if w.ty.generation == Generation::None {
            meta.remove("generation");
        } else {
            meta.insert("generation".into(), json!(1));
        }
    }
    if w.ty.status
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(w.ty.storage_api_version()));
    }
    let name = metadata::text(&obj, "name").unwrap_or("").to_string();
    if is_namespace(w.ty) {
        namespace_rules(&mut obj, &name, true);
    }
    common_rules(w, &mut obj, &name)?;
    let mut entries = match entries {
        Some(e) => e,
        None => {
            let mut e = supplied;
            managed::track_update(&mut e, None, &obj, shape(w.ty), &w.actor());
            e
        }
    };
    set_api_versions(&mut entries, w);
    managed::stamp(&mut entries, w.manager, w.operation, w.subresource, &now);
    let encoded = managed::encode(&entries);
    let meta = meta_of(&mut obj)?;
    meta.insert("managedFields".into(), encoded);
    metadata::normalize(&mut obj);
    Ok(obj)
}

/// Prepares a changed object from `candidate`; None if it changes nothing.
/// `entries` are an apply's managedFields; None tracks the write as an Update.
pub(crate) fn prepare_update(
    w: &Writer<'_>,
    old: &Value,
    candidate: Value,
    entries: Option<Vec<Entry>>,
) -> Result<Option<Value>, ApiError> {
    let name = metadata::text(old, "name").unwrap_or("").to_string();
    let status_write = w.subresource == Some("status");
    let mut new = if status_write {
        let mut new = old.clone();
        if let Some(map) = new.as_object_mut() {
            match candidate.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
        }
        new
    } else {
        let mut new = candidate.clone();
        {
            let old_meta = old
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let meta = meta_of(&mut new)?;
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
                "namespace",
                "resourceVersion",
            ] {
                match old_meta.get(f) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.remove("selfLink");
        }
        if w.ty.status
            && let Some(map) = new.as_object_mut()
        {
            match old.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
        }
        new
    };
    if let Some(map) = new.as_object_mut() {
        map.insert("apiVersion".into(), json!(w.ty.storage_api_version()));
        map.insert("kind".into(), json!(w.ty.kind));
    }
    if is_namespace(w.ty) {
        namespace_rules(&mut new, &name, false);
    }
    common_rules(w, &mut new, &name)?;
    builtin::validate_update(w.ty, old, &new, &name)?;

    if old.pointer("/metadata/deletionTimestamp").is_some() {
        let before = metadata::finalizers(old);
        let added: Vec<String> = metadata::finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                &w.ty.subject(&name),
                vec![Cause::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                )],
            ));
        }
    }

    let mut entries = match entries {
        Some(e) => e,
        None => {
            let old_entries = managed::decode(old).map_err(ApiError::internal)?;
            let supplied = candidate.pointer("/metadata/managedFields");
            let mut base = match supplied {
                Some(s) if !status_write && Some(s) != old.pointer("/metadata/managedFields") => {
                    managed::decode(&candidate).map_err(ApiError::bad_request)?
                }
                _ => old_entries,
            };
            managed::track_update(&mut base, Some(old), &new, shape(w.ty), &w.actor());
            base
        }
    };
    set_api_versions(&mut entries, w);
    {
        let encoded = managed::encode(&entries);
        let meta = meta_of(&mut new)?;
        meta.insert("managedFields".into(), encoded);
    }
    metadata::normalize(&mut new);

    if w.ty.generation != Generation::None && content_changed(w.ty, old, &new) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta_of(&mut new)?.insert("generation".into(), json!(generation));
    }
    if new == *old {
        return Ok(None);
    }
    managed::stamp(
        &mut entries,
        w.manager,
        w.operation,
        w.subresource,
        &clock::now(),
    );
    let encoded = managed::encode(&entries);
    meta_of(&mut new)?.insert("managedFields".into(), encoded);
    metadata::normalize(&mut new);
    Ok(Some(new))
}

fn is_namespace(ty: &ResourceType) -> bool {
    ty.group.is_empty() && ty.plural == "namespaces"
}

/// The namespace strategy: the `kubernetes.io/metadata.name` label always names it, and a new
/// one is `Active`.
fn namespace_rules(obj: &mut Value, name: &str, created: bool) {
    if let Some(meta) = metadata::meta_mut(obj) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if created && let Some(map) = obj.as_object_mut() {
        map.insert("status".into(), json!({"phase": "Active"}));
    }
}

/// The writer's entry records the apiVersion it wrote with.
fn set_api_versions(entries: &mut [Entry], w: &Writer<'_>) {
    let api_version = w.ty.api_version();
    for e in entries.iter_mut() {
        if e.is(w.manager, w.operation, w.subresource) {
            e.api_version.clone_from(&api_version);
        }
    }
}

/// Whether what the generation counts changed: all but metadata (and status, if a subresource).
fn content_changed(ty: &ResourceType, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if ty.status {
            m.remove("status");
        }
        m
    };
    if strip(old) != strip(new) {
        return true;
    }
    ty.generation == Generation::SpecAndAnnotations
        && old.pointer("/metadata/annotations") != new.pointer("/metadata/annotations")
}
