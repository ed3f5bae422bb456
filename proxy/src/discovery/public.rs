//! An entry point's public URL P (origin + prefix) and the URLs derived from it: the issuer,
//! the MCP resource, where its metadata lives, and upstream URLs rebased under it.

use url::Url;

use super::paths::PROTECTED_RESOURCE;

/// A public URL, as clients know the entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Public {
    /// `scheme://host[:port]`, lower-cased as URLs serialise it.
    origin: String,
    /// The path prefix: `""` for `/`, else `/seg[/seg...]` without a trailing slash.
    path: String,
}

impl Public {
    /// `public_url` (an absolute http(s) URL without query or fragment), or `None`.
    pub fn parse(public_url: &str) -> Option<Self> {
        let url = Url::parse(public_url).ok()?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return None;
        }
        Some(Self {
            origin: url[..url::Position::BeforePath].to_owned(),
            path: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// P of an entry point at `prefix` as its caller reached it: `scheme://host` + the prefix.
    /// `None` when `host` is not a plain `host[:port]`.
    pub fn of_caller(scheme: &str, host: &str, prefix: &str) -> Option<Self> {
        if host.is_empty() || host.contains(['/', '?', '#', '@', '\\']) {
            return None;
        }
        let path = prefix.trim_end_matches('/');
        Self::parse(&format!("{scheme}://{host}{path}"))
    }

    /// The path prefix, `""` for `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// P itself, without a trailing slash: the authorization server's issuer in OAuth mode.
    pub fn base(&self) -> String {
        format!("{}{}", self.origin, self.path)
    }

    /// The MCP endpoint P/mcp: the protected resource.
    pub fn resource(&self) -> String {
        format!("{}{}/mcp", self.origin, self.path)
    }

    /// Where the protected-resource metadata of P/mcp lives (RFC 9728 §3.1: the well-known
    /// segment between the origin and the path).
    pub fn resource_metadata_url(&self) -> String {
        format!("{}{PROTECTED_RESOURCE}{}/mcp", self.origin, self.path)
    }

    /// `url` moved under P when it points at the upstream itself, else `None` (an external URL
    /// stays as it is). The upstream is `upstream_base` (what it believes its public URL is)
    /// or one of `local` authorities (its own address): a path under the base's path keeps
    /// only the rest (`https://h/ai/token` with base `https://h/ai` → `P/token`), any other
    /// path on those origins is taken as the upstream's own route (`http://127.0.0.1:8000/x`
    /// → `P/x`): the upstream serves every route at its root, which is what P's prefix maps to.
    pub fn rebase(
        &self,
        url: &str,
        upstream_base: Option<&Public>,
        local: &[&str],
    ) -> Option<String> {
        let parsed = Url::parse(url).ok()?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return None;
        }
        let origin = &parsed[..url::Position::BeforePath];
        let authority = &parsed[url::Position::BeforeHost..url::Position::AfterPort];
        let rest = &parsed[url::Position::BeforePath..];
        let relative = match upstream_base {
            Some(base) if base.origin == origin => strip_path(rest, &base.path).unwrap_or(rest),
            _ if local.iter().any(|l| l.eq_ignore_ascii_case(authority)) => rest,
            _ => return None,
        };
        let relative = if relative.starts_with('/') {
            relative.to_owned()
        } else {
            format!("/{relative}")
        };
        // P's own root is P without a trailing slash, as the issuer is written.
        if relative == "/" {
            return Some(self.base());
        }
        Some(format!("{}{}{relative}", self.origin, self.path))
    }
}

/// `rest` (path, query, fragment) without the leading `path` when it is a whole-segment prefix.
fn strip_path<'a>(rest: &'a str, path: &str) -> Option<&'a str> {
    if path.is_empty() {
        return Some(rest);
    }
    let tail = rest.strip_prefix(path)?;
    match tail.chars().next() {
        None => Some("/"),
        Some('/') => Some(tail),
        Some('?' | '#') => Some(tail),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> Public {
        Public::parse(url).unwrap()
    }

    #[test]
    fn urls_of_a_public_url() {
        let ai = p("https://Phabricator.Example.com/ai");
        assert_eq!(ai.base(), "https://phabricator.example.com/ai");
        assert_eq!(ai.resource(), "https://phabricator.example.com/ai/mcp");
        assert_eq!(
            ai.resource_metadata_url(),
            "https://phabricator.example.com/.well-known/oauth-protected-resource/ai/mcp"
        );
        let root = p("https://h.example:8443/");
        assert_eq!(root.base(), "https://h.example:8443");
        assert_eq!(root.path(), "");
        assert_eq!(root.resource(), "https://h.example:8443/mcp");
        assert_eq!(
            root.resource_metadata_url(),
            "https://h.example:8443/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(p("https://h").base(), "https://h");
        assert_eq!(
            p("http://h/team/ai").resource_metadata_url(),
            "http://h/.well-known/oauth-protected-resource/team/ai/mcp"
        );
        for bad in [
            "/ai",
            "ftp://h/ai",
            "https://h/ai?x",
            "https://h/ai#f",
            "h/ai",
        ] {
            assert_eq!(Public::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_callers_url() {
        let svc = Public::of_caller("http", "phab.team.svc:8080", "/").unwrap();
        assert_eq!(svc.base(), "http://phab.team.svc:8080");
        assert_eq!(
            svc.resource_metadata_url(),
            "http://phab.team.svc:8080/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            Public::of_caller("https", "[::1]:8443", "/ai")
                .unwrap()
                .resource(),
            "https://[::1]:8443/ai/mcp"
        );
        for bad in ["", "h/x", "h?x", "h#x", "u@h", "h\\x", "h x"] {
            assert_eq!(Public::of_caller("http", bad, "/"), None, "{bad}");
        }
    }

    #[test]
    fn upstream_urls_are_rebased_under_p() {
        let target = p("https://h.example/ai");
        let same = p("https://h.example/ai");
        let other = p("http://localhost:8000/conduit");
        let local = ["127.0.0.1:8000"];
        let cases: &[(&str, Option<&Public>, Option<&str>)] = &[
            (
                "https://h.example/ai/token",
                Some(&same),
                Some("https://h.example/ai/token"),
            ),
            (
                "https://h.example/ai",
                Some(&same),
                Some("https://h.example/ai"),
            ),
            (
                "https://h.example/ai/",
                Some(&same),
                Some("https://h.example/ai"),
            ),
            (
                "https://h.example/ai/x?y=1",
                Some(&same),
                Some("https://h.example/ai/x?y=1"),
            ),
            // The upstream thinks it lives elsewhere: still its own routes.
            (
                "http://localhost:8000/conduit/register",
                Some(&other),
                Some("https://h.example/ai/register"),
            ),
            (
                "http://localhost:8000/conduit",
                Some(&other),
                Some("https://h.example/ai"),
            ),
            (
                "http://localhost:8000/authorize",
                Some(&other),
                Some("https://h.example/ai/authorize"),
            ),
            (
                "http://localhost:8000/conduitx",
                Some(&other),
                Some("https://h.example/ai/conduitx"),
            ),
            (
                "http://127.0.0.1:8000/consent",
                None,
                Some("https://h.example/ai/consent"),
            ),
            ("http://127.0.0.1:8000", None, Some("https://h.example/ai")),
            // Not the upstream: left alone.
            (
                "https://phabricator.example.com/oauthserver/auth/",
                Some(&same),
                None,
            ),
            ("https://h.example:444/ai/token", Some(&same), None),
            ("https://evil.example/ai/token", Some(&same), None),
            ("mailto:x@h.example", Some(&same), None),
            ("not a url", Some(&same), None),
        ];
        for (url, base, expected) in cases {
            assert_eq!(
                target.rebase(url, *base, &local).as_deref(),
                *expected,
                "{url}"
            );
        }
        let root = p("https://h.example");
        assert_eq!(
            root.rebase("https://h.example/token", Some(&root), &[])
                .as_deref(),
            Some("https://h.example/token")
        );
        assert_eq!(
            root.rebase("https://h.example/", Some(&root), &[])
                .as_deref(),
            Some("https://h.example")
        );
    }
}
