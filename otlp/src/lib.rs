//! OpenTelemetry traces for Sluice's two programs: spans built where the work happens (no
//! global subscriber), W3C `traceparent` continued and passed on, parent-based ratio sampling,
//! and a bounded, batching OTLP/HTTP (protobuf) exporter whose failures are counted, never
//! waited for.

mod context;
mod export;
pub mod proto;
mod span;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use percent_encoding::percent_decode_str;
use prometheus_client::registry::Registry;

pub use context::{SpanContext, SpanId, TraceId};
pub use export::{ExportError, ExportMetrics, ExportSettings, Queue};
pub use span::{KeyValue, Span, SpanKind, Value};

/// What a tracer needs besides its metrics.
#[derive(Clone, Debug)]
pub struct TracerSettings {
    pub export: ExportSettings,
    /// The share of new traces sampled (0 to 1); a parent's sampled flag decides for its trace.
    pub sampling_ratio: f64,
    /// Resource attributes, `service.name` among them.
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope: the program's name.
    pub scope: &'static str,
}

/// Makes spans and sends them to the exporter; cheap to clone.
#[derive(Clone)]
pub struct Tracer {
    queue: Queue,
    /// A new trace is sampled when the top 63 bits of its id's last 8 bytes are below this
    /// (the OpenTelemetry SDKs' `TraceIdRatioBased`), so every service sampling at the same
    /// ratio keeps the same traces.
    ratio_bound: u64,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("ratio_bound", &self.ratio_bound)
            .finish_non_exhaustive()
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the OTLP endpoint {0:?} is not an http(s) URL")]
    Endpoint(String),
    #[error("the OTLP header {name:?} (from {from}) {problem}")]
    Header {
        name: String,
        from: String,
        problem: &'static str,
    },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{name} {value:?} is not a number from 0 to 1")]
    Ratio { name: &'static str, value: String },
    #[error(transparent)]
    Export(#[from] ExportError),
}

impl Tracer {
    /// Starts the exporter, on a thread of its own.
    pub fn start(settings: TracerSettings, metrics: ExportMetrics) -> Result<Self, Error> {
        let resource = proto::Resource {
            attributes: settings
                .resource
                .into_iter()
                .map(|(k, v)| proto::KeyValue {
                    key: k,
                    value: Some(Value::from(v).into_proto()),
                })
                .collect(),
        };
        let scope = proto::InstrumentationScope {
            name: settings.scope.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let queue = export::start(settings.export, resource, scope, metrics)?;
        Ok(Self {
            queue,
            ratio_bound: ratio_bound(settings.sampling_ratio),
        })
    }

    /// A tracer configured by the standard environment, or `None` when
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (or `OTEL_EXPORTER_OTLP_ENDPOINT`, to which
    /// `/v1/traces` is added) is unset: `OTEL_TRACES_SAMPLER_ARG` (the ratio, default 1),
    /// `OTEL_EXPORTER_OTLP_HEADERS` and the files of `SLUICE_OTLP_HEADERS_DIR` (headers),
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE` (a CA bundle), `OTEL_SERVICE_NAME` and
    /// `OTEL_RESOURCE_ATTRIBUTES`. Its metrics go in `registry`.
    pub fn from_env(scope: &'static str, registry: &mut Registry) -> Result<Option<Self>, Error> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => traces,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        let sampling_ratio = match var("OTEL_TRACES_SAMPLER_ARG") {
            None => 1.0,
            Some(v) => parse_ratio("OTEL_TRACES_SAMPLER_ARG", &v)?,
        };
        let mut headers = match var("OTEL_EXPORTER_OTLP_HEADERS") {
            Some(list) => headers_from_list(&list)?,
            None => Vec::new(),
        };
        if let Some(dir) = var("SLUICE_OTLP_HEADERS_DIR") {
            headers.extend(headers_from_dir(Path::new(&dir))?);
        }
        let extra_ca_pem = var("OTEL_EXPORTER_OTLP_CERTIFICATE")
            .map(|path| read(Path::new(&path)))
            .transpose()?;
        let mut export = ExportSettings::new(endpoint_uri(&endpoint)?);
        export.headers = headers;
        export.extra_ca_pem = extra_ca_pem;
        let settings = TracerSettings {
            export,
            sampling_ratio,
            resource: resource(
                scope,
                &BTreeMap::new(),
                var("OTEL_RESOURCE_ATTRIBUTES").as_deref(),
                var("OTEL_SERVICE_NAME").as_deref(),
            ),
            scope,
        };
        Self::start(settings, ExportMetrics::register(registry)).map(Some)
    }

    /// A server span for a request whose caller sent `parent` (its `traceparent`), or the
    /// root of a new trace; sampled as the parent says, else by the ratio.
    pub fn start_span(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<SpanContext>,
    ) -> Span {
        let context = match parent {
            Some(parent) => SpanContext {
                span_id: SpanId::random(),
                ..parent
            },
            None => {
                let trace_id = TraceId::random();
                SpanContext {
                    sampled: self.samples(trace_id),
                    trace_id,
                    span_id: SpanId::random(),
                }
            }
        };
        Span::new(
            name.into(),
            kind,
            context,
            parent.map(|p| p.span_id),
            &self.queue,
        )
    }

    /// A child of `parent`, in its trace.
    pub fn child(&self, parent: &Span, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        self.start_span(name, kind, Some(parent.context()))
    }

    /// Sends every span ended so far, waiting at most `timeout` (at shutdown).
    pub async fn flush(&self, timeout: Duration) {
        self.queue.flush(timeout).await;
    }

    fn samples(&self, trace_id: TraceId) -> bool {
        let mut low = [0; 8];
        low.copy_from_slice(&trace_id.0[8..]);
        (u64::from_be_bytes(low) >> 1) < self.ratio_bound
    }
}

fn ratio_bound(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else if ratio > 0.0 {
        // 2^63 as f64 is exact; the product is below it, so the cast does not saturate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bound = (ratio * (1u64 << 63) as f64) as u64;
        bound
    } else {
        0
    }
}

impl ExportSettings {
    /// Settings for `endpoint` with the defaults of the OpenTelemetry SDKs' batch processor:
    /// a 10 s timeout, batches of 512 sent at least every 5 s, 2048 spans waiting at most.
    pub fn new(endpoint: Uri) -> Self {
        Self {
            endpoint,
            headers: Vec::new(),
            extra_ca_pem: None,
            timeout: Duration::from_secs(10),
            batch_delay: Duration::from_secs(5),
            max_batch: 512,
            max_queue: 2048,
        }
    }
}

/// `endpoint` as a URI, if it is an http(s) URL with a host.
pub fn endpoint_uri(endpoint: &str) -> Result<Uri, Error> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| Error::Endpoint(endpoint.into()))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(Error::Endpoint(endpoint.into())),
    }
}

/// A sampling ratio from text.
pub fn parse_ratio(name: &'static str, value: &str) -> Result<f64, Error> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| Error::Ratio {
            name,
            value: value.into(),
        })
}

/// The resource attributes: `service.name` = `service` by default, then `configured`, then
/// `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k=v`, values percent-encoded), then `OTEL_SERVICE_NAME`.
pub fn resource(
    service: &str,
    configured: &BTreeMap<String, String>,
    env_attributes: Option<&str>,
    env_service_name: Option<&str>,
) -> BTreeMap<String, String> {
    let mut resource = BTreeMap::from([
        ("service.name".to_owned(), service.to_owned()),
        ("telemetry.sdk.name".to_owned(), "sluice-otlp".to_owned()),
        ("telemetry.sdk.language".to_owned(), "rust".to_owned()),
        (
            "telemetry.sdk.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    resource.extend(configured.clone());
    for (k, v) in env_attributes.into_iter().flat_map(list_pairs) {
        resource.insert(k, v);
    }
    if let Some(name) = env_service_name {
        resource.insert("service.name".into(), name.trim().into());
    }
    resource
}

/// `k=v,k=v` pairs (the OpenTelemetry environment's lists), values percent-decoded; pairs
/// without `=` or a key are skipped, as the SDKs do.
fn list_pairs(list: &str) -> impl Iterator<Item = (String, String)> + '_ {
    list.split(',').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        let k = k.trim();
        (!k.is_empty()).then(|| {
            let v = percent_decode_str(v.trim())
                .decode_utf8_lossy()
                .into_owned();
            (k.to_owned(), v)
        })
    })
}

fn header(name: &str, value: &str, from: &str) -> Result<(HeaderName, HeaderValue), Error> {
    let problem = |problem| Error::Header {
        name: name.into(),
        from: from.into(),
        problem,
    };
    let name = HeaderName::try_from(name).map_err(|_| problem("is not a header name"))?;
    let mut value =
        HeaderValue::try_from(value).map_err(|_| problem("has a value no header may carry"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Headers from an `OTEL_EXPORTER_OTLP_HEADERS` list.
pub fn headers_from_list(list: &str) -> Result<Vec<(HeaderName, HeaderValue)>, Error> {
    list_pairs(list)
        .map(|(k, v)| header(&k, &v, "OTEL_EXPORTER_OTLP_HEADERS"))
        .collect()
}

/// Headers from a directory (a mounted Secret): each file's name is a header's name and its
/// content (trimmed) the value. Names starting with `.` (a Secret volume's own entries) are
/// skipped.
pub fn headers_from_dir(dir: &Path) -> Result<Vec<(HeaderName, HeaderValue)>, Error> {
    let read_err = |e: std::io::Error| Error::Read {
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    let mut headers = Vec::new();
    let mut entries = std::fs::read_dir(dir)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let value = read(&entry.path())?;
        let value = String::from_utf8_lossy(&value);
        headers.push(header(&name, value.trim(), &dir.display().to_string())?);
    }
    Ok(headers)
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_bound_samples_the_expected_share() {
        let tracer_bound = |r| ratio_bound(r);
        assert_eq!(tracer_bound(0.0), 0);
        assert_eq!(tracer_bound(1.0), u64::MAX);
        let half = tracer_bound(0.5);
        let sampled = (0..20_000)
            .filter(|_| {
                let id = TraceId::random();
                let mut low = [0; 8];
                low.copy_from_slice(&id.0[8..]);
                (u64::from_be_bytes(low) >> 1) < half
            })
            .count();
        // 20,000 fair coins: 10,000 ± 5 standard deviations (~354).
        assert!((9_646..=10_354).contains(&sampled), "{sampled}");
    }

    #[test]
    fn resource_attributes_layer_defaults_config_and_environment() {
        let configured = BTreeMap::from([
            ("service.name".to_owned(), "from-config".to_owned()),
            ("team".to_owned(), "a".to_owned()),
        ]);
        let r = resource(
            "sluice-proxy",
            &configured,
            Some("k8s.pod.name=web-1, team = b%2Cc ,broken,=x"),
            None,
        );
        assert_eq!(r["service.name"], "from-config");
        assert_eq!(r["k8s.pod.name"], "web-1");
        assert_eq!(r["team"], "b,c");
        assert!(!r.contains_key("broken") && !r.contains_key(""));
        let r = resource("sluice-proxy", &configured, None, Some("named"));
        assert_eq!(r["service.name"], "named");
        assert_eq!(
            resource("x", &BTreeMap::new(), None, None)["service.name"],
            "x"
        );
    }

    #[test]
    fn headers_come_from_a_secret_directory_and_bad_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("otlp-headers-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("..data")).unwrap();
        std::fs::write(dir.join("authorization"), "Bearer abc\n").unwrap();
        std::fs::write(dir.join("x-scope-orgid"), "tenant-1").unwrap();
        let headers = headers_from_dir(&dir).unwrap();
        let got: Vec<_> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("authorization", "Bearer abc"),
                ("x-scope-orgid", "tenant-1")
            ]
        );
        assert!(headers[0].1.is_sensitive());
        std::fs::write(dir.join("bad name"), "v").unwrap();
        let err = headers_from_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("\"bad name\"") && err.contains("not a header name"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(headers_from_dir(&dir), Err(Error::Read { .. })));
    }

    #[test]
    fn endpoints_and_ratios_are_checked() {
        assert!(endpoint_uri("http://collector:4318/v1/traces").is_ok());
        assert!(endpoint_uri("https://otlp.example.com/v1/traces").is_ok());
        for bad in ["collector:4318", "ftp://x/v1/traces", "/v1/traces", ""] {
            assert!(endpoint_uri(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_ratio("r", " 0.25 ").unwrap(), 0.25);
        for bad in ["-0.1", "1.5", "NaN", "half"] {
            assert!(parse_ratio("r", bad).is_err(), "{bad}");
        }
    }
}
