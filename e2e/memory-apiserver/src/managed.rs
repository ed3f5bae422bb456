//! `metadata.managedFields`: who owns which fields, and how non-apply writes move ownership.

use serde_json::{Map, Value, json};

use crate::fieldset::{self, FieldSet};
use crate::metadata::SERVER_FIELDS;
use crate::shape::Shape;

/// `Apply` (server-side apply) or `Update` (every other write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One managedFields entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    /// Entries are told apart by manager, operation and subresource.
    pub(crate) fn is(
        &self,
        manager: &str,
        operation: Operation,
        subresource: Option<&str>,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// Reads `metadata.managedFields`.
pub(crate) fn decode(obj: &Value) -> Result<Vec<Entry>, String> {
    let Some(list) = obj.pointer("/metadata/managedFields") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or("metadata.managedFields must be a list")?;
    let mut entries = Vec::new();
    for item in list {
        let text = |k: &str| item.get(k).and_then(Value::as_str).map(String::from);
        let operation = match text("operation").as_deref() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            // `[{}]` is how a client clears managedFields.
            None if item.as_object().is_some_and(Map::is_empty) => continue,
            other => {
                return Err(format!(
                    "metadata.managedFields: unknown operation {other:?}"
                ));
            }
        };
        let fields = match item.get("fieldsV1") {
            Some(v) => {
                FieldSet::from_json(v).map_err(|e| format!("metadata.managedFields: {e}"))?
            }
            None => FieldSet::default(),
        };
        entries.push(Entry {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields,
        });
    }
    Ok(entries)
}

/// Writes entries back as `metadata.managedFields` (dropping those that own nothing).
pub(crate) fn encode(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation.as_str()));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.fields.to_json());
                if let Some(s) = &e.subresource {
                    m.insert("subresource".into(), json!(s));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// The object as ownership sees it: without apiVersion, kind and server-set metadata.
pub(crate) fn trackable(obj: &Value) -> Map<String, Value> {
    let mut map = obj.as_object().cloned().unwrap_or_default();
    map.remove("apiVersion");
    map.remove("kind");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for f in SERVER_FIELDS {
            meta.remove(*f);
        }
        if meta.is_empty() {
            map.remove("metadata");
        }
    }
    map
}

/// The fields an object sets, for ownership.
pub(crate) fn fields_of(obj: &Value, shape: Shape<'_>) -> FieldSet {
    FieldSet::of_object(&trackable(obj), shape)
}

/// Moves ownership for a non-apply write from `old` to `new`: `manager` takes every field it
/// changed (others lose them), and fields that disappeared leave every set.
pub(crate) fn track_update(
    entries: &mut Vec<Entry>,
    old: Option<&Value>,
    new: &Value,
    shape: Shape<'_>,
    who: &Actor<'_>,
) {
    let new_body = Value::Object(trackable(new));
    let new_set = FieldSet::of_object(new_body.as_object().unwrap_or(&Map::new()), shape);
    let (changed, removed) = match old {
        Some(old) => {
            let old_body = Value::Object(trackable(old));
            let old_set = FieldSet::of_object(old_body.as_object().unwrap_or(&Map::new()), shape);
            (
                fieldset::changed(&new_set, &old_body, &new_body),
                old_set.difference(&new_set),
            )
        }
        None => (new_set, FieldSet::default()),
    };
    // A status write owns what it changed under `status`; a scale write changes only the
    // replica count, wherever the kind keeps it, and owns that.
    let changed = match who.subresource {
        Some(sub) if sub != "scale" => changed.only_field(sub),
        _ => changed,
    };
    for e in entries.iter_mut() {
        e.fields = e.fields.difference(&removed);
        if !e.is(who.manager, Operation::Update, who.subresource) {
            e.fields = e.fields.difference(&changed);
        }
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.is(who.manager, Operation::Update, who.subresource))
        {
            Some(e) => {
                e.fields.union_with(&changed);
                e.api_version = who.api_version.to_string();
            }
            None => entries.push(Entry {
                manager: who.manager.to_string(),
                operation: Operation::Update,
                api_version: who.api_version.to_string(),
                time: None,
                subresource: who.subresource.map(String::from),
                fields: changed,
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// Who writes, for managedFields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Actor<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
}

/// Stamps `now` on the writer's entry (called once the write is known to change something).
pub(crate) fn stamp(
    entries: &mut [Entry],
    manager: &str,
    operation: Operation,
    subresource: Option<&str>,
    now: &str,
) {
    for e in entries.iter_mut() {
        if e.is(manager, operation, subresource) {
            e.time = Some(now.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_WRITER: Actor<'static> = Actor {
        manager: "kubectl",
        api_version: "v1",
        subresource: None,
    };

    #[test]
    fn update_takes_changed_fields_from_others() {
        let old = json!({"metadata": {"name": "x", "uid": "u"}, "data": {"a": "1", "b": "2"}});
        let mut entries = Vec::new();
        let creator = Actor {
            manager: "creator",
            ..SPEC_WRITER
        };
        track_update(&mut entries, None, &old, Shape::root(None), &creator);
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].fields.to_json(),
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        );

        let new = json!({"metadata": {"name": "x"}, "data": {"a": "1", "b": "3", "c": "4"}});
        track_update(
            &mut entries,
            Some(&old),
            &new,
            Shape::root(None),
            &SPEC_WRITER,
        );
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].fields.to_json(), json!({"f:data": {"f:a": {}}}));
        assert_eq!(
            entries[1].fields.to_json(),
            json!({"f:data": {"f:b": {}, "f:c": {}}})
        );

        let round =
            decode(&json!({"metadata": {"managedFields": encode(&entries)}})).expect("decodes");
        assert_eq!(round, entries);
    }

    #[test]
    fn clearing_with_an_empty_entry() {
        let entries = decode(&json!({"metadata": {"managedFields": [{}]}})).expect("decodes");
        assert!(entries.is_empty());
    }
}
