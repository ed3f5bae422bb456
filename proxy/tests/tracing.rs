//! Traces: a caller's `traceparent` is continued by the sidecar's SERVER span, whose CLIENT
//! child is what the upstream receives as its parent; the spans reach the collector named and
//! attributed after the MCP conventions, refusals with their error; sampling follows the
//! caller's flag, else the ratio; with tracing off `traceparent` passes through untouched.
//! (A collector that refuses or hangs: otlp/tests/export.rs and e2e/tests/tracing.rs.)
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::collections::BTreeMap;

use http::StatusCode;
use http_body_util::BodyExt as _;
use prost::Message;
use sluice_otlp::proto::{ExportTraceServiceRequest, Span, any_value};
use support::*;

const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";
const DENIED_CALL: &str = r#"{"jsonrpc":"2.0","id":"d-1","method":"tools/call","params":{"name":"pha_task_delete","arguments":{}}}"#;

fn traced(upstream: std::net::SocketAddr, collector: &Upstream, ratio: &str) -> String {
    config(
        upstream,
        &format!(
            "tracing:\n  samplingRatio: {ratio}\n  resourceAttributes:\n    k8s.namespace.name: team-a\n  otlp:\n    endpoint: http://{}/v1/traces\n    batchDelay: 20ms\n",
            collector.addr
        ),
        "tools:\n  deny: [\"pha_task_delete\"]",
    )
}

async fn call(sluice: &Sluice, traceparent: Option<&str>, text: &str) -> Reply {
    let mut request = post(&sluice.url("/mcp"));
    if let Some(t) = traceparent {
        request = request.header("traceparent", t);
    }
    send(request.body(body(text)).unwrap()).await
}

/// Every span the collector received so far.
fn received(collector: &mut Upstream, into: &mut Vec<Span>) {
    while let Some(seen) = collector.try_next() {
        assert_eq!(seen.uri.path(), "/v1/traces");
        assert_eq!(seen.headers["content-type"], "application/x-protobuf");
        let request = ExportTraceServiceRequest::decode(seen.body).unwrap();
        for rs in request.resource_spans {
            let resource = attributes(&rs.resource.unwrap().attributes);
            assert_eq!(resource["service.name"], "sluice-proxy");
            assert_eq!(resource["k8s.namespace.name"], "team-a");
            for ss in rs.scope_spans {
                into.extend(ss.spans);
            }
        }
    }
}

