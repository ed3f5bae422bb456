//! `McpServer`: one MCP server (Conduit, or any image) deployment with its sidecar, Service
//! and policy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::{NetworkPolicyEgressRule, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{CIDRS_RULE, DURATION, Policy};
use crate::refs::{ConfigMapKeyRef, DNS_SUBDOMAIN, SecretKeyRef, SecretRef};
use crate::route::DiscoveryUrls;

/// An MCP server run by Sluice, the Phabricator MCP server (Conduit) or any image serving
/// Streamable HTTP: a Deployment whose pods hold the server behind the sluice-proxy sidecar, a
/// Service for in-cluster callers, and the policy that guards it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "McpServer",
    doc = "An McpServer runs an MCP server, the Phabricator MCP server (Conduit) or any image serving Streamable HTTP, behind the sluice-proxy sidecar.",
    namespaced,
    status = "McpServerStatus",
    shortname = "mcps",
    category = "mcp",
    // `kubectl scale mcps NAME --replicas N`, and an HPA or KEDA ScaledObject aimed at the
    // McpServer: the scale subresource writes spec.replicas, the operator carries it on.
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(json_path = ".status.conditions[?(@.type==\"Ready\")].status", name = "Ready", type_ = "string"),
    printcolumn(json_path = ".status.conditions[?(@.type==\"Verified\")].status", name = "Verified", type_ = "string"),
    printcolumn(json_path = ".status.readyReplicas", name = "Replicas", type_ = "integer"),
    printcolumn(json_path = ".spec.replicas", name = "Desired", type_ = "integer"),
    printcolumn(json_path = ".status.url", name = "URL", type_ = "string"),
    printcolumn(json_path = ".metadata.creationTimestamp", name = "Age", type_ = "date"),
    // No fieldPath: the root schema declares no metadata.name, and the API server refuses a
    // CRD whose fieldPath names an undeclared field.
    validation = kube::core::Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$')").message("metadata.name must be a DNS label of at most 40 characters starting with a letter (it names the Service and Deployment)"),
    // Here, not on the state: only the root sees metadata.name. The claims the operator creates
    // are pruned when no longer asked for, so naming one would lose it under the pods.
    validation = kube::core::Rule::new("!has(self.spec.auth.oauth) || !has(self.spec.auth.oauth.state) || !has(self.spec.auth.oauth.state.claimName) || !(self.spec.auth.oauth.state.claimName in [self.metadata.name + '-oauth-state', self.metadata.name + '-oauth-state-shared'])").message("auth.oauth.state.claimName may not name <server>-oauth-state or <server>-oauth-state-shared: those are the claims the operator creates, and deletes when they are no longer asked for").field_path(".spec.auth.oauth.state.claimName")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("self.auth.mode != 'oauth' || (has(self.autoscaling) ? self.autoscaling.maxReplicas : self.replicas) <= 1 || self.sessionAffinity == 'ClientIP' || (has(self.auth.oauth) && has(self.auth.oauth.state) && self.auth.oauth.state.storage != 'ephemeral')").message("OAuth state kept in each pod (auth.oauth.state.storage ephemeral): more than one replica (replicas or autoscaling.maxReplicas) needs sessionAffinity: ClientIP, or auth.oauth.state.storage shared").field_path(".replicas"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.auth.oauth) || !has(self.auth.oauth.state) || self.auth.oauth.state.storage != 'persistent' || (has(self.autoscaling) ? self.autoscaling.maxReplicas : self.replicas) <= 1").message("auth.oauth.state.storage persistent is a ReadWriteOnce volume for one pod: replicas (and autoscaling.maxReplicas) must be at most 1 (storage shared serves more)").field_path(".replicas"))]
