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
//! documented opt-out (`runAsUser`), never a securityContext of the user's.

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// An MCP server image that serves MCP's Streamable HTTP transport at `/mcp` on `port`. It
/// runs with the same hardening as Conduit: non-root (UID and GID 65532 unless `runAsUser`),
/// a read-only root filesystem (writable only `/tmp` and `writablePaths`), no capabilities,
/// no privilege escalation, the runtime's default seccomp profile, and no ServiceAccount
/// token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerContainer {
    /// The server's image. Pin by digest in production.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// The image's entrypoint, replaced (as a container's `command`). Absent: the image's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,

    /// Arguments to the entrypoint (as a container's `args`), e.g. the flags that make the
    /// server serve Streamable HTTP on `port`.
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
    /// entry points) and 9090 (its admin port).
    #[schemars(range(min = 1, max = 65535))]
    #[x_kube(validation = kube::core::Rule::new("!(self >= 8080 && self <= 8999) && self != 9090").message("container.port may not be 8080 to 8999 or 9090: the sidecar listens there"))]
    pub port: i32,

    /// Directories the server may write to, each an emptyDir of its own (the root filesystem
    /// is read-only). `/tmp` is always writable (64Mi) unless listed here with a size of its
    /// own.
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

/// A writable directory of the server's: an emptyDir mounted at `path`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
}
