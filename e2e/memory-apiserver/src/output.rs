//! Objects as responses show them: at the requested version, or as PartialObjectMetadata; lists as bytes.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value, json};

use crate::catalog::ResourceType;

/// How the client asked to see objects (`Accept: ...;as=PartialObjectMetadata[List]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Full,
    Metadata,
}

impl View {
    pub(crate) fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("as=PartialObjectMetadata") => View::Metadata,
            _ => View::Full,
        }
    }
}

/// One object as the client sees it (None: the stored JSON serves as is).
pub(crate) fn transform(ty: &ResourceType, obj: &Value, view: View) -> Option<Value> {
    match view {
        View::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new())),
        })),
        View::Full if ty.version != ty.storage_version => {
            let mut out = obj.clone();
            if let Some(map) = out.as_object_mut() {
                map.insert("apiVersion".into(), json!(ty.api_version()));
            }
            Some(out)
        }
        View::Full => None,
    }
}

/// One object, serialised.
pub(crate) fn object_bytes(ty: &ResourceType, obj: &Value, view: View) -> Bytes {
    let v = transform(ty, obj, view);
    Bytes::from(serde_json::to_vec(v.as_ref().unwrap_or(obj)).unwrap_or_default())
}

/// A list, serialised without copying the items into one big value first.
pub(crate) fn list_bytes<'a>(
    ty: &ResourceType,
    items: impl Iterator<Item = &'a Value>,
    resource_version: u64,
    continue_token: Option<&str>,
    view: View,
) -> Bytes {
    let (kind, api_version) = match view {
        View::Metadata => (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        ),
        View::Full => (ty.list_kind.clone(), ty.api_version()),
    };
    let mut meta = Map::new();
    meta.insert(
        "resourceVersion".into(),
        json!(resource_version.to_string()),
    );
    if let Some(c) = continue_token {
        meta.insert("continue".into(), json!(c));
    }
    let head = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
    let mut out = BytesMut::new();
    let head = serde_json::to_vec(&head).unwrap_or_default();
    // `{...}` → `{...,"items":[` + items + `]}`
    out.put_slice(head.strip_suffix(b"}").unwrap_or(&head));
    out.put_slice(b",\"items\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        let v = transform(ty, item, view);
        out.put_slice(&serde_json::to_vec(v.as_ref().unwrap_or(item)).unwrap_or_default());
    }
    out.put_slice(b"]}");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn lists_are_valid_json() {
        let catalog = Catalog::with_builtins();
        let ty = catalog.get("", "v1", "configmaps").expect("served");
        let items = [
            json!({"metadata": {"name": "a"}}),
            json!({"metadata": {"name": "b"}}),
        ];
        let bytes = list_bytes(&ty, items.iter(), 7, Some("tok"), View::Full);
        let list: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(list["kind"], "ConfigMapList");
        assert_eq!(list["metadata"]["continue"], "tok");
        assert_eq!(list["items"][1]["metadata"]["name"], "b");
        let meta = list_bytes(&ty, items.iter(), 7, None, View::Metadata);
        let meta: Value = serde_json::from_slice(&meta).expect("json");
        assert_eq!(meta["items"][0]["kind"], "PartialObjectMetadata");
        let empty: Value =
            serde_json::from_slice(&list_bytes(&ty, [].iter(), 1, None, View::Full)).expect("json");
        assert_eq!(empty["items"], json!([]));
    }
}