#[x_kube(validation = kube::core::Rule::new("self.sessions != 'stateful' || (has(self.autoscaling) ? self.autoscaling.maxReplicas : self.replicas) <= 1 || self.sessionAffinity == 'ClientIP'").message("stateful sessions live in one pod: more than one replica (replicas or autoscaling.maxReplicas) needs sessionAffinity: ClientIP").field_path(".replicas"))]
#[x_kube(validation = kube::core::Rule::new(crate::policy::CLIENT_CERTIFICATE_NEEDS_CA).message(crate::policy::CLIENT_CERTIFICATE_NEEDS_CA_MESSAGE).field_path(".tls"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.policy) || !has(self.policy.rateLimits) || !self.policy.rateLimits.exists(r, r.scope == 'global') || has(self.redis)").message("a global rate limit needs spec.redis").field_path(".redis"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.policy) || !has(self.policy.authentication) || !has(self.policy.authentication.mode) || self.policy.authentication.mode != 'oauth' || self.auth.mode == 'oauth'").message("policy.authentication.mode oauth needs auth.mode oauth").field_path(".policy.authentication.mode"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.policy) || !has(self.policy.authentication) || !has(self.policy.authentication.mode) || self.policy.authentication.mode == 'oauth' || self.auth.mode != 'oauth'").message("in auth.mode oauth, Conduit checks bearer tokens itself: policy.authentication.mode must be oauth").field_path(".policy.authentication.mode"))]
#[x_kube(validation = kube::core::Rule::new("has(self.phabricator) != has(self.container)").message("exactly one of phabricator (Conduit) or container (any MCP server image) must be set").field_path(".phabricator"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.container) || !has(self.container.stdio) || self.sessions == 'stateful'").message("sessions must be stateful with container.stdio: the bridge runs one process per session and hands out the session ids").field_path(".sessions"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.container) || !has(self.image)").message("image is Conduit's: with container, name the image in container.image").field_path(".image"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.container) || self.auth.mode == 'headerToken'").message("auth.mode oauth runs Conduit's OAuth proxy: it needs phabricator (Conduit), not container").field_path(".auth.mode"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.container) || (has(self.policy) && has(self.policy.authentication) && has(self.policy.authentication.mode) && self.policy.authentication.mode != 'phabricatorToken')").message("with container, policy.authentication.mode must be set, and not phabricatorToken (Phabricator's API tokens, Conduit only)").field_path(".policy.authentication.mode"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.container) || !has(self.policy) || !has(self.policy.upstreamToken)").message("policy.upstreamToken sends a Phabricator token (X-PHABRICATOR-TOKEN): it needs phabricator (Conduit), not container").field_path(".policy.upstreamToken"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.container) || !has(self.networkPolicy) || !has(self.networkPolicy.egressDestinations) || !has(self.networkPolicy.egressDestinations.phabricator)").message("networkPolicy.egressDestinations.phabricator needs phabricator (Conduit): with container, open the server's destinations in networkPolicy.egress").field_path(".networkPolicy.egressDestinations.phabricator"))]
pub struct McpServerSpec {
    /// The Phabricator (or Phorge) instance Conduit talks to: the server is Conduit, the
    /// Phabricator MCP server. Exactly one of `phabricator` and `container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phabricator: Option<Phabricator>,

    /// Any MCP server image that serves Streamable HTTP, instead of Conduit. Exactly one of
    /// `phabricator` and `container`. Without Conduit, `auth`, `image`,
    /// `policy.upstreamToken`, `networkPolicy.egressDestinations.phabricator` and
    /// authentication mode `phabricatorToken` do not apply, and `policy.authentication.mode`
    /// must be set. The NetworkPolicy opens nothing for the server's own connections: add
    /// what it reaches to `networkPolicy.egress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::container::ServerContainer>,

    /// How Conduit authenticates its calls to Phabricator (Conduit only).
    #[serde(default)]
    pub auth: UpstreamAuth,

    /// Conduit container image (Conduit only; `container.image` names any other server's).
    /// Defaults to the release this operator is tested with
    /// (`ghcr.io/skroutz/conduit:0.2.2` unless the operator is configured otherwise). Pin by
    /// digest in production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// When the kubelet pulls images.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,

    /// Secrets for pulling the Conduit and sidecar images from private registries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Number of pods. More than one gets a PodDisruptionBudget. With `auth.mode: oauth`, more
    /// than one needs `auth.oauth.state.storage: shared`, or `sessionAffinity: ClientIP` with
    /// the default ephemeral state (`persistent` allows one); stateful sessions need
    /// `sessionAffinity: ClientIP`.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// Scale the pods with a HorizontalPodAutoscaler (`autoscaling/v2`) between
    /// `minReplicas` and `maxReplicas` instead of a fixed `replicas`, which is then ignored:
    /// the operator leaves the Deployment's replica count to the autoscaler. The rules above
    /// that bound `replicas` bound `maxReplicas` too. More than one pod at the minimum gets a
    /// PodDisruptionBudget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// `None`, or `ClientIP` to keep each caller on one pod (needed by stateful sessions, by
    /// OAuth mode with ephemeral state, and by clients of the legacy HTTP+SSE transport
    /// (`proxy.legacySse`), when there is more than one replica). Behind an Ingress the caller
    /// is the Ingress controller: configure stickiness there as well.
    #[serde(default)]
    pub session_affinity: SessionAffinity,

    /// `stateless` (default): every request stands alone, any replica can serve it.
    /// `stateful`: the server hands out `Mcp-Session-Id` and keeps sessions in memory.
    /// Conduit is started in the mode named; a `container` server must be configured (its
    /// `args` or `env`) to serve the mode named here; a `container.stdio` server is
    /// `stateful` (the bridge hands out the sessions), and must say so here.
    #[serde(default)]
    pub sessions: Sessions,

    /// Compute resources of the server's container (Conduit or `container`). Defaults:
    /// requests 100m CPU and 128Mi memory, limit 512Mi memory.
    #[serde(default = "default_conduit_resources")]
    pub resources: ResourceRequirements,

    /// Pod placement and metadata. These can never weaken the pod's hardening.
    #[serde(default)]
    pub pod: PodOverrides,

    /// The sluice-proxy sidecar.
    #[serde(default)]
    pub proxy: ProxySpec,

