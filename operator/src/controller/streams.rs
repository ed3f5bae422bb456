//! The watches that fill the caches and wake the reconcilers, in that order.
//!
//! Every trigger is handed on only after the object is in its cache, so a reconcile never
//! reads a cache older than the event that woke it. A watch that wakes more than one
//! controller is fanned out ([`fan_out`]) rather than opened twice: two watches of one kind
//! would each be in their own order, and deletions would reach one before the other's cache.

use std::fmt::Debug;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use kube::Resource;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::mpsc;

use super::apply::operators_apply_for_cache;

/// A boxed stream of touched objects, as the controllers' triggers take them.
pub type Touched<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// A watch of `api` that fills a cache: returns the cache and the stream of touched objects
/// (the cache is updated before an object is handed on). Managed fields are dropped — they
/// are most of an object's size — but for what applying reads ([`keep_what_apply_reads`]).
pub fn reflected<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, Touched<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object: &mut K| keep_what_apply_reads(object.meta_mut()))
        .reflect(writer)
        .touched_objects();
    (reader, Box::pin(stream))
}

/// Reduces managed fields to what `apply` reads:
/// - the operator's own apply entry, its manager, operation and fields (as text) only: a field
///   it owns and no longer renders must still be applied, for the API server to remove it
///   ([`operators_apply_for_cache`]);
/// - of every other entry owning `spec.replicas`, that field alone, for the handover to an
///   autoscaler (`apply::hand_over_replicas`).
///
/// One rule for every cache, which keeps no entry of the operator's where it applies nothing:
/// on McpServers and McpRoutes it writes status through the subresource (another entry) and
/// finalizers by JSON patch.
fn keep_what_apply_reads(metadata: &mut kube::api::ObjectMeta) {
    let Some(entries) = metadata.managed_fields.take() else {
        return;
    };
    let kept: Vec<ManagedFieldsEntry> = entries
        .into_iter()
        .filter_map(|entry| {
            if let Some(operators) = operators_apply_for_cache(&entry) {
                return Some(operators);
            }
            let owns_replicas = entry
                .fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0.pointer("/f:spec/f:replicas").is_some());
            owns_replicas.then(|| ManagedFieldsEntry {
                fields_v1: Some(FieldsV1(json!({"f:spec": {"f:replicas": {}}}))),
                time: None,
                ..entry
            })
        })
        .collect();
    metadata.managed_fields = (!kept.is_empty()).then_some(kept);
}

/// A metadata-only watch of `api` that fills a cache with names and resource versions only.
pub fn reflected_names<K>(
    api: Api<PartialObjectMeta<K>>,
    config: watcher::Config,
) -> (Store<PartialObjectMeta<K>>, Touched<PartialObjectMeta<K>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    // An `Api` of `PartialObjectMeta` lists and watches metadata only.
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object: &mut PartialObjectMeta<K>| strip_to_name(&mut object.metadata))
        .reflect(writer)
        .touched_objects();
    (reader, Box::pin(stream))
}

/// Keeps what identifies an object and its version; drops labels, annotations and the rest.
fn strip_to_name(metadata: &mut kube::api::ObjectMeta) {
    *metadata = kube::api::ObjectMeta {
        name: metadata.name.take(),
        namespace: metadata.namespace.take(),
        uid: metadata.uid.take(),
        resource_version: metadata.resource_version.take(),
        deletion_timestamp: metadata.deletion_timestamp.take(),
        ..kube::api::ObjectMeta::default()
    };
}

/// How many touched objects a fanned-out consumer may lag behind before the watch waits.
const FAN_OUT_BUFFER: usize = 1024;

