//! Server-side apply: merge an applied configuration, detect conflicts, remove fields a manager let go of.
//!
//! Follows structured-merge-diff as the API server runs it, with the structure from
//! [`Shape`]: maps merge key by key, keyed lists item by item, sets as
//! sets, atomic values are replaced. A field the applier sets to a different value than the
//! one another manager owns is a conflict (409) unless `force=true`, which moves ownership.
//! Fields the applier owned and no longer applies are removed unless another manager owns
//! them (or anything below them). Merged keyed-list items keep the live order; new ones are
//! appended in the applied order.

use serde_json::{Map, Value};

use crate::fieldset::{self, FieldSet, item_keys, set_items};
use crate::managed::{self, Entry, Operation};
use crate::path::{self, Pe};
use crate::shape::{ListType, Shape};
use crate::status::{ApiError, Cause, Subject};

/// Who applies, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applier<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub subresource: Option<&'a str>,
    pub api_version: &'a str,
}

/// The live object with `config` applied, and the managed fields after it.
/// `config` is already limited to what this endpoint may write (status only, or no status).
pub(crate) fn apply(
    live: &Value,
    config: &Value,
    shape: Shape<'_>,
    mut entries: Vec<Entry>,
    who: &Applier<'_>,
    subject: &Subject<'_>,
) -> Result<(Value, Vec<Entry>), ApiError> {
    let config_set = managed::fields_of(config, shape);
    let mut merged = merge(live, config, shape);

    let live_body = Value::Object(managed::trackable(live));
    let merged_body = Value::Object(managed::trackable(&merged));
    let changing = fieldset::changed(&config_set, &live_body, &merged_body);
    let mine = |e: &Entry| e.is(who.manager, Operation::Apply, who.subresource);

    let mut conflicts: Vec<(usize, Vec<Pe>)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if mine(e) {
            continue;
        }
        for p in e.fields.intersection(&changing).paths() {
            conflicts.push((i, p));
        }
    }
    if !conflicts.is_empty() {
        if !who.force {
            return Err(conflict_error(&entries, &conflicts, subject));
        }
        for (i, p) in &conflicts {
            if let Some(e) = entries.get_mut(*i) {
                e.fields.remove(p);
            }
        }
    }

    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut others = FieldSet::default();
    for e in entries.iter().filter(|e| !mine(e)) {
        others.union_with(&e.fields);
    }
    for p in previous.difference(&config_set).paths() {
        // Still owned below (an empty object applied before, with fields now): structured
        // merge-diff adds such fields back after removing the path, so the object stays.
        if others.touches(&p) || config_set.touches(&p) {
            continue;
        }
        if path::remove(&mut merged, &p) {
            remove_emptied_parents(&mut merged, &p, &others, &config_set);
        }
    }

    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.fields = config_set;
            e.api_version = who.api_version.to_string();
        }
        None => entries.push(Entry {
            manager: who.manager.to_string(),
            operation: Operation::Apply,
            api_version: who.api_version.to_string(),
            time: None,
            subresource: who.subresource.map(String::from),
            fields: config_set,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok((merged, entries))
}

/// After removing `removed`, drop parent objects it left empty that nobody owns.
fn remove_emptied_parents(obj: &mut Value, removed: &[Pe], others: &FieldSet, applied: &FieldSet) {
    let mut end = removed.len().saturating_sub(1);
    while end > 0 {
        let parent = &removed[..end];
        let empty = matches!(path::get(obj, parent), Some(Value::Object(m)) if m.is_empty());
        if !empty || others.touches(parent) || applied.touches(parent) {
            return;
        }
        path::remove(obj, parent);
        end -= 1;
    }
}

/// Merges an applied configuration into a live value.
pub(crate) fn merge(live: &Value, cfg: &Value, shape: Shape<'_>) -> Value {
    match (live, cfg) {
        (Value::Object(l), Value::Object(c)) if !shape.atomic_object() => {
            let mut out: Map<String, Value> = l.clone();
            for (k, cv) in c {
                let v = match l.get(k) {
                    Some(lv) => merge(lv, cv, shape.field(k)),
                    None => cv.clone(),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => {
            match shape.list_type(if c.is_empty() { l } else { c }) {
                ListType::Map(keys) => match (item_keys(l, &keys), item_keys(c, &keys)) {
                    (Some(lk), Some(ck)) if !c.is_empty() => {
                        let mut out = Vec::with_capacity(l.len() + c.len());
                        for (li, lpe) in l.iter().zip(&lk) {
                            match ck.iter().position(|p| p == lpe) {
                                Some(j) => out.push(merge(li, &c[j], shape.items())),
                                None => out.push(li.clone()),
                            }
                        }
                        for (ci, cpe) in c.iter().zip(&ck) {
                            if !lk.contains(cpe) {
                                out.push(ci.clone());
                            }
                        }
                        Value::Array(out)
                    }
                    _ => cfg.clone(),
                },
                ListType::Set
                    if set_items(l).is_some() && set_items(c).is_some() && !c.is_empty() =>
                {
                    let mut out = l.clone();
                    for item in c {
                        if !out.contains(item) {
                            out.push(item.clone());
                        }
                    }
                    Value::Array(out)
                }
                _ => cfg.clone(),
            }
        }
        _ => cfg.clone(),
    }
}

fn conflict_error(
    entries: &[Entry],
    conflicts: &[(usize, Vec<Pe>)],
    subject: &Subject<'_>,
) -> ApiError {
    let n = conflicts.len();
    let mut by_manager: Vec<(usize, Vec<String>)> = Vec::new();
    for (i, p) in conflicts {
        let shown = path::display(p);
        match by_manager.iter_mut().find(|(j, _)| j == i) {
            Some((_, paths)) => paths.push(shown),
            None => by_manager.push((*i, vec![shown])),
        }
    }
    let describe = |i: usize, plural: bool| {
        let Some(e) = entries.get(i) else {
            return String::new();
        };
        let mut s = format!(
            "conflict{} with \"{}\"",
            if plural { "s" } else { "" },
            e.manager
        );
        if let Some(sub) = &e.subresource {
            s.push_str(&format!(" with subresource \"{sub}\""));
        }
        if e.operation == Operation::Update && !e.api_version.is_empty() {
            s.push_str(&format!(" using {}", e.api_version));
        }
        s
    };
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(i, paths)| {
            if paths.len() == 1 {
                format!("{}: {}", describe(*i, false), paths.concat())
            } else {
                format!("{}:\n- {}", describe(*i, true), paths.join("\n- "))
            }
        })
        .collect();
    let message = format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join("\n")
    );
    let causes = conflicts
        .iter()
        .map(|(i, p)| Cause {
            reason: "FieldManagerConflict",
            message: describe(*i, false),
            field: path::display(p),
        })
        .collect();
    ApiError::apply_conflict(subject, message, causes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUBJECT: Subject<'static> = Subject {
        resource: "configmaps",
        group: "",
        kind: "ConfigMap",
        name: "x",
    };

    fn applier(manager: &str, force: bool) -> Applier<'_> {
        Applier {
            manager,
            force,
            subresource: None,
            api_version: "v1",
        }
    }

    fn run(
        live: &Value,
        cfg: Value,
        entries: Vec<Entry>,
        who: &Applier<'_>,
    ) -> Result<(Value, Vec<Entry>), ApiError> {
        apply(live, &cfg, Shape::root(None), entries, who, &SUBJECT)
    }

    #[test]
    fn merges_keyed_lists_by_key() {
        let live = json!({"spec": {"containers": [{"name": "a", "image": "1", "x": 1}, {"name": "b", "image": "1"}]}});
        let cfg = json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "c", "image": "3"}]}});
        let merged = merge(&live, &cfg, Shape::root(None));
        assert_eq!(
            merged,
            json!({"spec": {"containers": [
                {"name": "a", "image": "1", "x": 1}, {"name": "b", "image": "2"}, {"name": "c", "image": "3"}
            ]}})
        );
    }

    #[test]
    fn conflicts_unless_forced_and_shares_equal_values() {
        let live = json!({"data": {"a": "1"}});
        let (obj, entries) = run(
            &live,
            json!({"data": {"a": "1"}}),
            vec![],
            &applier("one", false),
        )
        .expect("first");
        // The same value from another manager: shared ownership, no conflict.
        let (obj, entries) = run(
            &obj,
            json!({"data": {"a": "1"}}),
            entries,
            &applier("two", false),
        )
        .expect("shared");
        assert_eq!(entries.len(), 2);
        let err = run(
            &obj,
            json!({"data": {"a": "2"}}),
            entries.clone(),
            &applier("three", false),
        )
        .expect_err("conflict");
        assert_eq!(err.code, 409);
        assert_eq!(err.causes().len(), 2, "{err:?}");
        assert_eq!(err.causes()[0].field, ".data.a");
        let (obj, entries) = run(
            &obj,
            json!({"data": {"a": "2"}}),
            entries,
            &applier("three", true),
        )
        .expect("forced");
        assert_eq!(obj["data"]["a"], "2");
        assert_eq!(
            entries.len(),
            1,
            "the others lost .data.a and own nothing else"
        );
    }

    #[test]
    fn removes_fields_the_applier_no_longer_sets_unless_shared() {
        let live = json!({});
        let (obj, entries) = run(
            &live,
            json!({"data": {"a": "1", "b": "2"}}),
            vec![],
            &applier("one", false),
        )
        .expect("apply");
        let (obj, entries) = run(
            &obj,
            json!({"data": {"b": "2"}}),
            entries,
            &applier("two", false),
        )
        .expect("apply");
        let (obj, _) =
            run(&obj, json!({"data": {}}), entries, &applier("one", false)).expect("apply");
        assert_eq!(
            obj,
            json!({"data": {"b": "2"}}),
            "a removed, b kept for manager two"
        );
    }

    #[test]
    fn removing_the_last_field_drops_emptied_parents() {
        let (obj, entries) = run(
            &json!({}),
            json!({"metadata": {"labels": {"a": "1"}}, "data": {"k": "v"}}),
            vec![],
            &applier("one", false),
        )
        .expect("apply");
        let (obj, _) = run(
            &obj,
            json!({"data": {"k": "v"}}),
            entries,
            &applier("one", false),
        )
        .expect("apply");
        assert_eq!(obj, json!({"data": {"k": "v"}}));
    }
}
