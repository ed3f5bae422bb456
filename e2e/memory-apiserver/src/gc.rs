//! Deletion: finalizers hold an object back; once it is gone, kube-controller-manager's garbage
//! collector (played synchronously here) deletes or releases its dependents.
//!
//! Background propagation (the default) removes the owner, then deletes every dependent that
//! has no other existing owner and drops dangling owner references from those that do.
//! Foreground puts `foregroundDeletion` on the owner, deletes the dependents first and removes
//! the owner once none is left. Orphan removes the owner reference from the dependents.
//! Deleting a Namespace deletes the objects in it first. Dependents whose owners never existed
//! are left alone (the real collector would delete them after a while).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::catalog::ResourceType;
use crate::clock;
use crate::log::{Actor, Verb};
use crate::managed::Operation;
use crate::metadata;
use crate::status::ApiError;
use crate::store::{ObjKey, Origin, State};
use crate::strategy::{self, Writer};

/// The field manager the collector's writes are recorded under.
const GC_MANAGER: &str = "kube-controller-manager";
const FOREGROUND: &str = "foregroundDeletion";

/// How deletion reaches dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// What a delete did.
#[derive(Debug)]
pub(crate) struct Deleted {
    /// The object left the store (else it waits for finalizers).
    pub removed: bool,
    /// Its last state.
    pub object: Arc<Value>,
}

/// Stores an updated object; if it is being deleted and its last finalizer just went, removes it.
pub(crate) fn commit_update(
    state: &mut State,
    ty: &ResourceType,
    obj: Value,
    origin: Origin<'_>,
) -> Arc<Value> {
    let stored = state.replace(ty, obj, origin);
    let done = stored.pointer("/metadata/deletionTimestamp").is_some()
        && metadata::finalizers(&stored).is_empty();
    if done {
        let key = crate::store::obj_key(&stored);
        remove_now(
            state,
            ty,
            &key,
            Origin {
                verb: Verb::Delete,
                ..origin
            },
        );
    }
    stored
}

