//! The verbs on resources: the request as they see it, dispatch, and what they share.
//!
//! Reads (get, list, watch) are in [`read`], writes (create, update, patch, apply) in
//! [`write`](mod@write), deletion in [`delete`].

mod delete;
mod read;
mod scale;
mod write;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use crate::catalog::ResourceType;
use crate::log::Actor;
use crate::metadata;
use crate::output::{self, View};
use crate::route::{Query, Target};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{ObjKey, State, Subscription};

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

pub(super) const CRD_KEY: &str = "customresourcedefinitions.apiextensions.k8s.io";
pub(super) const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
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
        Some("scale") if ty.scale.is_some() => {}
        Some(_) => return Err(ApiError::no_such_resource()),
    }
    let m = call.method;
    if let (Some(name), Some("scale")) = (t.name.as_deref(), t.subresource.as_deref()) {
        return match m {
            &Method::GET => scale::get(state, &ty, call, name),
            &Method::PUT | &Method::PATCH => scale::write(state, &ty, call, name),
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            ))),
        };
    }
    match (t.name.as_deref(), t.subresource.is_some()) {
        (None, _) if m == Method::GET && call.query.flag("watch") => read::watch(state, &ty, call),
        (None, _) if m == Method::GET => read::list(state, &ty, call),
        (None, _) if m == Method::POST => write::create(state, &ty, call),
        (None, _) if m == Method::DELETE => delete::delete_collection(state, &ty, call),
        (Some(name), _) if m == Method::GET => read::get(state, &ty, t, name, call.view),
        (Some(name), _) if m == Method::PUT => write::update(state, &ty, call, name),
        (Some(name), _) if m == Method::PATCH => write::patch(state, &ty, call, name),
        (Some(name), false) if m == Method::DELETE => delete::delete(state, &ty, call, name),
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}

pub(super) fn key_of(ty: &ResourceType, t: &Target, name: &str) -> ObjKey {
    let ns = if ty.namespaced {
        t.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    (ns, name.to_string())
}

pub(super) fn json_reply(code: u16, ty: &ResourceType, obj: &Value, view: View) -> Reply {
    Reply::Json(code, output::object_bytes(ty, obj, view))
}

/// The default field manager: the User-Agent up to its first `/`, as the API server derives it.
pub(super) fn manager_of<'a>(call: &'a Call<'_>) -> Result<&'a str, ApiError> {
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

pub(super) fn strict(call: &Call<'_>) -> bool {
    call.query.get("fieldValidation") == Some("Strict")
}

/// A JSON (or, for YAML content types, YAML) body.
pub(super) fn parse_body(call: &Call<'_>) -> Result<Value, ApiError> {
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

pub(super) fn body_name(obj: &Value) -> Option<&str> {
    metadata::text(obj, "name").filter(|n| !n.is_empty())
}

pub(super) fn check_identity(
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
