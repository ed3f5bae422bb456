//! Dashboards and alerts in the chart (issue 18), against Prometheus itself (Debian's
//! `prometheus` package): the rules file is what `promtool check rules` accepts, and its unit
//! tests (`promtool test rules`) make every alert fire on series meant to fire it and stay quiet
//! on series just short of it; a real Prometheus scraping a running sidecar (driven through
//! allowed and refused calls, a dead upstream and a rejected config) and the operator
//! (reconciling, and failing to, against the in-memory API server) answers every query of the
//! chart's Grafana dashboard with data, and evaluates every rule without error; the chart
//! renders the dashboard and the rules as the files it carries.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::helm::{self, NAMESPACE, RELEASE, Values};
use sluice_e2e::http::{self, HttpResponse, MCP_ACCEPT};
use sluice_e2e::legacy_sse::LegacyStream;
use sluice_e2e::memory_apiserver::ApiServer;
use sluice_e2e::peers;
use sluice_e2e::process::run;
use sluice_e2e::prometheus::Prometheus;
use sluice_e2e::proxy_process::{Ports, ProxyProcess, QUICK_CHECK};
use sluice_e2e::upstream::TestUpstream;
use sluice_e2e::wait::{Probe, wait_until};
use sluice_e2e::workspace::workspace_path;
use sluice_e2e::{Process, free_port, sluice_operator};

/// The chart's alerts, a plain Prometheus rules file.
const RULES: &str = "charts/sluice/files/prometheus/sluice.rules.yaml";
/// promtool's unit tests of [`RULES`].
const RULE_TESTS: &str = "e2e/prometheus/sluice.rules.test.yaml";
/// The chart's Grafana dashboard.
const DASHBOARD: &str = "charts/sluice/files/grafana/sluice.json";
/// The runbooks the alerts link to.
const RUNBOOKS: &str = "docs/runbooks.md";
/// Where `runbook_url`s point: the repository's copy of [`RUNBOOKS`].
const RUNBOOK_BASE: &str = "https://github.com/sluice-dev/sluice/blob/main/docs/runbooks.md#";

/// promtool and short commands.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Starting a process, a first reconcile, a scrape showing a change.
const PATIENCE: Duration = Duration::from_secs(60);

/// The concrete values the dashboard's template variables take in the live test: the
/// Prometheus jobs and the `namespace` label its scrape config gives each target.
const SIDECAR_JOB: &str = "sluice-proxy";
const SIDECAR_NAMESPACE: &str = "tools";
const OPERATOR_JOB: &str = "sluice-operator";
const ENTRY_POINT: &str = "main";
/// `$__rate_interval` in the live test: many scrapes at one a second.
const RATE_INTERVAL: &str = "1m";

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_path(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(workspace_path(DASHBOARD)).unwrap()).unwrap()
}

/// Every alerting rule of a rules file (or a PrometheusRule's spec).
fn alerts(rules: &Value) -> Vec<Value> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap().clone())
        .filter(|rule| rule.get("alert").is_some())
        .collect()
}

