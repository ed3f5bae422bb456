//! Mode `jwt`: a bearer JWT from an OIDC issuer, checked against the issuer's JWKS.
//!
//! In order: the header's `alg` must be one the entry point allows (so `none` and every HMAC
//! algorithm are refused before any key is looked at, and a public key can never be used as
//! an HMAC secret); the key is chosen by `kid` among keys whose type fits that `alg`; then the
//! signature, `iss`, `aud` (any of the audiences), `exp` and `nbf` (with the clock skew).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_proxy_config::{JwtAlgorithm, JwtAuth};

use super::jwks::{Jwks, NoKey};
use super::store::Store;
use super::{Counters, Failure, credential, jwt_ring};
use crate::request::Identity;

/// Most groups taken from a token.
const MAX_GROUPS: usize = 256;
/// Longest identity or group name taken from a token.
const MAX_NAME_BYTES: usize = 512;

/// A compiled `jwt` mode.
pub struct Jwt {
    jwks: Arc<Jwks>,
    /// One validation per allowed algorithm, built once.
    validations: Vec<(Algorithm, Validation)>,
    identity_claim: String,
    groups_claim: Option<String>,
}

impl Jwt {
    pub fn new(settings: &JwtAuth, store: &Store) -> Self {
        jwt_ring::install();
        let validations = settings
            .algorithms
            .iter()
            .map(|a| {
                let alg = algorithm(*a);
                let mut v = Validation::new(alg);
                v.leeway = settings.clock_skew.get().as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                v.set_issuer(&[&settings.issuer]);
                v.set_audience(&settings.audiences);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                (alg, v)
            })
            .collect();
        Self {
            jwks: Jwks::shared(
                store,
                &settings.issuer,
                settings.jwks_url.as_deref(),
                settings.jwks_min_refresh.get(),
                settings.ca_file.as_deref(),
            ),
            validations,
            identity_claim: settings.identity_claim.clone(),
            groups_claim: settings.groups_claim.clone(),
        }
    }

    /// The identity claim of a valid token, with its groups.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        counters: &Counters,
    ) -> Result<Identity, Failure> {
        let token = credential::bearer(headers)?.ok_or(Failure::Missing)?;
        let header = Header::of(token)?;
        // The allow-list decides before any key is chosen.
        let (alg, validation) = self
            .validations
            .iter()
            .find(|(a, _)| header.alg.parse::<Algorithm>().is_ok_and(|h| h == *a))
            .ok_or(Failure::Algorithm)?;
        let key = self
            .jwks
            .key(header.kid.as_deref(), *alg, counters)
            .await
            .map_err(|e| match e {
                NoKey::Unknown => Failure::UnknownKey,
                NoKey::Unavailable => Failure::Unavailable,
            })?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Failure::Expired,
                ErrorKind::ImmatureSignature => Failure::NotYetValid,
                ErrorKind::InvalidIssuer => Failure::Issuer,
                ErrorKind::InvalidAudience => Failure::Audience,
                ErrorKind::InvalidAlgorithm => Failure::Algorithm,
                ErrorKind::InvalidSignature => Failure::Invalid,
                _ => Failure::Malformed,
            })?
            .claims;
        self.identity(&claims).ok_or(Failure::Invalid)
    }

    fn identity(&self, claims: &Map<String, Value>) -> Option<Identity> {
        let name = claims.get(&self.identity_claim)?.as_str()?;
        if !is_name(name) {
            return None;
        }
        let groups: Vec<Arc<str>> = match self.groups_claim.as_ref().and_then(|g| claims.get(g)) {
            None => Vec::new(),
            // Groups drive deny rules too: a claim that cannot be read refuses the token
            // rather than silently dropping them.
            Some(Value::Array(values)) => {
                if values.len() > MAX_GROUPS {
                    return None;
                }
                values
                    .iter()
                    .map(|v| v.as_str().filter(|g| is_name(g)).map(Arc::from))
                    .collect::<Option<_>>()?
            }
            Some(_) => return None,
        };
        Some(Identity {
            name: Arc::from(name),
            groups: groups.into(),
        })
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_BYTES && !s.chars().any(char::is_control)
}

/// What the JOSE header says, read as plain JSON so that an `alg` unknown to the JWT library
/// (`none` above all) is an algorithm refusal, not a parse error.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the token says must be understood (RFC 7515 §4.1.11): none are.
    #[serde(default)]
    crit: Option<Value>,
}

impl Header {
    fn of(token: &str) -> Result<Self, Failure> {
        let encoded = token.split('.').next().ok_or(Failure::Malformed)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| Failure::Malformed)?;
        let header: Header = serde_json::from_slice(&bytes).map_err(|_| Failure::Malformed)?;
        if header.crit.is_some() {
            return Err(Failure::Malformed);
        }
        Ok(header)
    }
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(json))
    }

    #[test]
    fn headers() {
        let h = Header::of(&header(r#"{"alg":"none"}"#)).unwrap();
        assert_eq!(h.alg, "none");
        let h = Header::of(&header(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#)).unwrap();
        assert_eq!(h.kid.as_deref(), Some("k1"));
        for bad in [
            header(r#"{"alg":"RS256","crit":["exp"]}"#),
            header(r#"{"kid":"k"}"#),
            header("[]"),
            "!!.e30.c2ln".to_owned(),
        ] {
            assert!(Header::of(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identities_and_groups() {
        let store = Store::default();
        let jwt = Jwt::new(
            &JwtAuth {
                issuer: "https://issuer".into(),
                audiences: vec!["a".into()],
                jwks_url: None,
                algorithms: vec![JwtAlgorithm::ES256],
                clock_skew: sluice_proxy_config::Duration::from_secs(0),
                identity_claim: "email".into(),
                groups_claim: Some("groups".into()),
                jwks_min_refresh: sluice_proxy_config::Duration::from_secs(1),
                scopes: Vec::new(),
                ca_file: None,
            },
            &store,
        );
        let claims = |v: Value| v.as_object().unwrap().clone();
        let id = jwt
            .identity(&claims(
                serde_json::json!({"email":"a@b","groups":["x","y"]}),
            ))
            .unwrap();
        assert_eq!(&*id.name, "a@b");
        assert_eq!(id.groups.len(), 2);
        assert!(
            jwt.identity(&claims(serde_json::json!({"email":"a@b"})))
                .is_some()
        );
        for bad in [
            serde_json::json!({"sub":"a"}),
            serde_json::json!({"email":""}),
            serde_json::json!({"email":7}),
            serde_json::json!({"email":"a","groups":"x"}),
            serde_json::json!({"email":"a","groups":["x",1]}),
        ] {
            assert!(jwt.identity(&claims(bad.clone())).is_none(), "{bad}");
        }
    }
}
