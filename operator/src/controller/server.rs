//! Reconciling an McpServer: gather what it needs from the caches, render, apply, prune, and
//! write the status of the server and of its routes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, Resource};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use sluice_crds::conditions::reasons;
use sluice_crds::{McpRoute, McpServer};

use super::apply::{Applied, apply_object};
use super::events::{publish, route_transitions, server_transitions};
use super::index::rollout_references;
use super::prune::{self, Owner, cleanup_cluster_objects};
use super::status::{
    self, RouteFacts, ServerFacts, Verdict, desired_replicas, route_status, server_status,
    write_route, write_server,
};
use super::trace::ReconcileSpan;
use super::{Context, Features};
use crate::key::{ObjectKey, ROUTE_KIND, SERVER_KIND};
use crate::render::{
    self, Notice, Object, Observed, Reference, RenderError, Rendered, RouteOutcome, RouteRejection,
    label, render_server,
};
use crate::{Error, Result};

/// Guards the cleanup of a server's cluster-scoped objects (the TokenReview
/// ClusterRoleBinding), which owner references cannot reach. Only servers that have such
/// objects carry it, so deleting any other server never waits for the operator.
pub const FINALIZER: &str = "sluice.dev/cluster-objects";

/// Reconciles one McpServer, in a span naming it: the log lines inside do not repeat it. With
/// a tracer, an OpenTelemetry span too, with an event per object applied.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(
        object.kind = SERVER_KIND,
        object.namespace = server.metadata.namespace.as_deref().unwrap_or_default(),
        object.name = server.metadata.name.as_deref().unwrap_or_default(),
    )
)]
pub async fn reconcile(server: Arc<McpServer>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.reconcile_started(SERVER_KIND);
    let mut span = ReconcileSpan::start(
        &ctx,
        SERVER_KIND,
        server.metadata.namespace.as_deref().unwrap_or_default(),
        server.metadata.name.as_deref().unwrap_or_default(),
    );
    let result = reconcile_server(server.clone(), &ctx, &mut span).await;
    timer.finish(result.as_ref().err().map(Error::metric_label));
    span.finish(&result);
    if result.is_ok() {
        ctx.backoff.reset(&backoff_key(&server));
    }
    result
}

/// The key of a server's backoff.
pub fn backoff_key(server: &McpServer) -> String {
    format!(
        "{SERVER_KIND}/{}/{}",
        server.metadata.namespace.as_deref().unwrap_or_default(),
        server.metadata.name.as_deref().unwrap_or_default()
    )
}

async fn reconcile_server(
    server: Arc<McpServer>,
    ctx: &Context,
    span: &mut ReconcileSpan,
) -> Result<Action> {
    ctx.stores.wait_ready().await?;
    let key = ObjectKey::of_server(&server)?;
    let api: Api<McpServer> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let has_finalizer = server.finalizers().iter().any(|f| f == FINALIZER);
    if server.metadata.deletion_timestamp.is_some() && !has_finalizer {
        forget(&key, ctx);
        return Ok(Action::await_change());
    }
    let plan =
        (server.metadata.deletion_timestamp.is_none()).then(|| Plan::new(&server, &key, ctx));
    let wants_finalizer = has_finalizer
        || plan.as_ref().is_some_and(Plan::has_cluster_objects)
        || has_cluster_objects(ctx, &server, &key);
    if !wants_finalizer {
        return match plan {
            Some(plan) => apply(&server, &key, plan, ctx, span).await,
            None => Ok(Action::await_change()),
        };
    }
    let had_finalizer = has_finalizer;
    let outcome = finalizer(&api, FINALIZER, server.clone(), |event| async {
        match event {
            Finalizer::Apply(server) => match plan {
                Some(plan) => apply(&server, &key, plan, ctx, span).await,
                None => Ok(Action::await_change()),
            },
            Finalizer::Cleanup(server) => cleanup(&server, &key, ctx).await,
        }
    })
    .await;
    if !had_finalizer && outcome.is_ok() {
        ctx.metrics.wrote(SERVER_KIND, "finalizer");
    }
    outcome.map_err(|error| Error::Finalizer {
        object: key.to_string(),
        error: Box::new(error),
    })
}

