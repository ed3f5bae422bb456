//! The controllers: McpServers into their objects, McpRoutes into their servers.
//!
//! Per watched namespace (or once for all), a server controller and a route controller run
//! on caches filled by watches ([`streams`]) and share one [`Context`]. A server's reconcile
//! ([`server`]) renders the server with its routes, applies ([`apply`]), prunes ([`prune`]) and
//! writes the status of the server and its routes ([`status`]); the route controller
//! ([`route`]) only speaks for routes whose server is missing. What wakes a server: the server
//! itself, its routes and rivals for their hosts, its own objects (by label), and the Secrets
//! and ConfigMaps its last render referred to ([`index`]).

mod apply;
mod events;
mod index;
mod prune;
mod route;
mod scope;
mod server;
mod status;
mod streams;
mod trace;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource};
use sluice_crds::{McpRoute, McpServer};
use tokio::sync::watch;

pub use self::apply::REPLICAS_HANDOVER_MANAGER;
use self::index::Index;
pub use self::scope::Scope;
use self::scope::{Stores, api, owned_selector};
pub use self::server::FINALIZER;
use self::streams::{Touched, fan_out, reflected, reflected_names};
use crate::metrics::Metrics;
use crate::render::{HttpRoute, RenderOptions, ServiceMonitor, label, public_hosts};
use crate::{Error, Result};

/// The field manager of every write the operator makes (objects and statuses), but for the
/// one that hands a replica count to an autoscaler ([`REPLICAS_HANDOVER_MANAGER`]).
pub const FIELD_MANAGER: &str = "sluice-operator";

/// The `reportingController` of the operator's events.
pub const REPORTER: &str = "sluice.dev/sluice-operator";

/// Kinds served by the cluster that some specs need and the operator only uses when present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `gateway.networking.k8s.io/v1` HTTPRoutes.
    pub gateway_api: bool,
    /// `monitoring.coreos.com/v1` ServiceMonitors.
    pub service_monitors: bool,
}

impl Features {
    /// Asks the API server's discovery which optional kinds it serves.
    pub async fn discover(client: &Client) -> Result<Self> {
        let features = Self {
            gateway_api: serves(client, "gateway.networking.k8s.io/v1", "httproutes").await?,
            service_monitors: serves(client, "monitoring.coreos.com/v1", "servicemonitors").await?,
        };
        if !features.gateway_api {
            tracing::warn!(
                "the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute) is not installed: routes that ask for an HTTPRoute will report GatewayApiNotInstalled until it is and the operator restarts"
            );
        }
        if !features.service_monitors {
            tracing::info!(
                "ServiceMonitors (monitoring.coreos.com/v1) are not served: servers that ask for one will report ServiceMonitorNotInstalled"
            );
        }
        Ok(features)
    }
}

async fn serves(client: &Client, api_version: &str, resource: &str) -> Result<bool> {
    match client.list_api_group_resources(api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == resource)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(Error::kube(format!("discover {api_version}"), error)),
    }
}

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Images and other render settings.
    pub render: RenderOptions,
    /// The namespaces watched.
    pub scope: Scope,
    /// Optional kinds the cluster serves.
    pub features: Features,
    /// Reconciles running at once, per controller and namespace.
    pub concurrency: u16,
    /// How long triggers for one object are gathered into one reconcile.
    pub debounce: Duration,
    /// How long after a successful reconcile an object is reconciled again regardless.
    pub requeue: Duration,
    /// This instance's name in events (`reportingInstance`).
    pub identity: String,
    /// Where each server's sidecar admin port is reached, `{name}` and `{namespace}`
    /// replaced, to read what Conduit is (`Verified`); `None` does not ask.
    pub sidecar_admin_url: Option<String>,
    /// How often each server's sidecar is asked (at most).
    pub verify_every: Duration,
    /// Exports a span per reconcile (OpenTelemetry, from the standard `OTEL_*` environment);
    /// `None`: no traces.
    pub tracer: Option<sluice_otlp::Tracer>,
}

/// The sidecars' admin port through each server's own Service (port 9090, `metrics`).
pub const SIDECAR_ADMIN_URL: &str = "http://{name}.{namespace}.svc:9090";

impl Default for Options {
    fn default() -> Self {
        Self {
            render: RenderOptions::default(),
            scope: Scope::All,
            features: Features::default(),
            concurrency: 8,
            debounce: Duration::from_millis(200),
            requeue: Duration::from_secs(300),
            identity: "sluice-operator".into(),
            sidecar_admin_url: Some(SIDECAR_ADMIN_URL.into()),
            verify_every: Duration::from_secs(60),
            tracer: None,
        }
    }
}

