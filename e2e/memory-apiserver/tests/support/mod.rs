//! Fixtures shared by the integration tests: object builders and small waiting helpers.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ObjectMeta};
use serde_json::{Value, json};

/// A ConfigMap builder.
pub struct Cm(ConfigMap);

impl Cm {
    pub fn named(name: &str) -> Self {
        Self(ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        })
    }

    pub fn data(mut self, k: &str, v: &str) -> Self {
        self.0
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert(k.into(), v.into());
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(k.into(), v.into());
        self
    }

    pub fn finalizer(mut self, f: &str) -> Self {
        self.0
            .metadata
            .finalizers
            .get_or_insert_with(Vec::new)
            .push(f.into());
        self
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.0.metadata.namespace = Some(ns.into());
        self
    }

    /// Owned by `owner` (controller reference).
    pub fn owned_by<K: Resource<DynamicType = ()>>(mut self, owner: &K) -> Self {
        self.0
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(owner_ref(owner));
        self
    }

    pub fn build(self) -> ConfigMap {
        self.0
    }
}

pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: Some(true),
    }
}

/// An apply configuration of a Deployment (as JSON, the way a controller sends it).
pub fn deployment_apply(name: &str, image: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]}
            }
        }
    })
}

pub fn deployment(name: &str, image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(deployment_apply(name, image, replicas)).expect("a valid Deployment")
}

/// The McpServer resource, for `Api<DynamicObject>`.
pub fn mcp_server_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "sluice.dev",
        "v1alpha1",
        "McpServer",
    ))
}

/// A minimal valid McpServer.
pub fn mcp_server(name: &str, url: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "McpServer",
        "metadata": {"name": name},
        "spec": {"phabricator": {"url": url}}
    }))
    .expect("a valid McpServer")
}

/// The status code and reason of a kube API error.
pub fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String, String) {
    match result {
        Err(kube::Error::Api(status)) => {
            (status.code, status.reason.clone(), status.message.clone())
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Waits up to 10 s for a future (a stalled watch fails the test instead of hanging it).
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The managedFields entries of an object, as (manager, operation, subresource, fieldsV1).
pub fn managed(meta: &ObjectMeta) -> Vec<(String, String, Option<String>, Value)> {
    meta.managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.manager.unwrap_or_default(),
                e.operation.unwrap_or_default(),
                e.subresource,
                e.fields_v1.map(|f| f.0).unwrap_or(Value::Null),
            )
        })
        .collect()
}
