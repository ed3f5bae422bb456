//! TLS for entry points: rustls (ring) from PEM files, rebuilt when the files change.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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

/// Builds an acceptor offering h2 and HTTP/1.1 by ALPN from a PEM chain and key.
pub fn acceptor(
    cert_pem: &[u8],
    key_pem: &[u8],
    paths: &sluice_proxy_config::Tls,
) -> Result<TlsAcceptor, TlsError> {
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
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&paths.cert_file, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            err(
                &paths.key_file,
                format!("does not fit the certificate: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Acceptors by file pair, rebuilt only when the files' content changes. Certificates are
/// Secrets mounted through a `..data` symlink that Kubernetes swaps, so content is compared,
/// not file events.
#[derive(Default)]
pub struct TlsCache {
    entries: HashMap<(PathBuf, PathBuf), Cached>,
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
        let files = read(&paths.cert_file).and_then(|c| Ok((c, read(&paths.key_file)?)));
        let fp = match &files {
            Ok((c, k)) => fingerprint(&[c, k]),
            Err(e) => fingerprint(&[e.message.as_bytes()]),
        };
        let key = (paths.cert_file.clone(), paths.key_file.clone());
        let cached = self.entries.entry(key).or_insert(Cached {
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
        match files.and_then(|(c, k)| acceptor(&c, &k, paths)) {
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
