//! Mode `apiKey`: static keys from a mounted Secret, one file per client (the file's name is
//! the client's, its content the key), sent as `Authorization: Bearer <key>` or
//! `X-API-Key: <key>`. Keys are kept only as SHA-256 digests and compared in constant time.

use std::path::Path;
use std::sync::Arc;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::credential::{self, MAX_CREDENTIAL_BYTES, X_API_KEY};
use super::store::Store;
use super::watch::{Content, Parsed, Source, Watched};
use super::{Failure, digest};
use crate::request::Identity;

/// Shortest key accepted: shorter ones are guessable and are refused at load.
pub const MIN_KEY_CHARS: usize = 16;

/// The clients and their key digests.
pub struct KeySet {
    clients: Vec<(Identity, [u8; 32])>,
}

impl KeySet {
    /// The client whose key is `key`. Every digest is compared, matching or not, in constant
    /// time, so the time taken says nothing about how close a guess came.
    fn find(&self, key: &str) -> Option<&Identity> {
        let presented = digest(key);
        let mut found = None;
        for (client, stored) in &self.clients {
            if bool::from(stored.ct_eq(&presented)) {
                found = Some(client);
            }
        }
        found
    }
}

/// Reads a directory of keys. Bad entries are skipped with a warning; the rest is used.
pub fn parse(content: Content) -> Result<Parsed<KeySet>, String> {
    let Content::Dir(files) = content else {
        return Err("is not a directory".into());
    };
    let mut warnings = Vec::new();
    let mut clients: Vec<(Identity, [u8; 32])> = Vec::new();
    for (name, bytes) in files {
        if !is_client_name(&name) {
            warnings.push(format!(
                "{name:?}: a client name is letters, digits, '-', '_' and '.'; skipped"
            ));
            continue;
        }
        let key = String::from_utf8_lossy(&bytes);
        let key = key.trim_matches(|c: char| c.is_ascii_whitespace());
        if key.chars().count() < MIN_KEY_CHARS {
            warnings.push(format!(
                "{name}: the key is shorter than {MIN_KEY_CHARS} characters; refused"
            ));
            continue;
        }
        if key.len() > MAX_CREDENTIAL_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
            warnings.push(format!(
                "{name}: a key is at most {MAX_CREDENTIAL_BYTES} visible ASCII characters (it travels in a header); refused"
            ));
            continue;
        }
        clients.push((Identity::named(name), digest(key)));
    }
    // One key, two clients: whoever sends it could be either; neither is accepted.
    let mut shared = Vec::new();
    for (i, (a, ka)) in clients.iter().enumerate() {
        if clients[i + 1..].iter().any(|(_, kb)| kb == ka) || shared.contains(ka) {
            warnings.push(format!(
                "{}: the key is also another client's; refused for both",
                a.name
            ));
            shared.push(*ka);
        }
    }
    clients.retain(|(_, k)| !shared.contains(k));
    if clients.is_empty() {
        warnings.push("no usable key".into());
    }
    Ok(Parsed {
        value: KeySet { clients },
        warnings,
    })
}

/// A Secret key name, as Kubernetes allows them.
fn is_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A compiled `apiKey` mode.
pub struct ApiKeys {
    keys: Arc<Watched<KeySet>>,
}

impl ApiKeys {
    pub fn new(keys_dir: &Path, store: &Store) -> Self {
        let keys = store.watched(format!("api-keys:{}", keys_dir.display()), || {
            Watched::new("API keys", Source::Dir(keys_dir.to_owned()), parse)
        });
        Self { keys }
    }

    /// The client whose key came, in either header (but not both).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Failure> {
        let bearer = credential::bearer(headers)?;
        let header = credential::token(headers, &X_API_KEY)?;
        let key = match (bearer, header) {
            (Some(_), Some(_)) => return Err(Failure::Ambiguous),
            (Some(k), None) | (None, Some(k)) => k,
            (None, None) => return Err(Failure::Missing),
        };
        // Never loaded (its problem is on /readyz): no key can be checked.
        let keys = self.keys.current().ok_or(Failure::Unavailable)?;
        keys.find(key).cloned().ok_or(Failure::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> Content {
        Content::Dir(
            files
                .iter()
                .map(|(n, k)| ((*n).to_owned(), k.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn keys_load_trimmed_and_bad_ones_are_skipped() {
        let parsed = parse(dir(&[
            ("ci", "0123456789abcdef\n"),
            ("short", "0123456789abcde"),
            ("spaced", "0123456789 abcdef"),
            ("bad name", "0123456789abcdefgh"),
            ("twin-a", "same-key-same-key"),
            ("twin-b", "same-key-same-key"),
        ]))
        .unwrap();
        let set = parsed.value;
        assert_eq!(&*set.find("0123456789abcdef").unwrap().name, "ci");
        assert!(set.find("0123456789abcdef\n").is_none());
        assert!(set.find("0123456789abcde").is_none());
        assert!(set.find("same-key-same-key").is_none());
        let warnings = parsed.warnings.join("\n");
        for expected in ["short:", "spaced:", "\"bad name\"", "twin-a:", "twin-b:"] {
            assert!(warnings.contains(expected), "{expected} in {warnings}");
        }
        assert!(!warnings.contains("0123456789"), "a key leaked: {warnings}");
    }

    #[test]
    fn an_empty_directory_is_a_problem() {
        assert_eq!(parse(dir(&[])).unwrap().warnings, ["no usable key"]);
        assert!(parse(Content::File(Vec::new())).is_err());
    }
}
