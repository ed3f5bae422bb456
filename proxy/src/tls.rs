//! TLS for entry points: rustls (ring) from PEM files, rebuilt when the files change; with a
//! client CA, mutual TLS (client certificates verified by webpki), and why handshakes fail.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Why certificates could not be used.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct TlsError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

/// The PEM files of one entry point, as read.
pub struct Files {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// The client CA bundle, with `tls.clientCaFile`.
    pub client_ca: Option<Vec<u8>>,
}

/// Builds an acceptor offering h2 and HTTP/1.1 by ALPN from a PEM chain and key; with a client
/// CA bundle, every client must present a certificate chaining to it.
pub fn acceptor(files: &Files, paths: &sluice_proxy_config::Tls) -> Result<TlsAcceptor, TlsError> {
    let (cert_pem, key_pem) = (&files.cert, &files.key);
    let err = |path: &Path, message: String| TlsError {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            err(
                &paths.cert_file,
                format!("not a PEM certificate chain: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(err(&paths.cert_file, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| err(&paths.key_file, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&paths.cert_file, e.to_string()))?;
    let builder = match (&files.client_ca, &paths.client_ca_file) {
        (Some(ca_pem), Some(ca_path)) => {
            let roots = client_roots(ca_pem).map_err(|m| err(ca_path, m))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| err(ca_path, format!("cannot verify clients with it: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        err(
            &paths.key_file,
            format!("does not fit the certificate: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The CA certificates of a PEM bundle.
fn client_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("holds a certificate that is no CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("holds no certificate".into());
    }
    Ok(roots)
}

/// Why a handshake on a TLS entry point failed: the `reason` label of
/// `sluice_tls_handshake_failures_total`.
pub fn handshake_failure(error: &std::io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        // The client went away (or reset) mid-handshake: port checks, impatient clients.
        return "closed";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::UnknownIssuer => "unknown_ca",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            _ => "bad_certificate",
        },
        // The client refused us (most often: it does not trust the server's certificate).
        rustls::Error::AlertReceived(_) => "alert",
        // Plain HTTP on a TLS port, no common version or cipher suite, garbage.
        _ => "protocol",
    }
}

/// Acceptors by file pair, rebuilt only when the files' content changes. Certificates are
/// Secrets mounted through a `..data` symlink that Kubernetes swaps, so content is compared,
/// not file events.
#[derive(Default)]
pub struct TlsCache {
    entries: HashMap<sluice_proxy_config::Tls, Cached>,
}

struct Cached {
    /// Content last looked at.
    fingerprint: u64,
    /// The last acceptor that loaded.
    good: Option<TlsAcceptor>,
    /// Why the content last looked at does not load.
    error: Option<TlsError>,
}

/// What a certificate check found.
pub enum Loaded {
    /// Unchanged since the last look.
    Same(TlsAcceptor),
    /// New content, loaded.
    Changed(TlsAcceptor),
    /// Content that does not load; the last good acceptor, if any, stays in use.
    Broken {
        kept: Option<TlsAcceptor>,
        error: TlsError,
        new: bool,
    },
}

impl TlsCache {
    /// The acceptor for `paths`, rebuilt when the files' content changed.
    pub fn load(&mut self, paths: &sluice_proxy_config::Tls) -> Loaded {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TlsError {
                path: p.to_path_buf(),
                message: format!("cannot read: {e}"),
            })
        };
        let files: Result<Files, TlsError> = (|| {
            Ok(Files {
                cert: read(&paths.cert_file)?,
                key: read(&paths.key_file)?,
                client_ca: paths.client_ca_file.as_deref().map(read).transpose()?,
            })
        })();
        // The client CA is part of the content: a renewed bundle is picked up like a renewed
        // certificate.
        let fp = match &files {
            Ok(f) => fingerprint(&[&f.cert, &f.key, f.client_ca.as_deref().unwrap_or(b"-")]),
            Err(e) => fingerprint(&[e.message.as_bytes()]),
        };
        let cached = self.entries.entry(paths.clone()).or_insert(Cached {
            fingerprint: !fp,
            good: None,
            error: None,
        });
        if cached.fingerprint == fp {
            return match (&cached.error, &cached.good) {
                (None, Some(a)) => Loaded::Same(a.clone()),
                (Some(e), kept) => Loaded::Broken {
                    kept: kept.clone(),
                    error: e.clone(),
                    new: false,
                },
                (None, None) => Loaded::Broken {
                    kept: None,
                    error: TlsError {
                        path: paths.cert_file.clone(),
                        message: "not loaded".into(),
                    },
                    new: false,
                },
            };
        }
        cached.fingerprint = fp;
        match files.and_then(|f| acceptor(&f, paths)) {
            Ok(a) => {
                cached.good = Some(a.clone());
                cached.error = None;
                Loaded::Changed(a)
            }
            Err(error) => {
                cached.error = Some(error.clone());
                Loaded::Broken {
                    kept: cached.good.clone(),
                    error,
                    new: true,
                }
            }
        }
    }
}

/// A content hash, to notice changed files without keeping their bytes.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}