    /// Policy of the server's own in-cluster Service (`http://<name>.<namespace>.svc`).
    /// McpRoutes carry their own.
    #[serde(default)]
    pub policy: Policy,

    /// HTTPS (and optionally mutual TLS) on the server's own entry point, served by the
    /// sidecar from a `kubernetes.io/tls` Secret. Absent: plain HTTP inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::EntryPointTls>,

    /// Redis for rate limits with `scope: global`, shared by all replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,

    /// The NetworkPolicy that fences the pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// Prometheus scraping.
    #[serde(default)]
    pub monitoring: Monitoring,
}

fn default_replicas() -> i32 {
    1
}

/// The HorizontalPodAutoscaler the operator writes for the server's Deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas may not exceed autoscaling.maxReplicas").field_path(".minReplicas"))]
pub struct Autoscaling {
    /// Fewest pods. Default 1.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,

    /// Most pods.
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,

    /// Average CPU use to aim for, in percent of the pods' CPU requests (both containers
    /// request CPU by default; a container without a request makes the autoscaler ignore this
    /// target). Default 80 when `targetInFlightRequests` is not set either.
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 1000))]
    pub target_cpu_utilization_percentage: Option<i32>,

    /// Average number of requests in flight per pod to aim for, as the sidecar counts them
    /// (`sluice_in_flight_requests`). Read through the custom metrics API
    /// (`custom.metrics.k8s.io`), which needs an adapter such as prometheus-adapter or KEDA's
    /// serving the sidecar's metric per pod under that name; without one the autoscaler
    /// reports the metric missing and scales by the CPU target alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub target_in_flight_requests: Option<i32>,
}

fn default_min_replicas() -> i32 {
    1
}

impl McpServerSpec {
    /// The most pods the server may run: `autoscaling.maxReplicas`, else `replicas`.
    pub fn most_replicas(&self) -> i32 {
        self.autoscaling
            .as_ref()
            .map_or(self.replicas, |a| a.max_replicas)
    }

    /// The fewest pods the server runs outside of rollouts: `autoscaling.minReplicas`, else
    /// `replicas`.
    pub fn fewest_replicas(&self) -> i32 {
        self.autoscaling
            .as_ref()
            .map_or(self.replicas, |a| a.min_replicas)
    }
}

/// The Phabricator instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Phabricator {
    /// Base URL of Phabricator, e.g. `https://phabricator.example.com`. The Conduit API path
    /// `/api/` is appended when missing.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^https?://[^/?#@\\s]+(/[^?#\\s]*)?$')").message("phabricator.url must be an http(s) URL without credentials, query or fragment"))]
    pub url: String,

    /// A CA bundle (PEM) to trust for Phabricator's TLS certificate, from a ConfigMap or a
    /// Secret. It is mounted into Conduit and exported as `SSL_CERT_FILE`: the right answer for
    /// an internal CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,

    /// An outbound proxy for Conduit's calls to Phabricator (`http://`, `https://` or
    /// `socks5://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^(https?|socks5h?)://[^/?#\\s]+/?$')").message("phabricator.proxy must be an http(s) or socks5 URL"))]
    pub proxy: Option<String>,

    /// Skip TLS certificate verification towards Phabricator. Works, but leaves the server
    /// open to interception: the McpServer is marked Degraded (reason `Insecure`) while it is
    /// set. Prefer `caBundle`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Where a CA bundle comes from: exactly one of a ConfigMap key or a Secret key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.configMapKeyRef) != has(self.secretKeyRef)").message("caBundle needs exactly one of configMapKeyRef or secretKeyRef"))]
pub struct CaBundle {
    /// A key of a ConfigMap in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
    /// A key of a Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// How Conduit authenticates to Phabricator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(self.mode == 'oauth') == has(self.oauth)").message("auth.oauth must be set exactly when auth.mode is oauth"))]
pub struct UpstreamAuth {
    /// `headerToken` (default): each request carries the caller's Phabricator API token in
    /// `X-PHABRICATOR-TOKEN` (or the sidecar injects one, see `policy.upstreamToken`).
    /// `oauth`: Conduit runs its OAuth proxy; users log in to Phabricator through it.
    #[serde(default)]
    pub mode: UpstreamAuthMode,
    /// Settings for `oauth` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuth>,
}

/// Conduit's authentication mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamAuthMode {
    #[default]
    HeaderToken,
    #[serde(rename = "oauth")]
    OAuth,
}

