//! Which request paths are discovery documents: a closed set of exact paths per entry point,
//! every other path in the well-known space refused, and ambiguous spellings refused outright.
//!
//! A path is *ambiguous* when an upstream could read it as another path than the proxy does:
//! an encoded `/` or `\`, a raw `\`, a `.` or `..` segment (however encoded), an empty segment
//! (`//`) anywhere but at the end, a `%` that does not start an escape, or an escaped control
//! byte. No MCP client sends such paths, and refusing them means no spelling can walk from a
//! path the proxy maps into one it does not (`/ai/..%2f.well-known/x`, `/%2E%2e/mcp`).
//!
//! Documents are matched on the path exactly as sent; any other path with a `.well-known`
//! segment (in any case or encoding) is not found, so the upstream's own well-known routes are
//! never reached past the mapping.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// The well-known segment of protected-resource metadata (RFC 9728).
pub const PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource";
/// The well-known segment of authorization-server metadata (RFC 8414).
pub const AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";
/// The well-known segment of OpenID Connect discovery.
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";

/// A discovery document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    /// RFC 9728 protected-resource metadata of the MCP endpoint.
    ProtectedResource,
    /// RFC 8414 authorization-server metadata (also served at the OpenID locations).
    AuthorizationServer,
}

/// What an entry point serves, as far as paths are concerned.
#[derive(Clone, Copy, Debug)]
pub struct Served<'a> {
    /// The path prefix: `""` for `/`, else `/seg[/seg...]`.
    pub prefix: &'a str,
    /// Protected-resource metadata.
    pub protected_resource: bool,
    /// Also at the root fallback (always so for prefix `/`).
    pub root_protected_resource: bool,
    /// Authorization-server metadata (and its OpenID Connect aliases).
    pub authorization_server: bool,
}

/// What to do with a request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Not discovery: on to the rest of the request path.
    Pass,
    /// One of the entry point's documents.
    Serve(Document),
    /// Ambiguous, or in the well-known space but not one of the documents: 404.
    NotFound,
}

impl Served<'_> {
    /// Where `path` (the request URI's path, undecoded) goes.
    pub fn route(&self, path: &str) -> Route {
        if is_plain(path) {
            return Route::Pass;
        }
        let Some(decoded) = unambiguous(path) else {
            return Route::NotFound;
        };
        if let Some(document) = self.document(path) {
            return Route::Serve(document);
        }
        if decoded
            .split('/')
            .any(|segment| segment.eq_ignore_ascii_case(".well-known"))
        {
            return Route::NotFound;
        }
        Route::Pass
    }

    /// The document at exactly `path`, if this entry point serves one there.
    pub fn document(&self, path: &str) -> Option<Document> {
        let p = self.prefix;
        if self.protected_resource
            && let Some(rest) = path.strip_prefix(PROTECTED_RESOURCE)
        {
            let under = rest.strip_prefix(p);
            if under == Some("/mcp")
                || (!p.is_empty() && under == Some(""))
                || (rest.is_empty() && (p.is_empty() || self.root_protected_resource))
            {
                return Some(Document::ProtectedResource);
            }
        }
        if self.authorization_server {
            let aliases = [
                path.strip_prefix(AUTHORIZATION_SERVER),
                path.strip_prefix(OPENID_CONFIGURATION),
            ];
            if aliases.contains(&Some(p)) || path.strip_prefix(p) == Some(OPENID_CONFIGURATION) {
                return Some(Document::AuthorizationServer);
            }
        }
        None
    }

    /// Every path this entry point serves a document at, for documentation and tests.
    pub fn paths(&self) -> Vec<(String, Document)> {
        let p = self.prefix;
        let mut out = Vec::new();
        if self.protected_resource {
            out.push((
                format!("{PROTECTED_RESOURCE}{p}/mcp"),
                Document::ProtectedResource,
            ));
            if !p.is_empty() {
                out.push((
                    format!("{PROTECTED_RESOURCE}{p}"),
                    Document::ProtectedResource,
                ));
            }
            if p.is_empty() || self.root_protected_resource {
                out.push((PROTECTED_RESOURCE.to_owned(), Document::ProtectedResource));
            }
        }
        if self.authorization_server {
            out.push((
                format!("{AUTHORIZATION_SERVER}{p}"),
                Document::AuthorizationServer,
            ));
            out.push((
                format!("{OPENID_CONFIGURATION}{p}"),
                Document::AuthorizationServer,
            ));
            if !p.is_empty() {
                out.push((
                    format!("{p}{OPENID_CONFIGURATION}"),
                    Document::AuthorizationServer,
                ));
            }
        }
        out
    }
}

