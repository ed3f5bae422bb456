//! The sidecar's live audit stream (`GET /events` on the admin port) read by a real SSE client
//! (httpx-sse, as the MCP SDK 1.x uses it) while a real MCP server behind the sidecar has calls
//! allowed and refused: each reader sees what its filter lets through, with the audit fields
//! and no argument value.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_e2e::http::{self, MCP_ACCEPT};
use sluice_e2e::peers::{python_mcp1, python_script};
use sluice_e2e::proxy_process::ProxyProcess;
use sluice_e2e::{Process, free_port};

const START: Duration = Duration::from_secs(60);

/// Planted in the calls' arguments: it must reach no event.
const SECRET: &str = "4242424242";

#[test]
fn a_real_sse_client_reads_allowed_and_denied_calls_as_filtered() {
    let python = python_mcp1().unwrap();

    let upstream = free_port().unwrap();
    let mut command = Command::new(&python);
    command
        .arg(python_script("policy/server.py").unwrap())
        .args(["--port", &upstream.to_string()]);
    let mut server = Process::spawn("policy MCP server", command).unwrap();
    server.wait_for_port(upstream, START).unwrap();

    // `top` follows `admin.listen` in ProxyProcess::config: indented, it joins the admin section.
    let proxy = ProxyProcess::in_front_of(
        &format!("http://127.0.0.1:{upstream}"),
        "  auditEvents: true\n",
        "    tools:\n      deny: [\"pha_passphrase_*\"]\n",
    )
    .unwrap();
    let (port, admin) = (proxy.port, proxy.admin);

    let reader = |name: &str, query: &str, count: usize| {
        let mut command = Command::new(&python);
        command
            .arg(python_script("audit/read_events.py").unwrap())
            .args(["--url", &format!("http://127.0.0.1:{admin}/events{query}")])
            .args(["--count", &count.to_string()]);
        let mut reader = Process::spawn(name, command).unwrap();
        reader.wait_for_output("open", START).unwrap();
        reader
    };
    let mut all = reader("reader of every event", "", 3);
    let mut denied = reader("reader of denials", "?decision=denied&entry_point=main", 1);

    let call = |id: u64, tool: &str, argument: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"{argument}":{SECRET}}}}}}}"#
        );
        http::post_raw(
            &format!("http://127.0.0.1:{port}/mcp"),
            &body,
            &[("accept", MCP_ACCEPT)],
        )
        .unwrap()
    };
    let answers = [
        call(1, "pha_task_get", "task_id"),
        call(2, "pha_passphrase_get", "passphrase_id"),
        call(3, "pha_task_get", "task_id"),
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 403, 200]);

    let events = |reader: &mut Process| -> Vec<Value> {
        let status = reader.wait_timeout(START).unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "{}: {}",
            reader.name(),
            reader.logs()
        );
        let out = reader.stdout();
        assert!(!out.contains(SECRET), "{out}");
        out.lines()
            .skip_while(|l| *l != "open")
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let seen = events(&mut all);
    let decisions: Vec<(&str, &str, u64)> = seen
        .iter()
        .map(|e| {
            (
                e["tool"].as_str().unwrap(),
                e["decision"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("pha_task_get", "allowed", 200),
            ("pha_passphrase_get", "denied", 403),
            ("pha_task_get", "allowed", 200),
        ]
    );
    for (event, answer) in seen.iter().zip(&answers) {
        assert_eq!(event["entry_point"], "main", "{event}");
        assert_eq!(event["client_address"], "127.0.0.1", "{event}");
        assert_eq!(
            event["request_id"].as_str(),
            answer.header("x-request-id"),
            "{event}"
        );
    }
    let only = events(&mut denied);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0], seen[1]);
    drop(server);
}
