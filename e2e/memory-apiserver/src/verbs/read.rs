//! get, list (selectors, pages) and watch (where it starts, how long it lasts).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{Call, DEFAULT_WATCH_TIMEOUT, Reply, WatchPlan, json_reply, key_of};
use crate::catalog::ResourceType;
use crate::metadata;
use crate::output::{self, View};
use crate::route::{Query, Target};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause};
use crate::store::{ObjKey, State, WatchFrom};

pub(super) fn get(
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

pub(super) fn selectors(
    ty: &ResourceType,
    q: &Query,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
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

pub(super) fn list(state: &State, ty: &ResourceType, call: &Call<'_>) -> Result<Reply, ApiError> {
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

pub(super) fn watch(
    state: &mut State,
    ty: &Arc<ResourceType>,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
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
