//! Condition types and reasons written to `status.conditions`.
//!
//! Reasons are CamelCase, as Kubernetes asks; they are part of the API (users alert on them).

/// McpServer: the Deployment has the desired number of ready pods running the current spec.
pub const READY: &str = "Ready";
/// McpServer: a rollout is under way.
pub const PROGRESSING: &str = "Progressing";
/// McpServer: it works, but not as it should (insecure settings, unauthenticated entry points).
pub const DEGRADED: &str = "Degraded";
/// McpServer: a ready pod's sidecar says Conduit answers MCP (what it reported is in
/// `status.mcp`; the condition's `lastTransitionTime` says since when).
pub const VERIFIED: &str = "Verified";
/// McpRoute: the route is valid and bound to its server.
pub const ACCEPTED: &str = "Accepted";
/// McpRoute: its Service (and Ingress or HTTPRoute) are in place and its entry point is live.
pub const PROGRAMMED: &str = "Programmed";

/// Reasons used with the condition types above.
pub mod reasons {
    /// Everything converged.
    pub const AVAILABLE: &str = "Available";
    /// The Deployment does not have enough ready replicas.
    pub const DEPLOYMENT_UNAVAILABLE: &str = "DeploymentUnavailable";
    /// A new ReplicaSet is rolling out.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// The rollout finished.
    pub const ROLLED_OUT: &str = "RolledOut";
    /// A Secret the spec references does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// A ConfigMap the spec references does not exist.
    pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
    /// The policy cannot be translated into sidecar configuration.
    pub const INVALID_POLICY: &str = "InvalidPolicy";
    /// The spec is valid for the schema but cannot be rendered (e.g. OAuth without a public URL).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// TLS verification towards Phabricator is disabled.
    pub const INSECURE: &str = "Insecure";
    /// An entry point accepts callers without authentication.
    pub const UNAUTHENTICATED: &str = "Unauthenticated";
    /// Nothing is wrong.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// McpRoute: `spec.serverRef` names no McpServer in the namespace.
    pub const SERVER_NOT_FOUND: &str = "ServerNotFound";
    /// McpRoute: another route claims the same host and path, or a name is taken.
    pub const CONFLICTING_ROUTE: &str = "ConflictingRoute";
    /// McpRoute: accepted by its server.
    pub const ACCEPTED: &str = "Accepted";
    /// McpRoute: its objects are applied.
    pub const PROGRAMMED: &str = "Programmed";
    /// McpRoute: no free sidecar listener port is left on the server.
    pub const NO_FREE_PORT: &str = "NoFreePort";
    /// The API server refused an object the operator applied; the message says which and why.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// McpRoute: it asks for an HTTPRoute, but the cluster does not serve the Gateway API.
    pub const GATEWAY_API_NOT_INSTALLED: &str = "GatewayApiNotInstalled";
    /// McpServer `Verified`: Conduit answered the sidecar's MCP `initialize`.
    pub const ANSWERS_MCP: &str = "AnswersMcp";
    /// McpServer `Verified`: Conduit answered with its OAuth challenge; what it is needs a login.
    pub const ANSWERS_BEHIND_OAUTH: &str = "AnswersBehindOAuth";
    /// McpServer `Verified`: the sidecar's checks of Conduit go unanswered.
    pub const NOT_ANSWERING: &str = "NotAnswering";
    /// McpServer `Verified`: the operator could not read a sidecar's report.
    pub const SIDECAR_UNREACHABLE: &str = "SidecarUnreachable";
    /// McpServer `Verified`: no pod is ready, so there is no sidecar to ask.
    pub const NO_READY_POD: &str = "NoReadyPod";
    /// McpServer: it asks for a ServiceMonitor, but the Prometheus Operator's CRDs are not
    /// served.
    pub const SERVICE_MONITOR_NOT_INSTALLED: &str = "ServiceMonitorNotInstalled";
}
