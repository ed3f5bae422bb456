//! The documents' content: the upstream's metadata made consistent with P, and the
//! protected-resource metadata the sidecar writes itself for external authorization servers.

use serde_json::{Map, Value, json};

use super::public::Public;

/// Why an upstream document cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDocument {
    /// Not a JSON object.
    #[error("the upstream's {what} is not a JSON object")]
    NotAnObject { what: &'static str },
    /// No usable `issuer`.
    #[error("the upstream's authorization-server metadata has no http(s) issuer")]
    NoIssuer,
}

/// The upstream's RFC 8414 metadata for P: `issuer` is P exactly, and every URL that points at
/// the upstream (its own idea of its public URL, `issuer`, or its local address) is moved
/// under P, so every endpoint a client is sent to is one the prefix maps back to the upstream.
/// Returns the document and the upstream's issuer (where the upstream thinks it lives).
pub fn authorization_server(
    upstream: Value,
    public: &Public,
    local: &[&str],
) -> Result<(Value, Public), BadDocument> {
    let Value::Object(mut doc) = upstream else {
        return Err(BadDocument::NotAnObject {
            what: "authorization-server metadata",
        });
    };
    let upstream_base = doc
        .get("issuer")
        .and_then(Value::as_str)
        .and_then(Public::parse)
        .ok_or(BadDocument::NoIssuer)?;
    rebase_urls(&mut doc, public, Some(&upstream_base), local);
    doc.insert("issuer".into(), Value::String(public.base()));
    Ok((Value::Object(doc), upstream_base))
}

/// The upstream's RFC 9728 metadata for P/mcp: `resource` is P/mcp, the authorization server
/// is P (the upstream is its own authorization server in OAuth mode), other URLs pointing at
/// the upstream move under P.
pub fn protected_resource(
    upstream: Value,
    public: &Public,
    upstream_base: &Public,
    local: &[&str],
) -> Result<Value, BadDocument> {
    let Value::Object(mut doc) = upstream else {
        return Err(BadDocument::NotAnObject {
            what: "protected-resource metadata",
        });
    };
    rebase_urls(&mut doc, public, Some(upstream_base), local);
    doc.insert("resource".into(), Value::String(public.resource()));
    doc.insert(
        "authorization_servers".into(),
        Value::Array(vec![Value::String(public.base())]),
    );
    Ok(Value::Object(doc))
}

/// RFC 9728 metadata the sidecar writes for an entry point whose tokens come from external
/// authorization servers.
pub fn local_protected_resource(
    public: &Public,
    authorization_servers: &[String],
    scopes: &[String],
) -> Value {
    let mut doc = json!({
        "resource": public.resource(),
        "authorization_servers": authorization_servers,
        "bearer_methods_supported": ["header"],
    });
    if !scopes.is_empty()
        && let Value::Object(map) = &mut doc
    {
        map.insert("scopes_supported".into(), json!(scopes));
    }
    doc
}

