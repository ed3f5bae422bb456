//! `McpRoute`: one more entry point onto an McpServer, with its own policy and exposure.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// An entry point onto an McpServer: its own sidecar listener, in-cluster Service, policy
/// and, if asked, an Ingress or Gateway-API HTTPRoute for a public host and path prefix.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "McpRoute",
    doc = "An McpRoute is one more entry point onto an McpServer, with its own policy and exposure.",
    namespaced,
    status = "McpRouteStatus",
    shortname = "mcpr",
    category = "mcp",
    printcolumn(json_path = ".spec.serverRef.name", name = "Server", type_ = "string"),
    printcolumn(json_path = ".status.url", name = "URL", type_ = "string"),
    printcolumn(json_path = ".status.conditions[?(@.type==\"Programmed\")].status", name = "Ready", type_ = "string"),
    printcolumn(json_path = ".metadata.creationTimestamp", name = "Age", type_ = "date"),
    // No fieldPath: the root schema declares no metadata.name, and the API server refuses a
    // CRD whose fieldPath names an undeclared field.
    validation = kube::core::Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$')").message("metadata.name must be a DNS label of at most 40 characters starting with a letter (it names the route's Service)")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new(crate::policy::CLIENT_CERTIFICATE_NEEDS_CA).message(crate::policy::CLIENT_CERTIFICATE_NEEDS_CA_MESSAGE).field_path(".tls"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.expose) || (has(self.hostnames) && self.hostnames.size() > 0)").message("an exposed route needs at least one hostname").field_path(".hostnames"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.publicUrl) || self.publicUrl.endsWith(self.pathPrefix == '/' ? '' : self.pathPrefix)").message("publicUrl must end with pathPrefix (the sidecar serves the route at that path)").field_path(".publicUrl"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.publicUrl) || self.pathPrefix != '/' || self.publicUrl.matches('^https?://[^/]+$')").message("with pathPrefix /, publicUrl must have no path").field_path(".publicUrl"))]
pub struct McpRouteSpec {
    /// The McpServer (same namespace) this route leads to.
    pub server_ref: ServerRef,

    /// Public host names, e.g. `phabricator.example.com`. Required when exposed; the first one
    /// makes the default public URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    #[x_kube(validation = kube::core::Rule::new(r"self.all(h, h.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))").message("hostnames must be lower-case DNS names"))]
    pub hostnames: Vec<String>,

    /// The path this route is served under, e.g. `/ai`; the MCP endpoint is then `/ai/mcp`.
    /// Starts with `/`, no trailing slash (except `/` itself), no `.` or `..` segments, no
    /// percent-encoding.
    #[serde(default = "default_path_prefix")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = kube::core::Rule::new(r"self == '/' || self.matches('^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$')").message("pathPrefix must be / or /segment[/segment...]: no trailing slash, no . or .. segments, no percent-encoding"))]
    pub path_prefix: String,

    /// The URL clients use to reach this route, e.g. `https://phabricator.example.com/ai`.
    /// Defaults to `https://<first hostname><pathPrefix>` when exposed. It appears in OAuth
    /// discovery documents and `WWW-Authenticate` challenges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new(r"self.matches('^https?://[^/?#@\\s]+(/[A-Za-z0-9._~-]+)*$')").message("publicUrl must be an http(s) URL with an optional path, without a trailing slash, query or fragment"))]
    pub public_url: Option<String>,

    /// How the route is exposed outside the cluster. Absent: in-cluster only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<Expose>,

    /// Policy of this entry point.
    #[serde(default)]
    pub policy: Policy,

    /// HTTPS (and optionally mutual TLS) on this route's entry point, served by the sidecar
    /// from a `kubernetes.io/tls` Secret. Absent: the listener speaks plain HTTP (behind an
    /// Ingress or Gateway that terminates TLS, the usual setup). With it, an Ingress or
    /// HTTPRoute must reach the backend over HTTPS: see the README (TLS and mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::EntryPointTls>,

    /// Who may reach the route's listener (NetworkPolicy peers). Defaults to every pod in the
    /// namespace for an in-cluster route, and to anywhere for an exposed one (the Ingress
    /// controller or Gateway may run in any namespace): narrow it to your controller's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_clients: Option<Vec<NetworkPolicyPeer>>,
}

fn default_path_prefix() -> String {
    "/".into()
}

/// Reference to an McpServer in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerRef {
    /// Name of the McpServer.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// Exposure outside the cluster: an Ingress or a Gateway-API HTTPRoute, not both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.ingress) != has(self.httpRoute)").message("expose needs exactly one of ingress or httpRoute"))]
pub struct Expose {
    /// Expose with a networking.k8s.io/v1 Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressExpose>,
    /// Expose with a gateway.networking.k8s.io/v1 HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRouteExpose>,
}

/// Ingress settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressExpose {
    /// IngressClass to use. Absent: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,
    /// A Secret (type kubernetes.io/tls) with the certificate for the hostnames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: Option<String>,
    /// Annotations for the Ingress (e.g. for cert-manager or the controller).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// HTTPRoute settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteExpose {
    /// Gateways (or their listeners) to attach to.
    #[schemars(length(min = 1, max = 32))]
    pub parent_refs: Vec<ParentRef>,
    /// Annotations for the HTTPRoute.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A Gateway-API parent reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Gateway. Absent: the route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// A listener of the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
    /// A port of the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Observed state of an McpRoute.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpRouteStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` and `Programmed`, with reasons and messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The MCP endpoint clients use: the public one when exposed, else the in-cluster one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The in-cluster MCP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_url: Option<String>,
    /// The sidecar listener port this route's Service targets. Kept stable once assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_port: Option<i32>,
    /// OAuth discovery URLs served for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryUrls>,
}

/// Where OAuth clients find an entry point's metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryUrls {
    /// RFC 9728 protected-resource metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_resource: Option<String>,
    /// RFC 8414 authorization-server metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_server: Option<String>,
    /// OpenID Connect discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid_configuration: Option<String>,
    /// The redirect URI to register in Phabricator's OAuth application (OAuth mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}
