//! A stateful in-memory Kubernetes API server on loopback, for the operator's tests and benchmark.
//!
//! It serves real HTTP/1.1 on `127.0.0.1`, so an unmodified [`kube::Client`] talks to it as to a
//! cluster: discovery, get, list, watch, create, replace, patch (JSON, merge, strategic merge,
//! server-side apply), delete with finalizers and garbage collection, and the status
//! subresource. Every instance is independent (tests run in parallel in one process).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, Patch, PatchParams};
//! use sluice_memory_apiserver::{MemoryApiServer, Verb};
//!
//! let api = MemoryApiServer::start().await;
//! let client = api.client(); // default namespace "default"
//! let cms: Api<ConfigMap> = Api::default_namespaced(client);
//! let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
//!                             "metadata": {"name": "x"}, "data": {"k": "v"}});
//! let pp = PatchParams::apply("sluice-operator");
//! cms.patch("x", &pp, &Patch::Apply(&cm)).await?;
//! api.clear_logs();
//! cms.patch("x", &pp, &Patch::Apply(&cm)).await?; // the same apply again…
//! assert!(api.writes().is_empty()); // …changes nothing: no write, no new resourceVersion
//! # Ok(()) }
//! ```
//!
//! # What it implements
//!
//! - **Resources**: core/v1 Namespace, Pod, ServiceAccount, ConfigMap, Secret, Service,
//!   PersistentVolumeClaim, Event;
//!   apps/v1 Deployment, StatefulSet, DaemonSet, ReplicaSet; autoscaling/v2
//!   HorizontalPodAutoscaler (stored, not acted on); policy/v1 PodDisruptionBudget;
//!   networking.k8s.io/v1 NetworkPolicy, Ingress, IngressClass; rbac.authorization.k8s.io/v1
//!   ClusterRole, ClusterRoleBinding, Role, RoleBinding; coordination.k8s.io/v1 Lease;
//!   events.k8s.io/v1 Event; apiextensions.k8s.io/v1 CustomResourceDefinition, and every
//!   served version of an installed CRD (via [`MemoryApiServer::install_crds`] or by creating
//!   the CRD through the API; deleting it stops serving its types). A resource whose CRD is not
//!   installed answers 404 like a cluster without it. Namespaces are implicit: objects may be
//!   created in any namespace; deleting a Namespace object deletes what is in it.
//! - **Discovery**: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>`,
//!   `/apis/<group>/<version>`, and aggregated discovery (apidiscovery.k8s.io/v2) of `/api` and
//!   `/apis`.
//! - **Metadata**: uid, creationTimestamp, one global resourceVersion counter; generation
//!   starts at 1 and moves when anything but metadata and (for kinds with a status subresource)
//!   status changes, plus annotations for Deployments; kinds without generation (ConfigMap,
//!   Secret, Lease, ...) get none. Names, labels, annotations, finalizers and owner references
//!   are validated (422); empty labels/annotations/finalizers are dropped as Go's omitempty does.
//! - **Errors** are `metav1.Status` objects with code, reason and details: 400 BadRequest,
//!   404 NotFound, 405, 409 AlreadyExists/Conflict, 410 Expired (watch), 413, 415, 422 Invalid.
//! - **get; list** with labelSelector (`=`, `==`, `!=`, `in`, `notin`, exists, `!`, `>`, `<`),
//!   fieldSelector (`metadata.name`, `metadata.namespace`, per-kind fields such as Secret
//!   `type`, Event `involvedObject.*`, CRD `selectableFields`; others are 400), across
//!   namespaces, with `limit`/`continue`; PartialObjectMetadata(List) when the Accept header
//!   asks for it (kube's metadata watchers).
//! - **watch**: `watch=true` with resourceVersion (unset or `0`: synthetic ADDED for current
//!   objects first), `sendInitialEvents` (ending with the `k8s.io/initial-events-end` bookmark),
//!   `allowWatchBookmarks`, `timeoutSeconds`, selectors (objects leaving a selector are DELETED,
//!   entering it ADDED). A resourceVersion older than the per-type history gets a 410 ERROR
//!   event, so kube-runtime's watcher relists. A watch whose client falls behind by more than
//!   the queue size is closed; the client resumes from its last resourceVersion.
//! - **create, replace** (PUT; stale resourceVersion → 409; no resourceVersion is allowed for
//!   built-in kinds and refused (422) for custom resources, as the real strategies do),
//!   `dryRun=All`, `generateName`.
//! - **delete**: preconditions (uid, resourceVersion); finalizers keep the object with a
//!   deletionTimestamp until the last one is removed (no new finalizers may be added then);
//!   after removal, dependents whose ownerReferences point at the deleted uid are deleted
//!   (background) or released (other owners remain; orphan propagation), synchronously;
//!   Foreground waits for dependents with the `foregroundDeletion` finalizer. Delete collection.
//! - **patch**: `application/json-patch+json` (a `test` for `null` at a missing path passes,
//!   as in Go), `application/merge-patch+json`, `application/strategic-merge-patch+json` (see
//!   below; 415 for custom resources), `application/apply-patch+yaml` (server-side apply). A
//!   patch that sets `metadata.resourceVersion` is conditional (409 when stale).
//! - **Server-side apply**: fieldManager required; creates missing objects; merges the applied
//!   configuration; managedFields per manager (and operation, subresource) as FieldsV1, also
//!   maintained for Update operations (the writer takes the fields it changed); fields a manager
//!   applied before and omits now are removed unless another manager owns them; 409 with
//!   `FieldManagerConflict` causes when another manager owns a field set to a different value
//!   (equal values are shared) unless `force=true`, which takes ownership. An apply (or any
//!   write) that changes nothing changes nothing: same resourceVersion, no watch event, no
//!   entry in [`MemoryApiServer::writes`].
//! - **Status subresource**: `/status` GET/PUT/PATCH/apply touch only status (and its
//!   managedFields, recorded with `subresource: status`); main-resource writes keep the stored
//!   status; create drops status.
//! - **Scale subresource** of Deployments, StatefulSets, ReplicaSets and of custom resources
//!   whose CRD declares one: `/scale` GET, PUT and PATCH (JSON or merge) of an
//!   `autoscaling/v1` Scale, read from and written to the object's replica paths; a write is an
//!   update recorded with `subresource: scale` under the writer's manager, taking the field
//!   over as an HPA's does.
//! - **Quantities** of built-in kinds are stored as a real API server stores them, having
//!   parsed them into apimachinery's `resource.Quantity`: in canonical form (`0.5` → `500m`,
//!   `1000m` → `1`, `1000` → `1k`, `1024Mi` → `1Gi`, `1.5Gi` → `1536Mi`, `1e3` stays `1e3`;
//!   text Go's parser finds canonical is kept as written, even `+1`), rounded up to a nano,
//!   and `ResourceList` entries up to a milli (`100u` → `1m`); a JSON number becomes a
//!   string; a malformed quantity is refused (400). So an apply of `cpu: "0.5"` over a stored
//!   `500m` changes nothing, as on a real server. Where: containers' (init, ephemeral)
//!   resources and env `resourceFieldRef.divisor`, pod overhead and pod-level resources,
//!   volumes' emptyDir `sizeLimit`, downwardAPI and projected divisors and ephemeral claim
//!   templates, in Pods and the pod templates of Deployments, StatefulSets, DaemonSets and
//!   ReplicaSets; StatefulSet `volumeClaimTemplates`; PersistentVolumeClaim
//!   `spec.resources` and `status.capacity`/`allocatedResources`; HorizontalPodAutoscaler
//!   metric targets (`value`, `averageValue`).
//! - **Custom resources**: the CRD's structural schema prunes unknown fields (400 with
//!   `fieldValidation=Strict`) and nulls in non-nullable fields, applies `default`s, and checks
//!   `type`, `enum`, `required`, `minimum`/`maximum`, `minLength`/`maxLength`,
//!   `minItems`/`maxItems` (422). Its `x-kubernetes-list-type`/`-list-map-keys`/`-map-type`
//!   drive server-side apply.
//!
//! # What is simplified
//!
//! - Built-in kinds have no schema here: unknown fields are kept, almost nothing is defaulted
//!   (no `protocol: TCP`, `imagePullPolicy`, PersistentVolumeClaim `volumeMode` or default
//!   StorageClass, ...), nulls are dropped but empty strings, `false` and `0` are kept (Go's
//!   `omitempty` drops them from many fields: a toleration's `effect: ""` comes back without
//!   `effect` from a real server). Quantities differ from a real server's only at the edges:
//!   ResourceQuota, LimitRange, Node and PersistentVolume are not served; a quantity of more
//!   than 38 significant digits, with an exponent beyond 32 bits or a decimal SI value past
//!   `E` is kept as written (Go caps, wraps or mis-writes those); a JSON number is read as
//!   serde_json writes it, so a number `1e3` becomes `1k` where Go keeps `1e3`. The
//!   exceptions, because the operator's behaviour hangs on them: a Deployment's `replicas`
//!   (1, on every write, as an apply that drops the field's last owner finds) and `strategy` are
//!   defaulted (RollingUpdate, 25% / 25%, owned by no field manager) and
//!   `Recreate` with `rollingUpdate` is refused (422); a PersistentVolumeClaim's spec is
//!   immutable but for `resources.requests` (422; a shrink is not refused, no claim binds). Their list structure for apply
//!   and strategic merge comes from field names: keyed lists `containers`, `initContainers`,
//!   `ephemeralContainers`, `env`, `volumes`, `imagePullSecrets` (by name), `volumeMounts` (by
//!   mountPath), `ports` (by containerPort+protocol, or port+protocol; protocol defaults to
//!   TCP in keys), `conditions` (by type), `ownerReferences` (by uid), `hostAliases`,
//!   `topologySpreadConstraints`; `finalizers` is a set; `selector`, `podSelector`,
//!   `namespaceSelector`, `labelSelector`, `nodeSelector` are atomic; every other list is
//!   atomic. A keyed list with an item lacking its key, or with duplicate keys, is atomic.
//! - Apply merges keyed-list items in the live order and appends new ones in applied order.
//!   Removing a field a manager let go of also removes parent objects it leaves empty.
//! - Strategic merge patch supports merge keys, `null` deletion, `$patch: replace|delete|merge`
//!   and `$deleteFromPrimitiveList`; `$setElementOrder` and `$retainKeys` are ignored.
//! - CRD validation skips `pattern`, `format`, `oneOf`/`anyOf`/`allOf`/`not` and CEL rules;
//!   conversion between CRD versions only rewrites `apiVersion`.
//! - `limit`/`continue` pages read the current state after the last key (not a snapshot);
//!   lists and gets ignore `resourceVersion`/`resourceVersionMatch` and serve the latest state;
//!   a watch from a resourceVersion newer than the server's starts from now.
//! - GC and finalizer-driven removal happen synchronously within the request; dependents whose
//!   owners never existed are not collected; deleting a CRD drops its objects without events.
//! - No authentication, authorization, admission webhooks, API priority and fairness, or
//!   protobuf; core/v1 and events.k8s.io/v1 Events are separate stores; namespace deletion does
//!   not wait for finalizers of its contents; uids are UUID-shaped counters (deterministic).

