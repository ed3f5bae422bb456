//! A prefixed OAuth deployment on loopback, assembled from what `sluice-operator render` makes of
//! an McpServer in OAuth mode and one exposed McpRoute: the rendered sidecar config (listen
//! addresses and the upstream moved to free loopback ports, nothing else changed) runs the
//! sluice-proxy binary; the rendered Conduit environment (server URL, Phabricator URL, client
//! id, scope) configures a FastMCP upstream in OAuth-proxy mode (`e2e/py/oauth/conduit_oauth.py`);
//! a fake Phabricator (`e2e/py/oauth/fake_phabricator.py`) knows the redirect URI the operator
//! says to register.
#![allow(dead_code, reason = "each test binary uses a different part")]
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::peers::{self, python_script};
use sluice_e2e::process::run_with_input;
use sluice_e2e::render::render_stdin;
use sluice_e2e::{Process, free_port, sluice_proxy};

/// Starting FastMCP (imports, key derivation) takes a few seconds on a busy machine.
pub const START: Duration = Duration::from_secs(90);

/// The OAuth client registered in the fake Phabricator.
pub const CLIENT_ID: &str = "PHID-OASC-e2eoauthclient0000";
pub const CLIENT_SECRET: &str = "e2e-client-secret-not-a-real-one";

/// The manifests: an McpServer in OAuth mode against `phabricator`, and McpRoute `public` at
/// `prefix` on `host`, exposed by an Ingress or an HTTPRoute, with `public_url` when given.
pub fn manifests(
    phabricator: &str,
    prefix: &str,
    host: &str,
    public_url: Option<&str>,
    http_route: bool,
) -> String {
    let public_url = public_url
        .map(|url| format!("  publicUrl: {url}\n"))
        .unwrap_or_default();
    let expose = if http_route {
        "    httpRoute:\n      parentRefs:\n        - name: public\n          namespace: gateways\n          sectionName: https\n"
    } else {
        "    ingress:\n      className: nginx\n      tlsSecretName: public-tls\n"
    };
    format!(
        "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata:
  name: phab
  namespace: e2e
spec:
  phabricator:
    url: {phabricator}
  auth:
    mode: oauth
    oauth:
      clientId: {CLIENT_ID}
      clientSecretRef:
        name: phabricator-oauth
        key: client-secret
      scopes: [whoami, maniphest]
---
apiVersion: sluice.dev/v1alpha1
kind: McpRoute
metadata:
  name: public
  namespace: e2e
spec:
  serverRef:
    name: phab
  hostnames: [{host}]
  pathPrefix: {prefix}
{public_url}  expose:
{expose}"
    )
}

/// `sluice-operator render` of `manifests`, as YAML and as JSON documents (see
/// `e2e/py/oauth/rendered.py`).
pub fn render(manifests: &str) -> (String, Vec<Value>) {
    let yaml = render_stdin(manifests).unwrap();
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command.arg(python_script("oauth/rendered.py").unwrap());
    let output =
        run_with_input(&mut command, Some(yaml.as_bytes()), Duration::from_secs(60)).unwrap();
    assert!(
        output.status.success(),
        "rendered.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    (yaml, docs)
}

/// The document of `kind` named `name`.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the render"))
}

