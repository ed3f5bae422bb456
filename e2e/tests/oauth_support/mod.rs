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
    Spec {
        phabricator,
        prefix,
        host,
        public_url,
        http_route,
        ..Spec::default()
    }
    .manifests()
}

/// An McpServer in OAuth mode and its one McpRoute, `public`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spec<'a> {
    pub phabricator: &'a str,
    pub prefix: &'a str,
    pub host: &'a str,
    pub public_url: Option<&'a str>,
    /// An HTTPRoute instead of an Ingress.
    pub http_route: bool,
    /// YAML under `policy:` (authentication excluded) of both the server and the route.
    pub policy: &'a str,
    /// More YAML of the McpServer's spec (`replicas: 2`, …), at its indentation.
    pub server: &'a str,
    /// More YAML of `spec.auth.oauth`, at its indentation.
    pub oauth: &'a str,
}

impl Spec<'_> {
    pub fn manifests(&self) -> String {
        let Spec {
            phabricator,
            prefix,
            host,
            ..
        } = self;
        let public_url = self
            .public_url
            .map(|url| format!("  publicUrl: {url}\n"))
            .unwrap_or_default();
        let expose = if self.http_route {
            "    httpRoute:\n      parentRefs:\n        - name: public\n          namespace: gateways\n          sectionName: https\n"
        } else {
            "    ingress:\n      className: nginx\n      tlsSecretName: public-tls\n"
        };
        let policy: String = self.policy.lines().map(|l| format!("    {l}\n")).collect();
        let server = self.server;
        let oauth = self.oauth;
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
{oauth}{server}  policy:
    authentication:
      mode: oauth
{policy}---
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
{expose}  policy:
    authentication:
      mode: oauth
{policy}"
        )
    }
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

/// The running deployment: one replica (fake Phabricator, Conduit, sidecar), or several
/// behind one front proxy (see `replicas`).
pub struct Deployment {
    pub prefix: String,
    /// P.
    pub public: String,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// The server's own in-cluster entry point: `http://127.0.0.1:PORT`.
    pub in_cluster: String,
    /// The sidecar's admin listener: `http://127.0.0.1:PORT`.
    pub admin: String,
    pub rendered: Vec<Value>,
    pub phabricator: Process,
    pub conduit: Process,
    pub sidecar: Process,
    conduit_port: u16,
    /// Conduit's environment as rendered, the secret added, `FASTMCP_HOME` left out.
    conduit_env: BTreeMap<String, String>,
    dir: tempfile::TempDir,
}

/// The ports of one replica.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub conduit: u16,
    pub route: u16,
    pub server: u16,
    pub admin: u16,
}

impl Ports {
    pub fn free() -> Self {
        let [conduit, route, server, admin] = [(); 4].map(|()| free_port().unwrap());
        Self {
            conduit,
            route,
            server,
            admin,
        }
    }
}

impl Deployment {
    /// Renders and starts everything for `prefix`.
    pub fn start(prefix: &str) -> Self {
        Self::start_with(prefix, "", "")
    }

    /// Renders and starts everything for `prefix`, with `policy` on both entry points and
    /// `server` lines added to the McpServer's spec.
    pub fn start_with(prefix: &str, policy: &str, server: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let phab_port = free_port().unwrap();
        let ports = Ports::free();
        let origin = format!("http://127.0.0.1:{}", ports.route);
        let public = public_url(ports.route, prefix);
        let phabricator_url = format!("http://127.0.0.1:{phab_port}");
        let (_, rendered) = render(
            &Spec {
                phabricator: &phabricator_url,
                prefix,
                host: "127.0.0.1",
                public_url: Some(&public),
                policy,
                server,
                ..Spec::default()
            }
            .manifests(),
        );
        let conduit_env = conduit_env(&rendered, &public);
        let mut phabricator = start_phabricator(phab_port, &conduit_env);
        let home = dir.path().join("fastmcp");
        let conduit = spawn_conduit(&conduit_env, ports.conduit, &home, dir.path());
        let sidecar = spawn_sidecar(&rendered, ports, dir.path());
        phabricator.wait_for_port(phab_port, START).unwrap();
        let mut deployment = Self {
            prefix: prefix.to_owned(),
            public,
            origin,
            in_cluster: format!("http://127.0.0.1:{}", ports.server),
            admin: format!("http://127.0.0.1:{}", ports.admin),
            rendered,
            phabricator,
            conduit,
            sidecar,
            conduit_port: ports.conduit,
            conduit_env,
            dir,
        };
        deployment.await_conduit();
        deployment
            .sidecar
            .wait_for_port(ports.route, START)
            .unwrap();
        deployment
            .sidecar
            .wait_for_http_ok(&format!("http://127.0.0.1:{}/readyz", ports.admin), START)
            .unwrap();
        deployment
    }

    /// Stops Conduit and starts it again with its state in `home` (the same directory as
    /// before: a restart that keeps the state; another: one that loses it).
    pub fn restart_conduit(&mut self, home: &std::path::Path) {
        self.conduit.kill().unwrap();
        self.conduit = spawn_conduit(&self.conduit_env, self.conduit_port, home, self.dir.path());
        self.await_conduit();
    }

