//! An entry point: one listener with its own path prefix, public URL and policy.

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Auth, RateLimit, ToolPolicy};

/// One listener and the policy enforced on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryPoint {
    /// Unique name, used in metrics and logs.
    pub name: String,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Serve TLS with these files (re-read when they change). Absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Path prefix callers use; stripped before forwarding (`/ai/mcp` → `/mcp`).
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    /// The URL clients know this entry point by (origin + path prefix), for OAuth discovery
    /// documents, challenges and the allowed Origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Browser origins allowed besides the public URL's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Largest request body; absent: `limits.maxBodyBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// How callers authenticate.
    pub auth: Auth,
    /// The Phabricator token sent upstream instead of the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_token: Option<UpstreamToken>,
    /// Tool, resource and prompt policy.
    #[serde(default, skip_serializing_if = "ToolPolicy::is_open")]
    pub tools: ToolPolicy,
    /// Rate limits; all apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
    /// Proxies (CIDRs, e.g. `10.0.0.0/8`, `fd00::/8`) whose word on the caller's address is
    /// believed. From a peer in one of them the client is the right-most `X-Forwarded-For`
    /// address (`Forwarded: for=` without it) not itself in one, and the upstream gets that
    /// chain with the peer appended. From any other peer (and with none listed, the default)
    /// both headers are ignored: the peer is the client, and `X-Forwarded-For` is the peer alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// OAuth protected-resource metadata served by the sidecar itself (for `jwt` and
    /// `serviceAccount` entry points with an external authorization server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Discovery>,
    /// Also answer `/.well-known/oauth-protected-resource`, the root fallback clients try last
    /// (RFC 9728), with this entry point's protected-resource metadata. Set it only when this
    /// entry point alone serves its host: that location names no path, so two entry points on
    /// one host would claim it both. Entry points at `/` answer it anyway; needs `publicUrl`
    /// and a metadata source (auth mode `oauth`, or `discovery`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root_discovery: bool,
}

fn default_path_prefix() -> String {
    "/".into()
}

/// TLS certificate and key (PEM), and optionally the CA that client certificates must chain to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain.
    pub cert_file: PathBuf,
    /// Private key.
    pub key_file: PathBuf,
    /// CA bundle (PEM) client certificates must chain to (mutual TLS). Set, every caller must
    /// present a valid, unexpired certificate from one of these CAs or the handshake is
    /// refused (counted in `sluice_tls_handshake_failures_total`); re-read when it changes.
    /// Needed by auth mode `clientCertificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

/// Where the injected upstream Phabricator token comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum UpstreamToken {
    /// A file holding one token for every caller.
    File(PathBuf),
    /// A file holding a JSON object from caller identity to token; callers without an entry
    /// are refused.
    PerIdentityFile(PathBuf),
}

/// Protected-resource metadata (RFC 9728) the sidecar serves itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Discovery {
    /// Authorization servers (issuer URLs) that mint tokens for this entry point.
    pub authorization_servers: Vec<String>,
    /// Scopes to advertise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}
