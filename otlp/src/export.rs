//! The exporter: finished spans wait in a bounded queue that a request never waits on (a full
//! queue drops the span and counts it), and one task sends them in batches over OTLP/HTTP,
//! one export at a time, each bounded by a timeout. A collector that is down or hangs costs
//! the spans of the batches it fails and a counter, never a request's time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use prost::Message;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::proto;
use crate::span::Finished;

/// Largest answer read from a collector (an `ExportTraceServiceResponse`, or an error page).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where and how spans are exported.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    /// The traces URL (`http(s)://host:port/v1/traces`).
    pub endpoint: Uri,
    /// Headers sent with every export (e.g. `authorization`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A PEM bundle of CAs trusted besides webpki-roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Time one export may take, connecting included.
    pub timeout: Duration,
    /// Longest a span waits for its batch to fill.
    pub batch_delay: Duration,
    /// Spans per export at most.
    pub max_batch: usize,
    /// Spans waiting at most.
    pub max_queue: usize,
}

/// Why an export failed; the `reason` label of `…trace_export_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `timeout`, `connect` or `status`.
    pub reason: &'static str,
}

/// Why spans were lost; the `reason` label of `…trace_spans_dropped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `queue_full` (spans ended faster than they could be sent) or `export_failed`.
    pub reason: &'static str,
}

/// The exporter's own metrics.
#[derive(Clone, Debug, Default)]
pub struct ExportMetrics {
    pub errors: Family<ErrorLabels, Counter>,
    pub dropped: Family<DropLabels, Counter>,
    pub exported: Counter,
}

impl ExportMetrics {
    /// Registers the metrics in `registry` (`trace_export_errors_total`,
    /// `trace_spans_dropped_total`, `trace_spans_exported_total`, under its prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        m.register_in(registry);
        m
    }

    /// Registers these metrics in `registry`, as [`Self::register`] does.
    pub fn register_in(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "trace_export_errors",
            "OTLP exports that failed, by reason (timeout, connect, status); their spans are lost",
            m.errors.clone(),
        );
        registry.register(
            "trace_spans_dropped",
            "Finished spans never exported, by reason (queue_full, export_failed)",
            m.dropped.clone(),
        );
        registry.register(
            "trace_spans_exported",
            "Spans a collector accepted",
            m.exported.clone(),
        );
    }

    fn drop_spans(&self, reason: &'static str, n: usize) {
        self.dropped
            .get_or_create(&DropLabels { reason })
            .inc_by(n as u64);
    }
}

enum Item {
    Span(Box<Finished>),
    /// Send what is queued now, then answer.
    Flush(oneshot::Sender<()>),
}

/// The queue finished spans go to; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::Sender<Item>,
    /// Wakes the exporter once a batch is waiting: a span alone never does, so the request
    /// thread pays no cross-thread wake-up per span.
    batch_ready: Arc<Notify>,
    max_batch: usize,
    metrics: ExportMetrics,
}

impl Queue {
    /// Queues a finished span, or drops it (counted) when the queue is full. Never waits.
    pub(crate) fn push(&self, span: Box<Finished>) {
        if self.tx.try_send(Item::Span(span)).is_err() {
            self.metrics.drop_spans("queue_full", 1);
        } else if self.tx.max_capacity() - self.tx.capacity() >= self.max_batch {
            self.batch_ready.notify_one();
        }
    }

    /// Sends everything queued so far, waiting at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (done, sent) = oneshot::channel();
        let _ = tokio::time::timeout(timeout, async {
            if self.tx.send(Item::Flush(done)).await.is_ok() {
                self.batch_ready.notify_one();
                let _ = sent.await;
            }
        })
        .await;
    }
}

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the CA bundle {0}")]
    Ca(String),
    #[error("TLS settings: {0}")]
    Tls(String),
    #[error("cannot start the export thread: {0}")]
    Thread(String),
}

