//! An McpServer with `spec.container` (any MCP server image, not Conduit), as `sluice-operator
//! render` makes it, run on loopback: server-everything started with the rendered container's
//! `args` and `env` (the image is the npm package here: the same program, without a registry),
//! the sluice-proxy binary with the rendered config, its upstream URL untouched. The Python SDK
//! 2.x client sees through the sidecar what it sees straight against the server, less the tool
//! the policy denies; the sidecar's MCP check finds the server answering.
//!
//! Where it differs from a pod: listen addresses and the API keys' directory are moved from the
//! pod's ports and Secret mounts to loopback and a scratch directory, and server-everything
//! binds 127.0.0.1 through a preload (in a pod it binds every address, which the NetworkPolicy
//! fences); no check depends on either.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::peers::{self, python_script};
use sluice_e2e::process::run_ok;
use sluice_e2e::wait::{Probe, wait_until};
use sluice_e2e::{Process, free_port, sluice_proxy};

const START: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const API_KEY: &str = "e2e-key-0123456789abcdef";

/// A free port the schema accepts for `container.port` (not the sidecar's).
fn server_port() -> u16 {
    loop {
        let port = free_port().unwrap();
        if !(8080..=8999).contains(&port) && port != 9090 {
            return port;
        }
    }
}

/// The rendered documents as JSON, the sidecar's config parsed.
fn rendered(manifest: &str) -> Vec<Value> {
    sluice_e2e::render::render_stdin_json(manifest).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the render"))
}

/// The SDK client's report for `url` (see `e2e/py/peers/client.py`), the wire sorted.
fn client(url: &str) -> Value {
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("peers/client.py").unwrap())
        .args(["--url", url, "--mode", "legacy"])
        .args(["--header", &format!("Authorization: Bearer {API_KEY}")])
        .args(["--call", r#"echo:{"message":"hi"}"#])
        .args([
            "--stream",
            r#"trigger-long-running-operation:{"duration":0.3,"steps":3}"#,
        ]);
    let output = run_ok(&mut command, CLIENT_TIMEOUT).unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let mut report: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("client report is not JSON ({e}): {text}"));
    report["wire"]
        .as_array_mut()
        .unwrap()
        .sort_by_key(|entry| entry.to_string());
    report
}

#[test]
fn a_container_server_rendered_by_the_operator_serves_through_the_sidecar() {
    let port = server_port();
    let manifest = format!(
        "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata: {{name: everything, namespace: tools}}
spec:
  container:
    image: docker.io/mcp/everything:latest
    args: [streamableHttp]
    env: [{{name: PORT, value: '{port}'}}]
    port: {port}
  sessions: stateful
  policy:
    authentication: {{mode: apiKey, apiKey: {{secretRef: {{name: everything-keys}}}}}}
    tools: {{deny: [get-env]}}
"
    );
    let docs = rendered(&manifest);

    // The server, as the rendered container says: its args and environment.
    let container = &find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "mcp-server");
    let args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
    let env: BTreeMap<String, String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut command = Command::new(peers::node22().unwrap());
    command
        .arg("--require")
        .arg(peers::loopback_preload().unwrap())
        .arg(peers::server_everything_cli().unwrap())
        .args(&args)
        .envs(&env);
    let mut server = Process::spawn(&format!("server-everything :{port}"), command).unwrap();
    server.wait_for_port(port, START).unwrap();

    // The sidecar with the rendered config: the upstream URL as rendered.
    let scratch = tempfile::tempdir().unwrap();
    let keys = scratch.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("e2e"), API_KEY).unwrap();
    let mut config = find(&docs, "ConfigMap")["parsedData"]["config.yaml"].clone();
    assert_eq!(
        config["upstream"]["url"],
        format!("http://127.0.0.1:{port}")
    );
    assert_eq!(config["upstream"]["sessions"], "stateful");
    assert!(config.get("phabricator").is_none(), "{config:#}");
    let (listen, admin) = (free_port().unwrap(), free_port().unwrap());
    config["admin"]["listen"] = json!(format!("127.0.0.1:{admin}"));
    let entry = &mut config["entryPoints"][0];
    entry["listen"] = json!(format!("127.0.0.1:{listen}"));
    entry["auth"]["keysDir"] = json!(keys.to_string_lossy());
    let path = scratch.path().join("sidecar.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut command = Command::new(sluice_proxy().unwrap());
    command.arg("--config").arg(&path).env_remove("RUST_LOG");
    let mut sidecar = Process::spawn(&format!("sluice-proxy :{listen}"), command).unwrap();
    sidecar.wait_for_port(listen, START).unwrap();
    // Ready only once its MCP check (initialize, tools/list) found the server answering.
    sidecar
        .wait_for_http_ok(&format!("http://127.0.0.1:{admin}/readyz"), START)
        .unwrap();

    let direct = client(&format!("http://127.0.0.1:{port}/mcp"));
    let proxied = client(&format!("http://127.0.0.1:{listen}/mcp"));
    println!("direct: {direct}\nproxied: {proxied}");
    assert!(direct.get("connect_error").is_none(), "{direct:#}");
    let tools = |report: &Value| -> Vec<String> {
        serde_json::from_value(report["tools"].clone()).unwrap()
    };
    let expected: Vec<String> = tools(&direct)
        .into_iter()
        .filter(|t| t != "get-env")
        .collect();
    assert!(tools(&direct).contains(&"get-env".to_string()));
    assert_eq!(
        tools(&proxied),
        expected,
        "the policy hides get-env, nothing else"
    );
    assert_eq!(
        proxied["call"],
        json!({"is_error": false, "text": "Echo: hi"})
    );
    for field in [
        "call",
        "stream",
        "protocol_version",
        "server_name",
        "server_version",
        "wire",
        "after_close",
    ] {
        assert_eq!(direct[field], proxied[field], "{field}");
    }

    let report = wait_until("the sidecar's check to see the server", START, || {
        let report =
            sluice_e2e::http::get(&format!("http://127.0.0.1:{admin}/upstream"), &[])?.json()?;
        Ok(if report["answering"] == true {
            Probe::Ready(report)
        } else {
            Probe::NotYet(report.to_string())
        })
    })
    .unwrap();
    assert_eq!(
        report["serverInfo"]["name"], direct["server_name"],
        "{report}"
    );
    sidecar.ensure_running().unwrap();
    server.ensure_running().unwrap();
}