/// What every reconcile shares.
pub(crate) struct Context {
    pub client: Client,
    pub options: Options,
    /// The watches' caches: reconciles read the cluster from here, never from the API server.
    pub stores: Stores,
    /// What the last reconcile of each server referred to, so that a change wakes it.
    pub index: Index,
    pub metrics: Metrics,
    /// Asks sidecars what Conduit is; `None` when `sidecar_admin_url` is.
    pub verifier: Option<verify::Verifier>,
    /// Publishes the events of status transitions.
    pub recorder: Recorder,
    /// Failures in a row, per object.
    pub backoff: Backoffs,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Exponential backoff per object: failures in a row double the wait, from 500 ms for
/// conflicts and 2 s for other errors, up to 5 minutes; a success resets it.
#[derive(Debug, Default)]
pub(crate) struct Backoffs {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoffs {
    const MAX: Duration = Duration::from_secs(300);

    /// Records a failure of `key` and returns how long to wait before the next try.
    pub fn next(&self, key: String, conflict: bool) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let attempt = failures.entry(key).or_insert(0);
        let delay = Self::delay(*attempt, conflict);
        *attempt = attempt.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// The wait after `attempt` failures in a row.
    pub fn delay(attempt: u32, conflict: bool) -> Duration {
        let base = if conflict {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        };
        base.saturating_mul(1u32 << attempt.min(16)).min(Self::MAX)
    }
}

fn server_error_policy(server: Arc<McpServer>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_later(server::backoff_key(&server), error, &ctx)
}

fn route_error_policy(route: Arc<McpRoute>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_later(route::backoff_key(&route), error, &ctx)
}

/// Requeues a failed object after its backoff. Runs outside the reconcile's span, so the log
/// line names the object itself.
fn retry_later(key: String, error: &Error, ctx: &Context) -> Action {
    let wait = ctx.backoff.next(key.clone(), error.is_conflict());
    tracing::warn!(object = %key, %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The watches of one partition, before they are handed to the controllers.
struct Partition {
    namespace: Option<String>,
    servers: Touched<McpServer>,
    servers_for_routes: Touched<McpServer>,
    servers_for_collisions: Touched<McpServer>,
    routes: Touched<McpRoute>,
    routes_for_servers: Touched<McpRoute>,
    owned: Owned,
    secrets: Touched<PartialObjectMeta<Secret>>,
    config_maps: Touched<PartialObjectMeta<ConfigMap>>,
}

/// Trigger streams of the owned kinds.
struct Owned {
    service_accounts: Touched<ServiceAccount>,
    config_maps: Touched<ConfigMap>,
    services: Touched<Service>,
    persistent_volume_claims: Touched<PersistentVolumeClaim>,
    deployments: Touched<Deployment>,
    horizontal_pod_autoscalers: Touched<HorizontalPodAutoscaler>,
    pod_disruption_budgets: Touched<PodDisruptionBudget>,
    network_policies: Touched<NetworkPolicy>,
    ingresses: Touched<Ingress>,
    http_routes: Option<Touched<HttpRoute>>,
    service_monitors: Option<Touched<ServiceMonitor>>,
    cluster_role_bindings: Touched<ClusterRoleBinding>,
}

/// Runs the controllers until `stop` turns true, then lets running reconciles finish.
pub(crate) async fn run(
    client: Client,
    options: Options,
    metrics: Metrics,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut stores = Stores::default();
    if options.features.gateway_api {
        stores.http_routes = Some(Default::default());
    }
    if options.features.service_monitors {
        stores.service_monitors = Some(Default::default());
    }
    let mut drivers: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut partitions = Vec::new();
    for namespace in options.scope.partitions() {
        partitions.push(watch_partition(
            &client,
            namespace,
            &options.features,
            &mut stores,
            &mut drivers,
        ));
    }
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: REPORTER.into(),
            instance: Some(options.identity.clone()),
        },
    );
    let verifier = options
        .sidecar_admin_url
        .clone()
        .map(|url| verify::Verifier::new(url, options.verify_every));
    let ctx = Arc::new(Context {
        verifier,
        client,
        options,
        stores,
        index: Index::default(),
        metrics,
        recorder,
        backoff: Backoffs::default(),
    });

    let mut controllers: Vec<BoxFuture<'static, ()>> = Vec::new();
    for partition in partitions {
        let (servers, routes) = controllers_of(partition, &ctx, &stop);
        controllers.push(servers);
        controllers.push(routes);
    }
    let gauge = {
        let ctx = ctx.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                ctx.metrics.set_cached_objects(ctx.stores.len());
            }
        }
    };
    tracing::info!(scope = ?ctx.options.scope, "controllers starting");
    let watches = futures::future::join_all(drivers);
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        _ = watches => tracing::warn!("the watches ended"),
        () = gauge => {}
    }
    tracing::info!("controllers stopped");
    Ok(())
}

