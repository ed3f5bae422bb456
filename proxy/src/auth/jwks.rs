//! An issuer's signing keys (JWKS): fetched from `jwksUrl` or the URL the issuer's OpenID
//! configuration names, kept, and fetched again when a token names a key not yet known — at
//! most once per `jwksMinRefresh`, one fetch at a time — or when they are old.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::time::Instant;

use super::outbound::{CALL_TIMEOUT, CallError, ClientSource};
use super::store::Store;
use super::{Counters, Provider};

/// Largest JWKS or OpenID configuration read, in bytes.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// Most keys taken from a JWKS.
const MAX_KEYS: usize = 64;
/// Keys older than this are fetched again (so a removed key stops working) when next used.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// What a key is, which decides the algorithms it may check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    /// Whether a key of this type may check `alg`: RSA for `RS*`/`PS*`, the named curve for
    /// `ES256`/`ES384`, Ed25519 for `EdDSA`; nothing for anything else.
    pub fn fits(self, alg: Algorithm) -> bool {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self == KeyType::Rsa,
            Algorithm::ES256 => self == KeyType::P256,
            Algorithm::ES384 => self == KeyType::P384,
            Algorithm::EdDSA => self == KeyType::Ed25519,
            _ => false,
        }
    }
}

/// One signing key.
pub struct Key {
    pub kid: Option<String>,
    pub key_type: KeyType,
    /// The `alg` the JWK itself names, if any: then only that one.
    pub alg: Option<Algorithm>,
    pub decoding: DecodingKey,
}

/// The keys known now.
#[derive(Default)]
struct KeySet {
    keys: Vec<Arc<Key>>,
    fetched: Option<Instant>,
    /// Counts successful fetches, so waiters see that one happened while they waited.
    generation: u64,
}

/// Where the JWKS is.
enum Location {
    Url(Option<Uri>),
    /// The issuer's `/.well-known/openid-configuration` names it.
    Discover {
        issuer: String,
    },
}

/// An issuer's keys.
pub struct Jwks {
    location: Location,
    client: ClientSource,
    min_refresh: Duration,
    keys: ArcSwap<KeySet>,
    /// Held while fetching (one fetch at a time); holds when the last fetch began and the
    /// discovered JWKS URL.
    fetching: tokio::sync::Mutex<Fetching>,
}

#[derive(Default)]
struct Fetching {
    last_attempt: Option<Instant>,
    discovered: Option<Uri>,
}

/// Why no key was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoKey {
    /// The keys are known, the token's is not among them (or does not fit its `alg`).
    Unknown,
    /// No key could ever be fetched.
    Unavailable,
}

impl Jwks {
    /// The instance for these settings; `ca_file` is trusted besides webpki-roots.
    pub fn shared(
        store: &Store,
        issuer: &str,
        jwks_url: Option<&str>,
        min_refresh: Duration,
        ca_file: Option<&Path>,
    ) -> Arc<Self> {
        let key = format!("jwks:{issuer:?}:{jwks_url:?}:{min_refresh:?}:{ca_file:?}");
        store.shared(key, || Self {
            location: match jwks_url {
                Some(url) => Location::Url(url.parse().ok()),
                None => Location::Discover {
                    issuer: issuer.to_owned(),
                },
            },
            client: ClientSource::new(store, ca_file, false),
            min_refresh,
            keys: ArcSwap::default(),
            fetching: tokio::sync::Mutex::default(),
        })
    }

    /// The key that checks a token with `kid` and `alg`: a fitting key of that id or, without
    /// one, the only fitting key.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        counters: &Counters,
    ) -> Result<Arc<Key>, NoKey> {
        let set = self.keys.load_full();
        let stale = set.fetched.is_none_or(|at| at.elapsed() >= MAX_AGE);
        if stale {
            self.fetch(set.generation, counters).await;
        } else if let Some(key) = find(&set, kid, alg) {
            return Ok(key);
        } else if kid.is_some_and(|kid| !set.keys.iter().any(|k| k.kid.as_deref() == Some(kid))) {
            // A key id never seen: the issuer may have rotated keys since the last fetch.
            self.fetch(set.generation, counters).await;
        }
        let set = self.keys.load();
        if set.fetched.is_none() {
            return Err(NoKey::Unavailable);
        }
        find(&set, kid, alg).ok_or(NoKey::Unknown)
    }

    /// Fetches the keys, unless another fetch completed since `seen` or the last attempt was
    /// less than `jwksMinRefresh` ago. A failed fetch keeps the keys known.
    async fn fetch(&self, seen: u64, counters: &Counters) {
        let mut fetching = self.fetching.lock().await;
        let current = self.keys.load();
        if current.generation != seen {
            return;
        }
        if fetching
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.min_refresh)
        {
            return;
        }
        fetching.last_attempt = Some(Instant::now());
        match self.download(&mut fetching).await {
            Ok(keys) => {
                counters.jwks_fetched.inc();
                tracing::debug!(keys = keys.len(), "JWKS fetched");
                self.keys.store(Arc::new(KeySet {
                    keys,
                    fetched: Some(Instant::now()),
                    generation: current.generation + 1,
                }));
            }
            Err(e) => {
                counters.jwks_failed.inc();
                counters.provider_error(Provider::Jwks, e);
                tracing::warn!(error = %e, "cannot fetch the JWKS; the keys known stay in use");
            }
        }
    }

    async fn download(&self, fetching: &mut Fetching) -> Result<Vec<Arc<Key>>, CallError> {
        let url = match &self.location {
            Location::Url(url) => url.clone().ok_or(CallError::Malformed)?,
            Location::Discover { issuer } => match &fetching.discovered {
                Some(url) => url.clone(),
                None => {
                    let url = self.discover(issuer).await?;
                    fetching.discovered = Some(url.clone());
                    url
                }
            },
        };
        let body = self.get(url).await?;
        parse_jwks(&body)
    }

    /// `jwks_uri` of the issuer's OpenID configuration, whose `issuer` must be the issuer.
    async fn discover(&self, issuer: &str) -> Result<Uri, CallError> {
        #[derive(Deserialize)]
        struct Configuration {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = self
            .get(url.parse().map_err(|_| CallError::Malformed)?)
            .await?;
        let config: Configuration =
            serde_json::from_slice(&body).map_err(|_| CallError::Malformed)?;
        if config.issuer != issuer {
            tracing::warn!(
                configured = issuer,
                advertised = %config.issuer,
                "the OpenID configuration names another issuer"
            );
            return Err(CallError::Malformed);
        }
        let uri: Uri = config.jwks_uri.parse().map_err(|_| CallError::Malformed)?;
        match uri.scheme_str() {
            Some("https" | "http") => Ok(uri),
            _ => Err(CallError::Malformed),
        }
    }

    async fn get(&self, url: Uri) -> Result<Bytes, CallError> {
        let req = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|_| CallError::Malformed)?;
        let (status, body) = self
            .client
            .call(req, CALL_TIMEOUT, MAX_DOCUMENT_BYTES)
            .await?;
        if status != StatusCode::OK {
            return Err(CallError::Status);
        }
        Ok(body)
    }
}

