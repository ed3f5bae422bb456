//! The signature checks of `jsonwebtoken`, done by ring: the crypto library the proxy's TLS
//! already uses, instead of a second one (RustCrypto) or aws-lc. Verification only — the proxy
//! never signs — and never HMAC: a shared secret has no place where keys come from a JWKS.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as ring_sig;

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    // Only JWK thumbprints and encoding keys use these; the proxy does neither.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes ring `jsonwebtoken`'s provider for this process (before any token is decoded).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::error!("another JWT crypto provider is installed; JWT checks may fail");
        }
    });
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    // The key's family must be the algorithm's: an RSA public key is never an HMAC secret.
    if alg.family() == AlgorithmFamily::Hmac || key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => Key::RsaComponents {
            n: n.clone(),
            e: e.clone(),
        },
        DecodingKeyKind::SecretOrDer(bytes) => Key::Raw(bytes.clone()),
    };
    Ok(Box::new(RingVerifier { alg: *alg, key }))
}

enum Key {
    RsaComponents {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// PKCS#1 DER for RSA, the uncompressed point for EC, the 32 bytes for Ed25519.
    Raw(Vec<u8>),
}

struct RingVerifier {
    alg: Algorithm,
    key: Key,
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let rsa = match self.alg {
            Algorithm::RS256 => Some(&ring_sig::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => Some(&ring_sig::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => Some(&ring_sig::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::PS256 => Some(&ring_sig::RSA_PSS_2048_8192_SHA256),
            Algorithm::PS384 => Some(&ring_sig::RSA_PSS_2048_8192_SHA384),
            Algorithm::PS512 => Some(&ring_sig::RSA_PSS_2048_8192_SHA512),
            _ => None,
        };
        let result = match (rsa, &self.key) {
            (Some(params), Key::RsaComponents { n, e }) => {
                ring_sig::RsaPublicKeyComponents { n, e }.verify(params, msg, sig)
            }
            (Some(params), Key::Raw(der)) => {
                ring_sig::UnparsedPublicKey::new(params, der).verify(msg, sig)
            }
            (None, Key::Raw(raw)) => {
                let alg: &'static dyn ring_sig::VerificationAlgorithm = match self.alg {
                    Algorithm::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &ring_sig::ECDSA_P384_SHA384_FIXED,
                    Algorithm::EdDSA => &ring_sig::ED25519,
                    _ => return Err(signature::Error::new()),
                };
                ring_sig::UnparsedPublicKey::new(alg, raw).verify(msg, sig)
            }
            (None, Key::RsaComponents { .. }) => return Err(signature::Error::new()),
        };
        result.map_err(|_| signature::Error::new())
    }
}
