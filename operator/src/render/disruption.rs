//! The PodDisruptionBudget of a server with more than one replica.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::context::Context;
use super::names::selector_labels;

/// At most one pod down at a time during voluntary disruptions. Rendered only with more than
/// one replica: with one, it would block node drains for good.
pub fn pod_disruption_budget(ctx: &Context<'_>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ctx.metadata(&ctx.key.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&ctx.key.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