fn find(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
    let fits = |k: &&Arc<Key>| k.key_type.fits(alg) && k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(fits)
            .find(|k| k.kid.as_deref() == Some(kid))
            .cloned(),
        None => {
            let mut fitting = set.keys.iter().filter(fits);
            match (fitting.next(), fitting.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        }
    }
}

/// The usable signing keys of a JWKS. Keys of other types (`oct` above all: a shared secret
/// never checks a token here), for encryption, or unreadable are skipped.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Arc<Key>>, CallError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Jwk {
        kty: String,
        #[serde(default)]
        kid: Option<String>,
        #[serde(default)]
        alg: Option<String>,
        #[serde(default, rename = "use")]
        usage: Option<String>,
        #[serde(default)]
        crv: Option<String>,
        #[serde(default)]
        n: Option<String>,
        #[serde(default)]
        e: Option<String>,
        #[serde(default)]
        x: Option<String>,
        #[serde(default)]
        y: Option<String>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|_| CallError::Malformed)?;
    let mut keys = Vec::new();
    for value in set.keys.into_iter().take(MAX_KEYS) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let alg = match jwk.alg.as_deref() {
            None => None,
            Some(name) => match name.parse::<Algorithm>() {
                Ok(a) => Some(a),
                Err(_) => continue,
            },
        };
        let built = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => jwk
                .n
                .as_deref()
                .zip(jwk.e.as_deref())
                .and_then(|(n, e)| DecodingKey::from_rsa_components(n, e).ok())
                .map(|d| (KeyType::Rsa, d)),
            ("EC", Some(crv @ ("P-256" | "P-384"))) => jwk
                .x
                .as_deref()
                .zip(jwk.y.as_deref())
                .and_then(|(x, y)| DecodingKey::from_ec_components(x, y).ok())
                .map(|d| {
                    let t = if crv == "P-256" {
                        KeyType::P256
                    } else {
                        KeyType::P384
                    };
                    (t, d)
                }),
            ("OKP", Some("Ed25519")) => jwk
                .x
                .as_deref()
                .and_then(|x| DecodingKey::from_ed_components(x).ok())
                .map(|d| (KeyType::Ed25519, d)),
            _ => None,
        };
        let Some((key_type, decoding)) = built else {
            continue;
        };
        // A key that names an algorithm it cannot check is broken; skip it.
        if alg.is_some_and(|a| !key_type.fits(a)) {
            continue;
        }
        keys.push(Arc::new(Key {
            kid: jwk.kid,
            key_type,
            alg,
            decoding,
        }));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn only_signing_keys_of_known_types_are_kept() {
        let body = format!(
            r#"{{"keys":[
                {{"kty":"RSA","kid":"r","n":"{RSA_N}","e":"AQAB"}},
                {{"kty":"RSA","kid":"enc","use":"enc","n":"{RSA_N}","e":"AQAB"}},
                {{"kty":"oct","kid":"h","k":"c2VjcmV0"}},
                {{"kty":"RSA","kid":"lies","alg":"ES256","n":"{RSA_N}","e":"AQAB"}},
                {{"kty":"EC","kid":"bad","crv":"P-256","x":"!!","y":"!!"}},
                {{"kty":"AKP","kid":"future"}},
                "not an object"
            ]}}"#
        );
        let keys = parse_jwks(body.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("r"));
        assert_eq!(keys[0].key_type, KeyType::Rsa);
        assert!(parse_jwks(b"[]").is_err());
    }

    #[test]
    fn algorithms_fit_key_types() {
        assert!(KeyType::Rsa.fits(Algorithm::PS512));
        assert!(!KeyType::Rsa.fits(Algorithm::ES256));
        assert!(!KeyType::Rsa.fits(Algorithm::HS256));
        assert!(!KeyType::P384.fits(Algorithm::ES256));
        assert!(KeyType::Ed25519.fits(Algorithm::EdDSA));
    }
}
