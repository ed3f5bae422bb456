//! `WWW-Authenticate` challenges (RFC 6750 §3, MCP authorization), built once per config
//! generation. Where the protected-resource metadata lives is discovery's to say
//! ([`crate::discovery::Site::resource_metadata_url`]): a challenge names it only when the
//! entry point serves it.

use crate::headers::quoted_string;
use http::HeaderValue;

use super::Failure;

/// The three challenges an entry point answers 401 with.
#[derive(Clone, Debug)]
pub struct Challenges {
    /// No credential came: no `error` (RFC 6750 §3.1).
    plain: HeaderValue,
    /// The request was ambiguous (a credential repeated or given twice).
    invalid_request: HeaderValue,
    /// A credential came and was refused.
    invalid_token: HeaderValue,
}

impl Challenges {
    /// Challenges naming the protected-resource metadata at `resource_metadata` (when there
    /// is one) and `scopes`.
    pub fn new(resource_metadata: Option<&str>, scopes: &[String]) -> Self {
        let mut params = Vec::new();
        if let Some(url) = resource_metadata {
            params.push(format!("resource_metadata={}", quoted_string(url)));
        }
        if !scopes.is_empty() {
            params.push(format!("scope={}", quoted_string(&scopes.join(" "))));
        }
        let build = |error: Option<&str>| {
            let mut all: Vec<String> = error
                .map(|e| format!("error={}", quoted_string(e)))
                .into_iter()
                .collect();
            all.extend(params.iter().cloned());
            let text = if all.is_empty() {
                "Bearer".to_owned()
            } else {
                format!("Bearer {}", all.join(", "))
            };
            // Quoting leaves only visible ASCII and spaces, unless a scope or URL carried
            // other bytes; then the bare scheme still tells the client what to send.
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
        };
        Self {
            plain: build(None),
            invalid_request: build(Some("invalid_request")),
            invalid_token: build(Some("invalid_token")),
        }
    }

    /// The challenges of an entry point that takes Phabricator API tokens in
    /// `X-PHABRICATOR-TOKEN`: a scheme of that name, so no client takes it for a `Bearer`
    /// challenge and starts an OAuth login that cannot work (RFC 9110 §11.6.1 requires some
    /// challenge with a 401).
    pub fn header_token() -> Self {
        Self {
            plain: HeaderValue::from_static(r#"X-PHABRICATOR-TOKEN realm="sluice""#),
            invalid_request: HeaderValue::from_static(
                r#"X-PHABRICATOR-TOKEN realm="sluice", error="invalid_request""#,
            ),
            invalid_token: HeaderValue::from_static(
                r#"X-PHABRICATOR-TOKEN realm="sluice", error="invalid_token""#,
            ),
        }
    }

    /// The challenges of an entry point that names callers by their TLS client certificate:
    /// no `Bearer`, or an OAuth-capable client would start a login that cannot help (RFC 9110
    /// §11.6.1 requires some challenge with a 401).
    pub fn client_certificate() -> Self {
        Self {
            plain: HeaderValue::from_static(r#"ClientCertificate realm="sluice""#),
            invalid_request: HeaderValue::from_static(
                r#"ClientCertificate realm="sluice", error="invalid_request""#,
            ),
            invalid_token: HeaderValue::from_static(
                r#"ClientCertificate realm="sluice", error="invalid_token""#,
            ),
        }
    }

    /// The challenge for a refusal with `failure`.
    pub fn for_failure(&self, failure: Failure) -> &HeaderValue {
        match failure {
            Failure::Missing => &self.plain,
            Failure::Ambiguous => &self.invalid_request,
            _ => &self.invalid_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_carry_metadata_scope_and_error() {
        let metadata = "https://h/.well-known/oauth-protected-resource/ai/mcp";
        let c = Challenges::new(Some(metadata), &["mcp:read".into(), "mcp:call".into()]);
        assert_eq!(
            c.for_failure(Failure::Missing),
            r#"Bearer resource_metadata="https://h/.well-known/oauth-protected-resource/ai/mcp", scope="mcp:read mcp:call""#
        );
        assert_eq!(
            c.for_failure(Failure::Invalid),
            r#"Bearer error="invalid_token", resource_metadata="https://h/.well-known/oauth-protected-resource/ai/mcp", scope="mcp:read mcp:call""#
        );
        let bare = Challenges::new(None, &[]);
        assert_eq!(bare.for_failure(Failure::Missing), "Bearer");
        assert_eq!(
            bare.for_failure(Failure::Ambiguous),
            r#"Bearer error="invalid_request""#
        );
        assert_eq!(
            Challenges::new(None, &[r#"a"b\c"#.into()]).for_failure(Failure::Missing),
            r#"Bearer scope="a\"b\\c""#
        );
    }
}
