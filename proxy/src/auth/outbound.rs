//! HTTPS calls to identity providers (Phabricator's `user.whoami`, the API server's TokenReview,
//! JWKS and OpenID configuration): rustls with ring, trusting webpki-roots (no system store is
//! needed, so it works in a distroless image) plus a configured CA bundle; every call bounded in
//! time and in answer size.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::store::Store;
use super::watch::{Content, Parsed, Source, Watched};

/// Time allowed for one call to the API server or an issuer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How a call failed; also the `kind` label of `sluice_identity_provider_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// No complete answer in time.
    Timeout,
    /// No connection (refused, TLS failed, DNS).
    Connect,
    /// An unexpected HTTP status.
    Status,
    /// The answer was larger than expected.
    TooLarge,
    /// The answer is not what the API says it is.
    Malformed,
    /// The API answered with an error that says nothing about the credential.
    ErrorCode,
    /// A file the call needs (the sidecar's own token) never loaded; see `/readyz`.
    Unconfigured,
    /// Not made: the entry point's bound on identity lookups is reached ([`super::lookups`]).
    Throttled,
}

impl CallError {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Connect => "connect",
            CallError::Status => "status",
            CallError::TooLarge => "too_large",
            CallError::Malformed => "malformed",
            CallError::ErrorCode => "error_code",
            CallError::Unconfigured => "unconfigured",
            CallError::Throttled => "throttled",
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallError::Timeout => "no answer in time",
            CallError::Connect => "cannot connect",
            CallError::Status => "unexpected HTTP status",
            CallError::TooLarge => "the answer is too large",
            CallError::Malformed => "the answer is malformed",
            CallError::ErrorCode => "the answer is an unexpected error",
            CallError::Unconfigured => "a file the call needs is missing",
            CallError::Throttled => "too many lookups at once",
        })
    }
}

/// A pooled HTTP(S) client for identity providers.
pub struct Outbound {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Outbound {
    /// A client trusting webpki-roots and the certificates of `extra_ca_pem`; with `insecure`,
    /// trusting any certificate (the handshake's signatures are still checked).
    pub fn new(extra_ca_pem: Option<&[u8]>, insecure: bool) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            if let Some(pem) = extra_ca_pem {
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
                if certs.is_empty() {
                    return Err("holds no certificate".into());
                }
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| format!("unusable CA certificate: {e}"))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CALL_TIMEOUT));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self { client })
    }

    /// Sends `req` and reads the answer, all within `timeout`, at most `max_body` bytes of it.
    pub async fn call(
        &self,
        mut req: Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<(StatusCode, Bytes), CallError> {
        req.headers_mut().insert(
            header::USER_AGENT,
            http::HeaderValue::from_static(concat!("sluice-proxy/", env!("CARGO_PKG_VERSION"))),
        );
        let exchange = async {
            let response = self
                .client
                .request(req)
                .await
                .map_err(|_| CallError::Connect)?;
            let status = response.status();
            let body = Limited::new(response.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        CallError::TooLarge
                    } else {
                        CallError::Connect
                    }
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }
}

/// A client whose CA bundle may be a watched file.
pub enum ClientSource {
    /// Trusting webpki-roots only (or nothing, with `insecure`); `None` if it cannot be built.
    Fixed(Arc<Option<Outbound>>),
    Watched {
        ca: Arc<Watched<Outbound>>,
        /// In use while the bundle never loaded (its problem shows on `/readyz`).
        fallback: Arc<Option<Outbound>>,
    },
}

impl ClientSource {
    /// The client trusting `ca_file` (re-read when it changes) besides webpki-roots.
    pub fn new(store: &Store, ca_file: Option<&Path>, insecure: bool) -> Self {
        let plain = || {
            store.shared(format!("outbound:insecure={insecure}"), || {
                if insecure {
                    tracing::warn!(
                        "TLS certificate verification towards Phabricator is OFF (phabricator.insecureSkipVerify): anyone on the network path can answer user.whoami"
                    );
                }
                Outbound::new(None, insecure)
                    .map_err(|e| tracing::error!(error = %e, "cannot build an HTTPS client"))
                    .ok()
            })
        };
        match ca_file {
            None => ClientSource::Fixed(plain()),
            Some(path) => {
                let key = format!("outbound-ca:{}:insecure={insecure}", path.display());
                let ca = store.watched(key, || {
                    Watched::new(
                        "CA bundle",
                        Source::File(path.to_owned()),
                        move |c| match c {
                            Content::File(pem) => {
                                Outbound::new(Some(&pem), insecure).map(Parsed::clean)
                            }
                            Content::Dir(_) => Err("is a directory".into()),
                        },
                    )
                });
                ClientSource::Watched {
                    ca,
                    fallback: plain(),
                }
            }
        }
    }

    /// [`Outbound::call`] with the client in use now.
    pub async fn call(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let current;
        let client = match self {
            ClientSource::Fixed(c) => c.as_ref().as_ref(),
            ClientSource::Watched { ca, fallback } => {
                current = ca.current();
                current.as_deref().or(fallback.as_ref().as_ref())
            }
        };
        match client {
            Some(c) => c.call(req, timeout, max_body).await,
            None => Err(CallError::Connect),
        }
    }
}

/// Accepts any server certificate: `phabricator.insecureSkipVerify`, mirroring Conduit's own
/// switch. The handshake signatures are still verified, so the peer holds the key of the
/// certificate it sent; only who that peer is goes unchecked.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
