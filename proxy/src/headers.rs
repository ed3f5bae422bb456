//! Hop-by-hop headers (RFC 9110 §7.6.1) and the `X-Forwarded-*` headers the upstream trusts.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::errors::Refusal;

/// Headers that describe one connection, never the message: never forwarded either way.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers the proxy checks or sets on the way. A `Connection` header naming one would have it
/// removed as hop-by-hop after the proxy judged it or set it: a caller could strip the token
/// the proxy injected, or the header a policy decision rested on.
const GUARDED: [&str; 14] = [
    "host",
    "authorization",
    "proxy-authorization",
    "x-phabricator-token",
    "x-api-key",
    "content-length",
    "content-type",
    "accept",
    "origin",
    "cookie",
    "forwarded",
    "x-real-ip",
    "last-event-id",
    "accept-encoding",
];

/// Refuses a `Connection` header that names a header the proxy checks or sets (including any
/// `Mcp-*` and `X-Forwarded-*` header).
pub fn check_connection(headers: &HeaderMap) -> Result<(), Refusal> {
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else {
            return Err(Refusal::InvalidRequest(
                "the Connection header is not visible ASCII",
            ));
        };
        for token in value.split(',').map(str::trim) {
            let token = token.to_ascii_lowercase();
            if GUARDED.contains(&token.as_str())
                || token.starts_with("mcp-")
                || token.starts_with("x-forwarded-")
            {
                return Err(Refusal::InvalidRequest(
                    "the Connection header names a header the proxy checks or sets",
                ));
            }
        }
    }
    Ok(())
}

/// Removes hop-by-hop headers, including those a `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        // `keep-alive` and `close` name no header worth a lookup: the usual case allocates nothing.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Prepares a caller's headers for the upstream: hop-by-hop headers, proxy credentials and
/// `Expect` (the proxy already read the body) removed.
pub fn prepare_request(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(header::PROXY_AUTHORIZATION);
    headers.remove(header::EXPECT);
}

/// Prepares the upstream's headers for the caller.
pub fn prepare_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(header::PROXY_AUTHENTICATE);
}

/// The caller as the upstream should see it.
pub struct Forwarded<'a> {
    /// The TCP peer's address, appended to `X-Forwarded-For`.
    pub peer_ip: &'a HeaderValue,
    /// `http` or `https`, as the caller reached us (or the public URL says).
    pub proto: &'a HeaderValue,
    /// The host the caller addressed (or the public URL's).
    pub host: Option<HeaderValue>,
}

/// Appends the peer to `X-Forwarded-For` and sets `X-Forwarded-Proto` and `-Host`, replacing
/// whatever the caller claimed for the latter two. The chain the peer appends to is a trusted
/// proxy's: an untrusted peer's was removed on arrival (`client_address`), so the upstream gets
/// that peer alone. `Forwarded` and `X-Real-IP` say the same things in other words; what a
/// caller wrote there is dropped, so an upstream that reads them cannot be told another
/// address, scheme or host.
pub fn set_forwarded(headers: &mut HeaderMap, fwd: Forwarded<'_>) {
    headers.remove(header::FORWARDED);
    headers.remove(&X_REAL_IP);
    let mut prior = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    let xff = if prior.peek().is_none() {
        fwd.peer_ip.clone()
    } else {
        let mut joined = Vec::with_capacity(64);
        for value in prior {
            joined.extend_from_slice(value.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(fwd.peer_ip.as_bytes());
        HeaderValue::from_bytes(&joined).unwrap_or_else(|_| fwd.peer_ip.clone())
    };
    // Several X-Forwarded-For lines collapse into one list ending with the real peer.
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_FORWARDED_PROTO.clone(), fwd.proto.clone());
    match fwd.host {
        Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
        None => headers.remove(&X_FORWARDED_HOST),
    };
}

/// HTTP/2 may split `cookie` into several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.next().is_none() || cookies.next().is_none() {
        return;
    }
    let joined: Vec<u8> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// An RFC 9110 quoted-string.
pub fn quoted_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic eA=="),
            ("mcp-session-id", "abc"),
        ]);
        prepare_request(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["mcp-session-id"], "abc");
    }

    #[test]
    fn a_connection_header_may_not_name_what_the_proxy_checks_or_sets() {
        for named in [
            "X-Phabricator-Token",
            "keep-alive, authorization",
            "mcp-session-id",
            "Mcp-Method",
            "x-forwarded-for",
            "HOST",
        ] {
            let h = map(&[("connection", named)]);
            assert!(check_connection(&h).is_err(), "{named}");
        }
        for fine in ["keep-alive", "close", "upgrade", "x-custom-hop"] {
            assert!(
                check_connection(&map(&[("connection", fine)])).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn forwarded_for_appends_and_proto_host_replace() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "gopher"),
            ("forwarded", "for=203.0.113.9;proto=https"),
            ("x-real-ip", "203.0.113.9"),
        ]);
        let ip = HeaderValue::from_static("192.0.2.7");
        let proto = HeaderValue::from_static("https");
        let fwd = Forwarded {
            peer_ip: &ip,
            proto: &proto,
            host: Some(HeaderValue::from_static("h")),
        };
        set_forwarded(&mut h, fwd);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "h");
        assert!(h.get("forwarded").is_none() && h.get("x-real-ip").is_none());
    }

    #[test]
    fn split_cookies_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(h.get_all("cookie").iter().count(), 1);
    }
}