    /// Where Conduit has kept its state so far.
    pub fn conduit_home(&self) -> std::path::PathBuf {
        self.dir.path().join("fastmcp")
    }

    /// A new directory in the deployment's own.
    pub fn new_dir(&self, name: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    fn await_conduit(&mut self) {
        self.conduit
            .wait_for_port(self.conduit_port, START)
            .unwrap();
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
        events(&self.phabricator)
    }
}

/// A process's JSON log lines (stdout).
pub fn events(process: &Process) -> Vec<Value> {
    process
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Conduit's environment as rendered, with the client secret its Secret would hold.
pub fn conduit_env(rendered: &[Value], public: &str) -> BTreeMap<String, String> {
    let mut env = container_env(rendered, "phab", "conduit");
    assert_eq!(
        env.get("PHABRICATOR_MCP_SERVER_URL").map(String::as_str),
        Some(public),
        "Conduit advertises P"
    );
    env.remove("FASTMCP_HOME");
    env.insert(
        "PHABRICATOR_OAUTH_CLIENT_SECRET".into(),
        CLIENT_SECRET.into(),
    );
    env
}

/// The fake Phabricator, knowing the redirect URI the operator says to register.
pub fn start_phabricator(port: u16, conduit_env: &BTreeMap<String, String>) -> Process {
    let redirect_uri = format!(
        "{}/auth/callback",
        conduit_env["PHABRICATOR_MCP_SERVER_URL"]
    );
    let mut command = Command::new(peers::python_mcp1().unwrap());
    command
        .arg(python_script("oauth/fake_phabricator.py").unwrap())
        .args(["--port", &port.to_string()])
        .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
        .args(["--redirect-uri", &redirect_uri]);
    Process::spawn("fake Phabricator", command).unwrap()
}

/// Conduit (`e2e/py/oauth/conduit_oauth.py`) on `port`, keeping its OAuth state in `home`.
pub fn spawn_conduit(
    env: &BTreeMap<String, String>,
    port: u16,
    home: &std::path::Path,
    scratch: &std::path::Path,
) -> Process {
    let mut command = Command::new(peers::python_mcp1().unwrap());
    command
        .arg(python_script("oauth/conduit_oauth.py").unwrap())
        .args(["--port", &port.to_string()])
        .env_clear()
        .envs(env)
        .env("FASTMCP_HOME", home)
        .env("FASTMCP_CHECK_FOR_UPDATES", "off")
        .env("HOME", scratch);
    Process::spawn(&format!("Conduit :{port}"), command).unwrap()
}

/// The rendered sidecar config, moved onto `ports` on loopback (nothing else changed), run
/// by the sluice-proxy binary.
pub fn spawn_sidecar(rendered: &[Value], ports: Ports, scratch: &std::path::Path) -> Process {
    let mut config =
        find(rendered, "ConfigMap", "phab-sluice-proxy")["parsedData"]["config.yaml"].clone();
    config["admin"]["listen"] = json!(format!("127.0.0.1:{}", ports.admin));
    config["upstream"]["url"] = json!(format!("http://127.0.0.1:{}", ports.conduit));
    for entry in config["entryPoints"].as_array_mut().unwrap() {
        let port = if entry["name"] == "public" {
            ports.route
        } else {
            ports.server
        };
        entry["listen"] = json!(format!("127.0.0.1:{port}"));
    }
    let path = scratch.join(format!("sidecar-{}.json", ports.route));
    std::fs::write(&path, config.to_string()).unwrap();
    let mut command = Command::new(sluice_proxy().unwrap());
    command.arg("--config").arg(&path).env_remove("RUST_LOG");
    Process::spawn(&format!("sluice-proxy :{}", ports.route), command).unwrap()
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

/// A login and tool calls by the Python MCP SDK's own OAuth client (`e2e/py/oauth/login.py`
/// with `args`) against the MCP endpoint `url`: its report, and whether every call succeeded.
pub fn login(url: &str, args: &[&str]) -> (Value, bool) {
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("oauth/login.py").unwrap())
        .args(["--url", url])
        .args(args);
    let output = sluice_e2e::process::run(&mut command, LOGIN_TIMEOUT).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "the login driver's report is not JSON ({e}): {text}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let ok = output.status.success() && report.get("error").is_none();
    (report, ok)
}

/// The fake Phabricator's `events` show Conduit API calls, each with a token Phabricator
/// issued: never one of FastMCP's (a JWT) nor one it does not know.
pub fn assert_only_phabricator_tokens(events: &[Value]) {
    let conduit_calls: Vec<&Value> = events.iter().filter(|e| e["event"] == "conduit").collect();
    assert!(
        !conduit_calls.is_empty(),
        "no Conduit API call in {events:?}"
    );
    for call in conduit_calls {
        assert_eq!(call["token_known"], true, "{call}");
        assert_eq!(call["token_jwt"], false, "{call}");
    }
}

/// `(method, url, status)` of each step a login report lists under `key` (`sdk`, `browser`).
pub fn steps(report: &Value, key: &str) -> Vec<(String, String, u64)> {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["method"].as_str().unwrap().to_owned(),
                s["url"].as_str().unwrap().to_owned(),
                s["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The whole login and its calls, bounded (the driver bounds each request by itself too).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(180);
