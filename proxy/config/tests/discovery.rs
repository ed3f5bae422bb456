//! The rules on OAuth discovery settings: `discovery` (a local protected-resource document)
//! and `rootDiscovery` (answering the root fallback location).

use sluice_proxy_config::{ConfigError, ProxyConfig};

fn config(entry_point: &str) -> String {
    format!(
        r#"
phabricator:
  url: https://phabricator.example.com/api/
entryPoints:
  - name: route
    listen: 0.0.0.0:8081
{entry_point}"#
    )
}

fn problems(entry_point: &str) -> Vec<String> {
    match ProxyConfig::from_yaml(&config(entry_point)) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(problems)) => problems.iter().map(|p| p.to_string()).collect(),
        Err(other) => panic!("expected validation problems, got {other}"),
    }
}

const JWT: &str = r#"    auth:
      mode: jwt
      issuer: https://idp.example.com
      audiences: [https://phabricator.example.com/ai/mcp]
      algorithms: [RS256]
"#;

const OAUTH: &str = "    auth:\n      mode: oauth\n";

const PUBLIC: &str = "    pathPrefix: /ai\n    publicUrl: https://phabricator.example.com/ai\n";

const DISCOVERY: &str =
    "    discovery:\n      authorizationServers: [https://idp.example.com]\n      scopes: [mcp]\n";

#[test]
fn root_discovery_round_trips_and_is_omitted_when_off() {
    let text = config(&format!("{PUBLIC}{OAUTH}    rootDiscovery: true\n"));
    let parsed = ProxyConfig::from_yaml(&text).unwrap();
    assert!(parsed.entry_points[0].root_discovery);
    let yaml = parsed.to_yaml().unwrap();
    assert!(yaml.contains("rootDiscovery: true"), "{yaml}");
    assert_eq!(ProxyConfig::from_yaml(&yaml).unwrap(), parsed);

    let off = ProxyConfig::from_yaml(&config(&format!("{PUBLIC}{OAUTH}"))).unwrap();
    assert!(!off.entry_points[0].root_discovery);
    assert!(!off.to_yaml().unwrap().contains("rootDiscovery"));
}

#[test]
fn root_discovery_needs_a_public_url_and_a_document() {
    assert_eq!(
        problems(&format!("{OAUTH}    rootDiscovery: true\n")),
        ["entryPoints[0].rootDiscovery: needs publicUrl"]
    );
    assert_eq!(
        problems(&format!(
            "{PUBLIC}    auth:\n      mode: none\n    rootDiscovery: true\n"
        )),
        [
            "entryPoints[0].rootDiscovery: needs auth mode oauth or discovery: there is no metadata to serve"
        ]
    );
    assert!(
        problems(&format!(
            "{PUBLIC}{JWT}{DISCOVERY}    rootDiscovery: true\n"
        ))
        .is_empty()
    );
}

#[test]
fn a_local_document_is_for_jwt_and_service_accounts_only() {
    assert!(problems(&format!("{PUBLIC}{JWT}{DISCOVERY}")).is_empty());
    let service_account =
        "    auth:\n      mode: serviceAccount\n      audience: a\n      allowed: [ns/*]\n";
    assert!(problems(&format!("{PUBLIC}{service_account}{DISCOVERY}")).is_empty());
    assert_eq!(
        problems(&format!("{PUBLIC}{OAUTH}{DISCOVERY}")),
        ["entryPoints[0].discovery: is for auth modes jwt and serviceAccount, not oauth"]
    );
    assert_eq!(
        problems(&format!("{JWT}{DISCOVERY}")),
        ["entryPoints[0].discovery: needs publicUrl"]
    );
}
