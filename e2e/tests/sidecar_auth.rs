//! Authentication end to end: the sluice-proxy binary in front of a real MCP server (Python MCP
//! SDK 2.x, `e2e/py/policy/server.py`), driven by the SDK's own client in legacy mode, with one
//! entry point per auth mode. Without credentials the client cannot even connect; with them an
//! authorised tool call succeeds. The identity peers the modes call — Phabricator's
//! `user.whoami`, a Kubernetes TokenReview API, an OIDC issuer with its JWKS — are
//! `e2e/py/auth/identity_peers.py`.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_e2e::peers::{self, python_script};
use sluice_e2e::process::run_ok;
use sluice_e2e::{Process, free_port, http, sluice_proxy};

const START: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const AUDIENCE: &str = "https://conduit.e2e.svc";
const PHABRICATOR_TOKEN: &str = "api-alice2alice2alice2alice2alic";
const OAUTH_TOKEN: &str = "oauth-access-token-of-alice";
const SIDECAR_TOKEN: &str = "the-sidecars-own-token";
const SERVICE_ACCOUNT_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Y2k6cnVubmVyIn0.c2ln";
const API_KEY: &str = "ci-key-0123456789abcdef";
const TASK: &str = "pha_task_get:{\"task_id\":7}";

/// The MCP server on a free port.
fn mcp_server() -> (Process, u16) {
    let port = free_port().unwrap();
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("policy/server.py").unwrap())
        .args(["--port", &port.to_string()]);
    let mut server = Process::spawn("MCP server", command).unwrap();
    server.wait_for_port(port, START).unwrap();
    (server, port)
}

/// The identity peers on a free port, and the JWT they minted for mode jwt.
fn identity_peers() -> (Process, u16, String) {
    let port = free_port().unwrap();
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("auth/identity_peers.py").unwrap())
        .args(["--port", &port.to_string()])
        .args(["--phabricator-token", PHABRICATOR_TOKEN])
        .args(["--oauth-token", OAUTH_TOKEN])
        .args(["--sidecar-token", SIDECAR_TOKEN])
        .args(["--service-account-token", SERVICE_ACCOUNT_TOKEN])
        .args(["--audience", AUDIENCE]);
    let mut peers = Process::spawn("identity peers", command).unwrap();
    peers.wait_for_output("ready ", START).unwrap();
    peers.wait_for_port(port, START).unwrap();
    let ready = peers
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("ready ").map(str::to_owned))
        .unwrap();
    let jwt = serde_json::from_str::<Value>(&ready).unwrap()["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    (peers, port, jwt)
}

/// The sidecar config: one entry point per mode, on the given ports.
fn config(dir: &Path, upstream: u16, admin: u16, peers: u16, ports: &[(&str, u16)]) -> String {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("ci"), format!("{API_KEY}\n")).unwrap();
    std::fs::write(dir.join("sidecar-token"), SIDECAR_TOKEN).unwrap();
    let auth = |mode: &str| -> String {
        match mode {
            "phabricator-token" => "mode: phabricatorToken\n  verify: {}".into(),
            "api-key" => format!("mode: apiKey\n  keysDir: {}", keys.display()),
            "service-account" => format!(
                "mode: serviceAccount\n  audience: {AUDIENCE}\n  allowed: [ci/runner]\n  tokenReview:\n    apiServer: http://127.0.0.1:{peers}\n    tokenFile: {}\n    caFile: {}",
                dir.join("sidecar-token").display(),
                dir.join("no-ca-needed-over-http.crt").display()
            ),
            "jwt" => format!(
                "mode: jwt\n  issuer: http://127.0.0.1:{peers}\n  audiences: [{AUDIENCE}]\n  algorithms: [ES256]"
            ),
            "oauth" => "mode: oauth".into(),
            _ => "mode: none".into(),
        }
    };
    let entries: String = ports
        .iter()
        .map(|(mode, port)| {
            let auth = auth(mode).replace('\n', "\n    ");
            format!("  - name: {mode}\n    listen: 127.0.0.1:{port}\n    auth:\n      {auth}\n")
        })
        .collect();
    format!(
        "upstream:\n  url: http://127.0.0.1:{upstream}\nadmin:\n  listen: 127.0.0.1:{admin}\nphabricator:\n  url: http://127.0.0.1:{peers}/api/\nentryPoints:\n{entries}"
    )
}

