//! The envelope of an object: `apiVersion`, `kind` and `metadata`, checked before its schema.

use serde_json::{Map, Value};

use super::problem::{ManifestError, json_type, short_json};
use super::{Kind, Object, Origin};

/// Fields of `metadata` a manifest may carry (those of a Kubernetes ObjectMeta).
const OBJECT_META_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// Checks a document's envelope; returns the object, or every problem with the envelope.
pub(super) fn read_object(
    value: Value,
    origin: Origin,
    default_namespace: &str,
) -> Result<Object, Vec<ManifestError>> {
    let Value::Object(mut fields) = value else {
        return Err(vec![ManifestError::NotAMapping {
            at: origin,
            found: yaml_type(&value),
        }]);
    };
    let mut problems = Vec::new();
    let kind = read_kind(&fields, &origin, &mut problems);
    let identity = read_metadata(&mut fields, &origin, default_namespace, &mut problems);
    let (Some(kind), Some((namespace, name)), true) = (kind, identity, problems.is_empty()) else {
        if let Some(kind) = kind {
            let name = fields
                .get("metadata")
                .and_then(|metadata| metadata.get("name"))
                .and_then(Value::as_str);
            let object = name.map_or_else(|| kind.to_string(), |name| format!("{kind} {name}"));
            for problem in &mut problems {
                problem.set_object(object.clone());
            }
        }
        return Err(problems);
    };
    let origin = Origin {
        object: Some(format!("{kind} {namespace}/{name}")),
        ..origin
    };
    Ok(Object {
        kind,
        namespace,
        name,
        origin,
        value: Value::Object(fields),
    })
}

/// Checks `apiVersion` and `kind`; returns the kind when both are ours.
fn read_kind(
    fields: &Map<String, Value>,
    at: &Origin,
    problems: &mut Vec<ManifestError>,
) -> Option<Kind> {
    let supported_kinds = || {
        let kinds: Vec<String> = Kind::ALL.iter().map(|kind| format!("\"{kind}\"")).collect();
        format!(
            "supported values: {} (of apiVersion {})",
            kinds.join(", "),
            sluice_crds::API_VERSION
        )
    };
    let api_version = required_string(fields, "apiVersion", "apiVersion", at, problems);
    let kind = required_string(fields, "kind", "kind", at, problems);
    if let Some(api_version) = api_version
        && api_version != sluice_crds::API_VERSION
    {
        problems.push(ManifestError::field(
            at,
            "apiVersion",
            format!(
                "Unsupported value: \"{api_version}\": supported values: \"{}\" (only {} McpServer and McpRoute are accepted)",
                sluice_crds::API_VERSION,
                sluice_crds::API_VERSION
            ),
        ));
    }
    let kind = kind?;
    match Kind::parse(kind) {
        Some(kind) if api_version == Some(sluice_crds::API_VERSION) => Some(kind),
        Some(_) => None,
        None => {
            problems.push(ManifestError::field(
                at,
                "kind",
                format!("Unsupported value: \"{kind}\": {}", supported_kinds()),
            ));
            None
        }
    }
}

/// The string at `fields[key]`; `path` names the field in messages.
fn required_string<'a>(
    fields: &'a Map<String, Value>,
    key: &str,
    path: &str,
    at: &Origin,
    problems: &mut Vec<ManifestError>,
) -> Option<&'a str> {
    let problem = match fields.get(key) {
        Some(Value::String(value)) if !value.is_empty() => return Some(value),
        None | Some(Value::Null) => "Required value".to_string(),
        Some(Value::String(_)) => "Required value".to_string(),
        Some(other) => wrong_type(other, "string"),
    };
    problems.push(ManifestError::field(at, path, problem));
    None
}

/// Checks `metadata`, fills in the namespace, and returns `(namespace, name)`.
fn read_metadata(
    fields: &mut Map<String, Value>,
    at: &Origin,
    default_namespace: &str,
    problems: &mut Vec<ManifestError>,
) -> Option<(String, String)> {
    let metadata = match fields.get_mut("metadata") {
        None | Some(Value::Null) => {
            problems.push(ManifestError::field(
                at,
                "metadata",
                "Required value".to_string(),
            ));
            return None;
        }
        Some(Value::Object(metadata)) => metadata,
        Some(other) => {
            problems.push(ManifestError::field(
                at,
                "metadata",
                wrong_type(other, "object"),
            ));
            return None;
        }
    };
    let before = problems.len();
    for (key, value) in metadata.iter() {
        let field = format!("metadata.{key}");
        if !OBJECT_META_FIELDS.contains(&key.as_str()) {
            problems.push(ManifestError::field(
                at,
                &field,
                "unknown field".to_string(),
            ));
        } else if matches!(key.as_str(), "labels" | "annotations") {
            check_string_map(value, &field, at, problems);
        }
    }
    let name = required_string(metadata, "name", "metadata.name", at, problems).map(str::to_string);
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => Some(default_namespace.to_string()),
        Some(Value::String(namespace)) => match namespace_problem(namespace) {
            None => Some(namespace.clone()),
            Some(problem) => {
                let message = format!("Invalid value: \"{namespace}\": {problem}");
                problems.push(ManifestError::field(at, "metadata.namespace", message));
                None
            }
        },
        Some(other) => {
            problems.push(ManifestError::field(
                at,
                "metadata.namespace",
                wrong_type(other, "string"),
            ));
            None
        }
    };
    let (Some(name), Some(namespace), true) = (name, namespace, problems.len() == before) else {
        return None;
    };
    metadata.insert("namespace".to_string(), Value::String(namespace.clone()));
    Some((namespace, name))
}

fn check_string_map(value: &Value, field: &str, at: &Origin, problems: &mut Vec<ManifestError>) {
    match value {
        Value::Null => {}
        Value::Object(entries) => {
            for (key, entry) in entries {
                if !entry.is_string() {
                    problems.push(ManifestError::field(
                        at,
                        &format!("{field}.{key}"),
                        wrong_type(entry, "string"),
                    ));
                }
            }
        }
        other => problems.push(ManifestError::field(at, field, wrong_type(other, "object"))),
    }
}

/// Why `namespace` cannot be a Kubernetes namespace (a DNS-1123 label), if it cannot.
pub(super) fn namespace_problem(namespace: &str) -> Option<&'static str> {
    let valid_chars = namespace
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let valid = !namespace.is_empty()
        && namespace.len() <= 63
        && valid_chars
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    (!valid).then_some(
        "a namespace must be a DNS label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
    )
}

/// What a document is, in YAML words, for a message.
fn yaml_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string (is this YAML?)",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn wrong_type(value: &Value, expected: &str) -> String {
    format!(
        "Invalid value: {}: must be of type {expected}, not {}",
        short_json(value),
        json_type(value)
    )
}
