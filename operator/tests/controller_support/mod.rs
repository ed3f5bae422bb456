//! The operator in-process against the in-memory API server: start and stop it, apply
//! fixtures, wait for what it should do, and read what it wrote.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support"
)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice_crds::{McpRoute, McpServer};
use sluice_memory_apiserver::{Actor, MemoryApiServer, Write};
use sluice_operator::controller::{self, Scope};
use sluice_operator::leader::LeaderOptions;
use sluice_operator::metrics::Metrics;
use sluice_operator::run::{RunOptions, run};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The namespace fixtures live in.
pub const NS: &str = "tools";

/// How long a test waits for the operator before it fails: generous, since two cores are
/// shared by several builds. Nothing asserts on speed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The field manager of the test's own writes.
pub const TEST_MANAGER: &str = "test";

/// An in-memory API server with the Sluice CRDs installed.
pub struct Cluster {
    /// The server.
    pub api: MemoryApiServer,
    /// A client for the test's own requests.
    pub client: Client,
}

impl Cluster {
    /// Starts a server and installs the CRDs.
    pub async fn start() -> Self {
        logs();
        let api = MemoryApiServer::start().await;
        api.install_crds(&sluice_crds::crds());
        let client = api.client();
        Self { api, client }
    }

    /// Writes that changed something, by the operator's field manager.
    pub fn operator_writes(&self) -> Vec<Write> {
        self.api
            .writes()
            .into_iter()
            .filter(|w| {
                w.actor == Actor::Client
                    && w.field_manager.as_deref() == Some(controller::FIELD_MANAGER)
            })
            .collect()
    }

    /// `Api` of a namespaced kind in [`NS`].
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Server-side applies `object` (JSON) as the test's field manager.
    pub async fn apply<K>(&self, object: Value) -> K
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("fixtures have names")
            .to_string();
        self.api::<K>()
            .patch(
                &name,
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {name}: {e}"))
    }

    /// Deletes a namespaced object in [`NS`].
    pub async fn delete<K>(&self, name: &str)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }

    /// The object, if it exists.
    pub async fn get<K>(&self, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"))
    }

    /// Waits until `check` holds for object `name`, and returns it.
    pub async fn wait_for<K>(&self, name: &str, what: &str, check: impl Fn(&K) -> bool) -> K
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut last = None;
        loop {
            if let Ok(Some(object)) = api.get_opt(name).await {
                if check(&object) {
                    return object;
                }
                last = Some(object);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what} ({name}); last seen: {last:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until object `name` is gone.
    pub async fn wait_gone<K>(&self, name: &str, what: &str)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api = self.api::<K>();
        let gone = eventually(what, || {
            let api = api.clone();
            async move {
                match api.get_opt(name).await {
                    Ok(None) => Some(()),
                    _ => None,
                }
            }
        })
        .await;
        assert!(gone.is_some(), "timed out waiting for {what} ({name})");
    }
}

/// Shows the operator's logs when `RUST_LOG` asks for them.
pub fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Polls `probe` until it returns `Some`, for at most [`PATIENCE`]; `None` on timeout.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() > deadline {
            eprintln!("gave up waiting for {what}");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator running in this process.
pub struct Operator {
    /// Its metrics.
    pub metrics: Metrics,
    stop: watch::Sender<bool>,
    task: JoinHandle<sluice_operator::Result<()>>,
}

/// Options the tests start from: a one-second resync so idle reconciles happen often (the
/// idempotence checks count on them), short debounce, no leader election.
pub fn options() -> RunOptions {
    RunOptions {
        controller: controller::Options {
            scope: Scope::All,
            concurrency: 4,
            debounce: Duration::from_millis(50),
            requeue: Duration::from_secs(1),
            identity: "test-operator".into(),
            // No sidecar to ask here; the tests of `Verified` bring a stand-in.
            sidecar_admin_url: None,
            ..controller::Options::default()
        },
        leader: None,
        admin: None,
    }
}

/// Leader election with short leases, for `identity`.
pub fn elected(identity: &str) -> LeaderOptions {
    LeaderOptions {
        lease_name: "sluice-operator".into(),
        namespace: "sluice-system".into(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
        grace: Duration::from_secs(1),
    }
}

impl Operator {
    /// Starts the operator against `cluster` with `options`.
    pub fn start(cluster: &Cluster, options: RunOptions) -> Self {
        let metrics = Metrics::new();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(cluster.api.client(), options, metrics.clone(), stopped));
        Self {
            metrics,
            stop,
            task,
        }
    }

    /// Starts the operator with [`options`].
    pub fn start_default(cluster: &Cluster) -> Self {
        Self::start(cluster, options())
    }

    /// Reconciles of McpServers finished so far (any result).
    pub fn server_reconciles(&self) -> u64 {
        ["ok", "error"]
            .map(|result| {
                self.sample(&format!(
                    "sluice_operator_reconciles_total{{kind=\"McpServer\",result=\"{result}\"}}"
                ))
            })
            .iter()
            .sum()
    }

    /// Whether it holds the leader Lease, as its metrics say.
    pub fn leads(&self) -> bool {
        self.sample("sluice_operator_leader") == 1
    }

    /// The value of one sample of its `/metrics` text (0 when it has none yet).
    fn sample(&self, series: &str) -> u64 {
        self.metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until at least `more` further server reconciles have finished.
    pub async fn wait_reconciles(&self, more: u64) {
        let target = self.server_reconciles() + more;
        let reached = eventually("more reconciles", || async {
            (self.server_reconciles() >= target).then_some(())
        })
        .await;
        assert!(reached.is_some(), "the operator stopped reconciling");
    }

    /// Stops it gracefully (releasing the Lease) and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(PATIENCE, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("the operator failed: {error}"),
            Ok(Err(error)) => panic!("the operator panicked: {error}"),
            Err(_) => panic!("the operator did not stop"),
        }
    }

    /// Stops it without any cleanup, as a crash would (the Lease is not released).
    pub fn kill(self) {
        self.task.abort();
    }

    /// Whether it has ended (it should not, until stopped).
    pub fn has_ended(&self) -> bool {
        self.task.is_finished()
    }
}

