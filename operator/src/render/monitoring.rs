//! The Prometheus Operator ServiceMonitor for the sidecar's metrics.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::context::Context;
use super::names::{COMPONENT_SERVER, label, selector_labels};
use super::service::METRICS_PORT_NAME;

/// A `monitoring.coreos.com/v1` ServiceMonitor, with only the fields Sluice sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitor {
    /// Always `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// Always `ServiceMonitor`.
    pub kind: String,
    pub metadata: ObjectMeta,
    /// What to scrape.
    pub spec: ServiceMonitorSpec,
}

/// What a ServiceMonitor scrapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Services (in the ServiceMonitor's namespace) to scrape.
    pub selector: LabelSelector,
    /// Ports of those Services to scrape.
    pub endpoints: Vec<ServiceMonitorEndpoint>,
}

/// One scraped port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorEndpoint {
    /// The Service port's name.
    pub port: String,
    /// HTTP path of the metrics.
    pub path: String,
    /// Scrape interval.
    pub interval: String,
}

impl k8s_openapi::Resource for ServiceMonitor {
    const API_VERSION: &'static str = "monitoring.coreos.com/v1";
    const GROUP: &'static str = "monitoring.coreos.com";
    const KIND: &'static str = "ServiceMonitor";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "servicemonitors";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for ServiceMonitor {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Scrapes the `metrics` port of the server's own Service (not its routes' Services, which
/// lead to the same pods) at `/metrics`.
pub fn service_monitor(ctx: &Context<'_>) -> ServiceMonitor {
    use k8s_openapi::Resource;
    let settings = &ctx.server.spec.monitoring.service_monitor;
    let mut metadata = ctx.metadata(&ctx.key.name);
    let ours = metadata.labels.take().unwrap_or_default();
    // Extra labels (e.g. `release`) may not replace Sluice's own.
    let mut labels = settings.labels.clone();
    labels.extend(ours);
    metadata.labels = Some(labels);
    let mut selector = selector_labels(&ctx.key.name);
    selector.insert(label::COMPONENT.into(), COMPONENT_SERVER.into());
    ServiceMonitor {
        api_version: ServiceMonitor::API_VERSION.into(),
        kind: ServiceMonitor::KIND.into(),
        metadata,
        spec: ServiceMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            endpoints: vec![ServiceMonitorEndpoint {
                port: METRICS_PORT_NAME.into(),
                path: "/metrics".into(),
                interval: settings.interval.clone(),
            }],
        },
    }
}