/// The plain `value` env of container `container` of Deployment `deployment`.
pub fn container_env(
    docs: &[Value],
    deployment: &str,
    container: &str,
) -> BTreeMap<String, String> {
    let deployment = find(docs, "Deployment", deployment);
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let container = containers
        .iter()
        .find(|c| c["name"] == container)
        .unwrap_or_else(|| panic!("no container {container}"));
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// `P` for a prefix on a loopback port: `http://127.0.0.1:PORT` + the prefix (nothing for `/`).
pub fn public_url(port: u16, prefix: &str) -> String {
    let path = if prefix == "/" { "" } else { prefix };
    format!("http://127.0.0.1:{port}{path}")
}

/// The running deployment.
pub struct Deployment {
    pub prefix: String,
    /// P.
    pub public: String,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    pub rendered: Vec<Value>,
    pub phabricator: Process,
    pub conduit: Process,
    pub sidecar: Process,
    _dir: tempfile::TempDir,
}

impl Deployment {
    /// Renders and starts everything for `prefix`.
    pub fn start(prefix: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let [phab_port, conduit_port, route_port, server_port, admin_port] =
            [(); 5].map(|()| free_port().unwrap());
        let origin = format!("http://127.0.0.1:{route_port}");
        let public = public_url(route_port, prefix);
        let phabricator_url = format!("http://127.0.0.1:{phab_port}");
        let (_, rendered) = render(&manifests(
            &phabricator_url,
            prefix,
            "127.0.0.1",
            Some(&public),
            false,
        ));

        // Conduit's environment as rendered; the client secret is what its Secret would hold.
        let env = container_env(&rendered, "phab", "conduit");
        assert_eq!(
            env.get("PHABRICATOR_MCP_SERVER_URL"),
            Some(&public),
            "Conduit advertises P"
        );
        let redirect_uri = format!("{}/auth/callback", env["PHABRICATOR_MCP_SERVER_URL"]);

        let mut phabricator = {
            let mut command = Command::new(peers::python_mcp1().unwrap());
            command
                .arg(python_script("oauth/fake_phabricator.py").unwrap())
                .args(["--port", &phab_port.to_string()])
                .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
                .args(["--redirect-uri", &redirect_uri]);
            Process::spawn("fake Phabricator", command).unwrap()
        };
        let mut conduit = {
            let mut command = Command::new(peers::python_mcp1().unwrap());
            command
                .arg(python_script("oauth/conduit_oauth.py").unwrap())
                .args(["--port", &conduit_port.to_string()])
                .env_clear()
                .envs(&env)
                .env("PHABRICATOR_OAUTH_CLIENT_SECRET", CLIENT_SECRET)
                .env("FASTMCP_HOME", dir.path().join("fastmcp"))
                .env("FASTMCP_CHECK_FOR_UPDATES", "off")
                .env("HOME", dir.path());
            Process::spawn("Conduit-like FastMCP OAuth proxy", command).unwrap()
        };

        // The rendered sidecar config, moved onto free loopback ports.
        let mut config =
            find(&rendered, "ConfigMap", "phab-sluice-proxy")["parsedData"]["config.yaml"].clone();
        config["admin"]["listen"] = json!(format!("127.0.0.1:{admin_port}"));
        config["upstream"]["url"] = json!(format!("http://127.0.0.1:{conduit_port}"));
        for entry in config["entryPoints"].as_array_mut().unwrap() {
            let port = if entry["name"] == "public" {
                route_port
            } else {
                server_port
            };
            entry["listen"] = json!(format!("127.0.0.1:{port}"));
        }
        let path = dir.path().join("sidecar.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut sidecar = {
            let mut command = Command::new(sluice_proxy().unwrap());
            command.arg("--config").arg(&path).env_remove("RUST_LOG");
            Process::spawn("sluice-proxy", command).unwrap()
        };

        phabricator.wait_for_port(phab_port, START).unwrap();
        conduit.wait_for_port(conduit_port, START).unwrap();
        sidecar.wait_for_port(route_port, START).unwrap();
        sidecar
            .wait_for_http_ok(&format!("http://127.0.0.1:{admin_port}/readyz"), START)
            .unwrap();
        Self {
            prefix: prefix.to_owned(),
            public,
            origin,
            rendered,
            phabricator,
            conduit,
            sidecar,
            _dir: dir,
        }
    }

    /// `origin + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// The prefix as it prefixes paths: `""` for `/`.
    pub fn p(&self) -> &str {
        if self.prefix == "/" { "" } else { &self.prefix }
    }

    /// The fake Phabricator's log: one JSON object per request.
    pub fn phabricator_events(&self) -> Vec<Value> {
        self.phabricator
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Every location where a client may look for the metadata of P, with what it must find there
/// (`pr`: protected resource, `as`: authorization server), derived from the specs (RFC 9728,
/// RFC 8414, OpenID Connect discovery), not from the sidecar.
pub fn discovery_locations(prefix: &str) -> Vec<(String, &'static str)> {
    let p = if prefix == "/" { "" } else { prefix };
    let mut out = vec![
        (
            format!("/.well-known/oauth-protected-resource{p}/mcp"),
            "pr",
        ),
        (format!("/.well-known/oauth-authorization-server{p}"), "as"),
        (format!("/.well-known/openid-configuration{p}"), "as"),
    ];
    if p.is_empty() {
        out.push(("/.well-known/oauth-protected-resource".to_owned(), "pr"));
    } else {
        out.push((format!("/.well-known/oauth-protected-resource{p}"), "pr"));
        out.push((format!("{p}/.well-known/openid-configuration"), "as"));
    }
    out
}