/// Starts the export thread; spans sent to the returned queue are
/// exported with `resource` and `scope`.
pub fn start(
    settings: ExportSettings,
    resource: proto::Resource,
    scope: proto::InstrumentationScope,
    metrics: ExportMetrics,
) -> Result<Queue, ExportError> {
    let client = client(settings.extra_ca_pem.as_deref(), settings.timeout)?;
    let (tx, rx) = mpsc::channel(settings.max_queue.max(1));
    let batch_ready = Arc::new(Notify::new());
    let max_batch = settings.max_batch.max(1);
    let exporter = Exporter {
        batch_ready: batch_ready.clone(),
        client,
        settings,
        resource,
        scope,
        metrics: metrics.clone(),
    };
    // A thread of its own, as the OpenTelemetry SDKs' batch processor has: turning spans into
    // protobuf and sending them never takes the request threads' time (the sidecar serves
    // traffic on one thread by default).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ExportError::Thread(e.to_string()))?;
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || runtime.block_on(exporter.run(rx)))
        .map_err(|e| ExportError::Thread(e.to_string()))?;
    Ok(Queue {
        tx,
        batch_ready,
        max_batch,
        metrics,
    })
}

struct Exporter {
    batch_ready: Arc<Notify>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    settings: ExportSettings,
    resource: proto::Resource,
    scope: proto::InstrumentationScope,
    metrics: ExportMetrics,
}

impl Exporter {
    /// Sleeps until a batch is waiting, a flush is asked for, or `batch_delay` is up; then
    /// sends what is queued, a batch at a time. Ends when every queue handle is gone.
    async fn run(self, mut rx: mpsc::Receiver<Item>) {
        let max_batch = self.settings.max_batch.max(1);
        loop {
            tokio::select! {
                () = self.batch_ready.notified() => {}
                () = tokio::time::sleep(self.settings.batch_delay) => {}
            }
            loop {
                let mut batch = Vec::with_capacity(max_batch.min(rx.len()));
                let mut flushes = Vec::new();
                let mut closed = false;
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(Item::Span(span)) => batch.push(span.into_proto()),
                        Ok(Item::Flush(done)) => flushes.push(done),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                let full = batch.len() == max_batch;
                if !batch.is_empty() {
                    self.export(batch).await;
                }
                // Everything queued before a flush was in this batch or an earlier one.
                for done in flushes {
                    let _ = done.send(());
                }
                if closed {
                    return;
                }
                if !full {
                    break;
                }
            }
        }
    }

    async fn export(&self, spans: Vec<proto::Span>) {
        let n = spans.len();
        let body = proto::ExportTraceServiceRequest {
            resource_spans: vec![proto::ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![proto::ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec();
        let reason = match tokio::time::timeout(self.settings.timeout, self.send(body)).await {
            Ok(Ok(())) => {
                self.metrics.exported.inc_by(n as u64);
                return;
            }
            Ok(Err(reason)) => reason,
            Err(_) => "timeout",
        };
        self.metrics
            .errors
            .get_or_create(&ErrorLabels { reason })
            .inc();
        self.metrics.drop_spans("export_failed", n);
        tracing::debug!(reason, spans = n, "an OTLP export failed");
    }

    /// One POST; its whole answer read, so the connection can be reused.
    async fn send(&self, body: Vec<u8>) -> Result<(), &'static str> {
        let mut request = Request::post(self.settings.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                header::USER_AGENT,
                concat!("sluice-otlp/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in &self.settings.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "status")?;
        let response = self.client.request(request).await.map_err(|_| "connect")?;
        let ok = response.status().is_success();
        let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await;
        if ok { Ok(()) } else { Err("status") }
    }
}

fn client(
    extra_ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>, ExportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ExportError::Ca(format!("is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ExportError::Ca("holds no certificate".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ExportError::Ca(format!("holds an unusable certificate: {e}")))?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ExportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .pool_timer(TokioTimer::new())
        .build(connector))
}
