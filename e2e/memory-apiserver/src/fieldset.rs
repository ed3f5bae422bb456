//! Sets of field paths, as server-side apply tracks ownership, and their FieldsV1 JSON form.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::path::{self, Pe};
use crate::shape::{ListType, Shape};

/// A set of field paths: `members` end here, `children` continue below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    members: BTreeSet<Pe>,
    children: BTreeMap<Pe, FieldSet>,
}

impl FieldSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    pub(crate) fn insert(&mut self, path: &[Pe]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// `path` is a member.
    #[cfg(test)]
    pub(crate) fn contains(&self, path: &[Pe]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// `path` or anything below it is a member.
    pub(crate) fn touches(&self, path: &[Pe]) -> bool {
        match path {
            [] => !self.is_empty(),
            [last] => self.members.contains(last) || self.children.contains_key(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.touches(rest)),
        }
    }

    /// Drops the member `path` (and empty branches left behind).
    pub(crate) fn remove(&mut self, path: &[Pe]) {
        match path {
            [] => {}
            [last] => {
                self.members.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    pub(crate) fn union_with(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            self.children
                .entry(pe.clone())
                .or_default()
                .union_with(child);
        }
    }

    /// Members of `self` not in `other`.
    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let rest = match other.children.get(pe) {
                    Some(o) => child.difference(o),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (pe.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Members of both.
    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let both = child.intersection(other.children.get(pe)?);
                (!both.is_empty()).then(|| (pe.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Only the subtree under the top-level field `field`.
    pub(crate) fn only_field(&self, field: &str) -> FieldSet {
        let pe = Pe::Field(field.to_string());
        let mut out = FieldSet::default();
        if self.members.contains(&pe) {
            out.members.insert(pe.clone());
        }
        if let Some(child) = self.children.get(&pe) {
            out.children.insert(pe, child.clone());
        }
        out
    }

    /// Every member as a full path, parents before children.
    pub(crate) fn paths(&self) -> Vec<Vec<Pe>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<Pe>, out: &mut Vec<Vec<Pe>>) {
        let mut seen = BTreeSet::new();
        for pe in &self.members {
            prefix.push(pe.clone());
            out.push(prefix.clone());
            if let Some(child) = self.children.get(pe) {
                child.collect_paths(prefix, out);
            }
            prefix.pop();
            seen.insert(pe);
        }
        for (pe, child) in &self.children {
            if seen.contains(pe) {
                continue;
            }
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// FieldsV1: `{"f:spec":{"f:replicas":{}}}`, with `".": {}` where a node is itself a member.
    pub(crate) fn to_json(&self) -> Value {
        let mut out = Map::new();
        for pe in &self.members {
            if !self.children.contains_key(pe) {
                out.insert(pe.encode(), Value::Object(Map::new()));
            }
        }
        for (pe, child) in &self.children {
            let mut inner = match child.to_json() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if self.members.contains(pe) {
                inner.insert(".".into(), Value::Object(Map::new()));
            }
            out.insert(pe.encode(), Value::Object(inner));
        }
        Value::Object(out)
    }

    /// Parses FieldsV1.
    pub(crate) fn from_json(value: &Value) -> Result<Self, String> {
        let obj = value.as_object().ok_or("fieldsV1 must be an object")?;
        let mut set = FieldSet::default();
        for (k, v) in obj {
            if k == "." {
                continue;
            }
            let pe = Pe::decode(k)?;
            let inner = v
                .as_object()
                .ok_or_else(|| format!("fieldsV1 entry {k} must be an object"))?;
            if inner.is_empty() || inner.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let child = FieldSet::from_json(v)?;
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        Ok(set)
    }

    /// The fields an object sets, as apply and update tracking count them: scalars, atomic
    /// values, empty maps and lists, and keyed-list and set items themselves.
    pub(crate) fn of_object(obj: &Map<String, Value>, shape: Shape<'_>) -> Self {
        let mut set = FieldSet::default();
        object_into(obj, shape, &mut set);
        set
    }
}

fn object_into<'a>(obj: &'a Map<String, Value>, shape: Shape<'a>, set: &mut FieldSet) {
    for (k, v) in obj {
        let pe = Pe::Field(k.clone());
        let cs = shape.field(k);
        if is_leaf(v, cs) {
            set.members.insert(pe);
        } else {
            let mut child = FieldSet::default();
            value_into(v, cs, &mut child);
            if child.is_empty() {
                set.members.insert(pe);
            } else {
                set.children.insert(pe, child);
            }
        }
    }
}

fn value_into<'a>(v: &'a Value, shape: Shape<'a>, set: &mut FieldSet) {
    match v {
        Value::Object(m) => object_into(m, shape, set),
        Value::Array(items) => match shape.list_type(items) {
            ListType::Map(keys) => {
                let Some(pes) = item_keys(items, &keys) else {
                    return;
                };
                for (item, pe) in items.iter().zip(pes) {
                    set.members.insert(pe.clone());
                    if let Value::Object(m) = item {
                        let mut child = FieldSet::default();
                        object_into(m, shape.items(), &mut child);
                        if !child.is_empty() {
                            set.children.insert(pe, child);
                        }
                    }
                }
            }
            ListType::Set => {
                for item in items {
                    set.members.insert(Pe::value_of(item));
                }
            }
            ListType::Atomic => {}
        },
        _ => {}
    }
}

/// A value owned as one field.
pub(crate) fn is_leaf(v: &Value, shape: Shape<'_>) -> bool {
    match v {
        Value::Object(m) => m.is_empty() || shape.atomic_object(),
        Value::Array(items) => {
            items.is_empty()
                || match shape.list_type(items) {
                    ListType::Atomic => true,
                    ListType::Map(keys) => item_keys(items, &keys).is_none(),
                    ListType::Set => set_items(items).is_none(),
                }
        }
        _ => true,
    }
}

/// The key of every item, if all have one and they are unique (else the list is treated as atomic).
pub(crate) fn item_keys(items: &[Value], keys: &[String]) -> Option<Vec<Pe>> {
    let pes: Vec<Pe> = items
        .iter()
        .map(|i| Pe::key_of(i, keys))
        .collect::<Option<_>>()?;
    let unique: BTreeSet<&Pe> = pes.iter().collect();
    (unique.len() == pes.len()).then_some(pes)
}

/// The elements of a set of scalars, if they are scalars and unique.
pub(crate) fn set_items(items: &[Value]) -> Option<Vec<Pe>> {
    if items.iter().any(|i| i.is_object() || i.is_array()) {
        return None;
    }
    let pes: Vec<Pe> = items.iter().map(Pe::value_of).collect();
    let unique: BTreeSet<&Pe> = pes.iter().collect();
    (unique.len() == pes.len()).then_some(pes)
}

/// Members of `new_set` that `old` lacks or holds with another value. List items count only
/// when they are new; their fields are compared one by one.
pub(crate) fn changed(new_set: &FieldSet, old: &Value, new: &Value) -> FieldSet {
    let mut out = FieldSet::default();
    for p in new_set.paths() {
        let is_item = matches!(p.last(), Some(Pe::Key(_) | Pe::Value(_) | Pe::Index(_)));
        let before = path::get(old, &p);
        let differs = if is_item {
            before.is_none()
        } else {
            before != path::get(new, &p)
        };
        if differs {
            out.insert(&p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set_of(v: Value) -> FieldSet {
        FieldSet::of_object(v.as_object().expect("object"), Shape::root(None))
    }

    #[test]
    fn fields_of_a_deployment_match_kubernetes() {
        let set = set_of(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
                ]}}
            }
        }));
        let expected = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}
                        }}
                    }
                }}}
            }
        });
        assert_eq!(set.to_json(), expected);
        assert_eq!(FieldSet::from_json(&expected).expect("parses"), set);
    }

    #[test]
    fn set_algebra() {
        let a = set_of(json!({"spec": {"a": 1, "b": 2}}));
        let b = set_of(json!({"spec": {"b": 3, "c": 4}}));
        let only_a = a.difference(&b);
        assert_eq!(
            only_a.paths(),
            vec![vec![Pe::Field("spec".into()), Pe::Field("a".into())]]
        );
        assert_eq!(a.intersection(&b).paths().len(), 1);
        let mut u = a.clone();
        u.union_with(&b);
        assert_eq!(u.paths().len(), 3);
        assert!(u.touches(&[Pe::Field("spec".into())]));
        u.remove(&[Pe::Field("spec".into()), Pe::Field("a".into())]);
        assert!(!u.contains(&[Pe::Field("spec".into()), Pe::Field("a".into())]));
    }

    #[test]
    fn changed_compares_values_and_new_items() {
        let old = json!({"spec": {"a": 1, "containers": [{"name": "x", "image": "1"}]}});
        let new =
            json!({"spec": {"a": 1, "containers": [{"name": "x", "image": "2"}, {"name": "y"}]}});
        let set = set_of(new.clone());
        let ch = changed(&set, &old, &new);
        let mut printed: Vec<String> = ch.paths().iter().map(|p| path::display(p)).collect();
        printed.sort();
        assert_eq!(
            printed,
            [
                r#".spec.containers[name="x"].image"#,
                r#".spec.containers[name="y"]"#,
                r#".spec.containers[name="y"].name"#
            ]
        );
    }
}
