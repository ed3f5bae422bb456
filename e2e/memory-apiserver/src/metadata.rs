//! ObjectMeta rules: name, label, annotation, finalizer and owner-reference validation, and normalisation.

use serde_json::{Map, Value};

use crate::catalog::NameRule;
use crate::status::Cause;

/// Fields of `metadata` only the server sets; apply and update tracking ignore them.
pub(crate) const SERVER_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Drops `null`s and empty labels, annotations, finalizers, owner references and managed fields,
/// as a round trip through Go's ObjectMeta (omitempty) does.
pub(crate) fn normalize(obj: &mut Value) {
    let Some(Value::Object(meta)) = obj.get_mut("metadata") else {
        return;
    };
    meta.retain(|_, v| !v.is_null());
    for key in ["labels", "annotations"] {
        if let Some(Value::Object(m)) = meta.get_mut(key) {
            m.retain(|_, v| !v.is_null());
        }
    }
    for key in [
        "labels",
        "annotations",
        "finalizers",
        "ownerReferences",
        "managedFields",
    ] {
        let empty = match meta.get(key) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if empty {
            meta.remove(key);
        }
    }
}

/// Removes `null` everywhere (built-in kinds decode into Go structs, where null means unset).
pub(crate) fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Every problem with the object's metadata.
pub(crate) fn validate(meta: &Map<String, Value>, rule: NameRule, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    match meta.get("name") {
        Some(Value::String(name)) => {
            if let Err(why) = check_name(name, rule) {
                causes.push(Cause::invalid(
                    "metadata.name",
                    &Value::String(name.clone()),
                    why,
                ));
            }
        }
        Some(other) => causes.push(Cause::invalid("metadata.name", other, "must be a string")),
        None => causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        )),
    }
    if namespaced
        && let Some(Value::String(ns)) = meta.get("namespace")
        && let Err(why) = check_name(ns, NameRule::Label1123)
    {
        causes.push(Cause::invalid(
            "metadata.namespace",
            &Value::String(ns.clone()),
            why,
        ));
    }
    string_map(meta, "labels", &mut causes, |k, v, causes| {
        if let Err(why) = qualified_name(k) {
            causes.push(Cause::invalid(
                "metadata.labels",
                &Value::String(k.into()),
                why,
            ));
        }
        match v {
            Value::String(v) => {
                if let Err(why) = label_value(v) {
                    causes.push(Cause::invalid(
                        "metadata.labels",
                        &Value::String(v.clone()),
                        why,
                    ));
                }
            }
            other => causes.push(Cause::invalid(
                format!("metadata.labels.{k}"),
                other,
                "must be a string",
            )),
        }
    });
    let mut annotation_bytes = 0;
    string_map(meta, "annotations", &mut causes, |k, v, causes| {
        if let Err(why) = qualified_name(&k.to_ascii_lowercase()) {
            causes.push(Cause::invalid(
                "metadata.annotations",
                &Value::String(k.into()),
                why,
            ));
        }
        match v {
            Value::String(v) => annotation_bytes += k.len() + v.len(),
            other => causes.push(Cause::invalid(
                format!("metadata.annotations.{k}"),
                other,
                "must be a string",
            )),
        }
    });
    if annotation_bytes > 256 * 1024 {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than 262144 bytes ({annotation_bytes})"),
            field: "metadata.annotations".into(),
        });
    }
    match meta.get("finalizers") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, f) in items.iter().enumerate() {
                let ok = f.as_str().is_some_and(|f| qualified_name(f).is_ok());
                if !ok {
                    causes.push(Cause::invalid(
                        format!("metadata.finalizers[{i}]"),
                        f,
                        "a finalizer must be a qualified name",
                    ));
                }
            }
        }
        Some(other) => causes.push(Cause::invalid(
            "metadata.finalizers",
            other,
            "must be a list of strings",
        )),
    }
    match meta.get("ownerReferences") {
        None => {}
        Some(Value::Array(refs)) => {
            let mut controllers = 0;
            for (i, r) in refs.iter().enumerate() {
                for field in ["apiVersion", "kind", "name", "uid"] {
                    if r.get(field)
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        causes.push(Cause::required(
                            format!("metadata.ownerReferences[{i}].{field}"),
                            "",
                        ));
                    }
                }
                if r.get("controller").and_then(Value::as_bool) == Some(true) {
                    controllers += 1;
                }
            }
            if controllers > 1 {
                causes.push(Cause::invalid(
                    "metadata.ownerReferences",
                    &Value::Array(refs.clone()),
                    "Only one reference can have Controller set to true",
                ));
            }
        }
        Some(other) => causes.push(Cause::invalid(
            "metadata.ownerReferences",
            other,
            "must be a list",
        )),
    }
    causes
}

