//! Which parts of an object are granular maps, atomic values, sets or keyed lists.
//!
//! Server-side apply and strategic merge need this. Custom resources take it from their CRD
//! schema (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`);
//! built-in kinds from a table of the field names Kubernetes declares as keyed lists, sets or
//! atomic structs (we have no built-in OpenAPI schemas). Lists not in the table are atomic.

use serde_json::Value;

/// How a list merges and is owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListType {
    /// Replaced as a whole; owned as one field.
    Atomic,
    /// Scalars merged as a set (`metadata.finalizers`).
    Set,
    /// Objects keyed by these fields (`containers` by `name`).
    Map(Vec<String>),
}

/// The structure of one node of an object.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape<'a> {
    /// A built-in kind's node, known by its field name.
    Builtin(&'a str),
    /// The root of a custom resource: its schema, with `metadata` handled as ObjectMeta.
    SchemaRoot(&'a Value),
    /// A node of a CRD's structural schema.
    Schema(&'a Value),
    /// No schema (preserve-unknown-fields): maps granular, lists atomic.
    Deduced,
}

/// Keys Kubernetes defaults when a keyed list item omits them.
pub(crate) fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".into()))
}

impl<'a> Shape<'a> {
    /// The root of an object of a kind with this schema (built-in if none).
    pub(crate) fn root(schema: Option<&'a Value>) -> Self {
        schema.map_or(Shape::Builtin(""), Shape::SchemaRoot)
    }

    /// The shape of the field `name` of an object node.
    pub(crate) fn field(self, name: &'a str) -> Shape<'a> {
        match self {
            Shape::Builtin(_) => Shape::Builtin(name),
            Shape::Deduced => Shape::Deduced,
            Shape::SchemaRoot(_) if name == "metadata" => Shape::Builtin("metadata"),
            Shape::Schema(s) if name == "metadata" && is_embedded(s) => Shape::Builtin("metadata"),
            Shape::SchemaRoot(s) | Shape::Schema(s) => {
                if let Some(p) = s.get("properties").and_then(|p| p.get(name)) {
                    Shape::Schema(p)
                } else if let Some(ap) = s.get("additionalProperties").filter(|v| v.is_object()) {
                    Shape::Schema(ap)
                } else {
                    Shape::Deduced
                }
            }
        }
    }

    /// The shape of a list's items.
    pub(crate) fn items(self) -> Shape<'a> {
        match self {
            Shape::Builtin(_) => Shape::Builtin(""),
            Shape::Deduced => Shape::Deduced,
            Shape::SchemaRoot(s) | Shape::Schema(s) => {
                s.get("items").map_or(Shape::Deduced, Shape::Schema)
            }
        }
    }

    /// An object node that is owned and replaced as a whole.
    pub(crate) fn atomic_object(self) -> bool {
        match self {
            // LabelSelectors are `+structType=atomic`; Service and Pod selectors `+mapType=atomic`.
            Shape::Builtin(name) => matches!(
                name,
                "selector" | "podSelector" | "namespaceSelector" | "labelSelector" | "nodeSelector"
            ),
            Shape::Deduced => false,
            Shape::SchemaRoot(s) | Shape::Schema(s) => {
                s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }
        }
    }

    /// How the list at this node merges. `items` lets built-in `ports` tell container ports
    /// (keyed by containerPort) from Service ports (keyed by port).
    pub(crate) fn list_type(self, items: &[Value]) -> ListType {
        match self {
            Shape::Builtin(name) => builtin_list_type(name, items),
            Shape::Deduced => ListType::Atomic,
            Shape::SchemaRoot(s) | Shape::Schema(s) => {
                match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => ListType::Set,
                    Some("map") => {
                        let keys: Vec<String> = s
                            .get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|k| {
                                k.iter()
                                    .filter_map(Value::as_str)
                                    .map(String::from)
                                    .collect()
                            })
                            .unwrap_or_default();
                        if keys.is_empty() {
                            ListType::Atomic
                        } else {
                            ListType::Map(keys)
                        }
                    }
                    _ => ListType::Atomic,
                }
            }
        }
    }

    /// The key strategic merge patch merges this list by, if any (built-ins only).
    pub(crate) fn patch_merge_key(self, items: &[Value]) -> Option<&'static str> {
        let Shape::Builtin(name) = self else {
            return None;
        };
        Some(match name {
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "env"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims"
            | "schedulingGates" => "name",
            "volumeMounts" => "mountPath",
            "volumeDevices" => "devicePath",
            "ports" if has_field(items, "containerPort") => "containerPort",
            "ports" if has_field(items, "port") => "port",
            "conditions" => "type",
            "ownerReferences" => "uid",
            "hostAliases" => "ip",
            "topologySpreadConstraints" => "topologyKey",
            _ => return None,
        })
    }

    /// Strategic merge patch merges this list of scalars as a set (`finalizers`).
    pub(crate) fn patch_merges_scalars(self) -> bool {
        matches!(self, Shape::Builtin("finalizers"))
    }
}

fn is_embedded(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true)
}

fn has_field(items: &[Value], field: &str) -> bool {
    items.first().and_then(|i| i.get(field)).is_some()
}

fn builtin_list_type(name: &str, items: &[Value]) -> ListType {
    let keys: &[&str] = match name {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "ports" if has_field(items, "containerPort") => &["containerPort", "protocol"],
        "ports" if has_field(items, "port") => &["port", "protocol"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "hostAliases" => &["ip"],
        "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
        "finalizers" => return ListType::Set,
        _ => return ListType::Atomic,
    };
    ListType::Map(keys.iter().map(|k| (*k).to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_tables() {
        let root = Shape::root(None);
        let containers = root.field("spec").field("containers");
        assert_eq!(
            containers.list_type(&[]),
            ListType::Map(vec!["name".into()])
        );
        let ports = containers.items().field("ports");
        let cport = [json!({"containerPort": 80})];
        assert_eq!(
            ports.list_type(&cport),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            root.field("metadata").field("finalizers").list_type(&[]),
            ListType::Set
        );
        assert!(root.field("spec").field("selector").atomic_object());
        assert_eq!(
            root.field("spec").field("tolerations").list_type(&[]),
            ListType::Atomic
        );
    }

    #[test]
    fn schema_extensions() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                      "items": {"type": "object"}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set"},
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic"}
        }}}});
        let root = Shape::root(Some(&schema));
        let spec = root.field("spec");
        assert_eq!(
            spec.field("items").list_type(&[]),
            ListType::Map(vec!["id".into()])
        );
        assert_eq!(spec.field("tags").list_type(&[]), ListType::Set);
        assert!(spec.field("sel").atomic_object());
        assert!(matches!(root.field("metadata"), Shape::Builtin("metadata")));
        assert!(matches!(spec.field("unknown"), Shape::Deduced));
    }
}