fn promtool(args: &[&Path]) -> std::process::Output {
    let mut command = Command::new(peers::promtool().unwrap());
    command.args(args);
    run(&mut command, TOOL_TIMEOUT).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// === The rules file and its unit tests ===

#[test]
fn promtool_accepts_the_rules_and_every_alert_says_what_to_do() {
    let rules = yaml_file(RULES);
    let alerts = alerts(&rules);
    let output = promtool(&[
        Path::new("check"),
        Path::new("rules"),
        &workspace_path(RULES),
    ]);
    let stdout = text(&output.stdout);
    println!(
        "promtool check rules {RULES}:\n{stdout}{}",
        text(&output.stderr)
    );
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{stdout}"
    );

    let runbooks = std::fs::read_to_string(workspace_path(RUNBOOKS)).unwrap();
    let headings: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(|heading| heading.trim().to_lowercase())
        .collect();
    let names: BTreeSet<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), alerts.len(), "alert names repeat");
    for name in [
        "SluiceUpstreamErrors",
        "SluiceAuthFailuresHigh",
        "SluiceConfigRejected",
        "SluiceOperatorReconcileErrors",
        "SluiceReadinessFlapping",
    ] {
        assert!(names.contains(name), "no alert {name}: {names:?}");
    }
    for alert in &alerts {
        let name = alert["alert"].as_str().unwrap();
        assert!(
            matches!(
                alert["labels"]["severity"].as_str(),
                Some("warning" | "critical")
            ),
            "{name}: {alert}"
        );
        for annotation in ["summary", "description", "runbook_url"] {
            assert!(
                alert["annotations"][annotation]
                    .as_str()
                    .is_some_and(|text| !text.trim().is_empty()),
                "{name} has no {annotation}"
            );
        }
        // The runbook is a section of docs/runbooks.md named after the alert.
        let url = alert["annotations"]["runbook_url"].as_str().unwrap();
        assert_eq!(url, format!("{RUNBOOK_BASE}{}", name.to_lowercase()));
        assert!(
            headings.contains(&name.to_lowercase()),
            "{RUNBOOKS} has no section ## {name}"
        );
    }
}

/// The labels of a promtool input series, `name{a="x",b="y"}`.
fn series_labels(series: &str) -> Vec<(String, String)> {
    let inner = series
        .split_once('{')
        .and_then(|(_, rest)| rest.strip_suffix('}'))
        .unwrap_or_default();
    inner
        .split("\",")
        .filter_map(|pair| {
            let (key, value) = pair.split_once("=\"")?;
            Some((
                key.trim().to_owned(),
                value.trim_end_matches('"').to_owned(),
            ))
        })
        .collect()
}

/// The unit tests with `rules` in place of the chart's rules file, in a directory of their
/// own.
fn promtool_test_with(rules: &Value) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("rules.json");
    std::fs::write(&rules_path, rules.to_string()).unwrap();
    let tests = std::fs::read_to_string(workspace_path(RULE_TESTS)).unwrap();
    let original = format!("../../{RULES}");
    assert!(
        tests.contains(&original),
        "{RULE_TESTS} does not load {RULES}"
    );
    let tests = tests.replace(&original, &rules_path.display().to_string());
    let tests_path = dir.path().join("tests.yaml");
    std::fs::write(&tests_path, tests).unwrap();
    promtool(&[Path::new("test"), Path::new("rules"), &tests_path])
}

#[test]
fn promtool_unit_tests_make_every_alert_fire_and_stay_quiet() {
    let output = promtool(&[
        Path::new("test"),
        Path::new("rules"),
        &workspace_path(RULE_TESTS),
    ]);
    let stdout = text(&output.stdout);
    println!(
        "promtool test rules {RULE_TESTS}:\n{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        output.status.success() && stdout.contains("SUCCESS"),
        "{stdout}"
    );

    // Each alert is tested both ways: at some time firing for some of the input series and
    // not for others (exp_alerts lists exactly who fires, so a series that should stay quiet
    // and fires fails the test), and at another time, before its `for`, for none.
    let tests = yaml_file(RULE_TESTS);
    let rules = yaml_file(RULES);
    for alert in alerts(&rules) {
        let name = alert["alert"].as_str().unwrap();
        let cases: Vec<(&Value, &Value)> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|group| {
                group["alert_rule_test"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |case| (group, case))
            })
            .filter(|(_, case)| case["alertname"] == name)
            .collect();
        let firing: Vec<&(&Value, &Value)> = cases
            .iter()
            .filter(|(_, case)| !case["exp_alerts"].as_array().unwrap().is_empty())
            .collect();
        assert!(!firing.is_empty(), "{name}: no test where it fires");
        assert!(
            cases
                .iter()
                .any(|(_, case)| case["exp_alerts"].as_array().unwrap().is_empty()),
            "{name}: no test where it stays quiet"
        );
        for (group, case) in firing {
            // The label sets that fire (the alert's own `severity` aside).
            let fired: Vec<Vec<(String, String)>> = case["exp_alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let labels = a["exp_labels"].as_object().unwrap();
                    labels
                        .iter()
                        .filter(|(key, _)| *key != "severity")
                        .map(|(key, value)| (key.clone(), value.as_str().unwrap().to_owned()))
                        .collect()
                })
                .collect();
            let quiet = group["input_series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| series_labels(s["series"].as_str().unwrap()))
                .filter(|labels| {
                    !fired
                        .iter()
                        .any(|alert| alert.iter().all(|pair| labels.contains(pair)))
                })
                .count();
            assert!(
                quiet > 0,
                "{name}: every input series fires; none shows where it must not"
            );
        }

        // And the tests see the rule: one that never fires fails them.
        let mut silenced = rules.clone();
        for group in silenced["groups"].as_array_mut().unwrap() {
            for rule in group["rules"].as_array_mut().unwrap() {
                if rule["alert"] == name {
                    rule["expr"] = json!("vector(1) == 0");
                }
            }
        }
        let output = promtool_test_with(&silenced);
        assert!(
            !output.status.success(),
            "{name} never firing still passes the unit tests"
        );
        // promtool names the alert whose expectation failed (on stderr).
        let said = text(&output.stdout) + &text(&output.stderr);
        assert!(said.contains(name), "{said}");
    }
    // The rewritten copy itself passes when nothing is silenced.
    assert!(promtool_test_with(&rules).status.success());
}

