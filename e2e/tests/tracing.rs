//! OpenTelemetry traces through real peers: the MCP SDK client sends a `traceparent`, the
//! sidecar continues it and passes its own context on, and a FastMCP server instrumented with
//! OpenTelemetry's ASGI middleware continues the sidecar's; a real OTLP/HTTP receiver decodes
//! every export with the official `opentelemetry-proto` package and shows one trace across the
//! three. A collector that refuses or never answers leaves every request answered, its
//! failures counted.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_e2e::http::{self, MCP_ACCEPT};
use sluice_e2e::peers::{python_mcp1, python_script};
use sluice_e2e::proxy_process::ProxyProcess;
use sluice_e2e::wait::{Probe, wait_until};
use sluice_e2e::{Process, free_port};

const START: Duration = Duration::from_secs(60);
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A receiver in `mode` (ok, refuse, hang) on a free port: its traces URL and its process.
fn receiver(mode: &str) -> (String, Process) {
    let port = free_port().unwrap();
    let mut command = Command::new(python_mcp1().unwrap());
    command
        .arg(python_script("tracing/receiver.py").unwrap())
        .args(["--port", &port.to_string(), "--mode", mode]);
    let mut process = Process::spawn(&format!("OTLP receiver ({mode})"), command).unwrap();
    process.wait_for_port(port, START).unwrap();
    (format!("http://127.0.0.1:{port}"), process)
}

/// The instrumented FastMCP server, exporting to `otlp` when given.
fn upstream(otlp: Option<&str>) -> (String, Process) {
    let port = free_port().unwrap();
    let mut command = Command::new(python_mcp1().unwrap());
    command
        .arg(python_script("tracing/upstream.py").unwrap())
        .args(["--port", &port.to_string(), "--stateless"]);
    if let Some(otlp) = otlp {
        command.args(["--otlp-endpoint", otlp, "--otlp-timeout", "2"]);
    }
    let mut process = Process::spawn("traced FastMCP server", command).unwrap();
    process.wait_for_port(port, START).unwrap();
    (format!("http://127.0.0.1:{port}"), process)
}

fn traced_sidecar(upstream: &str, collector: &str, timeout: &str) -> ProxyProcess {
    // `top` follows `admin.listen`: unindented, `tracing` is a top-level section.
    ProxyProcess::in_front_of(
        upstream,
        &format!(
            "tracing:\n  resourceAttributes:\n    k8s.pod.name: e2e-pod\n  otlp:\n    endpoint: {collector}/v1/traces\n    batchDelay: 100ms\n    timeout: {timeout}\n"
        ),
        "",
    )
    .unwrap()
}

fn spans(receiver: &str) -> Vec<Value> {
    let answer = http::get(&format!("{receiver}/spans"), &[]).unwrap();
    let json = answer.json().unwrap();
    assert_eq!(json["bad"], 0, "every export decodes");
    json["spans"].as_array().unwrap().clone()
}

fn find<'a>(spans: &'a [Value], what: &str, f: impl Fn(&Value) -> bool) -> &'a Value {
    spans
        .iter()
        .find(|s| f(s))
        .unwrap_or_else(|| panic!("no span {what} among {spans:#?}"))
}