/// Hands every object `stream` yields to `consumers` streams. The returned future drives the
/// watch and must be polled for as long as the consumers run; watch errors are logged there
/// (the watch retries with backoff) and not handed on.
pub fn fan_out<K>(
    stream: Touched<K>,
    consumers: usize,
    what: &'static str,
) -> (futures::future::BoxFuture<'static, ()>, Vec<Touched<K>>)
where
    K: Clone + Send + 'static,
{
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..consumers)
        .map(|_| mpsc::channel::<K>(FAN_OUT_BUFFER))
        .unzip();
    let driver = async move {
        let mut stream = stream;
        while let Some(item) = stream.next().await {
            match item {
                Ok(object) => {
                    for sender in &senders {
                        // A consumer that stopped has nothing more to learn.
                        let _ = sender.send(object.clone()).await;
                    }
                }
                Err(error) => tracing::warn!(watch = what, %error, "watch failed; retrying"),
            }
        }
    }
    .boxed();
    let streams = receivers
        .into_iter()
        .map(|receiver| {
            futures::stream::unfold(receiver, |mut receiver| async move {
                let object = receiver.recv().await?;
                Some((Ok(object), receiver))
            })
            .boxed()
        })
        .collect();
    (driver, streams)
}

#[cfg(test)]
mod tests {
    use super::super::FIELD_MANAGER;
    use super::*;

    #[test]
    fn stripped_metadata_keeps_only_identity_and_version() {
        let mut meta = kube::api::ObjectMeta {
            name: Some("s".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            resource_version: Some("7".into()),
            annotations: Some(
                [(
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{\"data\":{\"token\":\"c2VjcmV0\"}}".to_string(),
                )]
                .into(),
            ),
            labels: Some([("a".to_string(), "b".to_string())].into()),
            ..Default::default()
        };
        strip_to_name(&mut meta);
        assert_eq!(meta.name.as_deref(), Some("s"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert!(meta.annotations.is_none());
        assert!(meta.labels.is_none());
    }

    #[test]
    fn managed_fields_keep_the_operators_apply_and_replica_owners() {
        let entry = |manager: &str, operation: &str, subresource: Option<&str>, fields| {
            ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some(operation.into()),
                subresource: subresource.map(str::to_string),
                api_version: Some("apps/v1".into()),
                fields_type: Some("FieldsV1".into()),
                time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                )),
                fields_v1: Some(FieldsV1(fields)),
            }
        };
        let operators = json!({
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:tolerations": {}}}},
        });
        let mut meta = kube::api::ObjectMeta {
            managed_fields: Some(vec![
                entry(FIELD_MANAGER, "Apply", None, operators.clone()),
                entry(
                    FIELD_MANAGER,
                    "Apply",
                    Some("status"),
                    json!({"f:status": {}}),
                ),
                entry(
                    "kube-controller-manager",
                    "Update",
                    Some("status"),
                    json!({"f:status": {}}),
                ),
                entry(
                    "hpa",
                    "Update",
                    Some("scale"),
                    json!({"f:spec": {"f:replicas": {}, "f:x": {}}}),
                ),
            ]),
            ..kube::api::ObjectMeta::default()
        };
        keep_what_apply_reads(&mut meta);
        let kept = meta.managed_fields.unwrap();
        assert_eq!(kept.len(), 2, "{kept:#?}");
        assert_eq!(
            kept[0],
            ManagedFieldsEntry {
                manager: Some(FIELD_MANAGER.into()),
                operation: Some("Apply".into()),
                fields_v1: Some(FieldsV1(json!(operators.to_string()))),
                ..ManagedFieldsEntry::default()
            }
        );
        assert_eq!(kept[1].manager.as_deref(), Some("hpa"));
        assert_eq!(kept[1].subresource.as_deref(), Some("scale"));
        assert_eq!(
            kept[1].fields_v1,
            Some(FieldsV1(json!({"f:spec": {"f:replicas": {}}})))
        );
        assert!(kept[1].time.is_none());

        let mut unowned = kube::api::ObjectMeta {
            managed_fields: Some(vec![entry("kubectl", "Apply", None, json!({"f:spec": {}}))]),
            ..kube::api::ObjectMeta::default()
        };
        keep_what_apply_reads(&mut unowned);
        assert_eq!(unowned.managed_fields, None);
    }

    #[tokio::test]
    async fn fanned_out_objects_reach_every_consumer_in_order() {
        let source: Touched<u32> =
            futures::stream::iter(vec![Ok(1), Err(watcher::Error::NoResourceVersion), Ok(2)])
                .boxed();
        let (driver, consumers) = fan_out(source, 2, "test");
        tokio::spawn(driver);
        for consumer in consumers {
            let seen: Vec<u32> = consumer.map(|item| item.unwrap()).collect().await;
            assert_eq!(seen, [1, 2]);
        }
    }
}