// === The dashboard ===

/// One query of the dashboard: the panel it belongs to and its PromQL.
struct Query {
    panel: String,
    expr: String,
}

fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(Query {
                panel: panel["title"].as_str().unwrap().to_owned(),
                expr: target["expr"].as_str().unwrap().to_owned(),
            });
        }
    }
    queries
}

/// The dashboard's variables as the live test sets them.
fn substitute(expr: &str) -> String {
    let substituted = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$namespace", SIDECAR_NAMESPACE)
        .replace("$entry_point", ENTRY_POINT)
        .replace("$operator", OPERATOR_JOB)
        .replace("$job", SIDECAR_JOB);
    assert!(
        !substituted.contains('$'),
        "a variable is left in {substituted}"
    );
    substituted
}

#[test]
fn the_dashboard_is_one_grafana_can_import() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "sluice-overview");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .unwrap();
    assert_eq!(datasource["query"], "prometheus");
    let source = format!("${{{}}}", datasource["name"].as_str().unwrap());
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "{panel}");
        let grid = &panel["gridPos"];
        assert!(
            grid["x"].as_i64().unwrap() + grid["w"].as_i64().unwrap() <= 24,
            "{panel}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"],
            source.as_str(),
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            assert_eq!(target["datasource"]["uid"], source.as_str());
            assert!(target["expr"].as_str().is_some_and(|e| !e.is_empty()));
        }
    }
    // Every query variable names a metric and a label (Grafana's label_values).
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        assert!(label_values(variable["query"]["query"].as_str().unwrap()).is_some());
    }
    // What the issue asks the dashboard to show, by metric.
    let exprs: String = dashboard_queries(&dashboard)
        .iter()
        .map(|q| q.expr.clone())
        .collect();
    for metric in [
        "sluice_requests_total",
        "sluice_request_duration_seconds_bucket",
        "sluice_auth_failures_total",
        "sluice_policy_denials_total",
        "sluice_rate_limited_total",
        "sluice_upstream_errors_total",
        "sluice_open_streams",
        "sluice_legacy_sessions",
        "sluice_config_reloads_total",
        "sluice_config_rejected",
        "sluice_operator_reconcile_errors_total",
        "sluice_operator_reconcile_duration_seconds_bucket",
    ] {
        assert!(exprs.contains(metric), "the dashboard never shows {metric}");
    }
}

/// `label_values(METRIC{SELECTOR}, LABEL)` as (the series selector, the label).
fn label_values(query: &str) -> Option<(String, String)> {
    let inner = query.strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_owned(), label.trim().to_owned()))
}

// === The chart ===

