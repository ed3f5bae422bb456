//! TLS served by the sidecar itself on an entry point, shared by McpServer and McpRoute.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::refs::DNS_SUBDOMAIN;
use crate::server::CaBundle;

/// HTTPS on an entry point, terminated by the sidecar; with `clientCa`, mutual TLS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryPointTls {
    /// A Secret of type `kubernetes.io/tls` in the same namespace, as cert-manager's
    /// Certificate writes it: `tls.crt` (the certificate chain) and `tls.key`. Mounted whole
    /// into the sidecar only (not into Conduit), so a renewed Secret reaches the pod and the
    /// sidecar serves it without a restart. The entry point's Service port becomes 443
    /// (`https`, `appProtocol: https`).
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub secret_name: String,

    /// The CA certificates (PEM) client certificates must chain to: with it, every caller
    /// must present a valid, unexpired certificate from one of them in the TLS handshake
    /// (mutual TLS), or the handshake is refused and counted in
    /// `sluice_tls_handshake_failures_total`. Needed by `policy.authentication.mode:
    /// clientCertificate`. A renewed bundle is picked up without a restart. To trust the CA
    /// cert-manager writes beside the certificate, name the same Secret's `ca.crt` with
    /// `secretKeyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<CaBundle>,
}
