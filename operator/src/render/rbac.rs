//! The ClusterRoleBinding that lets a server's sidecar review ServiceAccount tokens.

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::context::Context;
use super::names::{label, token_review_binding_name};

/// The built-in role that may create TokenReviews and SubjectAccessReviews.
pub const AUTH_DELEGATOR: &str = "system:auth-delegator";

/// Binds the server's ServiceAccount to `system:auth-delegator`. Cluster-scoped objects cannot
/// be owned by a namespaced one, so it carries no owner reference; its labels (with
/// `sluice.dev/namespace`) let the controller find and prune it.
pub fn token_review_binding(ctx: &Context<'_>) -> ClusterRoleBinding {
    let mut labels = ctx.labels();
    labels.insert(label::NAMESPACE.into(), ctx.key.namespace.clone());
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(token_review_binding_name(&ctx.key.namespace, &ctx.key.name)),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: AUTH_DELEGATOR.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: ctx.key.name.clone(),
            namespace: Some(ctx.key.namespace.clone()),
            ..Subject::default()
        }]),
    }
}