#[test]
fn the_chart_renders_the_dashboard_and_the_rules_it_carries() {
    let rendered = helm::render(
        &helm::ci_values("observability-values.yaml"),
        RELEASE,
        NAMESPACE,
    )
    .unwrap();

    let config_map = &rendered.one("ConfigMap").unwrap().object;
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(config_map["metadata"]["namespace"], "monitoring");
    assert_eq!(
        config_map["metadata"]["annotations"]["grafana_folder"],
        "Sluice"
    );
    let carried: Value =
        serde_json::from_str(config_map["data"]["sluice.json"].as_str().unwrap()).unwrap();
    assert_eq!(carried, dashboard());

    // A custom resource: no schema validates it offline, so check its shape, that its rules
    // are the rules file's, and that promtool accepts exactly what it carries.
    let rule = &rendered.one("PrometheusRule").unwrap().object;
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert!(
        rule["metadata"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    let keys: BTreeSet<&str> = rule
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["apiVersion", "kind", "metadata", "spec"])
    );
    assert_eq!(rule["spec"], yaml_file(RULES));
    for group in rule["spec"]["groups"].as_array().unwrap() {
        assert!(group["name"].as_str().is_some());
        for rule in group["rules"].as_array().unwrap() {
            assert!(
                rule["alert"].is_string() && rule["expr"].is_string(),
                "{rule}"
            );
            if let Some(wait) = rule.get("for") {
                let wait = wait.as_str().unwrap();
                assert!(
                    wait.ends_with(['s', 'm', 'h'])
                        && wait[..wait.len() - 1].parse::<u32>().is_ok(),
                    "{wait}"
                );
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, rule["spec"].to_string()).unwrap();
    let output = promtool(&[Path::new("check"), Path::new("rules"), &spec]);
    assert!(output.status.success(), "{}", text(&output.stdout));

    // Off by default; the Grafana sidecar's label is the user's to choose.
    let defaults = helm::render(&Values::defaults(), RELEASE, NAMESPACE).unwrap();
    assert_eq!(defaults.of_kind("PrometheusRule").count(), 0);
    assert_eq!(defaults.of_kind("ConfigMap").count(), 0);
    let relabelled = helm::render(
        &Values::json(json!({"metrics": {"dashboard": {
            "enabled": true, "labels": {"grafana_dashboard": "sluice"}}}})),
        RELEASE,
        NAMESPACE,
    )
    .unwrap();
    let config_map = &relabelled.one("ConfigMap").unwrap().object;
    assert_eq!(
        config_map["metadata"]["labels"]["grafana_dashboard"],
        "sluice"
    );
    assert_eq!(config_map["metadata"]["namespace"], NAMESPACE);
}

// === A real Prometheus scraping a sidecar and the operator ===

/// A `tools/call` of `tool` (or another MCP `method`) through the sidecar on `port`.
fn mcp(port: u16, id: u64, method: &str, tool: Option<&str>, key: Option<&str>) -> HttpResponse {
    let mut body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}});
    if let Some(tool) = tool {
        body["params"] = json!({"name": tool, "arguments": {}});
    }
    let authorization = key.map(|key| format!("Bearer {key}"));
    let mut headers = vec![("accept", MCP_ACCEPT)];
    if let Some(value) = &authorization {
        headers.push(("authorization", value.as_str()));
    }
    http::post_json(&format!("http://127.0.0.1:{port}/mcp"), &body, &headers).unwrap()
}

/// The keys of two callers, `observer` and `other`.
const API_KEY: &str = "observability-key-0123456789";
const OTHER_KEY: &str = "observability-key-abcdefghij";

/// The sidecar's config: API keys, a tool deny list, a tight rate limit on tool calls, a quick
/// upstream check.
fn sidecar_config(upstream: &str, ports: Ports, keys: &Path) -> String {
    let entry = format!(
        "    auth:\n      mode: apiKey\n      keysDir: {}\n    tools:\n      deny: [\"secret_*\"]\n    \
         rateLimits:\n      - name: per-caller\n        by: [identity]\n        requests: 2\n        \
         period: 1h\n        methods: [tools/call]\n",
        keys.display()
    );
    // ProxyProcess::config writes `auth: mode: none`; this entry point authenticates.
    ProxyProcess::config_checked(upstream, QUICK_CHECK, ports, "", "")
        .replace("    auth:\n      mode: none\n", &entry)
}

