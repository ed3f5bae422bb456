//! The caller's address: the TCP peer, or, from a proxy the entry point trusts, the address the
//! chain of proxies reports (`X-Forwarded-For`; without it RFC 7239 `Forwarded: for=`).
//!
//! A chain is read right to left, since its right end is what the nearest proxy wrote: trusted
//! hops are skipped and the first address that is not trusted is the client. An entry naming
//! no address (`unknown`, an obfuscated `_name`, anything unparsable) ends the walk and the
//! last trusted hop reached is the client: what stands to its left was written by someone no
//! trusted proxy vouches for, so it may be anything the caller chose. A chain of trusted hops
//! only gives its left-most. Several header lines form one list, in order.
//!
//! From any other peer the headers are the caller's own words: the peer is the client, and its
//! `X-Forwarded-For` is removed on arrival, so the upstream gets the peer alone (`Forwarded`
//! and `X-Real-IP` are dropped for everyone by `headers::set_forwarded`).
//!
//! Addresses are compared and reported canonical: an IPv4-mapped IPv6 address
//! (`::ffff:10.0.0.1`) is the IPv4 address, and an IPv4-mapped CIDR (`::ffff:10.0.0.0/104`)
//! the IPv4 one; no other IPv6 CIDR holds an IPv4 address (`::/0` is every IPv6 address).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{self, HeaderMap, HeaderName};
use sluice_proxy_config::IpNet;
use sluice_proxy_config::parse_cidr;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The proxies an entry point believes about the caller's address (`trustedProxies`).
#[derive(Debug, Default)]
pub struct TrustedProxies {
    nets: Box<[IpNet]>,
}

impl TrustedProxies {
    /// The proxies in `cidrs`. Validation refused a config with anything else in it, so an
    /// entry that does not parse is left out: it trusts nobody more.
    pub fn new(cidrs: &[String]) -> Self {
        Self {
            nets: cidrs
                .iter()
                .filter_map(|cidr| parse_cidr(cidr).ok())
                .map(canonical_net)
                .collect(),
        }
    }

    /// The address of the caller of a request that came from `peer` with `headers`. From a peer
    /// that is not trusted, `X-Forwarded-For` is removed from `headers`.
    pub fn client(&self, peer: IpAddr, headers: &mut HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            headers.remove(&X_FORWARDED_FOR);
            return peer;
        }
        let walk = Walk {
            proxies: self,
            last_trusted: peer,
        };
        if headers.contains_key(&X_FORWARDED_FOR) {
            walk.x_forwarded_for(headers)
        } else if headers.contains_key(header::FORWARDED) {
            walk.forwarded(headers)
        } else {
            peer
        }
    }

    /// Whether `ip` (canonical) is in one of the trusted CIDRs.
    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4-mapped CIDR (`::ffff:10.0.0.0/104`) as the IPv4 CIDR it names, since addresses are
/// compared canonical; any other as it is.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// A walk along a chain, right to left.
struct Walk<'a> {
    proxies: &'a TrustedProxies,
    /// The left-most trusted hop so far: the peer, to begin with.
    last_trusted: IpAddr,
}

