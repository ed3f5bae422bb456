//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, every server
//! scenario) against the fixture server `e2e/py/conformance/server.py` (Python MCP SDK 2.x),
//! once directly and once through sluice-proxy with every policy on but permissive
//! ([`Sidecar::permissive`]). The two runs must agree scenario by scenario and check by check.
//!
//! A scenario can "pass" against a server that answered "Unknown tool", so the fixture's own
//! record of what it served (one JSON line per handled request) must show that each scenario's
//! tool, resource or prompt was really served, in both runs. Scenarios that fail directly are
//! listed with their reasons in `e2e/py/conformance/expected-failures.yaml`.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::conformance::{self, Check, SuiteResults};
use sluice_e2e::peers::{self, python_script};
use sluice_e2e::{Process, Sidecar, e2e_dir, free_port};

const START: Duration = Duration::from_secs(60);

/// What the fixture must have served for each scenario: (method, name, extra fields). Every
/// scenario the suite runs must be here, so a new scenario in a suite upgrade gets looked at.
fn served_by_scenario() -> BTreeMap<&'static str, Vec<Value>> {
    let call = |tool: &str| json!({"served": "tools/call", "name": tool});
    let asked = |tool: &str| json!({"served": "tools/call", "name": tool, "answered": true});
    let read = |uri: &str| json!({"served": "resources/read", "name": uri});
    let prompt = |name: &str| json!({"served": "prompts/get", "name": name});
    // Handled by the SDK itself, nothing of the fixture's to check.
    let none = Vec::new;
    BTreeMap::from([
        ("server-initialize", none()),
        ("ping", none()),
        ("dns-rebinding-protection", none()),
        (
            "logging-set-level",
            vec![json!({"served": "logging/setLevel", "name": "info"})],
        ),
        (
            "completion-complete",
            vec![json!({"served": "completion/complete", "name": "test_prompt_with_arguments"})],
        ),
        ("tools-list", vec![json!({"served": "tools/list"})]),
        ("json-schema-2020-12", vec![json!({"served": "tools/list"})]),
        (
            "server-sse-multiple-streams",
            vec![json!({"served": "tools/list"})],
        ),
        ("tools-call-simple-text", vec![call("test_simple_text")]),
        ("tools-call-image", vec![call("test_image_content")]),
        ("tools-call-audio", vec![call("test_audio_content")]),
        (
            "tools-call-embedded-resource",
            vec![call("test_embedded_resource")],
        ),
        (
            "tools-call-mixed-content",
            vec![call("test_multiple_content_types")],
        ),
        (
            "tools-call-with-logging",
            vec![call("test_tool_with_logging")],
        ),
        ("tools-call-error", vec![call("test_error_handling")]),
        (
            "tools-call-with-progress",
            vec![call("test_tool_with_progress")],
        ),
        ("server-sse-polling", vec![call("test_reconnection")]),
        ("tools-call-sampling", vec![asked("test_sampling")]),
        ("tools-call-elicitation", vec![asked("test_elicitation")]),
        (
            "elicitation-sep1034-defaults",
            vec![asked("test_elicitation_sep1034_defaults")],
        ),
        (
            "elicitation-sep1330-enums",
            vec![asked("test_elicitation_sep1330_enums")],
        ),
        ("resources-list", vec![json!({"served": "resources/list"})]),
        ("resources-read-text", vec![read("test://static-text")]),
        ("resources-read-binary", vec![read("test://static-binary")]),
        (
            "resources-templates-read",
            vec![read("test://template/123/data")],
        ),
        (
            "resources-subscribe",
            vec![json!({"served": "resources/subscribe", "name": "test://watched-resource"})],
        ),
        (
            "resources-unsubscribe",
            vec![json!({"served": "resources/unsubscribe", "name": "test://watched-resource"})],
        ),
        ("prompts-list", vec![json!({"served": "prompts/list"})]),
        ("prompts-get-simple", vec![prompt("test_simple_prompt")]),
        (
            "prompts-get-with-args",
            vec![prompt("test_prompt_with_arguments")],
        ),
        (
            "prompts-get-embedded-resource",
            vec![prompt("test_prompt_with_embedded_resource")],
        ),
        (
            "prompts-get-with-image",
            vec![prompt("test_prompt_with_image")],
        ),
    ])
}

/// The fixture server on a free port.
fn fixture() -> (Process, u16) {
    let port = free_port().unwrap();
    let mut command = Command::new(peers::python_mcp2().unwrap());
    command
        .arg(python_script("conformance/server.py").unwrap())
        .args(["--port", &port.to_string()]);
    let mut server = Process::spawn("conformance fixture", command).unwrap();
    server.wait_for_port(port, START).unwrap();
    (server, port)
}

/// The requests the fixture served, from its stdout.
fn served(fixture: &Process) -> Vec<Value> {
    fixture
        .stdout()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line.get("served").is_some())
        .collect()
}

