//! The MCP Inspector CLI (`@modelcontextprotocol/inspector`, under the machine's Node 20) against
//! server-everything, directly and through sluice-proxy with every policy on but permissive
//! ([`Sidecar::permissive`]): `tools/list` and `tools/call` print the same through the sidecar.
//!
//! The Inspector 0.x CLI has no option to send a header, so the sidecar's credential is added
//! by `e2e/js/inject-header.cjs`, preloaded through `NODE_OPTIONS` (the CLI runs its client in a
//! child process, which inherits it).
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use sluice_e2e::peers;
use sluice_e2e::process::run;
use sluice_e2e::{ServerEverything, Sidecar};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the Inspector CLI against `url` (whose origin is `origin`) with `method` and `args`,
/// sending `header` when given.
fn inspector(url: &str, origin: &str, header: Option<&str>, method: &[&str]) -> Output {
    let mut command = Command::new(peers::node().unwrap());
    command
        .arg(peers::inspector_cli().unwrap())
        .args(["--cli", url, "--transport", "http", "--method"])
        .args(method);
    if let Some(header) = header {
        let preload = peers::inject_header_preload().unwrap();
        command
            .env("NODE_OPTIONS", format!("--require {}", preload.display()))
            .env("SLUICE_E2E_INJECT_HEADER", header)
            .env("SLUICE_E2E_INJECT_HEADER_ORIGIN", origin);
    }
    run(&mut command, TIMEOUT).unwrap()
}

/// The JSON the CLI printed, failing the test with its output when it failed.
fn printed(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Inspector CLI failed ({}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the Inspector printed no JSON ({e}): {stdout}"))
}

#[test]
fn the_inspector_cli_lists_and_calls_tools_through_the_sidecar() {
    let mut server = ServerEverything::start().unwrap();
    let mut sidecar = Sidecar::permissive(server.port()).unwrap();
    let direct_origin = format!("http://127.0.0.1:{}", server.port());
    let header = Some(Sidecar::AUTHORIZATION);
    let methods: [&[&str]; 2] = [
        &["tools/list"],
        &[
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=hi",
        ],
    ];
    for method in methods {
        let direct = printed(&inspector(&server.url(), &direct_origin, header, method));
        let proxied = printed(&inspector(
            &sidecar.url(),
            &sidecar.origin(),
            header,
            method,
        ));
        assert_eq!(direct, proxied, "{method:?}");
    }
    let tools = printed(&inspector(
        &server.url(),
        &direct_origin,
        header,
        &["tools/list"],
    ));
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");
    let echoed = printed(&inspector(
        &sidecar.url(),
        &sidecar.origin(),
        header,
        methods[1],
    ));
    assert_eq!(echoed["content"][0]["text"], "Echo: hi", "{echoed}");

    // Without the credential the sidecar turns the Inspector away: the header above is what
    // let it through.
    let refused = inspector(&sidecar.url(), &sidecar.origin(), None, &["tools/list"]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("authentication required"),
        "{refused:?}"
    );
    sidecar.process().ensure_running().unwrap();
    server.process().ensure_running().unwrap();
}