#![forbid(unsafe_code)]

mod apply;
mod builtin;
mod catalog;
mod clock;
mod crd;
mod discovery;
mod error;
mod fieldset;
mod gc;
mod log;
mod managed;
mod metadata;
mod output;
mod patch;
mod path;
mod quantity;
mod quantity_fields;
mod rollout;
mod route;
mod schema;
mod selector;
mod server;
mod shape;
mod status;
mod store;
mod strategy;
mod verbs;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use error::{Error, Result};
pub use log::{Actor, RequestRecord, RequestVerb, Verb, Write};

use crate::managed::Operation;
use crate::output::View;
use crate::route::{Query, Target};
use crate::server::Shared;
use crate::store::{Limits, Origin, State};
use crate::strategy::Writer;
use crate::verbs::{Call, Reply};

/// A running in-memory API server. Dropping it stops the server and ends its watches.
#[derive(Debug)]
pub struct MemoryApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// Settings for [`MemoryApiServer::builder`]; the defaults suit tests and the 1,000-server benchmark.
#[derive(Debug, Clone)]
pub struct Builder {
    history: usize,
    watch_queue: usize,
    log: usize,
    bookmark_interval: Duration,
    body_limit: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            history: 10_000,
            watch_queue: 10_000,
            log: 200_000,
            bookmark_interval: Duration::from_secs(60),
            body_limit: 3 * 1024 * 1024,
        }
    }
}