/// Waits until the operator writes nothing over several reconciles of everything: it has
/// converged. Fails if it never does (a controller that keeps writing).
pub async fn wait_quiet(cluster: &Cluster, operator: &Operator) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        cluster.api.clear_logs();
        operator.wait_reconciles(3).await;
        let writes = cluster.operator_writes();
        if writes.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator keeps writing: {:#?}",
            writes.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
    }
}

/// Once the operator has converged ([`wait_quiet`]), what it sends over five more reconciles
/// of everything: the writes that changed something, and every mutating request (anything
/// but a GET), applies that would have changed nothing included.
pub async fn requests_once_converged(
    cluster: &Cluster,
    operator: &Operator,
) -> (Vec<Write>, Vec<String>) {
    wait_quiet(cluster, operator).await;
    cluster.api.clear_logs();
    let before = operator.server_reconciles();
    operator.wait_reconciles(5).await;
    assert!(operator.server_reconciles() >= before + 5);
    let mutating = cluster
        .api
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(ToString::to_string)
        .collect();
    (cluster.operator_writes(), mutating)
}

/// Rolls server `name`'s Deployment out with one ready pod, then asserts that once converged
/// the operator sends no mutating request at all: no write, and no apply that would have
/// changed nothing.
pub async fn assert_quiet_once_rolled_out(cluster: &Cluster, operator: &Operator, name: &str) {
    cluster
        .api
        .simulate_deployment_rollout(NS, name, 1)
        .unwrap();
    let (writes, mutating) = requests_once_converged(cluster, operator).await;
    assert!(writes.is_empty(), "{writes:#?}");
    assert!(mutating.is_empty(), "{mutating:#?}");
}

// === fixtures ===

/// An McpServer as a user writes it: `name` in [`NS`], header-token mode.
pub fn server(name: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "McpServer",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"phabricator": {"url": "https://phabricator.example.com"}},
    })
}

/// An in-cluster McpRoute `name` onto server `server`.
pub fn route(name: &str, server: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "McpRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"serverRef": {"name": server}},
    })
}

/// `route` exposed through an Ingress on `host` at `prefix`.
pub fn exposed(mut route: Value, host: &str, prefix: &str) -> Value {
    route["spec"]["hostnames"] = json!([host]);
    route["spec"]["pathPrefix"] = json!(prefix);
    route["spec"]["expose"] = json!({"ingress": {"className": "nginx"}});
    route
}

/// A Secret with one key.
pub fn secret(name: &str, key: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {key: base64(value)},
    })
}

fn base64(value: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = value.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// === reading objects ===

/// Who owns a Deployment's `spec.replicas`, by field manager.
pub fn replica_owners(deployment: &k8s_openapi::api::apps::v1::Deployment) -> Vec<String> {
    deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
        })
        .filter_map(|entry| entry.manager.clone())
        .collect()
}

// === reading status ===

/// The condition `type_` of a server, if set.
pub fn server_condition(server: &McpServer, type_: &str) -> Option<Condition> {
    server
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// The condition `type_` of a route, if set.
pub fn route_condition(route: &McpRoute, type_: &str) -> Option<Condition> {
    route
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// Whether the server's condition `type_` has `reason`.
pub fn server_reason(server: &McpServer, type_: &str) -> Option<String> {
    server_condition(server, type_).map(|c| c.reason)
}

/// Whether the route's condition `type_` has `reason`.
pub fn route_reason(route: &McpRoute, type_: &str) -> Option<String> {
    route_condition(route, type_).map(|c| c.reason)
}