impl Walk<'_> {
    /// Takes the next hop to the left (`None`: it names no address). The client, once known.
    fn hop(&mut self, hop: Option<IpAddr>) -> Option<IpAddr> {
        match hop {
            Some(ip) if self.proxies.trusts(ip) => {
                self.last_trusted = ip;
                None
            }
            Some(ip) => Some(ip),
            None => Some(self.last_trusted),
        }
    }

    fn x_forwarded_for(mut self, headers: &HeaderMap) -> IpAddr {
        for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let Ok(line) = line.to_str() else {
                return self.last_trusted;
            };
            // RFC 9110 §5.6.1: empty list elements are ignored.
            for entry in line.rsplit(',').map(trim_ows).filter(|e| !e.is_empty()) {
                if let Some(client) = self.hop(node(entry)) {
                    return client;
                }
            }
        }
        self.last_trusted
    }

    fn forwarded(mut self, headers: &HeaderMap) -> IpAddr {
        // Quoted strings may hold commas, so elements are only found left to right.
        let mut hops = Vec::new();
        for line in headers.get_all(header::FORWARDED) {
            match line.to_str() {
                Ok(line) => forwarded_hops(line, &mut hops),
                Err(_) => hops.push(None),
            }
        }
        for hop in hops.into_iter().rev() {
            if let Some(client) = self.hop(hop) {
                return client;
            }
        }
        self.last_trusted
    }
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// A node as proxies write it: `192.0.2.7`, `192.0.2.7:4711`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711` (a port may be obfuscated, `_p`), canonical. `None` for `unknown`, an
/// obfuscated name (`_hidden`) or anything else.
fn node(text: &str) -> Option<IpAddr> {
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return v6
            .parse::<Ipv6Addr>()
            .ok()
            .map(|a| IpAddr::V6(a).to_canonical());
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (v4, port) = text.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port number, or an obfuscated port (RFC 7239 §6.3: `_` and letters, digits, `.`, `_`, `-`).
fn is_port(text: &str) -> bool {
    match text.strip_prefix('_') {
        Some(obfuscated) => {
            !obfuscated.is_empty()
                && obfuscated
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
        None => (1..=5).contains(&text.len()) && text.parse::<u16>().is_ok(),
    }
}

/// Appends the `for=` of each element of one `Forwarded` line (RFC 7239 §4) to `hops`, left to
/// right: the node it names, or `None` for an element without exactly one `for` or whose node
/// names no address. Empty elements are skipped. After a syntax error the rest of the line is
/// one `None`: where its elements begin and end cannot be told.
fn forwarded_hops(line: &str, hops: &mut Vec<Option<IpAddr>>) {
    let mut rest = line;
    loop {
        let Some((element, after)) = element(rest) else {
            hops.push(None);
            return;
        };
        if let Element::Hop(hop) = element {
            hops.push(hop);
        }
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return,
        }
    }
}

/// One element of a `Forwarded` list.
enum Element {
    /// No pair at all: skipped, as empty list elements are.
    Empty,
    /// The address its one `for` names; `None` without one, with two, or naming no address.
    Hop(Option<IpAddr>),
}

/// The element at the start of `text`, and what follows it (empty, or starting with `,`).
/// `None` on a syntax error.
fn element(text: &str) -> Option<(Element, &str)> {
    let mut rest = text;
    let mut pairs = 0_usize;
    let mut fors = 0_usize;
    let mut hop = None;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() || rest.starts_with(',') {
            break;
        }
        if let Some(next) = rest.strip_prefix(';') {
            rest = next;
            continue;
        }
        let name_len = rest.bytes().take_while(|&b| is_tchar(b)).count();
        let (name, after_name) = rest.split_at(name_len);
        let after_eq = after_name.strip_prefix('=').filter(|_| !name.is_empty())?;
        let (value, after_value) = pair_value(after_eq)?;
        pairs += 1;
        if name.eq_ignore_ascii_case("for") {
            fors += 1;
            hop = node(&value);
        }
        rest = after_value.trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',') || rest.starts_with(';')) {
            return None;
        }
    }
    let element = match (pairs, fors) {
        (0, _) => Element::Empty,
        (_, 1) => Element::Hop(hop),
        _ => Element::Hop(None),
    };
    Some((element, rest))
}