/// Deletes one object (or marks it, while finalizers remain).
pub(crate) fn delete(
    state: &mut State,
    ty: &ResourceType,
    key: &ObjKey,
    propagation: Propagation,
    actor: Actor,
) -> Result<Option<Deleted>, ApiError> {
    let Some(obj) = state.get(ty, key) else {
        return Ok(None);
    };
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(Some(Deleted {
            removed: false,
            object: obj,
        }));
    }
    let origin = Origin {
        verb: Verb::Delete,
        actor,
        manager: None,
        subresource: None,
    };
    let uid = metadata::text(&obj, "uid").unwrap_or("").to_string();
    if ty.key() == "namespaces" {
        delete_namespace_contents(state, &key.1)?;
    }
    let mut finalizers = metadata::finalizers(&obj);
    match propagation {
        Propagation::Orphan => release_dependents(state, &uid)?,
        Propagation::Foreground if !state.dependents_of(&uid).is_empty() => {
            finalizers.push(FOREGROUND.to_string());
        }
        _ => {}
    }
    if finalizers.is_empty() {
        remove_now(state, ty, key, origin);
        return Ok(Some(Deleted {
            removed: true,
            object: obj,
        }));
    }
    let mut marked = (*obj).clone();
    if let Some(meta) = metadata::meta_mut(&mut marked) {
        meta.insert("deletionTimestamp".into(), json!(clock::now()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        meta.insert("finalizers".into(), json!(finalizers));
    }
    let marked = state.replace(ty, marked, origin);
    if finalizers.iter().any(|f| f == FOREGROUND) {
        for (tkey, dep) in state.dependents_of(&uid) {
            if let Some(dep_ty) = state.catalog.by_key(&tkey) {
                delete(
                    state,
                    &dep_ty,
                    &dep,
                    Propagation::Background,
                    Actor::GarbageCollector,
                )?;
            }
        }
        finish_foreground(state, &uid)?;
    }
    let object = state.get(ty, key).unwrap_or(marked);
    let removed = state.get(ty, key).is_none();
    Ok(Some(Deleted { removed, object }))
}

/// Removes an object now and collects what depended on it.
fn remove_now(state: &mut State, ty: &ResourceType, key: &ObjKey, origin: Origin<'_>) {
    let Some(gone) = state.remove(ty, key, origin) else {
        return;
    };
    if ty.key() == "customresourcedefinitions.apiextensions.k8s.io" {
        for removed in state.catalog.remove_crd(&key.1) {
            state.drop_table(&removed.key());
        }
    }
    let uid = metadata::text(&gone, "uid").unwrap_or("").to_string();
    // Best effort: the collector retries in a real cluster; a refusal here only leaves garbage.
    let _ = collect(state, &uid);
    for owner in metadata::owner_uids(&gone) {
        let _ = finish_foreground(state, &owner);
    }
}

/// Deletes or releases the dependents of a removed owner.
fn collect(state: &mut State, owner_uid: &str) -> Result<(), ApiError> {
    for (tkey, dep) in state.dependents_of(owner_uid) {
        let Some(dep_ty) = state.catalog.by_key(&tkey) else {
            continue;
        };
        let Some(obj) = state.get(&dep_ty, &dep) else {
            continue;
        };
        let owners = metadata::owner_uids(&obj);
        let solid = owners
            .iter()
            .any(|u| u != owner_uid && state.locate(u).is_some());
        if solid {
            let dangling: Vec<String> = owners
                .into_iter()
                .filter(|u| u == owner_uid || state.locate(u).is_none())
                .collect();
            drop_owner_refs(state, &dep_ty, &obj, |u| dangling.iter().any(|d| d == u))?;
        } else {
            delete(
                state,
                &dep_ty,
                &dep,
                Propagation::Background,
                Actor::GarbageCollector,
            )?;
        }
    }
    Ok(())
}

/// Removes the owner reference to `owner_uid` from every dependent (orphan propagation).
fn release_dependents(state: &mut State, owner_uid: &str) -> Result<(), ApiError> {
    for (tkey, dep) in state.dependents_of(owner_uid) {
        let Some(dep_ty) = state.catalog.by_key(&tkey) else {
            continue;
        };
        if let Some(obj) = state.get(&dep_ty, &dep) {
            drop_owner_refs(state, &dep_ty, &obj, |u| u == owner_uid)?;
        }
    }
    Ok(())
}

/// Rewrites an object without the owner references `drop` selects, as the collector would.
fn drop_owner_refs(
    state: &mut State,
    ty: &ResourceType,
    obj: &Value,
    drop: impl Fn(&str) -> bool,
) -> Result<(), ApiError> {
    let mut next = obj.clone();
    if let Some(Value::Array(refs)) = next.pointer_mut("/metadata/ownerReferences") {
        refs.retain(|r| !r.get("uid").and_then(Value::as_str).is_some_and(&drop));
    }
    let writer = Writer {
        ty,
        subresource: None,
        manager: GC_MANAGER,
        operation: Operation::Update,
        strict: false,
    };
    if let Some(updated) = strategy::prepare_update(&writer, obj, next, None)? {
        let origin = Origin {
            verb: Verb::Patch,
            actor: Actor::GarbageCollector,
            manager: Some(GC_MANAGER),
            subresource: None,
        };
        commit_update(state, ty, updated, origin);
    }
    Ok(())
}

/// Once a foreground-deleted owner has no dependents left, drops its `foregroundDeletion` finalizer.
fn finish_foreground(state: &mut State, owner_uid: &str) -> Result<(), ApiError> {
    let Some((tkey, key)) = state.locate(owner_uid) else {
        return Ok(());
    };
    let Some(ty) = state.catalog.by_key(&tkey) else {
        return Ok(());
    };
    let Some(owner) = state.get(&ty, &key) else {
        return Ok(());
    };
    let waiting = owner.pointer("/metadata/deletionTimestamp").is_some()
        && metadata::finalizers(&owner).iter().any(|f| f == FOREGROUND);
    let left = state.dependents_of(owner_uid).into_iter().any(|(t, k)| {
        state
            .catalog
            .by_key(&t)
            .is_some_and(|dt| state.get(&dt, &k).is_some())
    });
    if !waiting || left {
        return Ok(());
    }
    let mut next = (*owner).clone();
    if let Some(Value::Array(fs)) = next.pointer_mut("/metadata/finalizers") {
        fs.retain(|f| f.as_str() != Some(FOREGROUND));
    }
    let writer = Writer {
        ty: &ty,
        subresource: None,
        manager: GC_MANAGER,
        operation: Operation::Update,
        strict: false,
    };
    if let Some(updated) = strategy::prepare_update(&writer, &owner, next, None)? {
        let origin = Origin {
            verb: Verb::Patch,
            actor: Actor::GarbageCollector,
            manager: Some(GC_MANAGER),
            subresource: None,
        };
        commit_update(state, &ty, updated, origin);
    }
    Ok(())
}

/// Deletes everything in a namespace (the namespace controller's job).
fn delete_namespace_contents(state: &mut State, ns: &str) -> Result<(), ApiError> {
    let types: Vec<Arc<ResourceType>> = {
        let mut seen = std::collections::BTreeSet::new();
        state
            .catalog
            .all()
            .filter(|t| t.namespaced && seen.insert(t.key()))
            .cloned()
            .collect()
    };
    for ty in types {
        let keys: Vec<ObjKey> = state
            .table(&ty.key())
            .map(|t| t.scan(Some(ns)).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default();
        for key in keys {
            delete(
                state,
                &ty,
                &key,
                Propagation::Background,
                Actor::GarbageCollector,
            )?;
        }
    }
    Ok(())
}