#[test]
fn one_trace_runs_from_the_client_through_the_sidecar_into_the_server() {
    let (collector, _receiver) = receiver("ok");
    let (upstream_url, _upstream) = upstream(Some(&format!("{collector}/v1/traces")));
    let proxy = traced_sidecar(&upstream_url, &collector, "2s");

    let mut command = Command::new(python_mcp1().unwrap());
    command
        .arg(python_script("tracing/client.py").unwrap())
        .args(["--url", &proxy.url("/mcp")])
        .args([
            "--header",
            &format!("traceparent=00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
        ]);
    let output = sluice_e2e::process::run_ok(&mut command, START).unwrap();
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["echo"], "hi");

    // The sidecar's spans arrive within its batch delay, the server's when its exporter sends
    // them (after its answer), and the sidecar counts an export once the receiver has answered
    // it: wait for all of that, then look.
    let all = wait_until("the call's spans from the sidecar and the server", START, || {
        let all = spans(&collector);
        let sidecar_call = |kind: &str| {
            all.iter().find(|s| {
                s["resource"]["service.name"] == "sluice-proxy"
                    && s["kind"] == kind
                    && s["name"] == "tools/call echo"
            })
        };
        let server_side = sidecar_call("SPAN_KIND_CLIENT").is_some_and(|client| {
            all.iter().any(|s| {
                s["resource"]["service.name"] == "traced-upstream"
                    && s["parent_span_id"] == client["span_id"]
            })
        });
        let fastmcp = all
            .iter()
            .any(|s| s["scope"]["name"] == "fastmcp" && s["name"] == "tools/call echo");
        let exported = proxy.count("sluice_trace_spans_exported_total")?;
        Ok(
            if sidecar_call("SPAN_KIND_SERVER").is_some() && server_side && fastmcp && exported >= 2.0
            {
                Probe::Ready(all)
            } else {
                Probe::NotYet(format!(
                    "{} spans, server-side span {server_side}, FastMCP's {fastmcp}, {exported} counted as exported",
                    all.len()
                ))
            },
        )
    })
    .unwrap();
    let in_trace: Vec<Value> = all
        .iter()
        .filter(|s| s["trace_id"] == CALLER_TRACE)
        .cloned()
        .collect();
    println!("the caller's trace {CALLER_TRACE}, as the receiver decoded it:");
    for s in &in_trace {
        let a = &s["attributes"];
        println!(
            "  {:<16} {:<16} {:<18} {:<22} span {} parent {} mcp.method.name={} gen_ai.tool.name={} jsonrpc.request.id={} sluice.request_id={} http.status={}",
            s["resource"]["service.name"].as_str().unwrap_or(""),
            s["scope"]["name"].as_str().unwrap_or(""),
            s["kind"].as_str().unwrap_or(""),
            s["name"].as_str().unwrap_or(""),
            s["span_id"].as_str().unwrap_or(""),
            s["parent_span_id"].as_str().unwrap_or(""),
            a["mcp.method.name"],
            a["gen_ai.tool.name"],
            a["jsonrpc.request.id"],
            a["sluice.request_id"],
            a["http.response.status_code"]
                .as_i64()
                .or(a["http.status_code"].as_i64())
                .unwrap_or(0),
        );
    }
    // Every request the client made is in its trace, at the sidecar and at the server.
    assert!(
        all.iter()
            .filter(|s| s["resource"]["service.name"] == "sluice-proxy")
            .all(|s| s["trace_id"] == CALLER_TRACE),
        "every sidecar span continues the caller's trace"
    );
    let server = find(&in_trace, "sidecar SERVER tools/call echo", |s| {
        s["resource"]["service.name"] == "sluice-proxy"
            && s["kind"] == "SPAN_KIND_SERVER"
            && s["name"] == "tools/call echo"
    });
    assert_eq!(server["parent_span_id"], CALLER_SPAN);
    let a = &server["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["gen_ai.tool.name"], "echo");
    assert_eq!(a["mcp.protocol.version"], result["protocol"]);
    assert!(a["jsonrpc.request.id"].is_string());
    assert_eq!(server["resource"]["k8s.pod.name"], "e2e-pod");
    let events: Vec<_> = server["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "sluice.authenticate",
            "sluice.authorize",
            "sluice.rate_limit"
        ]
    );
    let client = find(&in_trace, "sidecar CLIENT child", |s| {
        s["kind"] == "SPAN_KIND_CLIENT" && s["parent_span_id"] == server["span_id"]
    });
    let asgi = find(&in_trace, "the server's ASGI span", |s| {
        s["resource"]["service.name"] == "traced-upstream"
            && s["parent_span_id"] == client["span_id"]
    });
    assert_eq!(asgi["kind"], "SPAN_KIND_SERVER");
    // FastMCP's own span for the call, inside the server's request span.
    let fastmcp = find(&in_trace, "FastMCP's tools/call span", |s| {
        s["scope"]["name"] == "fastmcp" && s["name"] == "tools/call echo"
    });
    assert_eq!(fastmcp["parent_span_id"], asgi["span_id"]);
}

/// 40 calls through `proxy`, each answered 200; how long they took.
fn forty_calls(proxy: &ProxyProcess) -> Duration {
    let started = Instant::now();
    for id in 0..40 {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"add","arguments":{{"a":{id},"b":1}}}}}}"#
        );
        let answer = http::post_raw(&proxy.url("/mcp"), &body, &[("accept", MCP_ACCEPT)]).unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    started.elapsed()
}

#[test]
fn a_collector_that_refuses_or_hangs_costs_counted_errors_not_requests() {
    let (upstream_url, _upstream) = upstream(None);
    let off = ProxyProcess::in_front_of(&upstream_url, "", "").unwrap();
    let baseline = forty_calls(&off);

    for (mode, reason) in [("refuse", "status"), ("hang", "timeout")] {
        let (collector, _receiver) = receiver(mode);
        let proxy = traced_sidecar(&upstream_url, &collector, "500ms");
        let took = forty_calls(&proxy);
        let errors = format!("sluice_trace_export_errors_total{{reason=\"{reason}\"}}");
        // The exporter counts the failed export, then the spans it lost: wait for both.
        let lost = wait_until(&format!("{errors} and the spans lost"), START, || {
            let failed = proxy.count(&errors)?;
            let lost = proxy.count("sluice_trace_spans_dropped_total{reason=\"export_failed\"}")?;
            Ok(if failed >= 1.0 && lost >= 1.0 {
                Probe::Ready(lost)
            } else {
                Probe::NotYet(proxy.metrics()?)
            })
        })
        .unwrap();
        println!(
            "collector {mode}: 40 calls took {took:?} (tracing off: {baseline:?}); {errors} = {}, spans lost = {lost}",
            proxy.count(&errors).unwrap()
        );
    }
}
