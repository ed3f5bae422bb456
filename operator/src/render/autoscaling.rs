//! The HorizontalPodAutoscaler of a server with `spec.autoscaling`.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sluice_crds::server::Autoscaling;

use super::context::Context;

/// The sidecar's gauge of requests in flight, as a metrics adapter serves it per pod.
pub const IN_FLIGHT_METRIC: &str = "sluice_in_flight_requests";

/// CPU utilisation aimed at when the spec names no target (the autoscaler's own default).
const DEFAULT_CPU_UTILIZATION: i32 = 80;

/// Scales the server's Deployment between the spec's bounds. The operator leaves the
/// Deployment's `replicas` to it (see `workload::deployment`).
pub fn horizontal_pod_autoscaler(
    ctx: &Context<'_>,
    autoscaling: &Autoscaling,
) -> HorizontalPodAutoscaler {
    let cpu = autoscaling.target_cpu_utilization_percentage.or(autoscaling
        .target_in_flight_requests
        .is_none()
        .then_some(DEFAULT_CPU_UTILIZATION));
    let mut metrics = Vec::new();
    if let Some(percent) = cpu {
        metrics.push(MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(percent),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    if let Some(in_flight) = autoscaling.target_in_flight_requests {
        metrics.push(MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: IN_FLIGHT_METRIC.into(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(in_flight.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    HorizontalPodAutoscaler {
        metadata: ctx.metadata(&ctx.key.name),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: ctx.key.name.clone(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(metrics),
            behavior: None,
        }),
        status: None,
    }
}