/// Whether cluster-scoped objects of this server exist (so its finalizer must be in place
/// until they are gone).
fn has_cluster_objects(ctx: &Context, server: &McpServer, key: &ObjectKey) -> bool {
    let owner = owner(server, key);
    !ctx.stores
        .cluster_role_bindings
        .filter(|binding| prune::belongs_to(binding, &owner))
        .is_empty()
}

fn owner<'a>(server: &'a McpServer, key: &'a ObjectKey) -> Owner<'a> {
    Owner {
        namespace: &key.namespace,
        name: &key.name,
        uid: server.metadata.uid.as_deref().unwrap_or_default(),
    }
}

/// Everything a server's reconcile decided before it touches the cluster.
#[derive(Debug)]
struct Plan {
    /// The routes naming the server (not being deleted), by name.
    routes: BTreeMap<String, Arc<McpRoute>>,
    /// Routes that lost a rule spanning servers.
    rejected: Vec<RouteOutcome>,
    /// The render, or why there is none.
    rendered: Result<Rendered, RenderError>,
    /// Referenced Secrets and ConfigMaps that do not exist.
    missing: Vec<(&'static str, String)>,
}

impl Plan {
    fn new(server: &McpServer, key: &ObjectKey, ctx: &Context) -> Self {
        let routes: BTreeMap<String, Arc<McpRoute>> = ctx
            .stores
            .routes
            .filter_in(&key.namespace, |r| {
                r.spec.server_ref.name == key.name && r.metadata.deletion_timestamp.is_none()
            })
            .into_iter()
            .filter_map(|r| Some((r.metadata.name.clone()?, r)))
            .collect();
        let mut lost = cross_server_rejections(ctx, key, &routes);
        let admitted: Vec<&McpRoute> = routes
            .iter()
            .filter(|(name, _)| !lost.keys().any(|k| &k.name == *name))
            .map(|(_, route)| route.as_ref())
            .collect();
        let rejected = std::mem::take(&mut lost)
            .into_iter()
            .map(|(route, error)| RouteOutcome {
                route,
                result: Err(RouteRejection {
                    reason: error.reason(),
                    error,
                }),
            })
            .collect();

        let mut observed = Observed::from_route_statuses(admitted.iter().copied());
        let previous = ctx.index.references(&key.namespace, &key.name);
        fill_versions(&mut observed, ctx, &key.namespace, &previous);
        let mut rendered = render_server(server, &admitted, &ctx.options.render, &observed);
        // The restart hash needs the versions of what this render refers to; the index holds
        // what the last one did. When they differ (first reconcile, or a new reference),
        // render again with the right versions.
        if let Ok(first) = &rendered
            && rollout_set(&first.references) != rollout_set(&previous)
        {
            fill_versions(&mut observed, ctx, &key.namespace, &first.references);
            rendered = render_server(server, &admitted, &ctx.options.render, &observed);
        }
        let missing = match &rendered {
            Ok(rendered) => missing_references(ctx, &key.namespace, &rendered.references),
            Err(_) => Vec::new(),
        };
        Self {
            routes,
            rejected,
            rendered,
            missing,
        }
    }