/// Runs the SDK client (`e2e/py/policy/client.py`) against `port` with `header`, calling
/// `pha_task_get`, and returns its report.
fn client(port: u16, header: Option<&str>) -> Value {
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("policy/client.py").unwrap())
        .args(["--url", &format!("http://127.0.0.1:{port}/mcp")])
        .args(["--mode", "legacy"])
        .args(["--call", TASK]);
    if let Some(header) = header {
        command.args(["--header", header]);
    }
    let output = run_ok(&mut command, CLIENT_TIMEOUT).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("client report is not JSON ({e}): {text}"))
}

#[test]
fn every_auth_mode_turns_the_anonymous_client_away_and_serves_the_authorised_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, upstream) = mcp_server();
    let (_peers, peers_port, jwt) = identity_peers();
    let modes = [
        "phabricator-token",
        "api-key",
        "service-account",
        "jwt",
        "oauth",
        "none",
    ];
    let ports: Vec<(&str, u16)> = modes.iter().map(|m| (*m, free_port().unwrap())).collect();
    let admin = free_port().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(
        &path,
        config(dir.path(), upstream, admin, peers_port, &ports),
    )
    .unwrap();
    let mut command = Command::new(sluice_proxy().unwrap());
    command.arg("--config").arg(&path).env_remove("RUST_LOG");
    let mut proxy = Process::spawn("sluice-proxy", command).unwrap();
    for (_, port) in &ports {
        proxy.wait_for_port(*port, START).unwrap();
    }
    proxy
        .wait_for_http_ok(&format!("http://127.0.0.1:{admin}/healthz"), START)
        .unwrap();

    for (mode, port) in &ports {
        let credential = match *mode {
            "phabricator-token" => Some(format!("X-Phabricator-Token: {PHABRICATOR_TOKEN}")),
            "api-key" => Some(format!("Authorization: Bearer {API_KEY}")),
            "service-account" => Some(format!("Authorization: Bearer {SERVICE_ACCOUNT_TOKEN}")),
            "jwt" => Some(format!("Authorization: Bearer {jwt}")),
            "oauth" => Some(format!("Authorization: Bearer {OAUTH_TOKEN}")),
            _ => None,
        };
        if credential.is_some() {
            let refused = client(*port, None);
            // The SDK reports the 401 as a failed connection (the status is counted below).
            assert!(
                refused["connect_error"].is_object(),
                "{mode}: connected without credentials: {refused}"
            );
        }
        let report = client(*port, credential.as_deref());
        let call = &report["calls"][0];
        assert_eq!(call["ok"], true, "{mode}: {report}");
        assert_eq!(call["text"], "T7: fix the build", "{mode}: {report}");
    }

    let metrics = http::get(&format!("http://127.0.0.1:{admin}/metrics"), &[]).unwrap();
    for (mode, _) in &ports[..5] {
        let line =
            format!("sluice_auth_failures_total{{entry_point=\"{mode}\",reason=\"missing\"}}");
        assert!(
            metrics
                .body
                .lines()
                .any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
            "{line} not counted:\n{}",
            metrics.body
        );
    }
    // Each identity provider was asked once: the answers are cached.
    assert!(
        metrics.body.contains(
            "sluice_whoami_cache_total{entry_point=\"phabricator-token\",result=\"miss\"} 1"
        ),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("sluice_jwks_refreshes_total{entry_point=\"jwt\",result=\"ok\"} 1"),
        "{}",
        metrics.body
    );
    proxy.ensure_running().unwrap();
}