/// Conduit's OAuth-proxy settings. Register an OAuth application in Phabricator whose
/// redirect URI is `<public URL>/auth/callback` (the McpServer's and McpRoutes'
/// `status.discovery.redirectUri` show it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth {
    /// The OAuth application's client id (`PHID-OASC-...`).
    #[schemars(length(min = 1, max = 256))]
    pub client_id: String,
    /// The Secret key holding the client secret. Passed to Conduit by reference; the value
    /// never appears in any object Sluice writes.
    pub client_secret_ref: SecretKeyRef,
    /// Phabricator OAuth scopes to request.
    #[serde(default = "default_scopes")]
    #[schemars(length(min = 1, max = 16))]
    pub scopes: Vec<String>,
    /// The public https URL clients use, e.g. `https://phabricator.example.com/ai`. Defaults
    /// to the public URL of the one McpRoute that exposes this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^https?://[^/?#@\\s]+(/[A-Za-z0-9._~-]+)*$')").message("auth.oauth.publicUrl must be an http(s) URL with an optional path, without a trailing slash, query or fragment"))]
    pub public_url: Option<String>,
    /// Where Conduit's OAuth proxy keeps its state: client registrations, logins in progress,
    /// authorization codes and the mapping from the tokens it hands out to each user's
    /// Phabricator token, as encrypted files (one per entry) under `FASTMCP_HOME`. Lose them
    /// and every user logs in again in the browser. Default: in the pod, lost with it.
    ///
    /// With `persistent` or `shared`, the operator creates a PersistentVolumeClaim,
    /// `<server>-oauth-state` or `<server>-oauth-state-shared`, owned by the McpServer: it is
    /// deleted, with the logins on it, when the McpServer is deleted or when `storage` or
    /// `claimName` stop asking for it (the storage class's reclaimPolicy decides whether the
    /// volume outlives the claim). To keep logins beyond that, create a claim yourself and name
    /// it in `claimName`: the operator mounts it and never changes or deletes it.
    #[serde(default)]
    pub state: OAuthState,
}

fn default_scopes() -> Vec<String> {
    vec!["maniphest".into(), "file".into()]
}

/// Where Conduit's OAuth proxy keeps its state (see `OAuth::state`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("self.storage != 'ephemeral' || (!has(self.claimName) && !has(self.size) && !has(self.storageClassName))").message("auth.oauth.state.claimName, size and storageClassName describe a volume: they need storage persistent or shared").field_path(".storage"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.claimName) || (!has(self.size) && !has(self.storageClassName))").message("auth.oauth.state.claimName names an existing claim: size and storageClassName describe only a claim the operator creates").field_path(".claimName"))]
pub struct OAuthState {
    /// `ephemeral` (default): an emptyDir in the pod. A restart, upgrade or node drain
    /// forgets every login; more than one replica needs `sessionAffinity: ClientIP`, since a
    /// login lives in the pod that made it.
    ///
    /// `persistent`: a ReadWriteOnce PersistentVolumeClaim mounted into Conduit only. Logins
    /// survive restarts and upgrades. One replica at most, and the Deployment uses the
    /// `Recreate` strategy: the old pod lets go of the volume before the new one starts, so
    /// every rollout has a short outage.
    ///
    /// `shared`: a ReadWriteMany claim every replica mounts. Any replica serves any login
    /// without session affinity, and rollouts replace pods one by one. The storage needs
    /// atomic rename and close-to-open consistency (NFSv4, CephFS, EFS, Filestore and the
    /// like). What that gives: each entry is its own file, written atomically (a temporary
    /// file renamed into place) and read from disk on every use, and entries are keyed by
    /// random per-login ids, so replicas do not overwrite each other and never read half an
    /// entry. What it does not: there is no locking, so an authorization code redeemed at
    /// the same instant on two replicas could be exchanged twice (FastMCP reads the code,
    /// then deletes it; the same race exists within one pod), and expired entries are never
    /// removed, so size the volume for the logins of its lifetime.
    #[serde(default)]
    pub storage: OAuthStateStorage,

    /// An existing PersistentVolumeClaim in the server's namespace to keep the state on,
    /// instead of one the operator creates: ReadWriteOnce for `persistent`, ReadWriteMany for
    /// `shared`. Conduit runs as UID and GID 65532 and must be able to write the volume's root
    /// directory. The operator never changes or deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub claim_name: Option<String>,

    /// Size of the claim the operator creates. Default `1Gi`. A whole number with an optional
    /// suffix, e.g. `1Gi` or `500Mi`. Kubernetes refuses to shrink a claim, and grows one only
    /// when its storage class allows volume expansion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", length(min = 1, max = 24))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[1-9][0-9]{0,15}(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$')").message("auth.oauth.state.size must be a whole number of bytes with an optional suffix, e.g. 1Gi or 500Mi"))]
    pub size: Option<Quantity>,

    /// StorageClass of the claim the operator creates. Absent: the cluster's default class.
    /// With `shared` it must name a class that provisions ReadWriteMany volumes (default
    /// classes usually provision ReadWriteOnce only) and lets UID or GID 65532 write the
    /// volume's root: the kubelet hands the volume to the pod's group (65532) only when the
    /// volume's driver supports it, which many ReadWriteMany drivers (NFS) do not. A claim's
    /// class cannot change once it exists: to move, set `storage: ephemeral` (the claim is
    /// deleted, and the logins with it), then back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub storage_class_name: Option<String>,
}

