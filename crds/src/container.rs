//! `McpServer.spec.container`: any MCP server image that serves Streamable HTTP, instead of
//! Conduit.
//!
//! The shape, and why: an McpServer runs either Conduit (`spec.phabricator`, today's fields,
//! the default of every existing manifest) or the container described here, never both (a CEL
//! rule on the spec). The names are a Kubernetes container's own (`image`, `command`, `args`,
//! `env`, `envFrom`), as ToolHive's and kmcp's MCPServer use them, so they read as what they
//! become; `port` is where the server listens on the pod's loopback, behind the sidecar.
//! `resources`, `imagePullPolicy`, `sessions` and `pod` stay on the spec and apply to either
//! server. What the pod's hardening cannot give a server that needs it is an explicit,
//! documented opt-out (`runAsUser`), never a securityContext of the user's. A stdio server
//! (`stdio`) is the same container with its command run behind `sluice-bridge`, which the
//! sidecar's image provides: one shape for both transports, so everything else (probes,
//! policy, NetworkPolicy) stays the Streamable HTTP server's.

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// An MCP server image that serves MCP's Streamable HTTP transport at `/mcp` on `port`, or,
/// with `stdio`, whose `command` is a stdio MCP server. It runs with the same hardening as
/// Conduit: non-root (UID and GID 65532 unless `runAsUser`), a read-only root filesystem
/// (writable only `/tmp` and `writablePaths`), no capabilities, no privilege escalation, the
/// runtime's default seccomp profile, and no ServiceAccount token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("!has(self.stdio) || !has(self.path) || self.path == '/mcp'").message("container.path must be /mcp (or left out) with container.stdio: the bridge serves there").field_path(".path"))]
#[x_kube(validation = kube::core::Rule::new("has(self.stdio) || has(self.port)").message("container.port is required without container.stdio: it is the port the server serves Streamable HTTP on").field_path(".port"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.stdio) || (has(self.command) && size(self.command) > 0)").message("container.command is required with container.stdio: it is the stdio server the bridge runs, and the bridge cannot know the image's entrypoint").field_path(".command"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.stdio) || !has(self.writablePaths) || self.writablePaths.all(w, w.path != '/sluice/bridge' && !w.path.startsWith('/sluice/bridge/'))").message("container.writablePaths may not be /sluice/bridge or under it with container.stdio: the bridge is mounted there").field_path(".writablePaths"))]
pub struct ServerContainer {
    /// The server's image. Pin by digest in production.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// The image's entrypoint, replaced (as a container's `command`). Absent: the image's own.
    /// With `stdio`, required: the program (and its first arguments) the bridge runs as the
    /// stdio server, e.g. `[npx, -y, "@modelcontextprotocol/server-everything"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,

    /// Arguments to the entrypoint (as a container's `args`), e.g. the flags that make the
    /// server serve Streamable HTTP on `port`. With `stdio`, passed after `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 4096)))]
    pub args: Vec<String>,

    /// Environment variables of the server, as a container's `env` (values, or references to
    /// Secret and ConfigMap keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub env: Vec<EnvVar>,

    /// Whole Secrets and ConfigMaps as environment variables, as a container's `envFrom`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub env_from: Vec<EnvFromSource>,

    /// The port the server serves MCP on, at the path `/mcp`. The sidecar reaches it at
    /// `http://127.0.0.1:<port>/mcp`: let the server listen on `127.0.0.1` where it can (it
    /// is then unreachable from outside the pod; the NetworkPolicy admits callers only to the
    /// sidecar's ports either way). It may not be one of the sidecar's: 8080 to 8999 (its
    /// entry points) and 9090 (its admin port). Required without `stdio`; with it, the
    /// bridge's port on the loopback (default 3000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    #[x_kube(validation = kube::core::Rule::new("!(self >= 8080 && self <= 8999) && self != 9090").message("container.port may not be 8080 to 8999 or 9090: the sidecar listens there"))]
    pub port: Option<i32>,

    /// The path the server serves MCP at on `port`, e.g. `/` or `/api/mcp`; default `/mcp`.
    /// Callers still ask the sidecar for `/mcp` (below a route's `pathPrefix`), and the sidecar
    /// forwards that, and its own MCP readiness check, to this path. Other paths pass through
    /// unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = kube::core::Rule::new(r"self == '/' || (self.matches('^(/[A-Za-z0-9._~!$&()*+,;=:@%-]+)+$') && !self.matches('/\\.\\.?(/|$)'))").message("container.path must be / or an absolute path without a query, a trailing slash, empty, . or .. segments, e.g. /api/mcp"))]
    pub path: Option<String>,