/// The McpServer whose reconciles keep failing: its OAuth state claim asks for a storage class
/// other than the one of the claim already there, and a claim's spec is immutable (the API
/// server refuses the apply with 422, as a real one does).
fn stuck_server() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "McpServer",
        "metadata": {"name": "stuck", "namespace": SIDECAR_NAMESPACE},
        "spec": {
            "phabricator": {"url": "https://phabricator.example.com"},
            "auth": {"mode": "oauth", "oauth": {
                "clientId": "PHID-OASC-abcdefghijklmnopqrst",
                "clientSecretRef": {"name": "stuck-oauth", "key": "client-secret"},
                "publicUrl": "https://stuck.example.com/mcp",
                "state": {"storage": "persistent", "storageClassName": "fast"},
            }},
            "replicas": 1,
            "policy": {"authentication": {"mode": "oauth"}},
        },
    })
}

fn existing_claim() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "stuck-oauth-state", "namespace": SIDECAR_NAMESPACE},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "slow",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    })
}

/// Starts the operator against a fresh in-memory API server holding the CRDs, a server that
/// converges (the header-token example) and one that cannot (see [`stuck_server`]).
fn operator() -> (ApiServer, Process, u16) {
    let api = ApiServer::start().unwrap();
    for file in [
        "crds/mcpservers.sluice.dev.yaml",
        "crds/mcproutes.sluice.dev.yaml",
    ] {
        api.create(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &yaml_file(file),
        )
        .unwrap();
    }
    let mut example = yaml_file("examples/phabricator-header-token.yaml");
    example["metadata"]["namespace"] = json!(SIDECAR_NAMESPACE);
    let servers = format!("/apis/sluice.dev/v1alpha1/namespaces/{SIDECAR_NAMESPACE}/mcpservers");
    api.create(&servers, &example).unwrap();
    api.create(
        &format!("/api/v1/namespaces/{SIDECAR_NAMESPACE}/persistentvolumeclaims"),
        &existing_claim(),
    )
    .unwrap();
    api.create(&servers, &stuck_server()).unwrap();

    let admin = free_port().unwrap();
    let mut command = Command::new(sluice_operator().unwrap());
    command
        .args([
            "run",
            "--leader-election=false",
            "--log-format=text",
            "--resync=2s",
            "--admin-address",
            &format!("[::]:{admin}"),
        ])
        .env("KUBECONFIG", &api.kubeconfig)
        .env_remove("RUST_LOG");
    let mut process = Process::spawn("sluice-operator", command).unwrap();
    process
        .wait_for_http_ok(&format!("http://127.0.0.1:{admin}/readyz"), PATIENCE)
        .unwrap();
    // The chart's `[::]` takes both families: probes and scrapes on IPv6-only clusters too.
    http::get(&format!("http://[::1]:{admin}/healthz"), &[])
        .unwrap()
        .expect_status(200)
        .unwrap();
    (api, process, admin)
}