/// Where Conduit's OAuth state lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OAuthStateStorage {
    /// In the pod (an emptyDir): lost with it.
    #[default]
    Ephemeral,
    /// A ReadWriteOnce claim for one pod.
    Persistent,
    /// A ReadWriteMany claim shared by every replica.
    Shared,
}

/// When the kubelet pulls an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

/// Service session affinity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SessionAffinity {
    #[default]
    None,
    #[serde(rename = "ClientIP")]
    ClientIp,
}

/// Conduit's session handling (its `--stateless` / `--no-stateless` flag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Sessions {
    #[default]
    Stateless,
    Stateful,
}

fn default_conduit_resources() -> ResourceRequirements {
    resources("100m", "128Mi", "512Mi")
}

fn default_proxy_resources() -> ResourceRequirements {
    resources("50m", "32Mi", "128Mi")
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(memory_limit.into()),
        )])),
        ..Default::default()
    }
}

/// Pod-level settings users may add. Labels and annotations Sluice relies on, and
/// annotations that would weaken the container sandbox, are refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodOverrides {
    /// Extra pod labels. Keys under `app.kubernetes.io/` are Sluice's own and refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('sluice.dev/'))").message("pod.labels may not set app.kubernetes.io/* or sluice.dev/* labels: Sluice selects its pods by them"))]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations. Sluice's own (`sluice.dev/`) and sandbox-weakening ones
    /// (AppArmor and seccomp annotations) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, !k.startsWith('sluice.dev/') && !k.startsWith('container.apparmor.security.beta.kubernetes.io/') && !k.startsWith('seccomp.security.alpha.kubernetes.io/'))").message("pod.annotations may not set sluice.dev/*, AppArmor or seccomp annotations"))]
    pub annotations: BTreeMap<String, String>,
    /// Node labels the pods must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and pod (anti-)affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How pods spread over zones and nodes. Leave `labelSelector` empty to select this
    /// server's own pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
}

/// The sluice-proxy sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxySpec {
    /// Sidecar image. Defaults to the sidecar released with this operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Compute resources of the sidecar. Defaults: requests 50m CPU and 32Mi memory, limit
    /// 128Mi memory. A CPU limit also sets how many threads carry traffic: one per CPU of the
    /// limit, rounded up (without one: a single thread).
    #[serde(default = "default_proxy_resources")]
    pub resources: ResourceRequirements,
    /// Log level.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Log format: `json` (one object per line) or `text`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// How the sidecar checks that the server (Conduit or `container`) answers MCP, which
    /// decides the pod's readiness and the server's liveness.
    #[serde(default)]
    pub upstream_check: UpstreamCheck,
    /// The deprecated HTTP+SSE transport of MCP 2024-11-05, which the sidecar serves itself
    /// on every entry point for clients that do not speak Streamable HTTP: `GET <prefix>/sse`
    /// opens a session whose event stream names `<prefix>/messages/?session_id=…`, where the
    /// client POSTs its messages. Each message passes the entry point's policy like any other
    /// request and goes on to Conduit's Streamable HTTP endpoint; its answer, or its refusal
    /// (a denied tool, a rate limit, Conduit failing), reaches the client as an event on the
    /// session's stream, while the POST itself is answered 202. A session lives in the pod
    /// that opened it: with more than one replica, legacy clients need
    /// `sessionAffinity: ClientIP` (behind an Ingress, stickiness there as well); clients of
    /// the current transport need neither.
    #[serde(default)]
    pub legacy_sse: LegacySse,
    /// Serve the audit trail live on the sidecar's admin port (9090): `GET /events`, one
    /// server-sent event per tool call (entry point, caller, client address, tool, decision,
    /// status, request id; never arguments or credentials), filtered by `?entry_point=` and
    /// `?decision=`. Off by default: the events name callers and their addresses, and the admin
    /// port is open to whoever `networkPolicy.metricsFrom` admits (every namespace unless set):
    /// restrict that when turning this on.
    #[serde(default)]
    pub audit_events: bool,
    /// OpenTelemetry traces of the requests the sidecar serves, exported over OTLP/HTTP: one
    /// server span per request, joined to the caller's trace when the request carries
    /// `traceparent`. Absent: no traces. The sidecar reads these settings and the headers
    /// Secret at start, so a change to either rolls the pods. The NetworkPolicy lets the pods
    /// reach the endpoint's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
}

