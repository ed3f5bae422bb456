//! Path prefixes: stripped on the way in (`/ai/mcp` → `/mcp`), restored in `Location` headers
//! and cookie paths on the way out, and `/mcp/` normalised to `/mcp` so the upstream's absolute
//! `http://` redirect for it never reaches a caller.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderValue;
use http::uri::{PathAndQuery, Uri};

/// An entry point's path prefix.
#[derive(Clone, Debug)]
pub struct Prefix {
    /// `None` for `/`: paths pass unchanged.
    prefix: Option<Box<str>>,
}

impl Prefix {
    /// A validated prefix (`/` or `/seg[/seg...]`, no trailing slash).
    pub fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        Self {
            prefix: (!prefix.is_empty()).then(|| prefix.into()),
        }
    }

    /// The prefix as callers write it before a path: `""` for `/`, else `/seg[/seg...]`.
    pub fn as_str(&self) -> &str {
        self.prefix.as_deref().unwrap_or("")
    }

    /// The upstream's path and query for a caller's URI; `None` when the path is not under the
    /// prefix (`/aix` is not under `/ai`).
    pub fn upstream_path(&self, uri: &Uri) -> Option<PathAndQuery> {
        let path = uri.path();
        let stripped = match &self.prefix {
            None => path,
            Some(p) => match path.strip_prefix(&**p)? {
                "" => "/",
                rest if rest.starts_with('/') => rest,
                _ => return None,
            },
        };
        // Conduit answers `/mcp/` with a 307 to an absolute http:// URL built from Host, which
        // is wrong behind a prefix or TLS; asking for `/mcp` directly avoids the redirect.
        let stripped = if stripped == "/mcp/" {
            "/mcp"
        } else {
            stripped
        };
        if stripped.len() == path.len()
            && let Some(pq) = uri.path_and_query()
        {
            return Some(pq.clone());
        }
        let mut out =
            String::with_capacity(stripped.len() + uri.query().map_or(0, |q| q.len() + 1));
        out.push_str(stripped);
        if let Some(q) = uri.query() {
            out.push('?');
            out.push_str(q);
        }
        PathAndQuery::from_maybe_shared(Bytes::from(out)).ok()
    }

    /// Whether an upstream-relative `path` already names something under the prefix.
    fn covers(&self, path: &str) -> bool {
        match &self.prefix {
            None => true,
            Some(p) => path
                .strip_prefix(&**p)
                .is_some_and(|r| r.is_empty() || r.starts_with('/')),
        }
    }

    /// `path` as the caller must see it. A path already under the prefix is left alone: an
    /// upstream that knows its public URL (OAuth mode) writes prefixed paths itself.
    fn restore<'a>(&self, path: &'a str) -> Cow<'a, str> {
        match &self.prefix {
            Some(p) if !self.covers(path) => Cow::Owned(format!("{p}{path}")),
            _ => Cow::Borrowed(path),
        }
    }

    /// Rewrites an upstream `Location`. A path-absolute value gets the prefix; an absolute URL
    /// pointing at one of `local` (the Host the upstream was given, its own address) is
    /// rebased onto `base` (`scheme://host` as callers reach this entry point). Others stay.
    pub fn rewrite_location(
        &self,
        value: &HeaderValue,
        base: &str,
        local: &[&str],
    ) -> Option<HeaderValue> {
        let text = value.to_str().ok()?;
        if text.starts_with('/') && !text.starts_with("//") {
            return match self.restore(text) {
                Cow::Owned(s) => HeaderValue::from_str(&s).ok(),
                Cow::Borrowed(_) => None,
            };
        }
        let url = url::Url::parse(text).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        if !local.iter().any(|l| l.eq_ignore_ascii_case(authority)) {
            return None;
        }
        let rest = &url[url::Position::BeforePath..];
        let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
        let (path, tail) = rest.split_at(path_end);
        let rewritten = format!("{base}{}{tail}", self.restore(path));
        if rewritten == text {
            return None;
        }
        HeaderValue::from_str(&rewritten).ok()
    }

    /// Rewrites the `Path` attribute of an upstream `Set-Cookie` so the cookie is sent back to
    /// the prefixed paths. Cookies without `Path` default to the caller's (prefixed) request path.
    pub fn rewrite_set_cookie(&self, value: &HeaderValue) -> Option<HeaderValue> {
        let prefix = self.prefix.as_deref()?;
        let text = value.to_str().ok()?;
        // A `__Host-` cookie must keep `Path=/` or browsers drop it (RFC 6265bis §4.1.3.2);
        // FastMCP's OAuth proxy names its consent cookies so over https.
        let name = text.split(['=', ';']).next().unwrap_or("").trim();
        if name
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("__Host-"))
        {
            return None;
        }
        let mut changed = false;
        let parts: Vec<Cow<'_, str>> = text
            .split(';')
            .enumerate()
            .map(|(i, part)| {
                let Some((name, path)) = part.split_once('=') else {
                    return Cow::Borrowed(part);
                };
                let path = path.trim();
                if i == 0 || !name.trim().eq_ignore_ascii_case("path") || !path.starts_with('/') {
                    return Cow::Borrowed(part);
                }
                if path == "/" {
                    changed = true;
                    return Cow::Owned(format!(" Path={prefix}"));
                }
                match self.restore(path) {
                    Cow::Owned(p) => {
                        changed = true;
                        Cow::Owned(format!(" Path={p}"))
                    }
                    Cow::Borrowed(_) => Cow::Borrowed(part),
                }
            })
            .collect();
        if !changed {
            return None;
        }
        HeaderValue::from_str(&parts.join(";")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(prefix: &str, uri: &str) -> Option<String> {
        Prefix::new(prefix)
            .upstream_path(&uri.parse().unwrap())
            .map(|p| p.to_string())
    }

    #[test]
    fn strips_the_prefix_on_segment_boundaries() {
        assert_eq!(up("/ai", "/ai/mcp").as_deref(), Some("/mcp"));
        assert_eq!(up("/ai", "/ai/mcp?x=1").as_deref(), Some("/mcp?x=1"));
        assert_eq!(up("/ai", "/ai").as_deref(), Some("/"));
        assert_eq!(up("/ai", "/ai?x").as_deref(), Some("/?x"));
        assert_eq!(up("/ai", "/aix/mcp"), None);
        assert_eq!(up("/ai", "/mcp"), None);
        assert_eq!(up("/a/b", "/a/b/mcp").as_deref(), Some("/mcp"));
        assert_eq!(up("/", "/mcp?q").as_deref(), Some("/mcp?q"));
    }

    #[test]
    fn mcp_with_a_trailing_slash_is_normalised() {
        assert_eq!(up("/", "/mcp/").as_deref(), Some("/mcp"));
        assert_eq!(up("/ai", "/ai/mcp/?a=b").as_deref(), Some("/mcp?a=b"));
        assert_eq!(up("/", "/messages/").as_deref(), Some("/messages/"));
    }

    #[test]
    fn locations_are_restored_under_the_prefix() {
        let p = Prefix::new("/ai");
        let loc = |v: &str| {
            p.rewrite_location(
                &HeaderValue::from_str(v).unwrap(),
                "https://h.example",
                &["h.example", "127.0.0.1:8000"],
            )
            .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(loc("/consent?x=1").as_deref(), Some("/ai/consent?x=1"));
        assert_eq!(loc("/ai/consent"), None);
        assert_eq!(
            loc("http://h.example/mcp").as_deref(),
            Some("https://h.example/ai/mcp")
        );
        assert_eq!(
            loc("http://127.0.0.1:8000/a?b#c").as_deref(),
            Some("https://h.example/ai/a?b#c")
        );
        assert_eq!(loc("https://phabricator.example/oauthserver/auth/"), None);
        assert_eq!(loc("//evil.example/x"), None);
    }

    #[test]
    fn root_prefix_still_fixes_the_scheme_of_local_redirects() {
        let p = Prefix::new("/");
        let v = HeaderValue::from_static("http://h.example/mcp");
        let out = p
            .rewrite_location(&v, "https://h.example", &["h.example"])
            .unwrap();
        assert_eq!(out, "https://h.example/mcp");
        assert!(
            p.rewrite_location(&HeaderValue::from_static("/mcp"), "x", &[])
                .is_none()
        );
    }

    #[test]
    fn cookie_paths_are_restored() {
        let p = Prefix::new("/ai");
        let c = |v: &str| {
            p.rewrite_set_cookie(&HeaderValue::from_str(v).unwrap())
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            c("s=1; Path=/; HttpOnly").as_deref(),
            Some("s=1; Path=/ai; HttpOnly")
        );
        assert_eq!(c("s=1; path=/auth").as_deref(), Some("s=1; Path=/ai/auth"));
        assert_eq!(c("s=1; Path=/ai/x"), None);
        assert_eq!(c("path=/x; Secure"), None);
        assert_eq!(c("s=1; Secure"), None);
        assert_eq!(c("__Host-s=1; Path=/; Secure"), None);
        assert_eq!(c("__host-s=1; Path=/; Secure"), None);
        assert_eq!(
            c("__Secure-s=1; Path=/; Secure").as_deref(),
            Some("__Secure-s=1; Path=/ai; Secure")
        );
        assert!(
            Prefix::new("/")
                .rewrite_set_cookie(&HeaderValue::from_static("a=1; Path=/"))
                .is_none()
        );
    }
}