/// Rebases every top-level string and array-of-strings value that is a URL of the upstream.
fn rebase_urls(
    doc: &mut Map<String, Value>,
    public: &Public,
    base: Option<&Public>,
    local: &[&str],
) {
    for value in doc.values_mut() {
        match value {
            Value::String(s) => {
                if let Some(rebased) = public.rebase(s, base, local) {
                    *s = rebased;
                }
            }
            Value::Array(items) => {
                for item in items {
                    if let Value::String(s) = item
                        && let Some(rebased) = public.rebase(s, base, local)
                    {
                        *s = rebased;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> Public {
        Public::parse(url).unwrap()
    }

    /// What FastMCP 3.4 serves with `--server-url http://localhost:8000/conduit` (a server URL
    /// that is not the entry point's), plus fields it might add.
    fn fastmcp_metadata() -> Value {
        json!({
            "issuer": "http://localhost:8000/conduit",
            "authorization_endpoint": "http://localhost:8000/conduit/authorize",
            "token_endpoint": "http://localhost:8000/conduit/token",
            "registration_endpoint": "http://localhost:8000/conduit/register",
            "revocation_endpoint": "http://127.0.0.1:8000/revoke",
            "service_documentation": "https://docs.example.org/conduit",
            "scopes_supported": ["whoami", "maniphest"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "client_id_metadata_document_supported": true
        })
    }

    #[test]
    fn authorization_server_metadata_is_made_consistent_with_p() {
        let public = p("https://phabricator.example.com/ai");
        let (doc, upstream) =
            authorization_server(fastmcp_metadata(), &public, &["127.0.0.1:8000"]).unwrap();
        assert_eq!(upstream, p("http://localhost:8000/conduit"));
        assert_eq!(doc["issuer"], "https://phabricator.example.com/ai");
        for (field, url) in [
            (
                "authorization_endpoint",
                "https://phabricator.example.com/ai/authorize",
            ),
            ("token_endpoint", "https://phabricator.example.com/ai/token"),
            (
                "registration_endpoint",
                "https://phabricator.example.com/ai/register",
            ),
            (
                "revocation_endpoint",
                "https://phabricator.example.com/ai/revoke",
            ),
            ("service_documentation", "https://docs.example.org/conduit"),
        ] {
            assert_eq!(doc[field], url, "{field}");
        }
        assert_eq!(doc["scopes_supported"], json!(["whoami", "maniphest"]));
        assert_eq!(doc["client_id_metadata_document_supported"], true);
    }

    #[test]
    fn a_document_without_an_issuer_is_refused() {
        let p = p("https://h/ai");
        assert_eq!(
            authorization_server(json!({"token_endpoint": "https://h/token"}), &p, &[]),
            Err(BadDocument::NoIssuer)
        );
        assert_eq!(
            authorization_server(json!({"issuer": "urn:x"}), &p, &[]),
            Err(BadDocument::NoIssuer)
        );
        assert!(matches!(
            authorization_server(json!(["x"]), &p, &[]),
            Err(BadDocument::NotAnObject { .. })
        ));
    }

    #[test]
    fn protected_resource_metadata_names_p() {
        let public = p("https://h.example/team/ai");
        let upstream = p("http://localhost:8000/conduit");
        let doc = protected_resource(
            json!({
                "resource": "http://localhost:8000/conduit/mcp",
                "authorization_servers": ["http://localhost:8000/conduit"],
                "scopes_supported": ["whoami"],
                "bearer_methods_supported": ["header"],
                "resource_documentation": "http://localhost:8000/conduit/docs"
            }),
            &public,
            &upstream,
            &[],
        )
        .unwrap();
        assert_eq!(doc["resource"], "https://h.example/team/ai/mcp");
        assert_eq!(
            doc["authorization_servers"],
            json!(["https://h.example/team/ai"])
        );
        assert_eq!(
            doc["resource_documentation"],
            "https://h.example/team/ai/docs"
        );
        assert_eq!(doc["scopes_supported"], json!(["whoami"]));

        // Whatever the upstream wrote, even URLs that are not its own.
        let doc = protected_resource(
            json!({
                "resource": "https://stale.example/mcp",
                "authorization_servers": ["https://stale.example", "https://other.example"]
            }),
            &public,
            &upstream,
            &[],
        )
        .unwrap();
        assert_eq!(doc["resource"], "https://h.example/team/ai/mcp");
        assert_eq!(
            doc["authorization_servers"],
            json!(["https://h.example/team/ai"])
        );
    }

    #[test]
    fn the_local_document_lists_the_configured_servers_and_scopes() {
        let doc = local_protected_resource(
            &p("https://h.example/ai"),
            &["https://idp.example.com/realms/x".into()],
            &["mcp:call".into()],
        );
        assert_eq!(
            doc,
            json!({
                "resource": "https://h.example/ai/mcp",
                "authorization_servers": ["https://idp.example.com/realms/x"],
                "bearer_methods_supported": ["header"],
                "scopes_supported": ["mcp:call"]
            })
        );
        let bare = local_protected_resource(&p("https://h.example"), &["https://idp".into()], &[]);
        assert!(bare.get("scopes_supported").is_none());
        assert_eq!(bare["resource"], "https://h.example/mcp");
    }
}
