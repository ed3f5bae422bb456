//! The RFC 8707 `resource` parameter of an authorization request's query: read as the upstream
//! reads a form-encoded query (names and values decoded, `+` a space), compared as Conduit
//! compares it (without query, fragment or trailing slash), and replaced.

use url::Url;
use url::form_urlencoded;

use crate::errors::Refusal;

const RESOURCE: &str = "resource";

/// The query's one `resource` value, `None` without one. Two are refused: which one the
/// upstream would honour is not for the proxy to guess.
pub fn single(query: &str) -> Result<Option<String>, Refusal> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == RESOURCE {
            if found.is_some() {
                return Err(Refusal::InvalidRequest(
                    "the authorization request names more than one resource",
                ));
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

/// Whether two resource URLs name the same resource: equal once parsed (scheme and host
/// lower-cased, default port dropped) and without query, fragment or trailing slash.
pub fn same(a: &str, b: &str) -> bool {
    match (normal(a), normal(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn normal(url: &str) -> Option<String> {
    let mut url = Url::parse(url).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    Some(url.as_str().trim_end_matches('/').to_owned())
}

/// `query` with its `resource` value set to `value`; every other pair kept, in order.
pub fn replace(query: &str, value: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::with_capacity(query.len()));
    for (name, old) in form_urlencoded::parse(query.as_bytes()) {
        out.append_pair(&name, if name == RESOURCE { value } else { &old });
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_resource_is_read_decoded_and_two_are_refused() {
        assert_eq!(
            single("client_id=a&resource=http%3A%2F%2Fsvc%3A8080%2Fmcp&state=x").unwrap(),
            Some("http://svc:8080/mcp".to_owned())
        );
        assert_eq!(
            single("res%6Fu%72ce=http://a/mcp").unwrap(),
            Some("http://a/mcp".to_owned())
        );
        assert_eq!(single("client_id=a").unwrap(), None);
        assert!(single("resource=http://a/mcp&resource=http://b/mcp").is_err());
        assert!(single("resource=http://a/mcp&res%6Furce=http://b/mcp").is_err());
    }

    #[test]
    fn resources_compare_as_conduit_compares_them() {
        assert!(same("http://svc:8080/mcp", "http://SVC:8080/mcp/"));
        assert!(same("https://h/ai/mcp?kb=1", "https://h:443/ai/mcp"));
        assert!(!same("http://svc:8080/mcp", "http://svc:8081/mcp"));
        assert!(!same("http://svc/mcp", "https://svc/mcp"));
        assert!(!same("http://svc/ai/mcp", "http://svc/mcp"));
        assert!(!same("not a url", "not a url"));
    }

    #[test]
    fn only_the_resource_changes() {
        assert_eq!(
            replace(
                "response_type=code&resource=http%3A%2F%2Fsvc%2Fmcp&scope=a+b",
                "https://h/ai/mcp"
            ),
            "response_type=code&resource=https%3A%2F%2Fh%2Fai%2Fmcp&scope=a+b"
        );
    }
}