impl Builder {
    /// Changes kept per resource type for watches that resume from a resourceVersion
    /// (default 10,000). Older resourceVersions get 410 Gone.
    #[must_use]
    pub fn watch_history(mut self, changes: usize) -> Self {
        self.history = changes;
        self
    }

    /// Events queued for one watch before the server closes it as too slow (default 10,000).
    #[must_use]
    pub fn watch_queue(mut self, events: usize) -> Self {
        self.watch_queue = events;
        self
    }

    /// Entries kept in each of the write and request logs (default 200,000; older ones drop).
    #[must_use]
    pub fn log_capacity(mut self, entries: usize) -> Self {
        self.log = entries;
        self
    }

    /// How often watches with `allowWatchBookmarks` get a BOOKMARK (default 60 s, as Kubernetes).
    #[must_use]
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Largest request body accepted (default 3 MiB, as Kubernetes).
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::Bind`] if the loopback listener cannot be bound.
    pub async fn try_start(self) -> Result<MemoryApiServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(Error::Bind)?;
        let addr = listener.local_addr().map_err(Error::Bind)?;
        let state = State::new(Limits {
            history: self.history,
            watch_queue: self.watch_queue,
            log: self.log,
        });
        let shared = Arc::new(Shared::new(
            state,
            addr,
            self.bookmark_interval.max(Duration::from_millis(10)),
            self.body_limit,
        ));
        let task = tokio::spawn(server::serve(listener, shared.clone()));
        Ok(MemoryApiServer { shared, addr, task })
    }

    /// As [`Builder::try_start`].
    ///
    /// # Panics
    /// If the loopback listener cannot be bound (test infrastructure: nothing to recover).
    pub async fn start(self) -> MemoryApiServer {
        match self.try_start().await {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }
}

impl MemoryApiServer {
    /// Starts a server with default settings on `127.0.0.1:0`.
    ///
    /// # Panics
    /// If the loopback listener cannot be bound.
    pub async fn start() -> Self {
        Builder::default().start().await
    }

    /// Settings for a server (history size, queue sizes, bookmark interval).
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube config for this server (plain HTTP, default namespace `default`), to adjust and
    /// turn into a client with `kube::Client::try_from`.
    pub fn config(&self) -> kube::Config {
        let uri = http::Uri::try_from(self.url()).unwrap_or_default();
        kube::Config::new(uri)
    }

    /// A client for this server with default namespace `default`.
    ///
    /// # Panics
    /// Outside a tokio runtime (kube's client spawns its buffer task), or if kube cannot build
    /// a plain-HTTP client.
    pub fn client(&self) -> kube::Client {
        match kube::Client::try_from(self.config()) {
            Ok(client) => client,
            Err(e) => panic!("kube could not build a client for {}: {e}", self.url()),
        }
    }

    /// Installs CRDs (server-side apply, forced, by manager `sluice-memory-apiserver`): their
    /// served versions are served with their schema and status subresource, and the CRDs get
    /// an `Established` condition. Installing the same CRD again changes nothing.
    ///
    /// # Panics
    /// If the server refuses a CRD (invalid names, scope or versions); see [`Self::try_install_crds`].
    pub fn install_crds(&self, crds: &[CustomResourceDefinition]) {
        if let Err(e) = self.try_install_crds(crds) {
            panic!("{e}");
        }
    }

    /// As [`Self::install_crds`], returning the refusal instead of panicking.
    ///
    /// # Errors
    /// [`Error::Refused`] with the server's Status, [`Error::Serialize`] for unserialisable CRDs.
    pub fn try_install_crds(&self, crds: &[CustomResourceDefinition]) -> Result<()> {
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let what = format!("CustomResourceDefinition {name}");
            let mut value = serde_json::to_value(crd).map_err(|source| Error::Serialize {
                what: what.clone(),
                source,
            })?;
            if let Some(map) = value.as_object_mut() {
                map.insert(
                    "apiVersion".into(),
                    serde_json::json!("apiextensions.k8s.io/v1"),
                );
                map.insert("kind".into(), serde_json::json!("CustomResourceDefinition"));
                map.remove("status");
            }
            let body = serde_json::to_vec(&value).map_err(|source| Error::Serialize {
                what: what.clone(),
                source,
            })?;
            let target = Target {
                group: "apiextensions.k8s.io".into(),
                version: "v1".into(),
                plural: "customresourcedefinitions".into(),
                namespace: None,
                name: Some(name),
                subresource: None,
            };
            let query = Query::parse(Some("fieldManager=sluice-memory-apiserver&force=true"));
            let call = Call {
                method: &http::Method::PATCH,
                target: &target,
                query: &query,
                body: &body,
                content_type: Some("application/apply-patch+yaml"),
                user_agent: None,
                view: View::Full,
                actor: Actor::Simulation,
            };
            match verbs::handle(&mut self.shared.lock(), &call) {
                Ok(Reply::Json(..) | Reply::Watch(_)) => {}
                Err(err) => return Err(Error::refused(what, &err)),
            }
        }
        Ok(())
    }

    /// Every write that changed an object since the start (or [`Self::clear_logs`]), oldest
    /// first: verb, actor, kind, namespace, name, subresource, field manager, resourceVersion.
    /// No-op writes are not here; writes by the stand-in garbage collector and by simulations
    /// are, with their [`Actor`].
    pub fn writes(&self) -> Vec<Write> {
        self.shared.lock().writes.snapshot()
    }

    /// Every request answered since the start (or [`Self::clear_logs`]), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.snapshot()
    }

    /// Empties the write and request logs (objects are kept).
    pub fn clear_logs(&self) {
        let mut state = self.shared.lock();
        state.writes.clear();
        state.requests.clear();
    }

    /// How many objects are stored, of all types.
    pub fn object_count(&self) -> usize {
        self.shared.lock().object_count()
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Plays kube-controller-manager: sets the Deployment's status as a rollout with `ready`
    /// ready pods reports it (`observedGeneration` = its generation, `replicas` and
    /// `updatedReplicas` = spec.replicas, `readyReplicas` = `availableReplicas` = `ready`,
    /// `Available` and `Progressing` conditions). A status that is already so writes nothing.
    ///
    /// # Errors
    /// [`Error::Refused`] (404) if the Deployment does not exist.
    pub fn simulate_deployment_rollout(
        &self,
        namespace: &str,
        name: &str,
        ready: i32,
    ) -> Result<()> {
        let what = format!("the status of Deployment {namespace}/{name}");
        let mut state = self.shared.lock();
        let ty = state
            .catalog
            .get("apps", "v1", "deployments")
            .ok_or_else(|| Error::refused(&what, &status::ApiError::no_such_resource()))?;
        let key = (namespace.to_string(), name.to_string());
        let old = state.get(&ty, &key).ok_or_else(|| {
            Error::refused(&what, &status::ApiError::not_found(&ty.subject(name)))
        })?;
        let mut next = (*old).clone();
        if let Some(map) = next.as_object_mut() {
            map.insert(
                "status".into(),
                rollout::deployment_status(&old, ready, &clock::now()),
            );
        }
        let writer = Writer {
            ty: &ty,
            subresource: Some("status"),
            manager: "kube-controller-manager",
            operation: Operation::Update,
            strict: false,
        };
        let prepared = strategy::prepare_update(&writer, &old, next, None)
            .map_err(|e| Error::refused(&what, &e))?;
        if let Some(new) = prepared {
            let origin = Origin {
                verb: Verb::Update,
                actor: Actor::Simulation,
                manager: Some("kube-controller-manager"),
                subresource: Some("status"),
            };
            state.replace(&ty, new, origin);
        }
        Ok(())
    }

    /// Forgets the watch history, as etcd compaction does: a watch that resumes from any
    /// resourceVersion older than the current one gets 410 Gone and must relist. Open watches
    /// keep streaming.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// Ends every open watch stream (as an API server restart or a load balancer would); the
    /// clients re-watch from their last resourceVersion.
    pub fn close_watches(&self) {
        self.shared.lock().close_watches();
    }
}

impl Drop for MemoryApiServer {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.lock().close_watches();
    }
}
