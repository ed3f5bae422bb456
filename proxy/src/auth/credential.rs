//! A caller's credential as the request headers present it: exactly once, bounded in size and
//! visible ASCII, or refused before anything checks it or sends it anywhere.
//!
//! Outcomes, by case:
//! - no header: [`Failure::Missing`] (the caller gets a plain challenge);
//! - the header repeated (two `X-PHABRICATOR-TOKEN`, two `Authorization`), or two kinds of
//!   credential at once: [`Failure::Ambiguous`] — which one would count is not for the proxy to
//!   guess, and an upstream might read the other;
//! - over [`MAX_CREDENTIAL_BYTES`]: [`Failure::Oversized`];
//! - anything but visible ASCII (control bytes, spaces, obs-text, so also every Unicode
//!   look-alike sent as UTF-8): [`Failure::Malformed`];
//! - `Authorization` with another scheme than `Bearer`, or `Bearer` with an empty token or more
//!   than one space: [`Failure::Malformed`].

use http::header::{self, HeaderMap, HeaderName};

use super::Failure;

/// Largest credential accepted, in bytes. Real tokens (JWTs included) stay far below it.
pub const MAX_CREDENTIAL_BYTES: usize = 4096;

/// Phabricator's API token header (Conduit reads it case-insensitively, as HTTP does).
pub static X_PHABRICATOR_TOKEN: HeaderName = HeaderName::from_static("x-phabricator-token");
/// An API key outside `Authorization`.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The value of header `name`, when it is present exactly once and is a well-formed token.
pub fn token<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Failure> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Failure::Ambiguous);
    }
    checked(value.as_bytes()).map(Some)
}

/// The token of `Authorization: Bearer <token>`, when that header is present exactly once.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Failure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Failure::Ambiguous);
    }
    let bytes = value.as_bytes();
    // The scheme is case-insensitive (RFC 9110 §11.1); exactly one space separates it.
    let Some((scheme, token)) = bytes.split_at_checked(7) else {
        return Err(Failure::Malformed);
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return Err(Failure::Malformed);
    }
    checked(token).map(Some)
}

/// `bytes` as a token: not empty, at most [`MAX_CREDENTIAL_BYTES`], visible ASCII only.
fn checked(bytes: &[u8]) -> Result<&str, Failure> {
    if bytes.len() > MAX_CREDENTIAL_BYTES {
        return Err(Failure::Oversized);
    }
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(Failure::Malformed);
    }
    std::str::from_utf8(bytes).map_err(|_| Failure::Malformed)
}

/// Whether `token` has the form Phabricator gives its API tokens: `api-` and 28 characters.
///
/// Phabricator draws those 28 from `a-z` and `2-7` (`Filesystem::readRandomCharacters`); its
/// comment there says `a-z, 0-9`, and so does the documentation, so this accepts that
/// documented superset, `[a-z0-9]`: lower-case only, which still refuses every token
/// Phabricator cannot have issued by case or length without asking it.
pub fn is_phabricator_token(token: &str) -> bool {
    token.len() == 32
        && token.starts_with("api-")
        && token
            .bytes()
            .skip(4)
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn one_header_once() {
        let h = headers(&[("x-api-key", b"k")]);
        assert_eq!(token(&h, &X_API_KEY), Ok(Some("k")));
        assert_eq!(token(&HeaderMap::new(), &X_API_KEY), Ok(None));
        let h = headers(&[("x-api-key", b"k"), ("X-Api-Key", b"k")]);
        assert_eq!(token(&h, &X_API_KEY), Err(Failure::Ambiguous));
    }

    #[test]
    fn tokens_are_bounded_visible_ascii() {
        let big = vec![b'a'; MAX_CREDENTIAL_BYTES + 1];
        assert_eq!(checked(&big), Err(Failure::Oversized));
        assert!(checked(&big[1..]).is_ok());
        for bad in [
            &b""[..],
            b"a b",
            b"a\tb",
            b"caf\xc3\xa9",
            // A Cyrillic "а" (U+0430) in place of the Latin one.
            "api-\u{0430}aaa".as_bytes(),
            b"\x80\xff",
        ] {
            assert_eq!(checked(bad), Err(Failure::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn bearer_syntax() {
        let ok = |v: &[u8]| bearer(&headers(&[("authorization", v)])).map(|t| t.map(str::to_owned));
        assert_eq!(ok(b"Bearer abc.def"), Ok(Some("abc.def".to_owned())));
        assert_eq!(ok(b"bEaReR abc"), Ok(Some("abc".to_owned())));
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer  abc",
            b"Bearer a b",
            b"Basic YWJj",
            b"Bearerabc",
            b"Token abc",
        ] {
            assert_eq!(ok(bad), Err(Failure::Malformed), "{bad:?}");
        }
        let two = headers(&[
            ("authorization", b"Bearer a"),
            ("authorization", b"Bearer a"),
        ]);
        assert_eq!(bearer(&two), Err(Failure::Ambiguous));
        assert_eq!(bearer(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn phabricator_token_form() {
        assert!(is_phabricator_token("api-abcdefghijklmnopqrstuvwxyz01"));
        assert!(is_phabricator_token("api-2345672345672345672345672345"));
        for bad in [
            "api-abcdefghijklmnopqrstuvwxyz0",
            "api-abcdefghijklmnopqrstuvwxyz012",
            "cli-abcdefghijklmnopqrstuvwxyz01",
            "api-ABCDEFGHIJKLMNOPQRSTUVWXYZ01",
            "api-abcdefghijklmnopqrstuvwxy-01",
            "apiXabcdefghijklmnopqrstuvwxyz01",
        ] {
            assert!(!is_phabricator_token(bad), "{bad}");
        }
    }
}
