//! The rendered objects as one typed enum, and their YAML stream.

use k8s_openapi::Resource as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use super::expose::HttpRoute;
use super::monitoring::ServiceMonitor;
use crate::render_error::RenderError;

/// One object the operator applies.
#[allow(
    clippy::large_enum_variant,
    reason = "objects are built once per render and kept in one Vec; boxing would only add noise"
)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// The server's ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// Lets the ServiceAccount call TokenReview (cluster-scoped).
    ClusterRoleBinding(ClusterRoleBinding),
    /// The sidecar config, `config.yaml`.
    ConfigMap(ConfigMap),
    /// The server's Service or a route's.
    Service(Service),
    /// The claim holding Conduit's OAuth state, when the operator creates it.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// Conduit and the sidecar.
    Deployment(Deployment),
    /// Scales the Deployment, with `spec.autoscaling`.
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    /// Keeps one pod up during voluntary disruptions.
    PodDisruptionBudget(PodDisruptionBudget),
    /// Who may reach the pods and where they may connect.
    NetworkPolicy(NetworkPolicy),
    /// A route's public exposure through an Ingress controller.
    Ingress(Ingress),
    /// A route's public exposure through a Gateway.
    HttpRoute(HttpRoute),
    /// Prometheus Operator scrape config.
    ServiceMonitor(ServiceMonitor),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::ServiceAccount(_) => ServiceAccount::KIND,
            Object::ClusterRoleBinding(_) => ClusterRoleBinding::KIND,
            Object::ConfigMap(_) => ConfigMap::KIND,
            Object::Service(_) => Service::KIND,
            Object::PersistentVolumeClaim(_) => PersistentVolumeClaim::KIND,
            Object::Deployment(_) => Deployment::KIND,
            Object::HorizontalPodAutoscaler(_) => HorizontalPodAutoscaler::KIND,
            Object::PodDisruptionBudget(_) => PodDisruptionBudget::KIND,
            Object::NetworkPolicy(_) => NetworkPolicy::KIND,
            Object::Ingress(_) => Ingress::KIND,
            Object::HttpRoute(_) => HttpRoute::KIND,
            Object::ServiceMonitor(_) => ServiceMonitor::KIND,
        }
    }

    pub fn api_version(&self) -> &'static str {
        match self {
            Object::ServiceAccount(_) => ServiceAccount::API_VERSION,
            Object::ClusterRoleBinding(_) => ClusterRoleBinding::API_VERSION,
            Object::ConfigMap(_) => ConfigMap::API_VERSION,
            Object::Service(_) => Service::API_VERSION,
            Object::PersistentVolumeClaim(_) => PersistentVolumeClaim::API_VERSION,
            Object::Deployment(_) => Deployment::API_VERSION,
            Object::HorizontalPodAutoscaler(_) => HorizontalPodAutoscaler::API_VERSION,
            Object::PodDisruptionBudget(_) => PodDisruptionBudget::API_VERSION,
            Object::NetworkPolicy(_) => NetworkPolicy::API_VERSION,
            Object::Ingress(_) => Ingress::API_VERSION,
            Object::HttpRoute(_) => HttpRoute::API_VERSION,
            Object::ServiceMonitor(_) => ServiceMonitor::API_VERSION,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::ServiceAccount(o) => &o.metadata,
            Object::ClusterRoleBinding(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::PersistentVolumeClaim(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::HorizontalPodAutoscaler(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::Ingress(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::ServiceMonitor(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The object's namespace; `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// `Kind namespace/name` (or `Kind name`), for messages.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(namespace) => format!("{} {namespace}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }
}

/// The objects as one YAML stream, each document opened by `---`. The same objects always
/// give the same bytes.
pub fn to_yaml_stream(objects: &[Object]) -> Result<String, RenderError> {
    let mut out = String::new();
    for object in objects {
        let document = serde_saphyr::to_string(object).map_err(|e| RenderError::Serialize {
            what: object.describe(),
            message: e.to_string(),
        })?;
        out.push_str("---\n");
        out.push_str(&document);
        if !document.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}
