//! Field paths in managedFields' spelling (`f:spec`, `k:{"name":"app"}`, `v:"x"`, `i:0`) and lookups by them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::shape::key_default;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Pe {
    /// A field of an object, or a key of a map.
    Field(String),
    /// An item of a keyed list: the canonical JSON of its key fields, e.g. `{"name":"app"}`.
    Key(String),
    /// An item of a set: its canonical JSON.
    Value(String),
    /// An item of a list by position (only read from managedFields written by others).
    Index(usize),
}

impl Pe {
    /// The FieldsV1 spelling.
    pub(crate) fn encode(&self) -> String {
        match self {
            Pe::Field(f) => format!("f:{f}"),
            Pe::Key(k) => format!("k:{k}"),
            Pe::Value(v) => format!("v:{v}"),
            Pe::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses the FieldsV1 spelling.
    pub(crate) fn decode(s: &str) -> Result<Self, String> {
        if let Some(f) = s.strip_prefix("f:") {
            return Ok(Pe::Field(f.to_string()));
        }
        if let Some(k) = s.strip_prefix("k:") {
            let map: BTreeMap<String, Value> =
                serde_json::from_str(k).map_err(|e| format!("invalid key {k:?}: {e}"))?;
            return Ok(Pe::Key(canonical_map(&map)));
        }
        if let Some(v) = s.strip_prefix("v:") {
            let value: Value =
                serde_json::from_str(v).map_err(|e| format!("invalid value {v:?}: {e}"))?;
            return Ok(Pe::Value(value.to_string()));
        }
        if let Some(i) = s.strip_prefix("i:") {
            return i
                .parse()
                .map(Pe::Index)
                .map_err(|e| format!("invalid index {i:?}: {e}"));
        }
        Err(format!("unknown path element {s:?}"))
    }

    /// The key element of a keyed-list item, or None if it lacks a key field without default.
    pub(crate) fn key_of(item: &Value, keys: &[String]) -> Option<Self> {
        let obj = item.as_object()?;
        let mut map = BTreeMap::new();
        for k in keys {
            let v = match obj.get(k) {
                Some(v) if !v.is_null() => v.clone(),
                _ => key_default(k)?,
            };
            if v.is_object() || v.is_array() {
                return None;
            }
            map.insert(k.clone(), v);
        }
        Some(Pe::Key(canonical_map(&map)))
    }

    /// The element of a set item.
    pub(crate) fn value_of(item: &Value) -> Self {
        Pe::Value(item.to_string())
    }
}

fn canonical_map(map: &BTreeMap<String, Value>) -> String {
    // A BTreeMap serialises in key order whatever serde_json's map type is.
    serde_json::to_string(map).unwrap_or_default()
}

/// Position of the item `pe` names in `list`.
pub(crate) fn position(list: &[Value], pe: &Pe) -> Option<usize> {
    match pe {
        Pe::Field(_) => None,
        Pe::Index(i) => (*i < list.len()).then_some(*i),
        Pe::Value(v) => list
            .iter()
            .position(|item| Pe::value_of(item) == *pe && !v.is_empty()),
        Pe::Key(k) => {
            let map: BTreeMap<String, Value> = serde_json::from_str(k).ok()?;
            let keys: Vec<String> = map.keys().cloned().collect();
            list.iter()
                .position(|item| Pe::key_of(item, &keys).is_some_and(|p| p == *pe))
        }
    }
}

/// The child of `value` that `pe` names.
pub(crate) fn child<'v>(value: &'v Value, pe: &Pe) -> Option<&'v Value> {
    match (value, pe) {
        (Value::Object(m), Pe::Field(f)) => m.get(f),
        (Value::Array(list), _) => position(list, pe).and_then(|i| list.get(i)),
        _ => None,
    }
}

/// The node at `path`.
pub(crate) fn get<'v>(value: &'v Value, path: &[Pe]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, pe| child(v, pe))
}

/// The node at `path`, mutably.
pub(crate) fn get_mut<'v>(value: &'v mut Value, path: &[Pe]) -> Option<&'v mut Value> {
    let mut v = value;
    for pe in path {
        v = match v {
            Value::Object(m) => match pe {
                Pe::Field(f) => m.get_mut(f)?,
                _ => return None,
            },
            Value::Array(list) => {
                let i = position(list, pe)?;
                list.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(v)
}

/// Removes the node at `path`; true if it was there.
pub(crate) fn remove(value: &mut Value, path: &[Pe]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match get_mut(value, parent) {
        Some(Value::Object(m)) => match last {
            Pe::Field(f) => m.remove(f).is_some(),
            _ => false,
        },
        Some(Value::Array(list)) => match position(list, last) {
            Some(i) => {
                list.remove(i);
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// The path as Kubernetes prints it in conflict messages: `.spec.containers[name="app"].image`.
pub(crate) fn display(path: &[Pe]) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            Pe::Field(f) => {
                let _ = write!(out, ".{f}");
            }
            Pe::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
            Pe::Value(v) => {
                let _ = write!(out, "[={v}]");
            }
            Pe::Key(k) => {
                let map: BTreeMap<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(out, "[{}]", parts.join(","));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_and_decodes() {
        for s in ["f:spec", r#"k:{"name":"app"}"#, r#"v:"x""#, "i:3"] {
            assert_eq!(Pe::decode(s).expect("valid").encode(), s);
        }
        let unsorted = Pe::decode(r#"k:{"protocol":"TCP","containerPort":80}"#).expect("valid");
        assert_eq!(
            unsorted.encode(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        assert!(Pe::decode("x:y").is_err());
    }

    #[test]
    fn finds_keyed_items_with_defaulted_keys() {
        let obj =
            json!({"ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]});
        let keys = vec!["containerPort".to_string(), "protocol".to_string()];
        let pe = Pe::key_of(&json!({"containerPort": 80, "protocol": "TCP"}), &keys).expect("key");
        let path = [Pe::Field("ports".into()), pe];
        assert_eq!(get(&obj, &path), Some(&json!({"containerPort": 80})));
        assert_eq!(display(&path), r#".ports[containerPort=80,protocol="TCP"]"#);
        let mut obj = obj;
        assert!(remove(&mut obj, &path));
        assert_eq!(
            obj,
            json!({"ports": [{"containerPort": 53, "protocol": "UDP"}]})
        );
    }
}
