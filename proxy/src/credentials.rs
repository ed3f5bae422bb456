//! What the upstream receives in place of the caller's credentials: the entry point's
//! Phabricator token injected (one bot token, or one per caller), and the credentials meant for
//! the sidecar stripped.
//!
//! Stripped always: `X-API-Key`. Stripped in every mode but `oauth`: `Authorization` — a token
//! minted for the sidecar's audience (a ServiceAccount token, a JWT, an API key) is never
//! passed on to another service (MCP authorization: no token passthrough); in mode `oauth` the
//! bearer is Conduit's own and Conduit checks it. `X-PHABRICATOR-TOKEN` is replaced when a token
//! is injected, and otherwise passed on (mode `phabricatorToken` exists for Conduit to use it).

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use sluice_proxy_config::{Auth, EntryPoint, UpstreamToken};

use crate::auth::Failure;
use crate::auth::credential::{self, MAX_CREDENTIAL_BYTES, X_API_KEY, X_PHABRICATOR_TOKEN};
use crate::auth::store::Store;
use crate::auth::watch::{Content, Parsed, Source, Watched};
use crate::request::Identity;

/// An entry point's upstream credentials, compiled.
pub struct UpstreamCredentials {
    strip_authorization: bool,
    inject: Inject,
}

enum Inject {
    Nothing,
    One(Arc<Watched<HeaderValue>>),
    PerIdentity(Arc<Watched<HashMap<String, HeaderValue>>>),
}

impl UpstreamCredentials {
    pub fn new(ep: &EntryPoint, store: &Store) -> Self {
        let inject = match &ep.upstream_token {
            None => Inject::Nothing,
            Some(UpstreamToken::File(path)) => Inject::One(
                store.watched(format!("upstream-token:{}", path.display()), || {
                    Watched::new("upstream token", Source::File(path.clone()), one_token)
                }),
            ),
            Some(UpstreamToken::PerIdentityFile(path)) => Inject::PerIdentity(
                store.watched(format!("upstream-token-map:{}", path.display()), || {
                    Watched::new("upstream token map", Source::File(path.clone()), token_map)
                }),
            ),
        };
        Self {
            strip_authorization: !matches!(ep.auth, Auth::OAuth(_)),
            inject,
        }
    }

    /// Swaps the caller's credentials in `headers` for the upstream's. `identity` is `None`
    /// only on the public paths of the OAuth flow, where nothing is injected.
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        identity: Option<&Identity>,
    ) -> Result<(), Failure> {
        drop_look_alikes(headers);
        headers.remove(&X_API_KEY);
        if self.strip_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        let token = match (&self.inject, identity) {
            (Inject::Nothing, _) => return Ok(()),
            (_, None) => {
                headers.remove(&X_PHABRICATOR_TOKEN);
                return Ok(());
            }
            // Never loaded (its problem is on /readyz): nothing to send.
            (Inject::One(one), Some(_)) => {
                one.current().ok_or(Failure::Unavailable)?.as_ref().clone()
            }
            (Inject::PerIdentity(map), Some(identity)) => map
                .current()
                .ok_or(Failure::Unavailable)?
                .get(&*identity.name)
                .ok_or(Failure::NoUpstreamToken)?
                .clone(),
        };
        // `insert` replaces every value the caller sent.
        headers.insert(&X_PHABRICATOR_TOKEN, token);
        Ok(())
    }
}

/// Credential headers spelled with `_` for `-` (`x_phabricator_token`): some servers and
/// gateways fold the two (CGI-style environments do), so such a header could stand in for the
/// one the proxy checked, stripped or injected. Dropped.
fn drop_look_alikes(headers: &mut HeaderMap) {
    const CREDENTIALS: [&str; 4] = [
        "authorization",
        "proxy-authorization",
        "x-phabricator-token",
        "x-api-key",
    ];
    let look_alikes: Vec<header::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .filter(|name| CREDENTIALS.contains(&name.as_str().replace('_', "-").as_str()))
        .cloned()
        .collect();
    for name in look_alikes {
        headers.remove(name);
    }
}

/// A token file: one token, surrounding whitespace ignored.
fn one_token(content: Content) -> Result<Parsed<HeaderValue>, String> {
    let Content::File(bytes) = content else {
        return Err("is a directory".into());
    };
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8".to_string())?;
    let token = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let value = header_value(token)?;
    let warnings = if credential::is_phabricator_token(token) {
        Vec::new()
    } else {
        vec!["the token does not look like a Phabricator API token (api- and 28 characters)".into()]
    };
    Ok(Parsed { value, warnings })
}

/// A token map file: a JSON object from caller identity to token.
fn token_map(content: Content) -> Result<Parsed<HashMap<String, HeaderValue>>, String> {
    let Content::File(bytes) = content else {
        return Err("is a directory".into());
    };
    // Serde's messages quote no values, so no token leaks into the problem text.
    let map: HashMap<String, String> = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "is not a JSON object of strings (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let mut warnings = Vec::new();
    let mut tokens = HashMap::with_capacity(map.len());
    for (identity, token) in map {
        match header_value(token.trim()) {
            Ok(v) => {
                if !credential::is_phabricator_token(token.trim()) {
                    warnings.push(format!(
                        "{identity:?}: the token does not look like a Phabricator API token"
                    ));
                }
                tokens.insert(identity, v);
            }
            Err(e) => warnings.push(format!("{identity:?}: {e}; skipped")),
        }
    }
    Ok(Parsed {
        value: tokens,
        warnings,
    })
}

fn header_value(token: &str) -> Result<HeaderValue, String> {
    if token.is_empty()
        || token.len() > MAX_CREDENTIAL_BYTES
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("a token is 1 to 4096 visible ASCII characters".into());
    }
    let mut value =
        HeaderValue::from_str(token).map_err(|_| "the token is not a header value".to_string())?;
    // Kept out of Debug output and HPACK tables.
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: &str = "api-bot0bot0bot0bot0bot0bot0bot0";

    #[test]
    fn token_files() {
        let parsed = one_token(Content::File(format!("{BOT}\n").into_bytes())).unwrap();
        assert_eq!(parsed.value, BOT);
        assert!(parsed.value.is_sensitive());
        assert!(parsed.warnings.is_empty());
        assert_eq!(
            one_token(Content::File(b"xyz".to_vec()))
                .unwrap()
                .warnings
                .len(),
            1
        );
        assert!(one_token(Content::File(b"a b".to_vec())).is_err());
        assert!(one_token(Content::File(b"\n".to_vec())).is_err());
    }

    #[test]
    fn token_maps() {
        let json = format!(r#"{{"alice":"{BOT}","bob":"bad token","carol":" {BOT} "}}"#);
        let parsed = token_map(Content::File(json.into_bytes())).unwrap();
        assert_eq!(parsed.value["alice"], BOT);
        assert_eq!(parsed.value["carol"], BOT);
        assert!(!parsed.value.contains_key("bob"));
        assert!(parsed.warnings.iter().all(|w| !w.contains("bad token")));
        let err = token_map(Content::File(
            br#"{"alice": 1, "x": "api-secretvalue"}"#.to_vec(),
        ))
        .err()
        .unwrap();
        assert!(!err.contains("secret"), "{err}");
    }
}