/// Opens the watches of one partition, fills the caches, and returns the trigger streams.
fn watch_partition(
    client: &Client,
    namespace: Option<String>,
    features: &Features,
    stores: &mut Stores,
    drivers: &mut Vec<BoxFuture<'static, ()>>,
) -> Partition {
    let ns = namespace.as_deref();
    let owned_config = || watcher::Config::default().labels(&owned_selector());

    let (reader, stream) = reflected(api::<McpServer>(client, ns), watcher::Config::default());
    stores.servers.push(namespace.clone(), reader);
    let (driver, mut servers) = fan_out(stream, 3, "McpServer");
    drivers.push(driver);
    let (reader, stream) = reflected(api::<McpRoute>(client, ns), watcher::Config::default());
    stores.routes.push(namespace.clone(), reader);
    let (driver, mut routes) = fan_out(stream, 2, "McpRoute");
    drivers.push(driver);

    macro_rules! owned {
        ($kind:ty, $field:ident) => {{
            let (reader, stream) = reflected(api::<$kind>(client, ns), owned_config());
            stores.$field.push(namespace.clone(), reader);
            stream
        }};
    }
    let http_routes = features.gateway_api.then(|| {
        let (reader, stream) = reflected(api::<HttpRoute>(client, ns), owned_config());
        if let Some(store) = stores.http_routes.as_mut() {
            store.push(namespace.clone(), reader);
        }
        stream
    });
    let service_monitors = features.service_monitors.then(|| {
        let (reader, stream) = reflected(api::<ServiceMonitor>(client, ns), owned_config());
        if let Some(store) = stores.service_monitors.as_mut() {
            store.push(namespace.clone(), reader);
        }
        stream
    });
    // Cluster-scoped: one watch per partition, narrowed to the partition's namespace.
    let binding_selector = match ns {
        Some(ns) => format!("{},{}={ns}", owned_selector(), label::NAMESPACE),
        None => owned_selector(),
    };
    let (reader, cluster_role_bindings) = reflected(
        Api::<ClusterRoleBinding>::all(client.clone()),
        watcher::Config::default().labels(&binding_selector),
    );
    stores.cluster_role_bindings.push(namespace.clone(), reader);
    let owned = Owned {
        service_accounts: owned!(ServiceAccount, service_accounts),
        config_maps: owned!(ConfigMap, config_maps),
        services: owned!(Service, services),
        persistent_volume_claims: owned!(PersistentVolumeClaim, persistent_volume_claims),
        deployments: owned!(Deployment, deployments),
        horizontal_pod_autoscalers: owned!(HorizontalPodAutoscaler, horizontal_pod_autoscalers),
        pod_disruption_budgets: owned!(PodDisruptionBudget, pod_disruption_budgets),
        network_policies: owned!(NetworkPolicy, network_policies),
        ingresses: owned!(Ingress, ingresses),
        http_routes,
        service_monitors,
        cluster_role_bindings,
    };
    let (reader, secrets) = reflected_names(
        api::<PartialObjectMeta<Secret>>(client, ns),
        watcher::Config::default(),
    );
    stores.secrets.push(namespace.clone(), reader);
    let (reader, config_maps) = reflected_names(
        api::<PartialObjectMeta<ConfigMap>>(client, ns),
        watcher::Config::default(),
    );
    stores
        .referenced_config_maps
        .push(namespace.clone(), reader);

    let take = |streams: &mut Vec<Touched<_>>| streams.remove(0);
    Partition {
        namespace,
        servers: take(&mut servers),
        servers_for_routes: take(&mut servers),
        servers_for_collisions: take(&mut servers),
        routes: routes.remove(0),
        routes_for_servers: routes.remove(0),
        owned,
        secrets,
        config_maps,
    }
}

