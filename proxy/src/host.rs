//! The request's host, checked before anything reads it: HTTP/1.1 needs exactly one valid
//! `Host` (RFC 9112 §3.2), and a `Host` beside a target authority (h2 `:authority`, HTTP/1.1
//! absolute form) must name the same host (RFC 9113 §8.3.1).
//!
//! The upstream gets its own Host either way; what this guards is `X-Forwarded-Host` and
//! redirect rebasing, which read the caller's host, and any proxy in front that might pick
//! the other of two hosts than we do.

use http::uri::Authority;
use http::{Request, Version, header};

use crate::errors::Refusal;

/// Refuses a missing (HTTP/1.1), repeated, malformed or contradicted `Host`.
pub fn check<B>(req: &Request<B>) -> Result<(), Refusal> {
    let mut values = req.headers().get_all(header::HOST).iter();
    let Some(host) = values.next() else {
        return if req.version() == Version::HTTP_11 {
            Err(Refusal::InvalidRequest("an HTTP/1.1 request needs a Host"))
        } else {
            Ok(())
        };
    };
    if values.next().is_some() {
        return Err(Refusal::InvalidRequest("a request may carry only one Host"));
    }
    let host = std::str::from_utf8(host.as_bytes())
        .ok()
        .and_then(|h| h.parse::<Authority>().ok())
        // A Host is host[:port]; userinfo is not part of it.
        .filter(|a| !a.as_str().contains('@'))
        .ok_or(Refusal::InvalidRequest(
            "the Host is not a valid host[:port]",
        ))?;
    match req.uri().authority() {
        Some(target) if !target.as_str().eq_ignore_ascii_case(host.as_str()) => Err(
            Refusal::InvalidRequest("the Host disagrees with the request target's authority"),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, target: &str, hosts: &[&[u8]]) -> Request<()> {
        let mut b = Request::get(target).version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn exactly_one_valid_host_is_needed_on_http_1_1() {
        let ok = |r: &Request<()>| check(r).is_ok();
        assert!(ok(&req(Version::HTTP_11, "/mcp", &[b"phab.example.com"])));
        assert!(ok(&req(Version::HTTP_11, "/mcp", &[b"127.0.0.1:8080"])));
        assert!(ok(&req(Version::HTTP_11, "/mcp", &[b"[::1]:8080"])));
        assert!(ok(&req(Version::HTTP_10, "/mcp", &[])));
        assert!(!ok(&req(Version::HTTP_11, "/mcp", &[])));
        assert!(!ok(&req(
            Version::HTTP_11,
            "/mcp",
            &[b"a.example", b"b.example"]
        )));
        assert!(!ok(&req(
            Version::HTTP_11,
            "/mcp",
            &[b"a.example", b"a.example"]
        )));
        for bad in [
            &b"a b"[..],
            b"a/b",
            b"user@a.example",
            b"a.example\xff",
            b"",
        ] {
            assert!(!ok(&req(Version::HTTP_11, "/mcp", &[bad])), "{bad:?}");
        }
    }

    #[test]
    fn a_host_must_agree_with_the_target_authority() {
        let ok = |r: &Request<()>| check(r).is_ok();
        assert!(ok(&req(Version::HTTP_2, "https://a.example/mcp", &[])));
        assert!(ok(&req(
            Version::HTTP_2,
            "https://a.example/mcp",
            &[b"A.example"]
        )));
        assert!(!ok(&req(
            Version::HTTP_2,
            "https://a.example/mcp",
            &[b"b.example"]
        )));
        assert!(ok(&req(
            Version::HTTP_11,
            "http://a.example/mcp",
            &[b"a.example"]
        )));
        assert!(!ok(&req(
            Version::HTTP_11,
            "http://a.example/mcp",
            &[b"evil.example"]
        )));
    }
}
