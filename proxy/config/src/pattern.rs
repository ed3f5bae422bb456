//! Name patterns for tool, resource and prompt policy: `*` matches any run, `?` one character.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wildmatch::WildMatch;

/// The characters a tool-name pattern may use besides the wildcards. Tool names outside this
/// set can never match a pattern, so a look-alike (`pha_pаssphrase_get` with a Cyrillic `а`)
/// is never taken for an allowed tool.
const NAME_CHARS: &str = "_.-/";

/// A compiled wildcard pattern over names.
#[derive(Clone)]
pub struct Pattern {
    text: String,
    matcher: WildMatch,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is empty.
    #[error("a pattern must not be empty")]
    Empty,
    /// The pattern is longer than 512 characters.
    #[error("pattern {0:?} is longer than 512 characters")]
    TooLong(String),
    /// The pattern holds a character names cannot hold.
    #[error(
        "pattern {pattern:?} holds {found:?}; use letters, digits, _ . - / and the wildcards * and ?"
    )]
    BadCharacter { pattern: String, found: char },
}

impl Pattern {
    /// A pattern over tool and prompt names (ASCII letters, digits, `_ . - /`, wildcards).
    pub fn name(text: &str) -> Result<Self, PatternError> {
        Self::check(text, |c| {
            c.is_ascii_alphanumeric() || NAME_CHARS.contains(c)
        })
    }

    /// A pattern over resource URIs or caller identities (any visible ASCII).
    pub fn uri(text: &str) -> Result<Self, PatternError> {
        Self::check(text, |c| c.is_ascii_graphic())
    }

    fn check(text: &str, allowed: impl Fn(char) -> bool) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.len() > 512 {
            return Err(PatternError::TooLong(text.into()));
        }
        if let Some(found) = text.chars().find(|&c| c != '*' && c != '?' && !allowed(c)) {
            return Err(PatternError::BadCharacter {
                pattern: text.into(),
                found,
            });
        }
        Ok(Self {
            text: text.into(),
            matcher: WildMatch::new(text),
        })
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.matches(name)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    /// Deserialises leniently (any visible ASCII); [`crate::ProxyConfig::validate`] applies the
    /// stricter rule for tool and prompt names with the field's path in the message.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pattern::uri(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Pattern {
    fn schema_name() -> Cow<'static, str> {
        "Pattern".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 512,
            "description": "A name pattern: * matches any run of characters, ? one character."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_whole_names() {
        let p = Pattern::name("pha_task_*").unwrap();
        assert!(p.matches("pha_task_get"));
        assert!(p.matches("pha_task_"));
        assert!(!p.matches("pha_tasks"));
        assert!(!p.matches("xpha_task_get"));
        let q = Pattern::name("pha_?ser_whoami").unwrap();
        assert!(q.matches("pha_user_whoami"));
        assert!(!q.matches("pha_uuser_whoami"));
    }

    #[test]
    fn look_alikes_never_match() {
        let p = Pattern::name("pha_passphrase_*").unwrap();
        assert!(!p.matches("pha_p\u{0430}ssphrase_get"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Pattern::name(""), Err(PatternError::Empty));
        assert!(matches!(
            Pattern::name("pha task"),
            Err(PatternError::BadCharacter { found: ' ', .. })
        ));
        assert!(matches!(
            Pattern::name("p\u{0430}"),
            Err(PatternError::BadCharacter { .. })
        ));
        assert!(Pattern::uri("phab://task/*").is_ok());
    }
}
