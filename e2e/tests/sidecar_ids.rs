//! JSON-RPC ids two implementations read differently: the sidecar interprets every message as
//! the upstream will, or refuses it. Against the Python MCP SDK as Conduit runs it (fastmcp on
//! the SDK 1.x) and the SDK 2.x, stateless, replies as event streams, with `pha_passphrase_*`
//! denied: a `tools/list` with `"id": -0` used to come back with every tool, the denied ones
//! included — serde reads `-0` as the float -0.0, the SDK as the integer 0, so the proxy did not
//! match the reply to the request and passed the event on unfiltered.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::process::Command;
use std::time::Duration;

use sluice_e2e::http::{self, MCP_ACCEPT};
use sluice_e2e::peers::{self, python_script};
use sluice_e2e::{Process, free_port, sluice_proxy};

const START: Duration = Duration::from_secs(60);

/// The policy MCP server (`e2e/py/policy/server.py`) under `python`, on a free port.
fn mcp_server(python: std::path::PathBuf) -> (Process, u16) {
    let port = free_port().unwrap();
    let mut command = Command::new(python);
    command
        .arg(python_script("policy/server.py").unwrap())
        .args(["--port", &port.to_string()]);
    let mut server = Process::spawn("policy MCP server", command).unwrap();
    server.wait_for_port(port, START).unwrap();
    (server, port)
}

/// The sidecar in front of `upstream`, denying `pha_passphrase_*`.
fn sidecar(dir: &std::path::Path, upstream: u16) -> (Process, u16) {
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let config = format!(
        "upstream:\n  url: http://127.0.0.1:{upstream}\nadmin:\n  listen: 127.0.0.1:{admin}\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:{port}\n    auth:\n      mode: none\n    tools:\n      deny: [\"pha_passphrase_*\"]\n"
    );
    let path = dir.join(format!("sidecar-{upstream}.yaml"));
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(sluice_proxy().unwrap());
    command.arg("--config").arg(&path).env_remove("RUST_LOG");
    let mut proxy = Process::spawn("sluice-proxy", command).unwrap();
    proxy.wait_for_port(port, START).unwrap();
    proxy
        .wait_for_http_ok(&format!("http://127.0.0.1:{admin}/healthz"), START)
        .unwrap();
    (proxy, port)
}

fn list(port: u16, id: &str) -> http::HttpResponse {
    let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
    http::post_raw(
        &format!("http://127.0.0.1:{port}/mcp"),
        &body,
        &[("accept", MCP_ACCEPT)],
    )
    .unwrap()
}

/// The ids the upstream's replies carry (the `data:` lines of its event stream).
fn reply_ids(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .map(|v| v["id"].to_string())
        .collect()
}

fn ids_are_interpreted_as_the_sdk_reads_them(python: std::path::PathBuf, sdk: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (_server, upstream) = mcp_server(python);
    let (_proxy, port) = sidecar(dir.path(), upstream);

    // What the SDK itself makes of the spellings: -0 comes back as 0, not as the id sent.
    let direct = list(upstream, "-0");
    assert_eq!(direct.status, 200, "{sdk}: {}", direct.body);
    assert_eq!(reply_ids(&direct.body), ["0"], "{sdk}: {}", direct.body);
    assert!(direct.body.contains("pha_passphrase_get"), "{sdk}");

    // Through the sidecar: every such spelling is refused before the upstream sees it.
    for id in [
        "-0",
        "1.0",
        "1e2",
        "-1.5",
        "9007199254740993",
        r#""\ud800""#,
    ] {
        let reply = list(port, id);
        assert_eq!(reply.status, 400, "{sdk}, id {id}: {}", reply.body);
        let json = reply.json().unwrap();
        assert_eq!(json["error"]["code"], -32600, "{sdk}, id {id}: {json}");
        assert!(!reply.body.contains("pha_passphrase_get"), "{sdk}, id {id}");
    }
    // Ids every reader reads alike: the list comes back filtered, under the same id.
    for (id, echoed) in [
        ("0", "0"),
        ("7", "7"),
        ("-7", "-7"),
        (r#""a\u0062""#, r#""ab""#),
    ] {
        let reply = list(port, id);
        assert_eq!(reply.status, 200, "{sdk}, id {id}: {}", reply.body);
        assert_eq!(
            reply_ids(&reply.body),
            [echoed],
            "{sdk}, id {id}: {}",
            reply.body
        );
        assert!(reply.body.contains("pha_task_get"), "{sdk}, id {id}");
        assert!(
            !reply.body.contains("pha_passphrase_get"),
            "{sdk}, id {id}: {}",
            reply.body
        );
    }
}

#[test]
fn ids_are_interpreted_as_conduits_sdk_reads_them() {
    ids_are_interpreted_as_the_sdk_reads_them(peers::python_mcp1().unwrap(), "fastmcp, SDK 1.x");
}

#[test]
fn ids_are_interpreted_as_the_sdk_2_reads_them() {
    ids_are_interpreted_as_the_sdk_reads_them(peers::python_mcp2().unwrap(), "SDK 2.x");
}