    /// The image's `command` is a stdio MCP server (MCP on its standard input and output, the
    /// transport most of the MCP catalogue uses). Set (even as `{}`), an init container copies
    /// `sluice-bridge` from the sidecar's image and the container runs it: it serves
    /// Streamable HTTP at `/mcp` on `port` and runs `command` and `args` as the server, ONE
    /// PROCESS PER MCP SESSION. A process starts at its session's `initialize` and ends at
    /// the session's DELETE, or after `idleTimeout` without a request. For concurrent
    /// callers that means: each session has its own process and its own state, and nothing
    /// is shared between callers (a server that caches or logs in does so once per
    /// session); memory grows with the sessions open, up to `maxProcesses` processes per pod
    /// (size `resources` for that many); and a session lives in one pod, so `sessions` must
    /// be `stateful`, and more than one replica needs `sessionAffinity: ClientIP`, as for any
    /// stateful server. Requests without a session (MCP's stateless revision, e.g.
    /// `server/discover`) share one process per pod, their ids renamed so callers' ids never
    /// meet. The processes inherit the container's environment (`env`,
    /// `envFrom`); their stderr goes to the container's log, each line prefixed with its
    /// session. A process that exits unasked is restarted for its session with backoff (its
    /// `initialize` replayed); while one is in backoff new sessions are refused, so the
    /// sidecar's MCP readiness check fails and the pod leaves the Service until it runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<Stdio>,

    /// Directories the server may write to (the root filesystem is read-only): each an
    /// emptyDir of its own, or an existing PersistentVolumeClaim (`claimName`) for what must
    /// outlive the pod. `/tmp` is always writable (64Mi) unless listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = kube::core::Rule::new("self.all(a, self.filter(b, b.path == a.path).size() == 1)").message("container.writablePaths may name each path once"))]
    pub writable_paths: Vec<WritablePath>,

    /// Opt-out of the UID 65532 every container runs as, for an image that works only as
    /// its own user (it must not be root: the pod runs as non-root). The group stays 65532,
    /// so the mounted files stay readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub run_as_user: Option<i64>,
}

/// A writable directory of the server's: an emptyDir, or an existing PersistentVolumeClaim,
/// mounted at `path`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("!(has(self.claimName) && has(self.sizeLimit))").message("container.writablePaths[] takes sizeLimit (an emptyDir) or claimName (a PersistentVolumeClaim), not both: a claim's size is the claim's").field_path(".sizeLimit"))]
pub struct WritablePath {
    /// Absolute path in the server's container, e.g. `/home/app/.cache`.
    #[schemars(length(min = 2, max = 1024))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^(/[^/\\s]+)+$') && !self.matches('/\\.\\.?(/|$)')").message("container.writablePaths[].path must be an absolute path without . or .. segments or a trailing slash"))]
    pub path: String,

    /// The most the directory may hold, e.g. `64Mi` (default); past it the kubelet evicts
    /// the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", length(min = 1, max = 24))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[1-9][0-9]{0,15}(Ki|Mi|Gi|Ti|k|M|G|T)?$')").message("container.writablePaths[].sizeLimit must be a whole number of bytes with an optional suffix, e.g. 64Mi"))]
    pub size_limit: Option<Quantity>,

    /// An existing PersistentVolumeClaim in the McpServer's namespace to mount here
    /// read-write, instead of an emptyDir: the directory then outlives the pod. Every replica
    /// mounts the same claim, so more than one replica needs a ReadWriteMany claim (or the
    /// pods of a ReadWriteOnce one must share a node); a claim that does not exist keeps the
    /// pods Pending, as the kubelet reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("container.writablePaths[].claimName must be a PersistentVolumeClaim's name (a DNS subdomain)"))]
    pub claim_name: Option<String>,
}

/// How the bridge runs a stdio server: how many processes at once, and how long an idle one
/// lives (see `container.stdio`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("duration(self.idleTimeout) >= duration('1s')").message("container.stdio.idleTimeout must be at least 1s").field_path(".idleTimeout"))]
pub struct Stdio {
    /// Processes at once in one pod, which is sessions at once: a new session beyond it gets
    /// HTTP 503.
    #[serde(default = "default_max_processes")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_processes: i32,

    /// How long a session's process lives without a request before it is ended (and the
    /// session with it), e.g. `30m`.
    #[serde(default = "default_idle_timeout")]
    #[schemars(length(max = 16), regex(pattern = crate::policy::DURATION))]
    pub idle_timeout: String,
}

impl Default for Stdio {
    fn default() -> Self {
        Self {
            max_processes: default_max_processes(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_max_processes() -> i32 {
    16
}

fn default_idle_timeout() -> String {
    "30m".into()
}
