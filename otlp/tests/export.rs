//! The exporter against collectors on loopback: one that accepts (what arrives decodes to the
//! spans made), one that refuses, and one that never answers; a request never waits on any.

#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use prost::Message;
use sluice_otlp::proto::{ExportTraceServiceRequest, any_value};
use sluice_otlp::{ExportMetrics, ExportSettings, SpanContext, SpanKind, Tracer, TracerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[derive(Clone, Copy)]
enum Collector {
    Accepts,
    Refuses,
    Hangs,
}

/// A collector on loopback; each export's body goes to the returned channel.
async fn collector(behaviour: Collector) -> (String, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0];
                        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    let mut body = vec![0; length];
                    socket.read_exact(&mut body).await.unwrap();
                    assert!(head.contains("content-type: application/x-protobuf"));
                    assert!(head.contains("authorization: bearer t"));
                    tx.send(body).unwrap();
                    let status = match behaviour {
                        Collector::Accepts => "200 OK",
                        Collector::Refuses => "503 Service Unavailable",
                        Collector::Hangs => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    socket.write_all(answer.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (url, rx)
}

fn tracer(url: &str, max_queue: usize) -> (Tracer, Registry) {
    let mut registry = Registry::default();
    let mut export = ExportSettings::new(sluice_otlp::endpoint_uri(url).unwrap());
    export.headers = sluice_otlp::headers_from_list("authorization=Bearer%20t").unwrap();
    export.timeout = Duration::from_millis(300);
    export.batch_delay = Duration::from_millis(50);
    export.max_batch = 4;
    export.max_queue = max_queue;
    let settings = TracerSettings {
        export,
        sampling_ratio: 1.0,
        resource: sluice_otlp::resource("test-service", &BTreeMap::new(), None, None),
        scope: "export-test",
    };
    let metrics = ExportMetrics::register(&mut registry);
    (Tracer::start(settings, metrics).unwrap(), registry)
}

fn metrics(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

async fn eventually(registry: &Registry, line: &str) {
    for _ in 0..200 {
        if metrics(registry).lines().any(|l| l == line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never saw {line:?} in:\n{}", metrics(registry));
}

#[tokio::test]
async fn spans_arrive_in_batches_as_made() {
    let (url, mut bodies) = collector(Collector::Accepts).await;
    let (tracer, registry) = tracer(&url, 64);
    let parent =
        SpanContext::from_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    for i in 0..6 {
        let mut span = tracer.start_span("tools/call echo", SpanKind::Server, parent);
        span.set_attribute("mcp.method.name", "tools/call");
        span.set_attribute("attempt", i64::from(i));
        span.add_event("auth", vec![("outcome", "pass".into())]);
        let child = tracer.child(&span, "upstream", SpanKind::Client);
        assert_eq!(child.context().trace_id, span.context().trace_id);
        drop(child);
        span.set_error("denied");
        span.end();
    }
    tracer.flush(Duration::from_secs(5)).await;
    let mut spans = Vec::new();
    while let Ok(body) = bodies.try_recv() {
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        for rs in request.resource_spans {
            let resource = rs.resource.unwrap();
            assert!(resource.attributes.iter().any(|kv| kv.key == "service.name"
                && kv.value.as_ref().unwrap().value
                    == Some(any_value::Value::StringValue("test-service".into()))));
            for ss in rs.scope_spans {
                assert_eq!(ss.scope.unwrap().name, "export-test");
                assert!(ss.spans.len() <= 4, "a batch holds maxBatch spans at most");
                spans.extend(ss.spans);
            }
        }
    }
    assert_eq!(spans.len(), 12);
    let servers: Vec<_> = spans.iter().filter(|s| s.kind == 2).collect();
    assert_eq!(servers.len(), 6);
    for s in &servers {
        assert_eq!(hex(&s.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex(&s.parent_span_id), "b7ad6b7169203331");
        assert_eq!(s.name, "tools/call echo");
        assert_eq!(s.events[0].name, "auth");
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        let child = spans
            .iter()
            .find(|c| c.parent_span_id == s.span_id)
            .expect("each server span has its upstream child");
        assert_eq!(child.name, "upstream");
    }
    eventually(&registry, "trace_spans_exported_total 12").await;
}

#[tokio::test]
async fn a_refusing_collector_costs_counted_errors() {
    let (url, _bodies) = collector(Collector::Refuses).await;
    let (tracer, registry) = tracer(&url, 64);
    drop(tracer.start_span("ping", SpanKind::Server, None));
    tracer.flush(Duration::from_secs(5)).await;
    eventually(&registry, "trace_export_errors_total{reason=\"status\"} 1").await;
    eventually(
        &registry,
        "trace_spans_dropped_total{reason=\"export_failed\"} 1",
    )
    .await;
}

#[tokio::test]
async fn a_hanging_collector_times_out_and_a_full_queue_drops_without_waiting() {
    let (url, _bodies) = collector(Collector::Hangs).await;
    let (tracer, registry) = tracer(&url, 8);
    // 1,000 spans while the exporter waits on the collector: the queue holds 8, the first
    // batch holds 4, and the rest are dropped at once.
    for _ in 0..1_000 {
        drop(tracer.start_span("ping", SpanKind::Server, None));
    }
    let text = metrics(&registry);
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("trace_spans_dropped_total{reason=\"queue_full\"} "))
        .expect("queue_full drops are counted")
        .parse()
        .unwrap();
    assert!(dropped >= 1_000 - 8 - 4, "{dropped}");
    eventually(&registry, "trace_export_errors_total{reason=\"timeout\"} 1").await;
}

#[tokio::test]
async fn an_unreachable_collector_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (tracer, registry) = tracer(&format!("http://127.0.0.1:{port}/v1/traces"), 8);
    drop(tracer.start_span("ping", SpanKind::Server, None));
    tracer.flush(Duration::from_secs(5)).await;
    eventually(&registry, "trace_export_errors_total{reason=\"connect\"} 1").await;
}

#[tokio::test]
async fn unsampled_traces_pass_on_their_context_and_send_nothing() {
    let (url, mut bodies) = collector(Collector::Accepts).await;
    let (tracer, _registry) = tracer(&url, 8);
    let parent =
        SpanContext::from_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
    let span = tracer.start_span("ping", SpanKind::Server, parent);
    assert!(!span.is_recording());
    assert!(span.context().traceparent().ends_with(b"-00"));
    assert_ne!(span.context().span_id, parent.unwrap().span_id);
    drop(span);
    tracer.flush(Duration::from_secs(5)).await;
    assert!(bodies.try_recv().is_err());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