/// The server and route controllers of one partition, as futures that end after `stop`.
fn controllers_of(
    partition: Partition,
    ctx: &Arc<Context>,
    stop: &watch::Receiver<bool>,
) -> (BoxFuture<'static, ()>, BoxFuture<'static, ()>) {
    let ns = partition.namespace.as_deref();
    let config = Config::default()
        .concurrency(ctx.options.concurrency)
        .debounce(ctx.options.debounce);
    let stopped = |stop: &watch::Receiver<bool>| {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    };
    let server_store = ctx
        .stores
        .servers
        .part(ns)
        .unwrap_or_else(|| kube::runtime::reflector::store::<McpServer>().0);
    let route_store = ctx
        .stores
        .routes
        .part(ns)
        .unwrap_or_else(|| kube::runtime::reflector::store::<McpRoute>().0);

    let Owned {
        service_accounts,
        config_maps,
        services,
        persistent_volume_claims,
        deployments,
        horizontal_pod_autoscalers,
        pod_disruption_budgets,
        network_policies,
        ingresses,
        http_routes,
        service_monitors,
        cluster_role_bindings,
    } = partition.owned;
    let by_label = |meta: &kube::api::ObjectMeta| index::server_of(meta);
    let mut servers = Controller::for_stream(partition.servers, server_store)
        .with_config(config.clone())
        .graceful_shutdown_on(stopped(stop))
        .watches_stream(service_accounts, move |o: ServiceAccount| {
            by_label(o.meta())
        })
        .watches_stream(config_maps, move |o: ConfigMap| by_label(o.meta()))
        .watches_stream(services, move |o: Service| by_label(o.meta()))
        .watches_stream(persistent_volume_claims, move |o: PersistentVolumeClaim| {
            by_label(o.meta())
        })
        .watches_stream(deployments, move |o: Deployment| by_label(o.meta()))
        .watches_stream(
            horizontal_pod_autoscalers,
            move |o: HorizontalPodAutoscaler| by_label(o.meta()),
        )
        .watches_stream(pod_disruption_budgets, move |o: PodDisruptionBudget| {
            by_label(o.meta())
        })
        .watches_stream(network_policies, move |o: NetworkPolicy| by_label(o.meta()))
        .watches_stream(ingresses, move |o: Ingress| by_label(o.meta()))
        .watches_stream(cluster_role_bindings, move |o: ClusterRoleBinding| {
            by_label(o.meta())
        });
    if let Some(stream) = http_routes {
        servers = servers.watches_stream(stream, move |o: HttpRoute| by_label(o.meta()));
    }
    if let Some(stream) = service_monitors {
        servers = servers.watches_stream(stream, move |o: ServiceMonitor| by_label(o.meta()));
    }
    let routes_ctx = ctx.clone();
    let collisions_ctx = ctx.clone();
    let secrets_ctx = ctx.clone();
    let config_maps_ctx = ctx.clone();
    let servers = servers
        .watches_stream(partition.routes_for_servers, move |route: McpRoute| {
            let rivals = if public_hosts(&route).is_empty() {
                Vec::new()
            } else {
                routes_ctx.stores.routes.all()
            };
            index::servers_of_route(&route, &rivals, &routes_ctx.index)
        })
        .watches_stream(
            partition.servers_for_collisions,
            move |server: McpServer| {
                index::servers_with_route_named(
                    &server.metadata,
                    &collisions_ctx.stores.routes.all(),
                )
            },
        )
        .watches_stream(
            partition.secrets,
            move |secret: PartialObjectMeta<Secret>| {
                index::referrers_of("Secret", &secret.metadata, &secrets_ctx.index)
            },
        )
        .watches_stream(
            partition.config_maps,
            move |config_map: PartialObjectMeta<ConfigMap>| {
                index::referrers_of("ConfigMap", &config_map.metadata, &config_maps_ctx.index)
            },
        )
        .run(server::reconcile, server_error_policy, ctx.clone())
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "server controller");
            }
        })
        .boxed();

    let servers_ctx = ctx.clone();
    let routes = Controller::for_stream(partition.routes, route_store)
        .with_config(config)
        .graceful_shutdown_on(stopped(stop))
        .watches_stream(partition.servers_for_routes, move |server: McpServer| {
            index::routes_of_server(&server.metadata, &servers_ctx.stores.routes.all())
        })
        .run(route::reconcile, route_error_policy, ctx.clone())
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                tracing::debug!(%error, "route controller");
            }
        })
        .boxed();
    (servers, routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_its_base_and_stops_at_five_minutes() {
        assert_eq!(Backoffs::delay(0, false), Duration::from_secs(2));
        assert_eq!(Backoffs::delay(1, false), Duration::from_secs(4));
        assert_eq!(Backoffs::delay(0, true), Duration::from_millis(500));
        assert_eq!(Backoffs::delay(3, true), Duration::from_secs(4));
        assert_eq!(Backoffs::delay(40, false), Duration::from_secs(300));
    }

    #[test]
    fn backoff_is_per_object_and_resets_on_success() {
        let backoffs = Backoffs::default();
        assert_eq!(backoffs.next("a".into(), false), Duration::from_secs(2));
        assert_eq!(backoffs.next("a".into(), false), Duration::from_secs(4));
        assert_eq!(backoffs.next("b".into(), false), Duration::from_secs(2));
        backoffs.reset("a");
        assert_eq!(backoffs.next("a".into(), false), Duration::from_secs(2));
    }
}