/// Whether `path` is certainly a plain pass, without a closer look: only escapes,
/// backslashes, empty segments and segments starting with `.` can make a path ambiguous or
/// well-known, so the common path costs one scan and no config lookup.
pub fn is_plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    !(bytes.iter().any(|&b| b == b'%' || b == b'\\')
        || bytes
            .windows(2)
            .any(|pair| pair[0] == b'/' && (pair[1] == b'/' || pair[1] == b'.')))
}

/// `path` percent-decoded, unless it is ambiguous (see the module docs).
pub fn unambiguous(path: &str) -> Option<Cow<'_, str>> {
    if path.contains('\\') || !escapes_are_well_formed(path) {
        return None;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, raw) in segments.iter().enumerate() {
        // The empty segment before the leading `/` and a trailing `/` are fine.
        if raw.is_empty() && i != 0 && i != last {
            return None;
        }
        let decoded: Vec<u8> = percent_decode(raw.as_bytes()).collect();
        if decoded == b"." || decoded == b".." {
            return None;
        }
        if decoded
            .iter()
            .any(|&b| b == b'/' || b == b'\\' || b.is_ascii_control())
        {
            return None;
        }
    }
    if !path.starts_with('/') {
        return None;
    }
    Some(Cow::Owned(
        percent_decode(path.as_bytes())
            .decode_utf8_lossy()
            .into_owned(),
    ))
}