/// A CA, the sidecar's certificate for 127.0.0.1 and a client certificate naming `spiffe`,
/// made by the `openssl` CLI in `dir`.
fn mtls_files(dir: &Path, spiffe: &str) {
    let openssl = |args: &[&str]| {
        let mut command = Command::new("openssl");
        command.current_dir(dir).args(args);
        run_ok(&mut command, START).unwrap();
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=e2e client CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(&ca);
    for (name, san) in [
        ("tls", "subjectAltName=IP:127.0.0.1".to_owned()),
        ("client", format!("subjectAltName=URI:{spiffe}")),
    ] {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        std::fs::write(dir.join(&ext), format!("{san}\n")).unwrap();
        let mut req = vec!["req", "-new", "-subj", "/O=e2e"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(&req);
        openssl(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ]);
    }
}

#[test]
fn the_sdk_client_over_mutual_tls_is_named_by_its_certificate() {
    let spiffe = "spiffe://cluster.local/ns/ci/sa/runner";
    let dir = tempfile::tempdir().unwrap();
    mtls_files(dir.path(), spiffe);
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (_server, upstream) = mcp_server();
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let path = dir.path().join("sluice.yaml");
    // Only the certificate's identity may call pha_task_get: a wrong name would be denied.
    std::fs::write(
        &path,
        format!(
            "upstream:\n  url: http://127.0.0.1:{upstream}\nadmin:\n  listen: 127.0.0.1:{admin}\nlog:\n  format: json\nentryPoints:\n  - name: mtls\n    listen: 127.0.0.1:{port}\n    tls:\n      certFile: {}\n      keyFile: {}\n      clientCaFile: {}\n    auth:\n      mode: clientCertificate\n    tools:\n      deny: [\"pha_task_*\"]\n      rules:\n        - identities: [\"{spiffe}\"]\n          allow: [\"pha_task_*\"]\n",
            file("tls.crt"),
            file("tls.key"),
            file("ca.crt"),
        ),
    )
    .unwrap();
    let mut command = Command::new(sluice_proxy().unwrap());
    command.arg("--config").arg(&path).env_remove("RUST_LOG");
    let mut proxy = Process::spawn("sluice-proxy", command).unwrap();
    proxy.wait_for_port(port, START).unwrap();
    proxy
        .wait_for_http_ok(&format!("http://127.0.0.1:{admin}/healthz"), START)
        .unwrap();

    let client = |certificate: bool| {
        let mut command = Command::new(peers::python_mcp2().unwrap());
        command
            .arg(python_script("policy/client.py").unwrap())
            .args(["--url", &format!("https://127.0.0.1:{port}/mcp")])
            .args(["--mode", "legacy"])
            .args(["--call", TASK])
            .args(["--ca", &file("ca.crt")]);
        if certificate {
            command
                .args(["--cert", &file("client.crt")])
                .args(["--key", &file("client.key")]);
        }
        let output = run_ok(&mut command, CLIENT_TIMEOUT).unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        serde_json::from_str::<Value>(text.trim())
            .unwrap_or_else(|e| panic!("client report is not JSON ({e}): {text}"))
    };
    let refused = client(false);
    assert!(
        refused["connect_error"].is_object(),
        "connected without a client certificate: {refused}"
    );
    let report = client(true);
    let call = &report["calls"][0];
    assert_eq!(call["ok"], true, "{report}");
    assert_eq!(call["text"], "T7: fix the build", "{report}");

    // The audit line names the caller by its certificate (the sidecar writes in batches).
    let audit = |process: &Process| -> Option<Value> {
        (process.stdout() + &process.stderr())
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|e| e["target"] == "audit" && e["tool"] == "pha_task_get")
    };
    let deadline = std::time::Instant::now() + START;
    let line = loop {
        if let Some(line) = audit(&proxy) {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit line for the call:\n{}",
            proxy.stdout()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    println!("audit line of the call over mutual TLS: {line}");
    assert_eq!(line["identity"], spiffe, "{line}");
    assert_eq!(line["decision"], "allowed", "{line}");
    assert_eq!(line["entry_point"], "mtls", "{line}");

    let metrics = http::get(&format!("http://127.0.0.1:{admin}/metrics"), &[]).unwrap();
    let line =
        "sluice_tls_handshake_failures_total{entry_point=\"mtls\",reason=\"no_certificate\"}";
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l.starts_with(line) && !l.ends_with(" 0")),
        "{line} not counted:\n{}",
        metrics.body
    );
    proxy.ensure_running().unwrap();
}