    fn has_cluster_objects(&self) -> bool {
        self.rendered.as_ref().is_ok_and(|rendered| {
            rendered
                .objects
                .iter()
                .any(|o| matches!(o, Object::ClusterRoleBinding(_)))
        })
    }
}

/// The routes of this server that lose the rule spanning servers
/// ([`render::cross_server_rejections`]), judged among its routes and their rivals: the
/// routes of other existing servers that claim one of the same hosts and prefixes.
fn cross_server_rejections(
    ctx: &Context,
    key: &ObjectKey,
    routes: &BTreeMap<String, Arc<McpRoute>>,
) -> BTreeMap<ObjectKey, RenderError> {
    let servers: Vec<ObjectKey> = routes
        .keys()
        .filter(|name| ctx.stores.servers.get(Some(&key.namespace), name).is_some())
        .map(|name| ObjectKey {
            kind: SERVER_KIND,
            namespace: key.namespace.clone(),
            name: name.clone(),
        })
        .collect();
    let claims: BTreeSet<(&str, &str)> = routes
        .values()
        .flat_map(|r| {
            render::public_hosts(r)
                .iter()
                .map(|h| (h.as_str(), r.spec.path_prefix.as_str()))
        })
        .collect();
    let rivals = if claims.is_empty() {
        Vec::new()
    } else {
        ctx.stores.routes.filter(|other| {
            other.metadata.deletion_timestamp.is_none()
                && render::public_hosts(other)
                    .iter()
                    .any(|h| claims.contains(&(h.as_str(), other.spec.path_prefix.as_str())))
                && other.metadata.namespace.as_deref().is_some_and(|ns| {
                    ctx.stores
                        .servers
                        .get(Some(ns), &other.spec.server_ref.name)
                        .is_some()
                })
        })
    };
    let contenders: Vec<(ObjectKey, &McpRoute)> = routes
        .values()
        .map(Arc::as_ref)
        .chain(rivals.iter().map(Arc::as_ref))
        .filter_map(|r| Some((ObjectKey::of_route(r).ok()?, r)))
        .collect();
    render::cross_server_rejections(&servers, &contenders)
        .into_iter()
        .filter(|(route, _)| route.namespace == key.namespace && routes.contains_key(&route.name))
        .collect()
}

fn rollout_set(references: &[Reference]) -> BTreeSet<(&'static str, &str)> {
    rollout_references(references)
        .map(|r| (r.kind, r.name.as_str()))
        .collect()
}

/// Puts the resource versions of the rollout-relevant references into `observed`.
fn fill_versions(
    observed: &mut Observed,
    ctx: &Context,
    namespace: &str,
    references: &[Reference],
) {
    observed.secret_versions.clear();
    observed.config_map_versions.clear();
    for reference in rollout_references(references) {
        let version = match reference.kind {
            "Secret" => ctx
                .stores
                .secrets
                .get(Some(namespace), &reference.name)
                .and_then(|s| s.metadata.resource_version.clone()),
            _ => ctx
                .stores
                .referenced_config_maps
                .get(Some(namespace), &reference.name)
                .and_then(|c| c.metadata.resource_version.clone()),
        };
        if let Some(version) = version {
            let versions = match reference.kind {
                "Secret" => &mut observed.secret_versions,
                _ => &mut observed.config_map_versions,
            };
            versions.insert(reference.name.clone(), version);
        }
    }
}

fn missing_references(
    ctx: &Context,
    namespace: &str,
    references: &[Reference],
) -> Vec<(&'static str, String)> {
    references
        .iter()
        .filter(|r| match r.kind {
            "Secret" => ctx.stores.secrets.get(Some(namespace), &r.name).is_none(),
            _ => ctx
                .stores
                .referenced_config_maps
                .get(Some(namespace), &r.name)
                .is_none(),
        })
        .map(|r| (r.kind, r.name.clone()))
        .collect()
}

/// An object the cluster cannot take (its kind is not served), and what to say instead.
struct Gated {
    /// The route it belongs to, if it is a route's.
    route: Option<String>,
    /// Why it was left out.
    notice: Notice,
}

/// Splits off the objects of kinds the cluster does not serve, and says so in the log.
fn gate(objects: Vec<Object>, features: &Features) -> (Vec<Object>, Vec<Gated>) {
    let mut kept = Vec::new();
    let mut gated = Vec::new();
    for object in objects {
        match &object {
            Object::HttpRoute(_) if !features.gateway_api => gated.push(Gated {
                route: route_of(&object),
                notice: Notice {
                    reason: reasons::GATEWAY_API_NOT_INSTALLED,
                    message: format!(
                        "{} was not applied: the cluster does not serve gateway.networking.k8s.io/v1 HTTPRoutes (install the Gateway API CRDs, then restart the operator)",
                        object.describe()
                    ),
                },
            }),
            Object::ServiceMonitor(_) if !features.service_monitors => gated.push(Gated {
                route: None,
                notice: Notice {
                    reason: reasons::SERVICE_MONITOR_NOT_INSTALLED,
                    message: format!(
                        "{} was not applied: the cluster does not serve monitoring.coreos.com/v1 ServiceMonitors (install the Prometheus Operator's CRDs, then restart the operator)",
                        object.describe()
                    ),
                },
            }),
            _ => kept.push(object),
        }
    }
    for gate in &gated {
        tracing::warn!(reason = gate.notice.reason, "{}", gate.notice.message);
    }
    (kept, gated)
}

/// The route an object belongs to, by its `sluice.dev/route` label.
fn route_of(object: &Object) -> Option<String> {
    object
        .metadata()
        .labels
        .as_ref()?
        .get(label::ROUTE)
        .cloned()
}

/// An object the API server refused.
struct Failure {
    route: Option<String>,
    error: Error,
}

/// Carries out a server's plan, phase by phase. A spec that cannot be rendered only says why
/// in its status: the objects of the last good spec keep running until it is fixed.
async fn apply(
    server: &McpServer,
    key: &ObjectKey,
    plan: Plan,
    ctx: &Context,
    span: &mut ReconcileSpan,
) -> Result<Action> {
    let Plan {
        routes,
        rejected,
        rendered,
        missing,
    } = plan;
    let mut rendered = match rendered {
        Ok(rendered) => rendered,
        Err(error) => return report_unrenderable(server, key, &error, ctx).await,
    };
    let (objects, gated) = gate(std::mem::take(&mut rendered.objects), &ctx.options.features);
    let mut failures = apply_objects(&objects, ctx, span).await;
    failures.extend(prune_undesired(server, key, &objects, ctx).await);
    let outcomes = rendered.routes.iter().chain(&rejected);
    let route_error = write_route_statuses(key, &routes, outcomes, &failures, &gated, ctx).await;
    let findings = Findings {
        rendered: &rendered,
        missing,
        failures: &failures,
        gated: &gated,
    };
    report_applied(server, key, &findings, ctx).await?;
    remember_references(key, &rendered, ctx);

    if let Some(failure) = failures.into_iter().next() {
        return Err(failure.error);
    }
    if let Some(error) = route_error {
        return Err(error);
    }
    Ok(Action::requeue(next_look(ctx)))
}

/// When to reconcile a converged server again: at the resync, or sooner when its sidecar is
/// to be asked again what Conduit is.
fn next_look(ctx: &Context) -> std::time::Duration {
    match &ctx.verifier {
        Some(verifier) => ctx.options.requeue.min(verifier.every),
        None => ctx.options.requeue,
    }
}

/// The server's status when its spec cannot be rendered: not ready, and why.
async fn report_unrenderable(
    server: &McpServer,
    key: &ObjectKey,
    error: &RenderError,
    ctx: &Context,
) -> Result<Action> {
    tracing::info!(%error, "cannot render");
    let deployment = ctx.stores.deployments.get(Some(&key.namespace), &key.name);
    let facts = ServerFacts {
        generation: server.metadata.generation,
        desired_replicas: desired_replicas(&server.spec, deployment.as_deref()),
        selector: Some(render::pod_selector(&key.name)),
        problem: Some(Verdict::no(error.reason(), error.to_string())),
        deployment: deployment.as_deref(),
        ..ServerFacts::default()
    };
    write_server_status(server, key, &facts, ctx).await?;
    Ok(Action::requeue(ctx.options.requeue))
}

/// Applies each object that differs from its live copy; the API server's refusals are
/// collected, not returned, so one bad object does not hold back the others.
async fn apply_objects(
    objects: &[Object],
    ctx: &Context,
    span: &mut ReconcileSpan,
) -> Vec<Failure> {
    let mut failures = Vec::new();
    for object in objects {
        let outcome = apply_object(&ctx.client, &ctx.stores, object).await;
        span.applied(object, &outcome);
        match outcome {
            Ok(Applied::Written) => {
                ctx.metrics.wrote(object.kind(), "apply");
                tracing::info!(object = %object.describe(), "applied");
            }
            Ok(Applied::Unchanged) => {}
            Err(error) => {
                tracing::warn!(object = %object.describe(), %error, "apply failed");
                failures.push(Failure {
                    route: route_of(object),
                    error,
                });
            }
        }
    }
    failures
}

/// Deletes the server's objects that `desired` no longer holds.
async fn prune_undesired(
    server: &McpServer,
    key: &ObjectKey,
    desired: &[Object],
    ctx: &Context,
) -> Option<Failure> {
    match prune::prune(&ctx.client, &ctx.stores, &owner(server, key), desired).await {
        Ok(deleted) => {
            for object in deleted {
                ctx.metrics
                    .wrote(object.split(' ').next().unwrap_or_default(), "delete");
                tracing::info!(%object, "pruned");
            }
            None
        }
        Err(error) => Some(Failure { route: None, error }),
    }
}

/// Writes each route's status: accepted ones with their endpoints and whether their objects
/// are in place, rejected ones with the reason. Returns the first failed write, after trying
/// every route.
async fn write_route_statuses<'a>(
    key: &ObjectKey,
    routes: &BTreeMap<String, Arc<McpRoute>>,
    outcomes: impl Iterator<Item = &'a RouteOutcome>,
    failures: &[Failure],
    gated: &[Gated],
    ctx: &Context,
) -> Option<Error> {
    let route_api: Api<McpRoute> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let now = status::now();
    let mut first_error = None;
    for outcome in outcomes {
        let Some(route) = routes.get(&outcome.route.name) else {
            continue;
        };
        let facts = match &outcome.result {
            Ok(accepted) => RouteFacts::Accepted {
                accepted,
                programmed: programmed(&outcome.route.name, failures, gated),
            },
            Err(rejection) => RouteFacts::Rejected {
                reason: rejection.reason,
                message: rejection.message(),
            },
        };
        let new = route_status(
            route.status.as_ref(),
            route.metadata.generation,
            &facts,
            &now,
        );
        match write_route(&route_api, route, &new).await {
            Ok(true) => {
                ctx.metrics.wrote(ROUTE_KIND, "status");
                let reference = route.object_ref(&());
                publish(
                    &ctx.recorder,
                    &reference,
                    route_transitions(route.status.as_ref(), &new),
                )
                .await;
            }
            Ok(false) => {}
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    first_error
}

/// What the phases before the server's status found.
struct Findings<'a> {
    rendered: &'a Rendered,
    /// Referenced Secrets and ConfigMaps that do not exist.
    missing: Vec<(&'static str, String)>,
    failures: &'a [Failure],
    gated: &'a [Gated],
}

/// The server's status after its objects were applied: the Deployment's readiness, unless an
/// object of the server's own was refused or a reference is missing.
async fn report_applied(
    server: &McpServer,
    key: &ObjectKey,
    findings: &Findings<'_>,
    ctx: &Context,
) -> Result<()> {
    let Findings {
        rendered,
        missing,
        failures,
        gated,
    } = findings;
    let server_failures: Vec<String> = failures
        .iter()
        .filter(|f| f.route.is_none())
        .map(|f| f.error.to_string())
        .collect();
    let mut degraded = rendered.degraded.clone();
    degraded.extend(
        gated
            .iter()
            .filter(|g| g.route.is_none())
            .map(|g| g.notice.clone()),
    );
    let deployment = ctx.stores.deployments.get(Some(&key.namespace), &key.name);
    let ready_pods = deployment
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let verification = match &ctx.verifier {
        Some(verifier) => Some(verifier.verify(key, ready_pods).await),
        None => None,
    };
    let facts = ServerFacts {
        generation: server.metadata.generation,
        desired_replicas: desired_replicas(&server.spec, deployment.as_deref()),
        selector: Some(render::pod_selector(&key.name)),
        verification,
        problem: (!server_failures.is_empty())
            .then(|| Verdict::no(reasons::APPLY_FAILED, server_failures.join("; "))),
        missing: missing.clone(),
        deployment: deployment.as_deref(),
        degraded,
        url: Some(rendered.server_url.clone()),
        discovery: rendered.discovery.clone(),
    };
    write_server_status(server, key, &facts, ctx).await
}

/// Records what the render refers to and which routes it serves, so that a change to any of
/// them wakes this server.
fn remember_references(key: &ObjectKey, rendered: &Rendered, ctx: &Context) {
    let served: Vec<String> = rendered
        .routes
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.route.name.clone())
        .collect();
    ctx.index
        .record(&key.namespace, &key.name, &rendered.references, &served);
}

/// A route's `Programmed` verdict: its objects were applied, or why not.
fn programmed(route: &str, failures: &[Failure], gated: &[Gated]) -> Verdict {
    let failed: Vec<String> = failures
        .iter()
        .filter(|f| f.route.as_deref() == Some(route))
        .map(|f| f.error.to_string())
        .collect();
    if !failed.is_empty() {
        return Verdict::no(reasons::APPLY_FAILED, failed.join("; "));
    }
    if let Some(gate) = gated.iter().find(|g| g.route.as_deref() == Some(route)) {
        return Verdict::no(gate.notice.reason, gate.notice.message.clone());
    }
    Verdict::yes(reasons::PROGRAMMED, "its Service and exposure are applied")
}

async fn write_server_status(
    server: &McpServer,
    key: &ObjectKey,
    facts: &ServerFacts<'_>,
    ctx: &Context,
) -> Result<()> {
    let api: Api<McpServer> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let new = server_status(server.status.as_ref(), facts, &status::now());
    if write_server(&api, server, &new).await? {
        ctx.metrics.wrote(SERVER_KIND, "status");
        let reference = server.object_ref(&());
        publish(
            &ctx.recorder,
            &reference,
            server_transitions(server.status.as_ref(), &new),
        )
        .await;
    }
    Ok(())
}

/// A server is going away: its namespaced objects go with it (owner references); its
/// cluster-scoped ones are deleted here, before the finalizer is removed.
async fn cleanup(server: &McpServer, key: &ObjectKey, ctx: &Context) -> Result<Action> {
    let deleted = cleanup_cluster_objects(&ctx.client, &owner(server, key)).await?;
    for object in deleted {
        ctx.metrics.wrote("ClusterRoleBinding", "delete");
        tracing::info!(%object, "deleted with its server");
    }
    forget(key, ctx);
    Ok(Action::await_change())
}

/// Drops what the operator remembers of a server that is going away.
fn forget(key: &ObjectKey, ctx: &Context) {
    ctx.index.forget(&key.namespace, &key.name);
    if let Some(verifier) = &ctx.verifier {
        verifier.forget(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_route(route: &str) -> Object {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert(label::ROUTE.to_string(), route.to_string());
        Object::HttpRoute(render::HttpRoute {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "HTTPRoute".into(),
            metadata: kube::api::ObjectMeta {
                name: Some(route.into()),
                namespace: Some("tools".into()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: render::HttpRouteSpec {
                parent_refs: Vec::new(),
                hostnames: Vec::new(),
                rules: Vec::new(),
            },
        })
    }

    #[test]
    fn kinds_the_cluster_does_not_serve_are_left_out_and_said() {
        let objects = vec![http_route("public")];
        let (kept, gated) = gate(objects.clone(), &Features::default());
        assert!(kept.is_empty());
        assert_eq!(gated.len(), 1);
        assert_eq!(gated[0].route.as_deref(), Some("public"));
        assert_eq!(gated[0].notice.reason, reasons::GATEWAY_API_NOT_INSTALLED);
        let verdict = programmed("public", &[], &gated);
        assert_eq!(verdict.reason, reasons::GATEWAY_API_NOT_INSTALLED);

        let all = Features {
            gateway_api: true,
            service_monitors: true,
        };
        let (kept, gated) = gate(objects, &all);
        assert_eq!(kept.len(), 1);
        assert!(gated.is_empty());
        assert_eq!(
            programmed("public", &[], &gated).reason,
            reasons::PROGRAMMED
        );
    }

    #[test]
    fn a_refused_object_of_a_route_fails_only_that_route() {
        let failures = vec![Failure {
            route: Some("a".into()),
            error: Error::CacheNotReady { what: "x" },
        }];
        assert_eq!(
            programmed("a", &failures, &[]).reason,
            reasons::APPLY_FAILED
        );
        assert_eq!(programmed("b", &failures, &[]).reason, reasons::PROGRAMMED);
    }

    #[test]
    fn rollout_sets_ignore_reload_references() {
        let refs = vec![
            Reference {
                kind: "Secret",
                name: "oauth".into(),
                on_change: render::OnChange::Rollout,
            },
            Reference {
                kind: "Secret",
                name: "keys".into(),
                on_change: render::OnChange::Reload,
            },
        ];
        assert_eq!(rollout_set(&refs), BTreeSet::from([("Secret", "oauth")]));
    }
}
