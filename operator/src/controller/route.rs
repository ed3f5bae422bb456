//! Reconciling an McpRoute. A route is rendered as part of its server, whose reconcile writes
//! the route's status; this reconciler covers the one case no server can: a route whose
//! server does not exist (`ServerNotFound`).

use std::sync::Arc;

use kube::api::{Api, Resource};
use kube::runtime::controller::Action;
use sluice_crds::McpRoute;

use super::Context;
use super::events::{publish, route_transitions};
use super::status::{self, RouteFacts, route_status, write_route};
use super::trace::ReconcileSpan;
use crate::key::{ObjectKey, ROUTE_KIND, SERVER_KIND};
use crate::render::RenderError;
use crate::{Error, Result};

/// Reconciles one McpRoute, in a span naming it (and an OpenTelemetry one with a tracer).
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(
        object.kind = ROUTE_KIND,
        object.namespace = route.metadata.namespace.as_deref().unwrap_or_default(),
        object.name = route.metadata.name.as_deref().unwrap_or_default(),
    )
)]
pub async fn reconcile(route: Arc<McpRoute>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.reconcile_started(ROUTE_KIND);
    let span = ReconcileSpan::start(
        &ctx,
        ROUTE_KIND,
        route.metadata.namespace.as_deref().unwrap_or_default(),
        route.metadata.name.as_deref().unwrap_or_default(),
    );
    let result = reconcile_route(&route, &ctx).await;
    timer.finish(result.as_ref().err().map(Error::metric_label));
    span.finish(&result);
    if result.is_ok() {
        ctx.backoff.reset(&backoff_key(&route));
    }
    result
}

/// The key of a route's backoff.
pub fn backoff_key(route: &McpRoute) -> String {
    format!(
        "{ROUTE_KIND}/{}/{}",
        route.metadata.namespace.as_deref().unwrap_or_default(),
        route.metadata.name.as_deref().unwrap_or_default()
    )
}

async fn reconcile_route(route: &McpRoute, ctx: &Context) -> Result<Action> {
    ctx.stores.servers.wait_ready(SERVER_KIND).await?;
    if route.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = ObjectKey::of_route(route)?;
    let server = &route.spec.server_ref.name;
    if ctx
        .stores
        .servers
        .get(Some(&key.namespace), server)
        .is_some()
    {
        // Its server's reconcile renders it and writes its status.
        return Ok(Action::await_change());
    }
    let error = RenderError::ServerNotFound {
        route: key.clone(),
        server: server.clone(),
    };
    let facts = RouteFacts::Rejected {
        reason: error.reason(),
        message: error.to_string(),
    };
    let new = route_status(
        route.status.as_ref(),
        route.metadata.generation,
        &facts,
        &status::now(),
    );
    let api: Api<McpRoute> = Api::namespaced(ctx.client.clone(), &key.namespace);
    if write_route(&api, route, &new).await? {
        ctx.metrics.wrote(ROUTE_KIND, "status");
        publish(
            &ctx.recorder,
            &route.object_ref(&()),
            route_transitions(route.status.as_ref(), &new),
        )
        .await;
    }
    Ok(Action::await_change())
}