/// Where and how the sidecar exports traces (see [`ProxySpec::tracing`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("!has(self.caBundle) || self.endpoint.startsWith('https://')").message("proxy.tracing.caBundle is for an https endpoint: the endpoint is http").field_path(".caBundle"))]
pub struct Tracing {
    /// The OTLP/HTTP (protobuf) traces URL of a collector, e.g.
    /// `http://otel-collector.observability.svc:4318/v1/traces`, used as is; without a path,
    /// `/v1/traces` is appended. Credentials go in `headersSecretRef`, not in the URL.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^https?://[^/?#@\\s]+(/[^?#\\s]*)?$')").message("proxy.tracing.endpoint must be an http(s) URL without credentials (headersSecretRef carries them), query or fragment"))]
    pub endpoint: String,
    /// A Secret whose every key is a header sent with each export, its value the header's
    /// value: e.g. `authorization: Bearer …` for a hosted collector. Mounted into the sidecar
    /// only; give it a Secret of its own, since every key becomes a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_secret_ref: Option<SecretRef>,
    /// The CA certificates (PEM) to trust for an `https` endpoint's certificate, besides the
    /// sidecar image's system roots: a collector in the cluster with a certificate from a
    /// private CA (cert-manager's, say). Mounted into the sidecar only, and read at start, so
    /// a change rolls the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
    /// The share of traces the sidecar starts that it samples, from `"0"` to `"1"`, as a
    /// string (like the OpenTelemetry `traceidratio` sampler's argument), e.g. `"0.25"`. A
    /// caller's `traceparent` decides for its own trace. Default `"1"`: every trace.
    #[serde(default = "default_sampling_ratio")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^(0(\\.[0-9]+)?|1(\\.0+)?)$')").message("proxy.tracing.samplingRatio must be a decimal number from 0 to 1, e.g. 0.25"))]
    pub sampling_ratio: String,
    /// Resource attributes of every span, besides those the operator sets (`service.name:
    /// sluice-proxy`, `k8s.namespace.name`, `k8s.deployment.name`, `k8s.pod.name`,
    /// `sluice.mcp_server`); these win over the operator's, except `k8s.pod.name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub resource_attributes: BTreeMap<String, String>,
}

fn default_sampling_ratio() -> String {
    "1".into()
}

/// The sidecar's check of the server: on an interval it sends an MCP `initialize` (and
/// `tools/list`, ending any session it opened) without credentials over loopback. A server
/// that answers 401 with an OAuth challenge (Conduit in OAuth mode) counts as answering. After
/// `failureThreshold` checks in a row without an answer the pod is no longer ready (`/readyz`
/// says why), and the server's liveness probe, which the sidecar answers on its behalf
/// (`/upstream/livez` on the admin port; Conduit's image has no shell and no health route, and
/// a `container` server's need none), fails too: after three more failed probes, 10 s apart,
/// the kubelet restarts the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("duration(self.timeout) < duration(self.interval)").message("proxy.upstreamCheck.timeout must be shorter than proxy.upstreamCheck.interval").field_path(".timeout"))]
#[x_kube(validation = kube::core::Rule::new("duration(self.interval) >= duration('100ms')").message("proxy.upstreamCheck.interval must be at least 100ms").field_path(".interval"))]
pub struct UpstreamCheck {
    /// Time between the end of one check and the start of the next, e.g. `10s`.
    #[serde(default = "default_check_interval")]
    #[schemars(length(max = 16), regex(pattern = DURATION))]
    pub interval: String,
    /// Time one check may take, connection and every answer included, e.g. `5s`.
    #[serde(default = "default_check_timeout")]
    #[schemars(length(max = 16), regex(pattern = DURATION))]
    pub timeout: String,
    /// Checks in a row without an answer before the server counts as not answering.
    #[serde(default = "default_check_failure_threshold")]
    #[schemars(range(min = 1, max = 20))]
    pub failure_threshold: u32,
}

impl Default for UpstreamCheck {
    fn default() -> Self {
        Self {
            interval: default_check_interval(),
            timeout: default_check_timeout(),
            failure_threshold: default_check_failure_threshold(),
        }
    }
}

fn default_check_interval() -> String {
    "10s".into()
}

fn default_check_timeout() -> String {
    "5s".into()
}

fn default_check_failure_threshold() -> u32 {
    3
}

/// The sidecar's legacy HTTP+SSE transport (see [`ProxySpec::legacy_sse`]) and its limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("duration(self.idleTimeout) >= duration('1s')").message("proxy.legacySse.idleTimeout must be at least 1s").field_path(".idleTimeout"))]
pub struct LegacySse {
    /// Serve the legacy transport. Off: `<prefix>/sse` and `<prefix>/messages/` reach Conduit
    /// like any other path.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Sessions open at once in one pod, all entry points together. A new session beyond it
    /// gets HTTP 503.
    #[serde(default = "default_legacy_max_sessions")]
    #[schemars(range(min = 1))]
    pub max_sessions: u32,
    /// Sessions one caller (its identity, else its address) may hold open at once in one pod.
    /// A new session beyond it gets HTTP 429.
    #[serde(default = "default_legacy_max_sessions_per_caller")]
    #[schemars(range(min = 1))]
    pub max_sessions_per_caller: u32,
    /// A session with no message either way for this long is ended (keep-alives do not
    /// count), e.g. `30m`.
    #[serde(default = "default_legacy_idle_timeout")]
    #[schemars(length(max = 16), regex(pattern = DURATION))]
    pub idle_timeout: String,
}

