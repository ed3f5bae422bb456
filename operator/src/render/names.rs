//! Object names, the labels every rendered object carries, and owner references.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use crate::key::ObjectKey;

/// `app.kubernetes.io/name` of every object: what the application is.
pub const APP_NAME: &str = "mcp-server";
/// `app.kubernetes.io/part-of`.
pub const PART_OF: &str = "sluice";
/// `app.kubernetes.io/managed-by`, also the label the controller prunes by.
pub const MANAGED_BY: &str = "sluice-operator";
/// `app.kubernetes.io/component` of an McpServer's own objects.
pub const COMPONENT_SERVER: &str = "mcp-server";
/// `app.kubernetes.io/component` of an McpRoute's objects.
pub const COMPONENT_ROUTE: &str = "mcp-route";

/// Label keys.
pub mod label {
    /// What the application is.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// Which McpServer.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `mcp-server` or `mcp-route`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// Always `sluice`.
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    /// Always `sluice-operator`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The Conduit image tag.
    pub const VERSION: &str = "app.kubernetes.io/version";
    /// The McpServer an object belongs to.
    pub const SERVER: &str = "sluice.dev/server";
    /// The McpRoute an object belongs to.
    pub const ROUTE: &str = "sluice.dev/route";
    /// The namespace of the McpServer, on cluster-scoped objects (they have none of their own).
    pub const NAMESPACE: &str = "sluice.dev/namespace";
}

/// Name of the ConfigMap holding the sidecar config of server `server`.
pub fn config_map_name(server: &str) -> String {
    format!("{server}-sluice-proxy")
}

/// Name of the ReadWriteOnce claim the operator creates for server `server`'s OAuth state
/// (`storage: persistent`).
pub fn oauth_state_claim_name(server: &str) -> String {
    format!("{server}-oauth-state")
}

/// Name of the ReadWriteMany claim for `storage: shared`. Apart from the ReadWriteOnce one: a
/// claim's access mode cannot change, so switching creates the other claim (and prunes the
/// first).
pub fn shared_oauth_state_claim_name(server: &str) -> String {
    format!("{server}-oauth-state-shared")
}

/// Name of the ClusterRoleBinding that lets server `server`'s ServiceAccount call TokenReview.
/// Cluster-scoped, so the namespace is part of the name.
pub fn token_review_binding_name(namespace: &str, server: &str) -> String {
    format!("sluice-{namespace}-{server}-tokenreview")
}

/// The labels that select server `server`'s pods. Never change these: a Deployment's selector
/// is immutable.
pub fn selector_labels(server: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (label::NAME.to_string(), APP_NAME.to_string()),
        (label::INSTANCE.to_string(), server.to_string()),
    ])
}

/// [`selector_labels`] as a label selector string (`k=v,k=v`): the scale subresource's
/// `status.selector`.
pub fn pod_selector(server: &str) -> String {
    selector_labels(server)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The labels of every object of one McpServer (its routes' objects add `sluice.dev/route`).
pub fn common_labels(
    server: &str,
    component: &str,
    version: Option<&str>,
) -> BTreeMap<String, String> {
    let mut labels = selector_labels(server);
    labels.insert(label::COMPONENT.into(), component.into());
    labels.insert(label::PART_OF.into(), PART_OF.into());
    labels.insert(label::MANAGED_BY.into(), MANAGED_BY.into());
    labels.insert(label::SERVER.into(), server.into());
    if let Some(version) = version {
        labels.insert(label::VERSION.into(), version.into());
    }
    labels
}

/// The tag of an image reference (`repo:tag` or `repo:tag@digest`), when it is a valid label
/// value. A digest-only reference has no version to show.
pub fn image_version(image: &str) -> Option<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let (_, tag) = last_segment.split_once(':')?;
    is_label_value(tag).then(|| tag.to_string())
}

/// Whether `value` is a valid, non-empty label value.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
}

/// The object an owner reference points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The owner's `apiVersion`.
    pub api_version: String,
    /// Its key (kind, namespace, name).
    pub key: ObjectKey,
    /// Its `metadata.uid`, or a placeholder when rendering offline.
    pub uid: String,
}

impl Owner {
    /// The owner reference: the owner controls the object and blocks its deletion until the
    /// object is gone (foreground deletion).
    pub fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.key.kind.to_string(),
            name: self.key.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Metadata for a namespaced object named `name`, owned by this owner.
    pub fn metadata(&self, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.key.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.reference()]),
            ..ObjectMeta::default()
        }
    }
}

/// Said once when owner references carry placeholder uids.
pub const PLACEHOLDER_UID_WARNING: &str = "objects read from files have no metadata.uid: owner references carry a placeholder uid; the controller uses the live object's uid when it applies";

/// A stable stand-in for the `metadata.uid` of an object read from a file: UUID-shaped (an
/// RFC 9562 version 8 UUID) from the SHA-256 of kind, namespace and name. The controller uses
/// the live object's uid instead.
pub fn placeholder_uid(key: &ObjectKey) -> String {
    let digest = Sha256::digest(format!("{}/{}/{}", key.kind, key.namespace, key.name));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A volume name (a DNS label, at most 63 characters) for a source named `name`: the name
/// itself when it fits, else a shortened form with a hash so distinct names stay distinct.
pub fn volume_name(prefix: &str, name: &str) -> String {
    let candidate = format!("{prefix}{name}");
    let is_label = candidate.len() <= 63
        && candidate
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !candidate.ends_with('-');
    if is_label {
        return candidate;
    }
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
    let readable: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(63usize.saturating_sub(prefix.len() + hash.len() + 1))
        .collect();
    format!("{prefix}{}-{hash}", readable.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_versions() {
        assert_eq!(
            image_version("ghcr.io/skroutz/conduit:0.2.2").as_deref(),
            Some("0.2.2")
        );
        assert_eq!(
            image_version("localhost:5000/conduit:v1").as_deref(),
            Some("v1")
        );
        assert_eq!(
            image_version("conduit:v1@sha256:abcd").as_deref(),
            Some("v1")
        );
        assert_eq!(image_version("localhost:5000/conduit"), None);
        assert_eq!(image_version("conduit@sha256:abcd"), None);
        assert_eq!(image_version("conduit:-bad"), None);
    }

    #[test]
    fn placeholder_uids_are_stable_uuid_shaped_and_distinct() {
        let key = |name: &str| ObjectKey {
            kind: "McpServer",
            namespace: "tools".into(),
            name: name.into(),
        };
        let a = placeholder_uid(&key("a"));
        assert_eq!(a, placeholder_uid(&key("a")));
        assert_ne!(a, placeholder_uid(&key("b")));
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "8", "version nibble");
    }

    #[test]
    fn volume_names_are_dns_labels() {
        assert_eq!(volume_name("secret-", "api-keys"), "secret-api-keys");
        let dotted = volume_name("secret-", "keys.example.com");
        assert!(dotted.starts_with("secret-keys-example-com-"), "{dotted}");
        let long = volume_name("secret-", &"a".repeat(200));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, volume_name("secret-", &"a".repeat(201)));
    }
}