/// Every `%` starts a two-hex-digit escape.
fn escapes_are_well_formed(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(prefix: &'static str, root: bool) -> Served<'static> {
        Served {
            prefix,
            protected_resource: true,
            root_protected_resource: root,
            authorization_server: true,
        }
    }

    const PR: Route = Route::Serve(Document::ProtectedResource);
    const AS: Route = Route::Serve(Document::AuthorizationServer);
    const NF: Route = Route::NotFound;
    const PASS: Route = Route::Pass;

    /// The whole table for one prefix and one two-segment prefix: documents, their near misses,
    /// traversal attempts and ordinary MCP paths.
    #[test]
    fn the_table() {
        let ai = served("/ai", false);
        let team = served("/team/ai", false);
        let root = served("", false);
        let cases: &[(&Served<'_>, &str, Route)] = &[
            // The documents.
            (&ai, "/.well-known/oauth-protected-resource/ai/mcp", PR),
            (&ai, "/.well-known/oauth-protected-resource/ai", PR),
            (&ai, "/.well-known/oauth-authorization-server/ai", AS),
            (&ai, "/.well-known/openid-configuration/ai", AS),
            (&ai, "/ai/.well-known/openid-configuration", AS),
            (
                &team,
                "/.well-known/oauth-protected-resource/team/ai/mcp",
                PR,
            ),
            (&team, "/.well-known/oauth-protected-resource/team/ai", PR),
            (&team, "/.well-known/oauth-authorization-server/team/ai", AS),
            (&team, "/.well-known/openid-configuration/team/ai", AS),
            (&team, "/team/ai/.well-known/openid-configuration", AS),
            (&root, "/.well-known/oauth-protected-resource/mcp", PR),
            (&root, "/.well-known/oauth-protected-resource", PR),
            (&root, "/.well-known/oauth-authorization-server", AS),
            (&root, "/.well-known/openid-configuration", AS),
            // The root fallback of a prefixed entry point only when it owns the host.
            (&ai, "/.well-known/oauth-protected-resource", NF),
            (
                &served("/ai", true),
                "/.well-known/oauth-protected-resource",
                PR,
            ),
            // Other prefixes, partial segments, trailing slashes, other documents.
            (&ai, "/.well-known/oauth-protected-resource/aix/mcp", NF),
            (&ai, "/.well-known/oauth-protected-resource/ai/mcp/", NF),
            (&ai, "/.well-known/oauth-protected-resource/team/ai/mcp", NF),
            (&team, "/.well-known/oauth-protected-resource/ai/mcp", NF),
            (&ai, "/.well-known/oauth-authorization-server", NF),
            (&ai, "/.well-known/oauth-authorization-server/ai/", NF),
            (&ai, "/.well-known/oauth-authorization-server/ai/mcp", NF),
            (&ai, "/.well-known/openid-configuration", NF),
            (&ai, "/ai/.well-known/oauth-authorization-server", NF),
            (&ai, "/ai/.well-known/oauth-protected-resource", NF),
            (&ai, "/ai/.well-known/openid-configuration/", NF),
            (&ai, "/.well-known/jwks.json", NF),
            (&ai, "/.well-known/", NF),
            (&ai, "/.well-known", NF),
            (&ai, "/ai/x/.well-known/openid-configuration", NF),
            (&root, "/.well-known/oauth-authorization-server/mcp", NF),
            (&root, "/.well-known/security.txt", NF),
            // Case and encodings of a document path are not the document.
            (&ai, "/.WELL-KNOWN/oauth-authorization-server/ai", NF),
            (&ai, "/.well-known/OAuth-Authorization-Server/ai", NF),
            (&ai, "/%2ewell-known/oauth-authorization-server/ai", NF),
            (&ai, "/%2Ewell-known/oauth-authorization-server/ai", NF),
            (&ai, "/.well-known/oauth-authorization-server/%61i", NF),
            (&ai, "/.well-known/oauth-authorization-server/a%69", NF),
            (&root, "/.well-known/oauth-protected-resource/%6dcp", NF),
            (&ai, "/%61i/.well-known/openid-configuration", NF),
            // Traversal, however spelled.
            (&ai, "/ai/../.well-known/oauth-authorization-server", NF),
            (&ai, "/ai/%2e%2e/.well-known/oauth-authorization-server", NF),
            (&ai, "/ai/%2E%2e/mcp", NF),
            (&ai, "/ai/.%2E/mcp", NF),
            (&ai, "/ai/./mcp", NF),
            (&ai, "/ai/%2e/mcp", NF),
            (&ai, "/ai/mcp/..", NF),
            (&ai, "/ai%2f..%2f.well-known/oauth-authorization-server", NF),
            (&ai, "/ai/..%2f.well-known/x", NF),
            (&ai, "/ai/..%2F.well-known/x", NF),
            (&ai, "/ai/..%5c.well-known/x", NF),
            (&ai, "/ai/..%5C..%5Cmcp", NF),
            (&ai, "/ai/..\\.well-known/x", NF),
            (&ai, "/ai\\mcp", NF),
            (
                &ai,
                "/.well-known/oauth-authorization-server/ai/../../mcp",
                NF,
            ),
            (&ai, "/.well-known/oauth-protected-resource/ai/mcp/../x", NF),
            (&ai, "/.well-known/oauth-protected-resource%2fai%2fmcp", NF),
            (&ai, "/.well-known%2Foauth-authorization-server/ai", NF),
            // Double slashes, bad escapes, escaped control bytes.
            (&ai, "//.well-known/oauth-authorization-server/ai", NF),
            (&ai, "/.well-known//oauth-authorization-server/ai", NF),
            (&ai, "/.well-known/oauth-authorization-server//ai", NF),
            (&ai, "/ai//mcp", NF),
            (&ai, "//ai/mcp", NF),
            (&ai, "/ai/mcp%", NF),
            (&ai, "/ai/mcp%2", NF),
            (&ai, "/ai/mcp%zz", NF),
            (&ai, "/ai/mcp%00", NF),
            (&ai, "/ai/mcp%0a", NF),
            // Ordinary paths pass, encoded or not: the prefix strip decides about them.
            (&ai, "/ai/mcp", PASS),
            (&ai, "/ai/mcp/", PASS),
            (&ai, "/ai/", PASS),
            (&ai, "/ai", PASS),
            (&ai, "/", PASS),
            (&ai, "/ai/authorize", PASS),
            (&ai, "/ai/auth/callback", PASS),
            (&ai, "/ai/%6dcp", PASS),
            (&ai, "/ai/a%20b", PASS),
            (&ai, "/ai/.hidden", PASS),
            (&ai, "/ai/x.y/..z", PASS),
            (&ai, "/other", PASS),
            (&root, "/mcp", PASS),
        ];
        for (served, path, expected) in cases {
            assert_eq!(
                served.route(path),
                *expected,
                "{path} at prefix {:?}",
                served.prefix
            );
        }
    }

    #[test]
    fn the_listed_paths_are_exactly_the_served_ones() {
        for s in [
            served("/ai", false),
            served("/ai", true),
            served("/team/ai", false),
            served("", false),
        ] {
            let paths = s.paths();
            for (path, document) in &paths {
                assert_eq!(s.route(path), Route::Serve(*document), "{path}");
            }
            let mut unique: Vec<&String> = paths.iter().map(|(p, _)| p).collect();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), paths.len(), "{paths:?}");
        }
        assert_eq!(served("", true).paths().len(), 4);
        assert_eq!(served("/ai", false).paths().len(), 5);
        assert_eq!(served("/ai", true).paths().len(), 6);
    }

    #[test]
    fn only_what_is_served_is_answered() {
        let prm_only = Served {
            prefix: "/ai",
            protected_resource: true,
            root_protected_resource: false,
            authorization_server: false,
        };
        assert_eq!(
            prm_only.route("/.well-known/oauth-protected-resource/ai/mcp"),
            PR
        );
        assert_eq!(
            prm_only.route("/.well-known/oauth-authorization-server/ai"),
            NF
        );
        assert_eq!(prm_only.route("/ai/.well-known/openid-configuration"), NF);
        let nothing = Served {
            prefix: "",
            protected_resource: false,
            root_protected_resource: false,
            authorization_server: false,
        };
        assert!(nothing.paths().is_empty());
        assert_eq!(nothing.route("/.well-known/oauth-protected-resource"), NF);
        assert_eq!(nothing.route("/.well-known/openid-configuration"), NF);
        assert_eq!(nothing.route("/mcp"), PASS);
    }

    /// What a lenient upstream could make of a path: every escape decoded, `\` taken as `/`,
    /// empty segments dropped and dot segments resolved.
    fn lenient(path: &str) -> String {
        let decoded = percent_decode(path.as_bytes())
            .decode_utf8_lossy()
            .replace('\\', "/");
        let mut out: Vec<&str> = Vec::new();
        for segment in decoded.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s),
            }
        }
        format!("/{}", out.join("/"))
    }

    /// A property over many generated paths: whatever passes means to a lenient upstream what
    /// it means to the proxy (the decoded path, segment for segment) and has no well-known
    /// segment; whatever is served is exactly a listed document path.
    #[test]
    fn nothing_that_passes_reaches_past_the_mapping() {
        const PIECES: &[&str] = &[
            "/",
            "/",
            "/",
            ".",
            "..",
            "%2e",
            "%2E",
            "%2e%2E",
            "%2f",
            "%2F",
            "%5c",
            "%5C",
            "\\",
            ".well-known",
            ".WELL-KNOWN",
            "%2ewell-known",
            "ai",
            "team",
            "mcp",
            "%61i",
            "%6dcp",
            "oauth-authorization-server",
            "oauth-protected-resource",
            "openid-configuration",
            "%",
            "%0",
            "%00",
            "x",
            "/.well-known/",
            "/ai/",
            "..%2f",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let servers = [
            served("/ai", false),
            served("/team/ai", true),
            served("", false),
        ];
        let mut passed = 0;
        for _ in 0..50_000 {
            let len = 1 + (next() % 8) as usize;
            let mut path = String::from("/");
            for _ in 0..len {
                path.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            for s in &servers {
                match s.route(&path) {
                    Route::Pass => {
                        passed += 1;
                        let decoded = percent_decode(path.as_bytes()).decode_utf8_lossy();
                        let trimmed = decoded.trim_end_matches('/');
                        let lenient = lenient(&path);
                        assert_eq!(
                            lenient,
                            if trimmed.is_empty() { "/" } else { trimmed },
                            "{path} passes but a lenient upstream reads {lenient}"
                        );
                        assert!(
                            !lenient
                                .split('/')
                                .any(|seg| seg.eq_ignore_ascii_case(".well-known")),
                            "{path} passes into the well-known space"
                        );
                    }
                    Route::Serve(document) => assert!(
                        s.paths().contains(&(path.clone(), document)),
                        "{path} served but not listed"
                    ),
                    Route::NotFound => {}
                }
            }
        }
        assert!(
            passed > 1000,
            "the generator must also make passing paths ({passed})"
        );
    }
}
