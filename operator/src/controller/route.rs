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
use crate::render::{self, RenderError};
use crate::{Error, Result};

/// The kind, for metrics and logs.
pub const KIND: &str = "McpRoute";

/// Reconciles one McpRoute.
pub async fn reconcile(route: Arc<McpRoute>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.reconcile_started(KIND);
    let result = reconcile_route(&route, &ctx).await;
    timer.finish(result.as_ref().err().map(Error::metric_label));
    if result.is_ok() {
        ctx.backoff.reset(&backoff_key(&route));
    }
    result
}

/// The key of a route's backoff.
pub fn backoff_key(route: &McpRoute) -> String {
    format!(
        "{KIND}/{}/{}",
        route.metadata.namespace.as_deref().unwrap_or_default(),
        route.metadata.name.as_deref().unwrap_or_default()
    )
}

async fn reconcile_route(route: &McpRoute, ctx: &Context) -> Result<Action> {
    ctx.stores.servers.wait_ready("McpServer").await?;
    if route.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = render::route_key(route)?;
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
        ctx.metrics.wrote(KIND, "status");
        publish(
            &ctx.recorder,
            &route.object_ref(&()),
            route_transitions(route.status.as_ref(), &new),
        )
        .await;
    }
    Ok(Action::await_change())
}