/// The scenarios the suite's baseline expects to fail directly.
fn expected_failures() -> BTreeSet<String> {
    let path = e2e_dir().join("py/conformance/expected-failures.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let baseline: BTreeMap<String, Vec<String>> = serde_saphyr::from_str(&text).unwrap();
    baseline
        .get("server")
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The verdicts of a scenario (its INFO entries are a log of the wire, which may differ).
fn verdicts(checks: &[Check]) -> Vec<(&str, &str)> {
    checks
        .iter()
        .filter(|check| check.is_verdict())
        .map(|check| (check.id.as_str(), check.status.as_str()))
        .collect()
}

fn count(checks: &[Check], status: &str) -> usize {
    checks.iter().filter(|check| check.status == status).count()
}

/// The comparison table printed with the test's output (`--nocapture` shows it).
fn table(direct: &SuiteResults, proxied: &SuiteResults) -> String {
    let mut out = String::from(
        "| scenario | direct | proxied | checks (success/failure/warning) |\n|---|---|---|---|\n",
    );
    for (scenario, checks) in direct {
        let verdict = |checks: Option<&Vec<Check>>| match checks {
            Some(checks) if conformance::passed(checks) => "pass",
            Some(_) => "FAIL",
            None => "missing",
        };
        out += &format!(
            "| {scenario} | {} | {} | {}/{}/{} |\n",
            verdict(Some(checks)),
            verdict(proxied.get(scenario)),
            count(checks, "SUCCESS"),
            count(checks, "FAILURE"),
            count(checks, "WARNING"),
        );
    }
    out
}

#[test]
fn the_conformance_suite_sees_the_same_server_through_the_sidecar() {
    let out = tempfile::tempdir().unwrap();
    let (direct_fixture, direct_port) = fixture();
    let (proxied_fixture, proxied_port) = fixture();
    let sidecar = Sidecar::permissive(proxied_port).unwrap();

    // Both runs send the sidecar's credential, so they differ only in the sidecar.
    let (direct, proxied) = std::thread::scope(|scope| {
        let direct = scope.spawn(|| {
            let url = format!("http://127.0.0.1:{direct_port}/mcp");
            conformance::run_server_suite(&url, Sidecar::AUTHORIZATION, &out.path().join("direct"))
        });
        let proxied = scope.spawn(|| {
            conformance::run_server_suite(
                &sidecar.url(),
                Sidecar::AUTHORIZATION,
                &out.path().join("proxied"),
            )
        });
        (
            direct.join().unwrap().unwrap(),
            proxied.join().unwrap().unwrap(),
        )
    });
    println!("{}", table(&direct, &proxied));

    // Scenario by scenario and check by check.
    let scenarios: Vec<_> = direct.keys().collect();
    assert_eq!(scenarios, proxied.keys().collect::<Vec<_>>());
    for (scenario, checks) in &direct {
        assert_eq!(
            verdicts(checks),
            verdicts(&proxied[scenario]),
            "{scenario}: direct and proxied checks differ\ndirect: {checks:#?}\nproxied: {:#?}",
            proxied[scenario]
        );
    }

    // Failing directly is allowed only as a listed expected failure, and a listed one must fail.
    let failing: BTreeSet<String> = direct
        .iter()
        .filter(|(_, checks)| !conformance::passed(checks))
        .map(|(scenario, _)| scenario.clone())
        .collect();
    assert_eq!(
        failing,
        expected_failures(),
        "scenarios failing directly differ from e2e/py/conformance/expected-failures.yaml"
    );

    // Every scenario is known, and the fixture really served what each one asks for.
    let expected_served = served_by_scenario();
    let known: Vec<_> = expected_served.keys().copied().collect();
    assert_eq!(
        scenarios.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        known,
        "the suite's scenarios changed: update served_by_scenario()"
    );
    for (what, fixture) in [("direct", &direct_fixture), ("proxied", &proxied_fixture)] {
        let served = served(fixture);
        for (scenario, lines) in &expected_served {
            if failing.contains(*scenario) {
                continue;
            }
            for line in lines {
                assert!(
                    served.contains(line),
                    "{what}: scenario {scenario} passed but the fixture never served {line}; \
                     it served: {served:#?}"
                );
            }
        }
    }

    // The policies were on: the audit trail names the calls the suite made through the sidecar,
    // as the caller the injected API key authenticated.
    let tools = |events: &[Value]| -> BTreeSet<String> {
        events
            .iter()
            .filter(|event| event["decision"] == "allowed" && event["identity"] == "e2e")
            .filter_map(|event| event["tool"].as_str().map(str::to_owned))
            .collect()
    };
    let audited = tools(&sidecar.audit_events_until(|events| {
        let seen = tools(events);
        seen.contains("test_simple_text") && seen.contains("test_sampling")
    }));
    assert!(audited.contains("test_simple_text"), "audit: {audited:?}");
    assert!(audited.contains("test_sampling"), "audit: {audited:?}");
}
