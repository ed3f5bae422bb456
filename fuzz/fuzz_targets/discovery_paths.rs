//! Discovery path mapping (proxy/src/discovery/paths.rs) and prefix stripping
//! (proxy/src/prefix.rs): what a request path routes to, and what the upstream then sees.
//!
//! Input: one selector byte (prefix and which documents are served), then the request target.
//! Invariants, beyond "no panic":
//! - a served document is at one of the entry point's listed paths, exactly;
//! - a path passed on has no `.well-known` segment, no dot segment and no encoded `/` or `\`
//!   however spelled, so the upstream cannot resolve it elsewhere than the proxy did;
//! - the upstream path is the caller's path with exactly the prefix removed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_proxy::fuzzing::{Prefix, Route, Served, unambiguous};

const PREFIXES: [&str; 4] = ["", "/ai", "/a/b", "/mcp"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, target)) = data.split_first() else {
        return;
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    // Only what hyper would hand over as a request target.
    let Ok(uri) = target.parse::<http::Uri>() else {
        return;
    };
    let prefix = PREFIXES[usize::from(selector & 3)];
    let served = Served {
        prefix,
        protected_resource: selector & 4 != 0,
        root_protected_resource: selector & 8 != 0,
        authorization_server: selector & 16 != 0,
    };
    let path = uri.path();
    match served.route(path) {
        Route::Serve(document) => {
            assert!(
                served.paths().contains(&(path.to_owned(), document)),
                "{path:?} served {document:?} but is not listed"
            );
        }
        Route::NotFound => {}
        Route::Pass => {
            let Some(decoded) = unambiguous(path) else {
                // Only targets that are no path at all (`*`, authority form) pass unchecked;
                // no prefix matches them.
                assert!(!path.starts_with('/'), "{path:?} passed but is ambiguous");
                return;
            };
            for segment in decoded.split('/') {
                assert!(
                    !segment.eq_ignore_ascii_case(".well-known"),
                    "{path:?} passed with a well-known segment"
                );
                assert!(
                    segment != "." && segment != "..",
                    "{path:?} passed a dot segment"
                );
                assert!(!segment.contains('\\'), "{path:?} passed a backslash");
            }
            assert_eq!(
                decoded.split('/').count(),
                path.split('/').count(),
                "{path:?} passed with an encoded /"
            );
            let Some(upstream) =
                Prefix::new(if prefix.is_empty() { "/" } else { prefix }).upstream_path(&uri)
            else {
                return;
            };
            let stripped = upstream.path();
            let rebuilt = match stripped {
                "/" => format!("{prefix}/"),
                other => format!("{prefix}{other}"),
            };
            assert!(
                rebuilt == path
                    || (stripped == "/" && path == prefix)
                    || (stripped == "/mcp" && path == format!("{prefix}/mcp/")),
                "{path:?} became {stripped:?} under prefix {prefix:?}"
            );
            assert_eq!(upstream.query(), uri.query(), "the query changed");
        }
    }
});