impl Default for LegacySse {
    fn default() -> Self {
        Self {
            enabled: true,
            max_sessions: default_legacy_max_sessions(),
            max_sessions_per_caller: default_legacy_max_sessions_per_caller(),
            idle_timeout: default_legacy_idle_timeout(),
        }
    }
}

fn default_legacy_max_sessions() -> u32 {
    512
}

fn default_legacy_max_sessions_per_caller() -> u32 {
    32
}

fn default_legacy_idle_timeout() -> String {
    "30m".into()
}

impl Default for ProxySpec {
    fn default() -> Self {
        Self {
            image: None,
            resources: default_proxy_resources(),
            log_level: LogLevel::default(),
            log_format: LogFormat::default(),
            upstream_check: UpstreamCheck::default(),
            legacy_sse: LegacySse::default(),
            audit_events: false,
            tracing: None,
        }
    }
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// Log encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// Redis for global rate limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("!has(self.usernameSecretRef) || has(self.passwordSecretRef)").message("redis.usernameSecretRef needs redis.passwordSecretRef").field_path(".usernameSecretRef"))]
#[x_kube(validation = kube::core::Rule::new("has(self.address) != has(self.sentinel)").message("redis needs exactly one of address or sentinel").field_path(".address"))]
pub struct Redis {
    /// `host:port` of a single Redis server, e.g. `redis.infra.svc:6379`. With `tls`, the
    /// host is the name the server's certificate must carry. Exactly one of `address` and
    /// `sentinel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 260))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^[A-Za-z0-9.-]+:[0-9]{1,5}$')").message("redis.address must be host:port"))]
    pub address: Option<String>,
    /// Redis Sentinel, for a master that fails over: the sidecar asks the sentinels where the
    /// master is, and asks again when the connection fails and every 5 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<RedisSentinel>,
    /// TLS to Redis (what `rediss://` means): present means on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTls>,
    /// The Secret key holding the ACL username (Redis 6+), if not the `default` user. Needs
    /// `passwordSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<SecretKeyRef>,
    /// The Secret key holding the Redis password, if it has one. Mounted into the sidecar
    /// only; never in its ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// When Redis cannot be reached: `open` lets requests through (counted locally only),
    /// `closed` refuses them with HTTP 503.
    #[serde(default)]
    pub fail_mode: FailMode,
}

/// Redis Sentinel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisSentinel {
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> ...`).
    #[schemars(length(min = 1, max = 128))]
    pub master_name: String,
    /// `host:port` of each sentinel, e.g. `redis-sentinel.infra.svc:26379` (one Service in
    /// front of them all will do), asked in this order. With `tls`, the sentinels are reached
    /// over TLS too, and the master's certificate must carry the address the sentinels
    /// announce for it.
    #[schemars(length(min = 1, max = 16), inner(length(min = 3, max = 260)))]
    #[x_kube(validation = kube::core::Rule::new(r"self.all(a, a.matches('^[A-Za-z0-9.-]+:[0-9]{1,5}$'))").message("redis.sentinel.addresses must be host:port"))]
    pub addresses: Vec<String>,
    /// The Secret key holding the sentinels' own password (`requirepass` in
    /// sentinel.conf), if they have one. Mounted into the sidecar only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// The port the Redis servers the sentinels name listen on, for the NetworkPolicy's
    /// egress rule (the sidecar learns the address itself). Default 6379.
    #[serde(default = "default_redis_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub server_port: u16,
}

fn default_redis_port() -> u16 {
    6379
}

/// TLS to Redis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisTls {
    /// The CA certificates (PEM) to trust for Redis's certificate, as for Phabricator's
    /// `caBundle`. Without it, the sidecar image's system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
}

/// What to do when a dependency of a policy is down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailMode {
    #[default]
    Open,
    Closed,
}

/// The NetworkPolicy Sluice writes for the server's pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// Write the NetworkPolicy. On by default: the sidecar's guarantees hold only if callers
    /// cannot go around it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may call the server's own entry point. Defaults to every pod in the server's
    /// namespace. McpRoutes say who may call theirs (`allowedClients`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_clients: Option<Vec<NetworkPolicyPeer>>,
    /// Who may scrape the sidecar's metrics port (9090). Defaults to every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_from: Option<Vec<NetworkPolicyPeer>>,
    /// Where the destinations the pods connect to are: CIDRs per destination (peers for DNS).
    /// A destination listed here gets an egress rule of its own, its ports to those addresses
    /// only; one left out keeps its ports open to any address, as all are without this field.
    /// Rules add up: a port that a destination left out also uses stays open to any address
    /// (Phabricator and an identity provider both on 443: list both). NetworkPolicy matches
    /// addresses, not host names, and whether it sees a Service's ClusterIP or the addresses
    /// behind it depends on the CNI: list those behind it (and the ClusterIP, if unsure). A
    /// destination the server does not use gets no rule.
    #[serde(default, skip_serializing_if = "EgressDestinations::is_empty")]
    pub egress_destinations: EgressDestinations,
    /// Egress rules added as written, besides DNS and the destinations' rules. NetworkPolicy
    /// rules add up: these can open more, never narrow what the destinations' rules allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_clients: None,
            metrics_from: None,
            egress_destinations: EgressDestinations::default(),
            egress: Vec::new(),
        }
    }
}

/// The addresses of the destinations the pods connect to. A list is never empty: leaving a
/// destination out is what allows any address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressDestinations {
    /// CIDRs of Phabricator (`phabricator.url`'s port) and of the outbound proxy
    /// (`phabricator.proxy`'s port), which count as one destination. With a proxy, list
    /// Phabricator's addresses too: the sidecar checks tokens with `user.whoami` directly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 32), inner(length(max = 43)))]
    #[x_kube(validation = kube::core::Rule::new(CIDRS_RULE).message("each egressDestinations.phabricator entry must be an IPv4 or IPv6 CIDR, such as 10.0.0.0/8 or fd00::/8"))]
    pub phabricator: Vec<String>,
    /// CIDRs of the identity providers: the issuers and JWKS URLs of every entry point whose
    /// policy uses mode `jwt` (the McpServer's and its McpRoutes'), on their ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 32), inner(length(max = 43)))]
    #[x_kube(validation = kube::core::Rule::new(CIDRS_RULE).message("each egressDestinations.identityProviders entry must be an IPv4 or IPv6 CIDR, such as 10.0.0.0/8 or fd00::/8"))]
    pub identity_providers: Vec<String>,
    /// CIDRs of Redis (`redis.address`'s port). For a Redis in the cluster, its pods'
    /// addresses (e.g. the pod CIDR).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 32), inner(length(max = 43)))]
    #[x_kube(validation = kube::core::Rule::new(CIDRS_RULE).message("each egressDestinations.redis entry must be an IPv4 or IPv6 CIDR, such as 10.0.0.0/8 or fd00::/8"))]
    pub redis: Vec<String>,
    /// CIDRs of the Kubernetes API server (ports 443 and 6443), which checks ServiceAccount
    /// tokens (TokenReview) for entry points whose policy uses mode `serviceAccount`. The
    /// addresses behind the `kubernetes` Service: `kubectl get endpointslices -n default -l
    /// kubernetes.io/service-name=kubernetes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 32), inner(length(max = 43)))]
    #[x_kube(validation = kube::core::Rule::new(CIDRS_RULE).message("each egressDestinations.kubernetesApi entry must be an IPv4 or IPv6 CIDR, such as 10.0.0.0/8 or fd00::/8"))]
    pub kubernetes_api: Vec<String>,
    /// CIDRs of the trace collector (`proxy.tracing.endpoint`'s port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 32), inner(length(max = 43)))]
    #[x_kube(validation = kube::core::Rule::new(CIDRS_RULE).message("each egressDestinations.traceCollector entry must be an IPv4 or IPv6 CIDR, such as 10.0.0.0/8 or fd00::/8"))]
    pub trace_collector: Vec<String>,
    /// Who answers DNS (UDP and TCP port 53), as NetworkPolicy peers rather than CIDRs: the
    /// cluster's DNS runs in pods found by labels, e.g. `{namespaceSelector: {matchLabels:
    /// {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app:
    /// kube-dns}}}`; a node-local DNS cache listens on an address, e.g. `{ipBlock: {cidr:
    /// 169.254.20.10/32}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub dns: Vec<NetworkPolicyPeer>,
}