async fn spans_until(collector: &mut Upstream, n: usize) -> Vec<Span> {
    let mut spans = Vec::new();
    within("the spans to arrive", async {
        while spans.len() < n {
            received(collector, &mut spans);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    spans
}

fn attributes(kvs: &[sluice_otlp::proto::KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().unwrap().value.as_ref().unwrap() {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(trace id, span id, sampled)` of a `traceparent` the upstream received.
fn parent_of(seen: &Seen) -> (String, String, bool) {
    let value = seen.headers["traceparent"].to_str().unwrap().to_owned();
    let fields: Vec<_> = value.split('-').collect();
    assert_eq!((fields.len(), fields[0]), (4, "00"), "{value}");
    (fields[1].into(), fields[2].into(), fields[3] == "01")
}

#[tokio::test]
async fn a_callers_trace_runs_through_the_sidecar_to_the_upstream() {
    let mut upstream = Upstream::ok().await;
    let mut collector = Upstream::ok().await;
    let sluice = Sluice::start(&traced(upstream.addr, &collector, "1")).await;

    let reply = call(&sluice, Some(CALLER), TOOLS_CALL).await;
    assert_eq!(reply.status, StatusCode::OK);
    let (trace, upstream_parent, sampled) = parent_of(&upstream.next().await);
    assert_eq!(trace, CALLER_TRACE);
    assert_ne!(
        upstream_parent, CALLER_SPAN,
        "the upstream's parent is the sidecar's span"
    );
    assert!(sampled);

    let spans = spans_until(&mut collector, 2).await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    let client = spans.iter().find(|s| s.kind == 3).unwrap();
    assert_eq!(hex(&server.trace_id), CALLER_TRACE);
    assert_eq!(hex(&server.parent_span_id), CALLER_SPAN);
    assert_eq!(hex(&client.trace_id), CALLER_TRACE);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(hex(&client.span_id), upstream_parent);
    assert_eq!(server.name, "tools/call pha_task_get");
    assert_eq!(client.name, "tools/call pha_task_get");
    let a = attributes(&server.attributes);
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["gen_ai.tool.name"], "pha_task_get");
    assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    assert_eq!(a["jsonrpc.request.id"], "42");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["sluice.entry_point"], "main");
    assert_eq!(
        a["sluice.request_id"],
        reply.header("x-request-id").unwrap()
    );
    assert!(!a.contains_key("error.type"));
    let events: Vec<_> = server.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        events,
        [
            "sluice.authenticate",
            "sluice.authorize",
            "sluice.rate_limit"
        ]
    );
    assert_eq!(
        attributes(&client.attributes)["http.response.status_code"],
        "200"
    );
    assert!(server.start_time_unix_nano <= client.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= server.end_time_unix_nano);

    // A refusal: the tool policy. Its span says why; nothing reached the upstream.
    let reply = call(&sluice, Some(CALLER), DENIED_CALL).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let spans = spans_until(&mut collector, 1).await;
    assert_eq!(spans.len(), 1, "no upstream call, no CLIENT span");
    let denied = &spans[0];
    let a = attributes(&denied.attributes);
    assert_eq!(denied.name, "tools/call pha_task_delete");
    assert_eq!(a["error.type"], "denied");
    assert_eq!(a["rpc.response.status_code"], "-32003");
    assert_eq!(a["jsonrpc.request.id"], "d-1");
    assert_eq!(a["http.response.status_code"], "403");
    let status = denied.status.as_ref().unwrap();
    assert_eq!(status.code, 2);
    assert!(
        status.message.contains("pha_task_delete"),
        "{}",
        status.message
    );
    let events: Vec<_> = denied.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, ["sluice.authenticate"]);
    assert!(!upstream.saw_any());

    // No traceparent: a trace starts at the sidecar, and the upstream is in it.
    call(&sluice, None, TOOLS_CALL).await;
    let (trace, upstream_parent, sampled) = parent_of(&upstream.next().await);
    assert!(sampled);
    let spans = spans_until(&mut collector, 2).await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    let client = spans.iter().find(|s| s.kind == 3).unwrap();
    assert_eq!(hex(&server.trace_id), trace);
    assert!(server.parent_span_id.is_empty(), "a root span");
    assert_eq!(hex(&client.span_id), upstream_parent);
    // Counted once the collector has answered the export, which is after it handed us the spans.
    eventually("the five exported spans counted", async || {
        sluice.metric("sluice_trace_spans_exported_total").await == Some(5.0)
    })
    .await;
}

#[tokio::test]
async fn the_callers_sampled_flag_decides_and_the_ratio_decides_the_rest() {
    let mut upstream = Upstream::ok().await;
    let mut collector = Upstream::ok().await;
    let sluice = Sluice::start(&traced(upstream.addr, &collector, "0")).await;

    // Ratio 0 and no caller context: nothing recorded, but the upstream learns the trace is
    // not sampled, so it does not start one of its own for the same request.
    call(&sluice, None, TOOLS_CALL).await;
    let (_, _, sampled) = parent_of(&upstream.next().await);
    assert!(!sampled);
    // An unsampled caller: continued, not recorded.
    call(&sluice, Some(&CALLER.replace("-01", "-00")), TOOLS_CALL).await;
    let (trace, _, sampled) = parent_of(&upstream.next().await);
    assert_eq!((trace.as_str(), sampled), (CALLER_TRACE, false));
    // A sampled caller: recorded, whatever the ratio.
    call(&sluice, Some(CALLER), TOOLS_CALL).await;
    let (_, _, sampled) = parent_of(&upstream.next().await);
    assert!(sampled);

    let spans = spans_until(&mut collector, 2).await;
    sluice.proxy.shutdown().await;
    let mut rest = Vec::new();
    received(&mut collector, &mut rest);
    assert!(
        rest.is_empty(),
        "only the sampled request was exported: {rest:?}"
    );
    assert!(spans.iter().all(|s| hex(&s.trace_id) == CALLER_TRACE));
}

#[tokio::test]
async fn with_tracing_off_traceparent_passes_through() {
    let mut upstream = Upstream::ok().await;
    let sluice = Sluice::start(&config(upstream.addr, "", "")).await;
    let mut request = post(&sluice.url("/mcp"));
    request = request
        .header("traceparent", CALLER)
        .header("tracestate", "vendor=1");
    send(request.body(body(TOOLS_CALL)).unwrap()).await;
    let seen = upstream.next().await;
    assert_eq!(seen.headers["traceparent"], CALLER);
    assert_eq!(seen.headers["tracestate"], "vendor=1");
}

#[tokio::test]
async fn a_bad_traceparent_starts_a_new_trace() {
    let mut upstream = Upstream::ok().await;
    let collector = Upstream::ok().await;
    let sluice = Sluice::start(&traced(upstream.addr, &collector, "1")).await;
    let zeros = "00-00000000000000000000000000000000-b7ad6b7169203331-01";
    call(&sluice, Some(zeros), TOOLS_CALL).await;
    let (trace, parent, sampled) = parent_of(&upstream.next().await);
    assert_ne!(trace, "0".repeat(32));
    assert_ne!(parent, CALLER_SPAN);
    assert!(sampled);
}

/// Conduit's answers are event streams whose head comes at once and whose result comes when
/// the tool is done: the request's span and its upstream call's last until the answer is over.
/// An answer the upstream breaks off fails the request's span.
#[tokio::test]
async fn a_streamed_answer_is_traced_to_its_end_and_one_broken_off_fails_its_span() {
    const TOOL_TIME: std::time::Duration = std::time::Duration::from_millis(300);
    let (upstream, mut senders) = Upstream::streaming().await;
    let mut collector = Upstream::ok().await;
    let sluice = Sluice::start(&traced(upstream.addr, &collector, "1")).await;
    let req = post(&sluice.url("/mcp")).body(body(TOOLS_CALL)).unwrap();
    let response = within("the response head", client().request(req))
        .await
        .unwrap();
    let mut sender = within("the upstream stream", senders.recv()).await.unwrap();
    tokio::time::sleep(TOOL_TIME).await;
    let answer = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{}}\n\n";
    sender
        .send_data(bytes::Bytes::from_static(answer.as_bytes()))
        .await
        .unwrap();
    drop(sender);
    let read = within("the answer", response.into_body().collect()).await;
    assert_eq!(read.unwrap().to_bytes(), answer);
    let spans = spans_until(&mut collector, 2).await;
    for kind in [2, 3] {
        let span = spans.iter().find(|s| s.kind == kind).unwrap();
        let lasted = span.end_time_unix_nano - span.start_time_unix_nano;
        assert!(
            u128::from(lasted) >= TOOL_TIME.as_nanos(),
            "span {} (kind {kind}) lasted {lasted} ns, the answer at least {TOOL_TIME:?}",
            span.name
        );
        assert!(span.status.is_none(), "{span:?}");
    }

    let dying = breaking_off_upstream("event: message\ndata: {}\n\n").await;
    let mut collector = Upstream::ok().await;
    let sluice = Sluice::start(&traced(dying, &collector, "1")).await;
    let req = post(&sluice.url("/mcp")).body(body(TOOLS_CALL)).unwrap();
    let response = within("the response head", client().request(req))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let read = within("the broken answer", response.into_body().collect()).await;
    assert!(read.is_err(), "the caller sees the answer broken off");
    let spans = spans_until(&mut collector, 2).await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    assert_eq!(
        attributes(&server.attributes)["error.type"],
        "upstream_body"
    );
    let status = server.status.as_ref().unwrap();
    assert_eq!(status.code, 2, "{status:?}");
}

/// A collector behind TLS whose certificate no public CA signed: what it received, decoded.
async fn tls_collector(
    certified: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
) {
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key.into())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            let _ = tx.send(ExportTraceServiceRequest::decode(body).unwrap());
                            Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, received)
}

/// An `https` collector with a certificate of a private CA (what `proxy.tracing.caBundle` is
/// for): trusted with `otlp.caFile`, and without it the handshake fails and the export is
/// counted as failed, nothing sent.
#[tokio::test]
async fn an_https_collector_of_a_private_ca_is_trusted_through_the_ca_file_alone() {
    let upstream = Upstream::ok().await;
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (collector, mut received) = tls_collector(&certified).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("collector-ca.pem");
    std::fs::write(&ca_file, certified.cert.pem()).unwrap();
    let traced = |ca: &str| {
        config(
            upstream.addr,
            &format!(
                "tracing:\n  otlp:\n    endpoint: https://{collector}/v1/traces\n    batchDelay: 20ms\n{ca}"
            ),
            "",
        )
    };

    let untrusting = Sluice::start(&traced("")).await;
    assert_eq!(
        call(&untrusting, None, TOOLS_CALL).await.status,
        StatusCode::OK
    );
    let failed = "sluice_trace_export_errors_total{reason=\"connect\"}";
    eventually("the failed export to be counted", async || {
        untrusting.metric(failed).await.is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(
        received.try_recv().is_err(),
        "nothing reached the collector"
    );

    let trusting = Sluice::start(&traced(&format!("    caFile: {}\n", ca_file.display()))).await;
    assert_eq!(
        call(&trusting, None, TOOLS_CALL).await.status,
        StatusCode::OK
    );
    let export = within("an export over TLS", received.recv()).await.unwrap();
    let spans: usize = export
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    assert!(spans >= 1, "{export:?}");
    assert_eq!(trusting.metric(failed).await, None);
}
