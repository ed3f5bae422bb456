//! The reconcile spans: with a tracer, each reconcile of an McpServer or McpRoute exports one
//! span naming the object and its result, each object applied an `apply` event saying whether
//! it changed. Received by an OTLP/HTTP endpoint in the test.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod controller_support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use controller_support::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use prost::Message;
use sluice_crds::{McpRoute, McpServer};
use sluice_otlp::proto::{self, ExportTraceServiceRequest, any_value};
use sluice_otlp::{ExportMetrics, ExportSettings, Tracer, TracerSettings};
use tokio::net::TcpListener;

/// Every export body an OTLP/HTTP endpoint on loopback received, answered 200.
async fn receiver() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let received = bodies.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let bodies = bodies.clone();
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let bodies = bodies.clone();
                async move {
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    bodies.lock().unwrap().push(body);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, received)
}

fn tracer(endpoint: &str) -> Tracer {
    let mut export = ExportSettings::new(endpoint.parse().unwrap());
    export.batch_delay = Duration::from_millis(100);
    Tracer::start(
        TracerSettings {
            export,
            sampling_ratio: 1.0,
            resource: BTreeMap::from([("service.name".into(), "sluice-operator".into())]),
            scope: "sluice-operator",
        },
        ExportMetrics::default(),
    )
    .unwrap()
}

fn spans(bodies: &Mutex<Vec<Bytes>>) -> Vec<proto::Span> {
    bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|body| {
            ExportTraceServiceRequest::decode(body.clone())
                .unwrap()
                .resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn attribute(attributes: &[proto::KeyValue], key: &str) -> Option<any_value::Value> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone()?.value)
}

fn text(value: &str) -> Option<any_value::Value> {
    Some(any_value::Value::StringValue(value.into()))
}

/// `(kind, name, changed)` of a span's `apply` events.
fn applies(span: &proto::Span) -> Vec<(String, String, bool)> {
    span.events
        .iter()
        .filter(|e| e.name == "apply")
        .map(|e| {
            let Some(any_value::Value::StringValue(kind)) =
                attribute(&e.attributes, "sluice.object.kind")
            else {
                panic!("{e:?}")
            };
            let Some(any_value::Value::StringValue(name)) =
                attribute(&e.attributes, "sluice.object.name")
            else {
                panic!("{e:?}")
            };
            let Some(any_value::Value::BoolValue(changed)) =
                attribute(&e.attributes, "sluice.apply.changed")
            else {
                panic!("{e:?}")
            };
            (kind, name, changed)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reconcile_exports_a_span_with_an_event_per_object_applied() {
    let (endpoint, bodies) = receiver().await;
    let tracer = tracer(&endpoint);
    let cluster = Cluster::start().await;
    let mut options = options();
    options.controller.tracer = Some(tracer.clone());
    let operator = Operator::start(&cluster, options);
    cluster.apply::<McpServer>(server("traced")).await;
    cluster.apply::<McpRoute>(route("stray", "missing")).await;
    cluster
        .wait_for::<Deployment>("traced", "the Deployment", |_| true)
        .await;
    // Converged: later reconciles apply nothing.
    wait_quiet(&cluster, &operator).await;
    operator.wait_reconciles(1).await;
    operator.stop().await;
    tracer.flush(Duration::from_secs(5)).await;

    let spans = spans(&bodies);
    let servers: Vec<&proto::Span> = spans
        .iter()
        .filter(|s| s.name == "reconcile McpServer")
        .collect();
    assert!(servers.len() >= 2, "{spans:#?}");
    for span in &servers {
        assert_eq!(span.kind, proto::SpanKind::Internal as i32);
        assert_eq!(attribute(&span.attributes, "k8s.namespace.name"), text(NS));
        assert_eq!(
            attribute(&span.attributes, "sluice.object.name"),
            text("traced")
        );
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    // The first reconcile that got as far as applying wrote the objects ...
    let first = servers
        .iter()
        .find(|s| !applies(s).is_empty())
        .expect("a reconcile that applied");
    assert_eq!(
        attribute(&first.attributes, "sluice.reconcile.result"),
        text("ok")
    );
    let applied = applies(first);
    assert!(
        applied.contains(&("Deployment".into(), "traced".into(), true)),
        "{applied:?}"
    );
    assert!(
        applied.contains(&("ConfigMap".into(), "traced-sluice-proxy".into(), true)),
        "{applied:?}"
    );
    // ... and a converged one sent nothing, and says so.
    let last = servers.last().unwrap();
    let applied = applies(last);
    assert!(
        !applied.is_empty() && applied.iter().all(|(_, _, changed)| !changed),
        "{applied:?}"
    );

    // A route whose server is missing is reconciled on its own.
    let route = spans
        .iter()
        .find(|s| s.name == "reconcile McpRoute")
        .expect("the route's span");
    assert_eq!(
        attribute(&route.attributes, "sluice.object.name"),
        text("stray")
    );
    assert_eq!(
        attribute(&route.attributes, "sluice.reconcile.result"),
        text("ok")
    );
}
