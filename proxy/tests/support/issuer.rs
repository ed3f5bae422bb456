//! JWTs with real signatures, and a fake OIDC issuer serving its OpenID configuration and JWKS.
//!
//! Keys: EC (P-256, P-384) and Ed25519 are generated per test with ring; RSA comes from
//! `rsa-test-key.pem` (ring cannot generate RSA keys; the file is a throwaway 2048-bit key made
//! with `openssl genpkey -algorithm RSA`, for tests only).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use serde_json::{Value, json};

use super::Body;
use super::serve::{Received, Server, TestCert, json_response};

const RSA_TEST_KEY: &str = include_str!("rsa-test-key.pem");

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

enum Pair {
    Rsa(sig::RsaKeyPair),
    P256(sig::EcdsaKeyPair),
    P384(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

/// A signing key with its key id.
pub struct SigningKey {
    pub kid: String,
    pair: Pair,
}

impl SigningKey {
    pub fn rsa(kid: &str) -> Self {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        let der = PrivateKeyDer::from_pem_slice(RSA_TEST_KEY.as_bytes()).unwrap();
        Self {
            kid: kid.into(),
            pair: Pair::Rsa(sig::RsaKeyPair::from_pkcs8(der.secret_der()).unwrap()),
        }
    }

    pub fn p256(kid: &str) -> Self {
        Self::ec(kid, &sig::ECDSA_P256_SHA256_FIXED_SIGNING, Pair::P256)
    }

    pub fn p384(kid: &str) -> Self {
        Self::ec(kid, &sig::ECDSA_P384_SHA384_FIXED_SIGNING, Pair::P384)
    }

    fn ec(
        kid: &str,
        alg: &'static sig::EcdsaSigningAlgorithm,
        wrap: fn(sig::EcdsaKeyPair) -> Pair,
    ) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        Self {
            kid: kid.into(),
            pair: wrap(pair),
        }
    }

    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Self {
            kid: kid.into(),
            pair: Pair::Ed25519(sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()),
        }
    }

    /// The public key as a JWK (no `alg`: any algorithm of its type).
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(p) => {
                let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(p.public());
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Pair::P256(p) | Pair::P384(p) => {
                let point = p.public_key().as_ref();
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                let crv = if matches!(self.pair, Pair::P256(_)) {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"kty": "EC", "kid": self.kid, "crv": crv, "x": b64(x), "y": b64(y)})
            }
            Pair::Ed25519(p) => {
                json!({"kty": "OKP", "kid": self.kid, "crv": "Ed25519", "x": b64(p.public_key().as_ref())})
            }
        }
    }

    /// The raw public key bytes (what an attacker would use as an HMAC secret).
    pub fn public_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(p) => p.public().as_ref().to_vec(),
            Pair::P256(p) | Pair::P384(p) => p.public_key().as_ref().to_vec(),
            Pair::Ed25519(p) => p.public_key().as_ref().to_vec(),
        }
    }

    /// A JWT signed with `alg` (`RS256`, `PS256`, `ES256`, `ES384`, `EdDSA`), `kid` in its
    /// header, and `claims`.
    pub fn sign(&self, alg: &str, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": alg, "typ": "JWT", "kid": self.kid}), claims)
    }

    /// A JWT with this exact `header`, signed by this key with the algorithm of its type.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let alg = header["alg"].as_str().unwrap_or("");
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Rsa(p) => {
                let padding: &dyn sig::RsaEncoding = match alg {
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    "PS512" => &sig::RSA_PSS_SHA512,
                    _ => &sig::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0; p.public().modulus_len()];
                p.sign(padding, &rng, input.as_bytes(), &mut out).unwrap();
                out
            }
            Pair::P256(p) | Pair::P384(p) => {
                p.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec()
            }
            Pair::Ed25519(p) => p.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

/// A JWT with `alg: none` and no signature.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A JWT with `alg: HS256`, keyed with `secret` (e.g. a public key, the classic confusion).
pub fn hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "typ": "JWT", "kid": kid})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

struct Shared {
    keys: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    /// The `issuer` the OpenID configuration advertises (normally the issuer's own URL).
    advertised_issuer: Mutex<Option<String>>,
    scheme: &'static str,
}

/// A fake OIDC issuer: `/.well-known/openid-configuration` and `/jwks`.
pub struct Issuer {
    server: Server,
    shared: Arc<Shared>,
}

impl Issuer {
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// Over HTTPS with `cert`, as an issuer with an internal CA.
    pub async fn start_tls(cert: &TestCert) -> Self {
        Self::serve(Some(cert)).await
    }

    async fn serve(cert: Option<&TestCert>) -> Self {
        let scheme = if cert.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            keys: Mutex::default(),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            advertised_issuer: Mutex::default(),
            scheme,
        });
        let s = shared.clone();
        let handler = move |r| answer(s.clone(), r);
        let server = match cert {
            None => Server::start(handler).await,
            Some(cert) => Server::start_tls(cert, handler).await,
        };
        Self { server, shared }
    }

    /// The issuer URL (`iss`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.shared.scheme, self.server.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.url())
    }

    /// Adds `key` to the JWKS.
    pub fn publish(&self, key: &SigningKey) {
        self.publish_jwk(key.jwk());
    }

    /// Adds a raw JWK to the JWKS.
    pub fn publish_jwk(&self, jwk: Value) {
        self.shared.keys.lock().unwrap().push(jwk);
    }

    /// Makes the OpenID configuration name another issuer.
    pub fn advertise_issuer(&self, issuer: &str) {
        *self.shared.advertised_issuer.lock().unwrap() = Some(issuer.to_owned());
    }

    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.server.stop();
    }

    /// Claims a token of this issuer for `aud` carries, valid from a minute ago for an hour.
    pub fn claims(&self, sub: &str, aud: &str) -> Value {
        json!({
            "iss": self.url(),
            "sub": sub,
            "aud": aud,
            "iat": now() - 60,
            "nbf": now() - 60,
            "exp": now() + 3600,
        })
    }
}

async fn answer(shared: Arc<Shared>, r: Received) -> http::Response<Body> {
    let own = format!(
        "{}://{}",
        shared.scheme,
        r.headers["host"].to_str().unwrap()
    );
    match r.uri.path() {
        "/.well-known/openid-configuration" => {
            shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            let issuer = shared
                .advertised_issuer
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| own.clone());
            json_response(
                200,
                json!({"issuer": issuer, "jwks_uri": format!("{own}/jwks")}).to_string(),
            )
        }
        "/jwks" => {
            shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let keys = shared.keys.lock().unwrap().clone();
            json_response(200, json!({ "keys": keys }).to_string())
        }
        _ => json_response(404, "{}"),
    }
}