/// A log line without its terminal colours.
fn without_colours(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The requests a sidecar counted, by its `/metrics` on `admin`.
fn requests_served(admin: u16) -> f64 {
    admin_metrics(admin)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("sluice_requests_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn admin_metrics(port: u16) -> anyhow::Result<String> {
    Ok(http::get(&format!("http://127.0.0.1:{port}/metrics"), &[])?.body)
}

#[test]
fn prometheus_answers_every_dashboard_query_from_a_sidecar_and_the_operator() {
    let started = std::time::Instant::now();
    let step = |what: &str| println!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    // The operator, against the in-memory API server.
    let (api, mut operator, operator_admin) = operator();

    // The sidecar, in front of an upstream the test can kill.
    let mut upstream = TestUpstream::start().unwrap();
    let upstream_port = upstream.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("observer"), API_KEY).unwrap();
    std::fs::write(keys.join("other"), OTHER_KEY).unwrap();
    let ports = Ports::free().unwrap();
    let good = sidecar_config(&upstream.url(), ports, &keys);
    let config = dir.path().join("sluice.yaml");
    std::fs::write(&config, &good).unwrap();
    let mut proxy = ProxyProcess::start(&config, ports, &["--reload-interval", "100ms"]).unwrap();

    // Prometheus scraping both, from before anything happens: its scrapes start a few seconds
    // after it is ready, so wait for the first one of each target.
    let prometheus = Prometheus::start(
        &[
            (SIDECAR_JOB, SIDECAR_NAMESPACE, ports.admin),
            (OPERATOR_JOB, "sluice-system", operator_admin),
        ],
        &workspace_path(RULES),
    )
    .unwrap();
    prometheus
        .until_seen(&format!("up{{job=\"{SIDECAR_JOB}\"}} == 1"))
        .unwrap();
    prometheus
        .until_seen(&format!("up{{job=\"{OPERATOR_JOB}\"}} == 1"))
        .unwrap();
    step("Prometheus scrapes the sidecar and the operator");

    // The operator reconciled one server and keeps failing the other.
    prometheus
        .until_seen("sluice_operator_reconciles_total{kind=\"McpServer\",result=\"ok\"} >= 1")
        .unwrap();
    prometheus
        .until_seen(
            "sluice_operator_reconcile_errors_total{kind=\"McpServer\",reason=\"api\"} >= 1",
        )
        .unwrap();
    let refusal = operator
        .stdout()
        .lines()
        .chain(operator.stderr().lines())
        .find(|line| line.contains("stuck-oauth-state") && line.contains("immutable"))
        .map(without_colours);
    println!("the operator on the stuck server: {refusal:?}");
    assert!(refusal.is_some(), "the operator logged no refused apply");
    step("the operator reconciled one server and failed the other");

    // Calls allowed and refused: by authentication, the tool policy and the rate limit (two
    // tool calls an hour per caller). Two rounds, by two callers, with a scrape between: a
    // series Prometheus first sees already counted shows no increase, the second round does.
    let port = proxy.port;
    let mut id = 0;
    for (round, key) in [API_KEY, OTHER_KEY].into_iter().enumerate() {
        let key = Some(key);
        let calls = [
            ("initialize", None, key, 200),
            ("tools/list", None, key, 200),
            ("tools/call", Some("search"), key, 200),
            ("tools/call", Some("secret_keys"), key, 403),
            ("tools/call", Some("search"), None, 401),
            (
                "tools/call",
                Some("search"),
                Some("wrong-key-0123456789"),
                401,
            ),
            ("tools/call", Some("search"), key, 200),
            ("tools/call", Some("search"), key, 429),
        ];
        for (method, tool, key, status) in calls {
            id += 1;
            let response = mcp(port, id, method, tool, key);
            assert_eq!(response.status, status, "{method} {tool:?}: {response:?}");
        }
        if round == 0 {
            prometheus
                .until_seen(&format!(
                    "sum(sluice_requests_total) == {}",
                    requests_served(ports.admin)
                ))
                .unwrap();
        }
    }
    let key = Some(API_KEY);

    // A Streamable HTTP event stream and a legacy HTTP+SSE session, open while scraped.
    let authorization = format!("Bearer {API_KEY}");
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = LegacyStream::open(address, "/mcp", &[("authorization", &authorization)])
        .unwrap()
        .stream()
        .unwrap();
    let legacy = LegacyStream::open(address, "/sse", &[("authorization", &authorization)])
        .unwrap()
        .stream()
        .unwrap();
    prometheus
        .until_seen("sluice_open_streams{entry_point=\"main\"} >= 1")
        .unwrap();
    prometheus
        .until_seen("sluice_legacy_sessions{entry_point=\"main\"} >= 1")
        .unwrap();
    stream.close();
    legacy.close();
    step("calls allowed and refused, a stream and a legacy session");

    // A config file rejected while scraped, then a good one again.
    std::fs::write(&config, "entryPoints: [{name: main, listen: ]]]\n").unwrap();
    prometheus
        .until_seen("sluice_config_rejected == 1")
        .unwrap();
    std::fs::write(&config, good.replace("requests: 2\n", "requests: 3\n")).unwrap();
    prometheus
        .until_seen("sluice_config_reloads_total{result=\"applied\"} >= 1")
        .unwrap();
    step("a config rejected, then a good one applied");

    // The upstream dies (requests fail upstream, the check stops answering) and comes back.
    upstream.kill();
    let failed = mcp(port, id + 1, "tools/list", None, key);
    assert!(failed.status >= 500, "{failed:?}");
    prometheus
        .until_seen("sluice_upstream_answering == 0")
        .unwrap();
    let _upstream = TestUpstream::start_on(upstream_port).unwrap();
    prometheus
        .until_seen("sluice_upstream_answering == 1")
        .unwrap();
    assert_eq!(mcp(port, id + 2, "tools/list", None, key).status, 200);
    // Prometheus has every request once it counts as many as the sidecar does.
    prometheus
        .until_seen(&format!(
            "sum(sluice_requests_total) == {}",
            requests_served(ports.admin)
        ))
        .unwrap();
    step("the upstream died and came back");

    // Every query of the dashboard, its variables set, answers with data. A series that
    // appeared last needs two scrapes before rate() sees it: retry until all answer.
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    let answers = wait_until("every dashboard query to return data", PATIENCE, || {
        let mut answers = Vec::new();
        for query in &queries {
            let expr = substitute(&query.expr);
            let result = prometheus.query(&expr)?;
            if result.is_empty() {
                return Ok(Probe::NotYet(format!(
                    "{}: {expr} returned nothing",
                    query.panel
                )));
            }
            answers.push((query.panel.clone(), expr, result));
        }
        Ok(Probe::Ready(answers))
    })
    .unwrap();
    step("every dashboard query answered");
    println!("{} dashboard queries, each with data:", answers.len());
    for (panel, expr, result) in &answers {
        let series: Vec<String> = result
            .iter()
            .map(|r| format!("{}={}", r["metric"], r["value"][1]))
            .collect();
        println!("  [{panel}] {expr}\n    -> {}", series.join(", "));
    }

    // The variables' label_values() queries find the values the test substituted.
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some((selector, label)) = variable["query"]["query"].as_str().and_then(label_values)
        else {
            continue;
        };
        let selector = substitute(
            &selector
                .replace("=~\"$namespace\"", "=~\".*\"")
                .replace("=~\"$job\"", "=~\".*\""),
        );
        let values = prometheus
            .api(&format!("label/{label}/values"), &[("match[]", &selector)])
            .unwrap();
        let expected = match label.as_str() {
            "namespace" => SIDECAR_NAMESPACE,
            "job" if selector.starts_with("sluice_operator") => OPERATOR_JOB,
            "job" => SIDECAR_JOB,
            "entry_point" => ENTRY_POINT,
            other => panic!("unexpected variable label {other}"),
        };
        assert!(
            values.as_array().unwrap().iter().any(|v| v == expected),
            "variable {}: {selector} has no {label} {expected}: {values}",
            variable["name"]
        );
    }

    // Prometheus evaluates every alert of the chart's rules on these series without error,
    // and none fires (none has been true for its `for`).
    let groups = prometheus.api("rules", &[]).unwrap();
    let rules: Vec<&Value> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(rules.len(), alerts(&yaml_file(RULES)).len());
    wait_until("every rule evaluated", PATIENCE, || {
        Ok(
            match prometheus.api("rules", &[])?["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .find(|r| r["health"] != "ok")
            {
                None => Probe::Ready(()),
                Some(rule) => Probe::NotYet(format!(
                    "{} health {}: {}",
                    rule["name"], rule["health"], rule["lastError"]
                )),
            },
        )
    })
    .unwrap();
    step("every rule evaluated");
    let firing = prometheus.query("ALERTS{alertstate=\"firing\"}").unwrap();
    assert!(firing.is_empty(), "{firing:?}");

    let (mut prometheus, mut api) = (prometheus, api);
    for process in [
        &mut proxy.process,
        &mut operator,
        &mut prometheus.process,
        &mut api.process,
    ] {
        process.ensure_running().unwrap();
    }
}
