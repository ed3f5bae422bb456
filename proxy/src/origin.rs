//! The `Origin` check against DNS rebinding: a present Origin must be the entry point's own
//! (its public URL's) or one it lists; a request without Origin is not from a browser page.
//!
//! An Origin equal to the request's `Host` is deliberately not trusted: under DNS rebinding the
//! attacker's page is same-origin with the Host it rebinds, so that test would let it through.

use http::{HeaderMap, HeaderValue, header};

use crate::errors::Refusal;

/// The origins an entry point accepts, in their ASCII serialisation (`https://h.example:8443`).
#[derive(Clone, Debug, Default)]
pub struct Origins {
    allowed: Box<[Box<str>]>,
}

impl Origins {
    /// The public URL's origin plus `extra`.
    pub fn new(public_url: Option<&str>, extra: &[String]) -> Self {
        let allowed = public_url
            .into_iter()
            .chain(extra.iter().map(String::as_str))
            .filter_map(serialise)
            .map(String::into_boxed_str)
            .collect();
        Self { allowed }
    }

    /// Refuses a request whose `Origin` is present and not allowed (several Origin fields,
    /// `null` and unparsable values included); returns the allowed Origin a browser sent, which
    /// CORS answers name.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<HeaderValue>, Refusal> {
        let mut values = headers.get_all(header::ORIGIN).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Refusal::Origin);
        }
        let Ok(origin) = value.to_str() else {
            return Err(Refusal::Origin);
        };
        if self.allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return Ok(Some(value.clone()));
        }
        // Slow path: a spelling the fast comparison misses (`:443` on https, say).
        match serialise(origin) {
            Some(o) if self.allowed.iter().any(|a| **a == o) => Ok(Some(value.clone())),
            _ => Err(Refusal::Origin),
        }
    }
}

fn serialise(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(origins: &Origins, values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        origins.check(&h).is_ok()
    }

    #[test]
    fn public_url_and_listed_origins_pass_others_fail() {
        let o = Origins::new(
            Some("https://Phab.example.com/ai"),
            &["http://localhost:6274".into()],
        );
        assert!(check(&o, &[]));
        assert!(check(&o, &["https://phab.example.com"]));
        assert!(check(&o, &["https://phab.example.com:443"]));
        assert!(check(&o, &["http://localhost:6274"]));
        assert!(!check(&o, &["http://phab.example.com"]));
        assert!(!check(&o, &["https://evil.example"]));
        assert!(!check(&o, &["null"]));
        assert!(!check(
            &o,
            &["https://phab.example.com", "https://phab.example.com"]
        ));
        assert!(!check(&Origins::default(), &["http://localhost"]));
    }
}