/// A pair's value at the start of `text`: a token, or a quoted string (unescaped), and what
/// follows it. `None` when there is neither.
fn pair_value(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let Some(quoted) = text.strip_prefix('"') else {
        let len = text.bytes().take_while(|&b| is_tchar(b)).count();
        return (len > 0).then(|| (Cow::Borrowed(&text[..len]), &text[len..]));
    };
    let mut unescaped: Option<String> = None;
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = unescaped.map_or(Cow::Borrowed(&quoted[..i]), Cow::Owned);
                return Some((value, &quoted[i + 1..]));
            }
            '\\' => {
                let (_, escaped) = chars.next()?;
                unescaped
                    .get_or_insert_with(|| quoted[..i].to_owned())
                    .push(escaped);
            }
            c => {
                if let Some(s) = &mut unescaped {
                    s.push(c);
                }
            }
        }
    }
    None
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const INGRESS: &str = "10.0.0.5";

    fn proxies(cidrs: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>())
    }

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// What a case shows, the trusted CIDRs, the peer, the header lines, the client.
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
    );

    #[test]
    fn clients_by_peer_and_chain() {
        let cluster = ["10.0.0.0/8", "fd00::/8"];
        let table: &[Case<'_>] = &[
            ("nobody trusted: the peer", &[], INGRESS, &[], INGRESS),
            (
                "nobody trusted: a spoofed chain is ignored",
                &[],
                "198.51.100.7",
                &[("x-forwarded-for", "203.0.113.1")],
                "198.51.100.7",
            ),
            (
                "an untrusted peer's spoofed chain",
                &cluster,
                "198.51.100.7",
                &[("x-forwarded-for", "10.0.0.9, 203.0.113.1")],
                "198.51.100.7",
            ),
            (
                "an untrusted peer's spoofed Forwarded",
                &cluster,
                "198.51.100.7",
                &[("forwarded", "for=203.0.113.1")],
                "198.51.100.7",
            ),
            (
                "a trusted peer without a chain",
                &cluster,
                INGRESS,
                &[],
                INGRESS,
            ),
            (
                "one hop",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "203.0.113.1")],
                "203.0.113.1",
            ),
            (
                "the right-most untrusted, not the spoofed left",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "192.0.2.66, 203.0.113.1")],
                "203.0.113.1",
            ),
            (
                "trusted hops skipped",
                &cluster,
                INGRESS,
                &[(
                    "x-forwarded-for",
                    "192.0.2.66, 203.0.113.1, 10.1.1.1, 10.2.2.2",
                )],
                "203.0.113.1",
            ),
            (
                "all trusted: the left-most",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "10.3.3.3, 10.1.1.1")],
                "10.3.3.3",
            ),
            (
                "lines form one list",
                &cluster,
                INGRESS,
                &[
                    ("x-forwarded-for", "192.0.2.66, 203.0.113.1"),
                    ("x-forwarded-for", "10.1.1.1"),
                ],
                "203.0.113.1",
            ),
            (
                "a later line is nearer",
                &cluster,
                INGRESS,
                &[
                    ("x-forwarded-for", "203.0.113.1"),
                    ("x-forwarded-for", "192.0.2.66"),
                ],
                "192.0.2.66",
            ),
            (
                "empty elements ignored",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "203.0.113.1,, ,10.1.1.1,")],
                "203.0.113.1",
            ),
            (
                "garbage at the right: the peer",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "203.0.113.1, garbage")],
                INGRESS,
            ),
            (
                "garbage past a trusted hop: that hop",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "203.0.113.1, unknown, 10.1.1.1")],
                "10.1.1.1",
            ),
            (
                "garbage to the left of the client: never reached",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "garbage, 203.0.113.1")],
                "203.0.113.1",
            ),
            (
                "a port stripped",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "203.0.113.1:4711")],
                "203.0.113.1",
            ),
            (
                "bare IPv6",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "2001:db8::1, fd00::7")],
                "2001:db8::1",
            ),
            (
                "bracketed IPv6 with a port",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "[2001:db8::1]:4711")],
                "2001:db8::1",
            ),
            (
                "an IPv6 peer",
                &cluster,
                "fd00::5",
                &[("x-forwarded-for", "203.0.113.1")],
                "203.0.113.1",
            ),
            (
                "an IPv4-mapped peer matches 10.0.0.0/8",
                &cluster,
                "::ffff:10.0.0.5",
                &[("x-forwarded-for", "203.0.113.1")],
                "203.0.113.1",
            ),
            (
                "an IPv4-mapped untrusted peer reported as IPv4",
                &cluster,
                "::ffff:198.51.100.7",
                &[],
                "198.51.100.7",
            ),
            (
                "an IPv4-mapped hop reported as IPv4",
                &cluster,
                INGRESS,
                &[("x-forwarded-for", "::ffff:203.0.113.1, ::ffff:10.1.1.1")],
                "203.0.113.1",
            ),
            (
                "an IPv4-mapped CIDR",
                &["::ffff:10.0.0.0/104"],
                INGRESS,
                &[("x-forwarded-for", "203.0.113.1")],
                "203.0.113.1",
            ),
            (
                "X-Forwarded-For before Forwarded",
                &cluster,
                INGRESS,
                &[
                    ("x-forwarded-for", "203.0.113.1"),
                    ("forwarded", "for=192.0.2.66"),
                ],
                "203.0.113.1",
            ),
            (
                "Forwarded: one hop",
                &cluster,
                INGRESS,
                &[("forwarded", "for=203.0.113.1;proto=https")],
                "203.0.113.1",
            ),
            (
                "Forwarded: quoted IPv6 with a port",
                &cluster,
                INGRESS,
                &[("forwarded", r#"for="[2001:db8::1]:4711", for=10.1.1.1"#)],
                "2001:db8::1",
            ),
            (
                "Forwarded: IPv4 with a port, parameters in any case and order",
                &cluster,
                INGRESS,
                &[(
                    "forwarded",
                    r#"proto=http;For="203.0.113.1:80";by=10.0.0.5"#,
                )],
                "203.0.113.1",
            ),
            (
                "Forwarded: an obfuscated port",
                &cluster,
                INGRESS,
                &[("forwarded", r#"for="203.0.113.1:_p1""#)],
                "203.0.113.1",
            ),
            (
                "Forwarded: the right-most untrusted",
                &cluster,
                INGRESS,
                &[("forwarded", "for=192.0.2.66, for=203.0.113.1, for=10.1.1.1")],
                "203.0.113.1",
            ),
            (
                "Forwarded: lines form one list",
                &cluster,
                INGRESS,
                &[
                    ("forwarded", "for=192.0.2.66"),
                    ("forwarded", "for=203.0.113.1"),
                ],
                "203.0.113.1",
            ),
            (
                "Forwarded: a comma inside quotes",
                &cluster,
                INGRESS,
                &[(
                    "forwarded",
                    r#"for=192.0.2.66;x="a, for=192.0.2.99", for=10.1.1.1"#,
                )],
                "192.0.2.66",
            ),
            (
                "Forwarded: unknown stops at the last trusted hop",
                &cluster,
                INGRESS,
                &[("forwarded", "for=203.0.113.1, for=unknown, for=10.1.1.1")],
                "10.1.1.1",
            ),
            (
                "Forwarded: an obfuscated node stops the walk",
                &cluster,
                INGRESS,
                &[("forwarded", "for=203.0.113.1, for=_hidden")],
                INGRESS,
            ),
            (
                "Forwarded: an element without for stops the walk",
                &cluster,
                INGRESS,
                &[("forwarded", "for=203.0.113.1, proto=https")],
                INGRESS,
            ),
            (
                "Forwarded: for twice in an element stops the walk",
                &cluster,
                INGRESS,
                &[("forwarded", "for=203.0.113.1, for=192.0.2.1;for=192.0.2.2")],
                INGRESS,
            ),
            (
                "Forwarded: an unquoted IPv6 with brackets is not a token",
                &cluster,
                INGRESS,
                &[("forwarded", "for=[2001:db8::1]")],
                INGRESS,
            ),
            (
                "Forwarded: an unterminated quote",
                &cluster,
                INGRESS,
                &[("forwarded", r#"for=203.0.113.1, for="10.1.1.1"#)],
                INGRESS,
            ),
            (
                "Forwarded: garbage on an earlier line is never reached",
                &cluster,
                INGRESS,
                &[
                    ("forwarded", r#"for="unterminated"#),
                    ("forwarded", "for=203.0.113.1"),
                ],
                "203.0.113.1",
            ),
            (
                "Forwarded: escapes in a quoted string",
                &cluster,
                INGRESS,
                &[("forwarded", r#"for="203.0.113.\1""#)],
                "203.0.113.1",
            ),
        ];
        for (what, cidrs, peer, lines, client) in table {
            let mut h = headers(lines);
            assert_eq!(
                proxies(cidrs).client(ip(peer), &mut h),
                ip(client),
                "{what}"
            );
        }
    }

    #[test]
    fn an_untrusted_peers_chain_is_removed_and_a_trusted_peers_kept() {
        let chain = [
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "192.0.2.66"),
        ];
        let mut h = headers(&chain);
        proxies(&["10.0.0.0/8"]).client(ip("198.51.100.7"), &mut h);
        assert!(h.get("x-forwarded-for").is_none(), "{h:?}");
        let mut h = headers(&chain);
        proxies(&["10.0.0.0/8"]).client(ip(INGRESS), &mut h);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 2);
    }

    #[test]
    fn nodes() {
        for (text, expected) in [
            ("192.0.2.7", Some("192.0.2.7")),
            ("192.0.2.7:65535", Some("192.0.2.7")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[::ffff:192.0.2.7]:80", Some("192.0.2.7")),
            ("192.0.2.7:65536", None),
            ("192.0.2.7:", None),
            ("192.0.2.7:_", None),
            ("[2001:db8::1", None),
            ("[2001:db8::1]x", None),
            ("[192.0.2.7]", None),
            ("2001:db8::1:80", Some("2001:db8::1:80")),
            ("010.0.0.1", None),
            ("unknown", None),
            ("_hidden", None),
            ("", None),
        ] {
            assert_eq!(node(text), expected.map(ip), "{text}");
        }
    }
}
