//! The peers `scripts/setup.sh` installs are there and work through the harness. Any of these
//! failing means the machine is not set up (`make setup`), and every e2e test would fail with it.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sluice_e2e::http::{self, MCP_ACCEPT};
use sluice_e2e::peers::{self, Venv};
use sluice_e2e::process::run_ok;
use sluice_e2e::{Redis, ServerEverything};

const TIMEOUT: Duration = Duration::from_secs(60);

fn stdout(command: &mut Command) -> String {
    let output = run_ok(command, TIMEOUT).unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether some socket listens on `port` on every interface rather than only on loopback.
fn listens_beyond_loopback(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap()
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let port_hex = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state) = (fields[1], fields[3]);
        state == "0A" // LISTEN
            && local.ends_with(&port_hex)
            && !local.starts_with("0100007F") // 127.0.0.1
            && !local.starts_with("00000000000000000000000001000000") // ::1
    })
}

#[test]
fn python_venvs_have_their_sdks() {
    let mcp2 = stdout(Command::new(peers::python_mcp2().unwrap()).args([
        "-c",
        "import importlib.metadata as m; from mcp import Client; \
         from mcp.server.mcpserver import MCPServer; import kubernetes_validate, helm_python; \
         print(m.version('mcp'))",
    ]));
    assert!(mcp2.starts_with("2."), "{mcp2}");
    let mcp1 = stdout(Command::new(Venv::Mcp1.python().unwrap()).args([
        "-c",
        "import importlib.metadata as m; import fastmcp; \
         from mcp.server.fastmcp import FastMCP; print(m.version('mcp'), m.version('fastmcp'))",
    ]));
    assert!(mcp1.starts_with("1.") && mcp1.contains(" 3."), "{mcp1}");
}

#[test]
fn node_tools_run() {
    let version = stdout(Command::new(peers::node22().unwrap()).arg("--version"));
    assert!(version.starts_with("v22."), "{version}");
    let scenarios = stdout(
        Command::new(peers::node22().unwrap())
            .arg(peers::conformance_cli().unwrap())
            .arg("list"),
    );
    assert!(scenarios.contains("server-initialize"), "{scenarios}");
}

#[test]
fn server_everything_answers_on_loopback_only() {
    let mut server = ServerEverything::start().unwrap();
    assert!(!listens_beyond_loopback(server.port()));

    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "sluice-e2e", "version": "0"}
        }
    });
    let response = http::post_json(&server.url(), &initialize, &[("accept", MCP_ACCEPT)])
        .unwrap()
        .expect_status(200)
        .unwrap();
    assert!(response.header("mcp-session-id").is_some(), "{response:?}");
    assert!(response.body.contains("serverInfo"), "{}", response.body);

    // The Inspector CLI (Node 20) lists its tools.
    let tools = stdout(
        Command::new(peers::node().unwrap())
            .arg(peers::inspector_cli().unwrap())
            .args([
                "--cli",
                &server.url(),
                "--transport",
                "http",
                "--method",
                "tools/list",
            ]),
    );
    assert!(tools.contains("\"echo\""), "{tools}");
    server.process().ensure_running().unwrap();
}

#[test]
fn redis_starts_and_stops() {
    let mut redis = Redis::start().unwrap();
    redis.ping().unwrap();
    assert!(!listens_beyond_loopback(redis.port()));
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    redis.process().kill().unwrap();
    assert!(
        redis.ping().is_err(),
        "redis still answers after being killed"
    );
}

#[test]
fn benchmark_tools_are_installed() {
    peers::nginx().unwrap();
    peers::wrk().unwrap();
}

#[test]
fn prometheus_and_promtool_run() {
    // Debian's prometheus package (2.42 on Debian 12): the server and promtool, for
    // observability.rs.
    for tool in [peers::prometheus().unwrap(), peers::promtool().unwrap()] {
        let mut command = Command::new(&tool);
        command.arg("--version");
        let output = run_ok(&mut command, TIMEOUT).unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(said.contains("version 2."), "{}: {said}", tool.display());
    }
}