impl EgressDestinations {
    /// No destination narrowed: every port open to any address.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

fn default_true() -> bool {
    true
}

/// Prometheus scraping of the sidecar's `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Monitoring {
    /// A Prometheus Operator ServiceMonitor for the sidecar's metrics.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
}

/// ServiceMonitor settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMonitorSpec {
    /// Write a ServiceMonitor (needs the Prometheus Operator's CRDs in the cluster).
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval.
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = DURATION))]
    pub interval: String,
    /// Extra labels on the ServiceMonitor, e.g. the `release` label a Prometheus selects by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: default_scrape_interval(),
            labels: BTreeMap::new(),
        }
    }
}

fn default_scrape_interval() -> String {
    "30s".into()
}

/// Observed state of an McpServer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpServerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, with reasons and messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pods of the current Deployment (the scale subresource's `status.replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The label selector of the server's pods, as a string (the scale subresource's
    /// `status.selector`, which an HPA or KEDA aimed at the McpServer reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Pods ready to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The in-cluster URL of the server's MCP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What the server is, as a ready pod's sidecar last saw it answer MCP (see the
    /// `Verified` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpServerInfo>,
    /// With `auth.mode: oauth`: where OAuth clients in the cluster find the metadata of the
    /// server's own entry point (`url`'s origin), and the redirect URI to register in
    /// Phabricator (the public URL's `/auth/callback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryUrls>,
}

/// What a server said of itself when the sidecar initialized an MCP session with it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpServerInfo {
    /// The MCP protocol version it agreed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Its `serverInfo.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its `serverInfo.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How many tools its `tools/list` names (to a caller without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<u64>,
}