fn string_map(
    meta: &Map<String, Value>,
    key: &str,
    causes: &mut Vec<Cause>,
    mut each: impl FnMut(&str, &Value, &mut Vec<Cause>),
) {
    match meta.get(key) {
        None => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                each(k, v, causes);
            }
        }
        Some(other) => causes.push(Cause::invalid(
            format!("metadata.{key}"),
            other,
            "must be a map of strings",
        )),
    }
}

/// Checks an object name against its kind's rule.
pub(crate) fn check_name(name: &str, rule: NameRule) -> Result<(), String> {
    match rule {
        NameRule::Subdomain => dns_subdomain(name),
        NameRule::Label1123 => dns_label(name, false),
        NameRule::Label1035 => dns_label(name, true),
        NameRule::PathSegment => {
            if name.is_empty() || name == "." || name == ".." {
                Err(format!("may not be '{name}'"))
            } else if name.contains('/') || name.contains('%') {
                Err("may not contain '/' or '%'".into())
            } else {
                Ok(())
            }
        }
    }
}

fn alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253 characters.
pub(crate) fn dns_subdomain(s: &str) -> Result<(), String> {
    const WHY: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
    if s.is_empty() || s.len() > 253 {
        return Err(format!("{WHY} (at most 253 characters)"));
    }
    for part in s.split('.') {
        let ok = !part.is_empty()
            && part.starts_with(alnum)
            && part.ends_with(alnum)
            && part.chars().all(|c| alnum(c) || c == '-');
        if !ok {
            return Err(WHY.into());
        }
    }
    Ok(())
}

fn dns_label(s: &str, must_start_alpha: bool) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || c == '-')
        && if must_start_alpha {
            s.starts_with(|c: char| c.is_ascii_lowercase())
        } else {
            s.starts_with(alnum)
        };
    if ok {
        Ok(())
    } else if must_start_alpha {
        Err("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (at most 63 characters)".into())
    } else {
        Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (at most 63 characters)".into())
    }
}

fn name_part(s: &str) -> bool {
    let edge = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(edge)
        && s.ends_with(edge)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A label or annotation key: `[prefix/]name`.
pub(crate) fn qualified_name(s: &str) -> Result<(), String> {
    const WHY: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters), with an optional DNS subdomain prefix and '/'";
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        dns_subdomain(p).map_err(|e| format!("prefix part {e}"))?;
    }
    if name_part(name) {
        Ok(())
    } else {
        Err(WHY.into())
    }
}

/// A label value: empty, or like a key's name part.
pub(crate) fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || name_part(s) {
        Ok(())
    } else {
        Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)".into())
    }
}

/// `labels` of an object, if any.
pub(crate) fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    obj.pointer("/metadata/labels").and_then(Value::as_object)
}

/// A metadata string field.
pub(crate) fn text<'v>(obj: &'v Value, field: &str) -> Option<&'v str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.finalizers` as strings.
pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The uids `metadata.ownerReferences` point at.
pub(crate) fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata`, created if missing; None if it is not an object.
pub(crate) fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    map.entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_by_rule() {
        assert!(check_name("web-1.example", NameRule::Subdomain).is_ok());
        assert!(check_name("Web", NameRule::Subdomain).is_err());
        assert!(check_name("1web", NameRule::Label1035).is_err());
        assert!(check_name("a.b", NameRule::Label1123).is_err());
        assert!(check_name("system:controller:x", NameRule::PathSegment).is_ok());
    }

    #[test]
    fn labels_and_finalizers() {
        let meta = json!({
            "name": "x",
            "labels": {"app.kubernetes.io/name": "web", "bad key": "v", "ok": "bad value!"},
            "finalizers": ["sluice.dev/cleanup", "no spaces allowed"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "a", "uid": "1", "controller": true},
                                {"apiVersion": "v1", "kind": "X", "name": "b", "uid": "2", "controller": true}]
        });
        let causes = validate(meta.as_object().expect("object"), NameRule::Subdomain, true);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.labels",
                "metadata.labels",
                "metadata.finalizers[1]",
                "metadata.ownerReferences"
            ]
        );
    }

    #[test]
    fn normalize_drops_empties() {
        let mut obj = json!({"metadata": {"name": "x", "labels": {}, "finalizers": [], "annotations": {"a": null}, "uid": null}});
        normalize(&mut obj);
        assert_eq!(obj, json!({"metadata": {"name": "x"}}));
    }
}
