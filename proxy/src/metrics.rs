//! Prometheus metrics, registered under the `sluice_` prefix.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Most distinct `tool` label values; later tools count as `other`.
pub const MAX_TOOL_LABELS: usize = 256;

/// Request latency buckets, in seconds: sub-millisecond proxy refusals to minute-long calls.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Labels of `sluice_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub entry_point: Arc<str>,
    pub http_method: &'static str,
    pub mcp_method: &'static str,
    pub tool: Arc<str>,
    pub status: &'static str,
}

/// Labels of `sluice_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub entry_point: Arc<str>,
    pub mcp_method: &'static str,
}

/// An entry point.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryLabels {
    pub entry_point: Arc<str>,
}

/// Labels of `sluice_upstream_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub entry_point: Arc<str>,
    pub kind: &'static str,
}

/// An outcome (`applied`, `rejected`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// An entry point's certificate reload outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsLabels {
    pub entry_point: Arc<str>,
    pub result: &'static str,
}

/// Labels of `sluice_policy_denials_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub entry_point: Arc<str>,
    /// `tool`, `resource` or `prompt`.
    pub kind: &'static str,
    /// The name when it has a `tool` label (allowed before, or listed by the upstream), else
    /// `other`: a caller naming invented tools counts, but takes no label of its own.
    pub name: Arc<str>,
    /// `denied` (a pattern refuses it) or `invalid` (no valid name).
    pub reason: &'static str,
}

/// An entry point and a bounded reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub entry_point: Arc<str>,
    pub reason: &'static str,
}

/// Labels of `sluice_rate_limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub entry_point: Arc<str>,
    pub rule: Arc<str>,
}

/// Labels of `sluice_rate_limit_fallbacks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    pub entry_point: Arc<str>,
    pub rule: Arc<str>,
    /// `open` (counted locally instead) or `closed` (refused with 503).
    pub fail_mode: &'static str,
}

/// Labels of `sluice_redis_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisErrorLabels {
    /// `connect`, `timeout`, `io`, `auth`, `tls`, `sentinel`, `username_file`,
    /// `password_file` or `response`.
    pub kind: &'static str,
}

/// Labels of `sluice_redis_master`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisMasterLabels {
    /// `host:port` of a master Redis Sentinel named.
    pub address: String,
}

/// Labels of `sluice_upstream_check_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckFailureLabels {
    /// `connect`, `closed`, `timeout`, `status`, `malformed` or `error`.
    pub kind: &'static str,
}

type LatencyFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

/// Every metric the proxy keeps.
#[derive(Debug)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub latency: LatencyFamily,
    pub in_flight: Family<EntryLabels, Gauge>,
    pub open_streams: Family<EntryLabels, Gauge>,
    pub open_connections: Gauge,
    pub connections_refused: Family<ReasonLabels, Counter>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub config_rejected: Gauge,
    pub tls_reloads: Family<TlsLabels, Counter>,
    pub tls_handshake_failures: Family<ReasonLabels, Counter>,
    pub tools: Arc<ToolLabels>,
    pub auth: AuthMetrics,
    pub policy_denials: Family<DenialLabels, Counter>,
    pub list_events_dropped: Family<ReasonLabels, Counter>,
    pub rate_limited: Family<RuleLabels, Counter>,
    pub rate_limit_fallbacks: Family<FallbackLabels, Counter>,
    pub redis_errors: Family<RedisErrorLabels, Counter>,
    pub redis_connected: Gauge,
    pub redis_master: Family<RedisMasterLabels, Gauge>,
    pub redis_master_changes: Counter,
    pub upstream_answering: Gauge,
    pub upstream_check_failures: Family<CheckFailureLabels, Counter>,
    pub legacy_sessions: Family<EntryLabels, Gauge>,
    pub legacy_sessions_refused: Family<ReasonLabels, Counter>,
    pub audit_events_dropped: Counter,
    /// The span exporter's (tracing on).
    pub trace: sluice_otlp::ExportMetrics,
}

impl Metrics {
    /// Creates the metrics and registers them in a `sluice` sub-registry of `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            in_flight: Family::default(),
            open_streams: Family::default(),
            open_connections: Gauge::default(),
            connections_refused: Family::default(),
            upstream_errors: Family::default(),
            config_reloads: Family::default(),
            config_rejected: Gauge::default(),
            tls_reloads: Family::default(),
            tls_handshake_failures: Family::default(),
            tools: Arc::default(),
            auth: AuthMetrics::default(),
            policy_denials: Family::default(),
            list_events_dropped: Family::default(),
            rate_limited: Family::default(),
            rate_limit_fallbacks: Family::default(),
            redis_errors: Family::default(),
            redis_connected: Gauge::default(),
            redis_master: Family::default(),
            redis_master_changes: Counter::default(),
            upstream_answering: Gauge::default(),
            upstream_check_failures: Family::default(),
            legacy_sessions: Family::default(),
            legacy_sessions_refused: Family::default(),
            audit_events_dropped: Counter::default(),
            trace: sluice_otlp::ExportMetrics::default(),
        };
        let r = registry.sub_registry_with_prefix("sluice");
        r.register(
            "requests",
            "Requests by entry point, HTTP and MCP method, tool and status class",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time until a request is answered (a POST the upstream answers: the end of that answer; anything else: the response head), by entry point and MCP method",
            m.latency.clone(),
        );
        r.register(
            "in_flight_requests",
            "Requests being served, streams included",
            m.in_flight.clone(),
        );
        r.register(
            "open_streams",
            "Event streams open to callers",
            m.open_streams.clone(),
        );
        r.register(
            "upstream_errors",
            "Upstream failures by kind",
            m.upstream_errors.clone(),
        );
        r.register(
            "config_reloads",
            "Config file changes by result",
            m.config_reloads.clone(),
        );
        r.register(
            "config_rejected",
            "1 while the config file on disk is rejected and the last good config is served",
            m.config_rejected.clone(),
        );
        r.register(
            "tls_reloads",
            "Certificate changes by result",
            m.tls_reloads.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes refused or failed on a TLS entry point, by entry point and reason (no_certificate, unknown_ca, expired, not_yet_valid, bad_certificate, alert, protocol, closed, timeout)",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "policy_denials",
            "Requests refused by the tool policy, by entry point, kind and name",
            m.policy_denials.clone(),
        );
        r.register(
            "open_connections",
            "Caller connections open, over every entry point (limits.maxConnections)",
            m.open_connections.clone(),
        );
        r.register(
            "connections_refused",
            "Caller connections closed at once because a connection limit was reached, by entry point and reason (total, per_peer)",
            m.connections_refused.clone(),
        );
        r.register(
            "list_events_dropped",
            "Events dropped from the reply stream of a list request because they could not be filtered (unreadable data, or a response to no awaited request), by entry point and reason",
            m.list_events_dropped.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by a rate limit, by entry point and rule",
            m.rate_limited.clone(),
        );
        r.register(
            "rate_limit_fallbacks",
            "Global rate-limit checks decided without Redis, by entry point, rule and fail mode",
            m.rate_limit_fallbacks.clone(),
        );
        r.register(
            "redis_errors",
            "Failed Redis connections and commands, by kind",
            m.redis_errors.clone(),
        );
        r.register(
            "redis_connected",
            "1 while the connection to Redis for global rate limits is open",
            m.redis_connected.clone(),
        );
        r.register(
            "redis_master",
            "With Redis Sentinel: 1 for the master in use, by address; 0 for one used before",
            m.redis_master.clone(),
        );
        r.register(
            "redis_master_changes",
            "With Redis Sentinel: times the sidecar found the master at a new address (failovers)",
            m.redis_master_changes.clone(),
        );
        r.register(
            "upstream_answering",
            "1 while the upstream answers MCP: it answered the sidecar's check and has not missed upstream.check.failureThreshold checks in a row since",
            m.upstream_answering.clone(),
        );
        r.register(
            "upstream_check_failures",
            "The sidecar's MCP checks of the upstream that got no answer, by kind (connect, closed, timeout, status, malformed, error)",
            m.upstream_check_failures.clone(),
        );
        r.register(
            "legacy_sessions",
            "Sessions of the 2024-11-05 HTTP+SSE transport open, by entry point",
            m.legacy_sessions.clone(),
        );
        r.register(
            "legacy_sessions_refused",
            "Legacy sessions not opened because a limit was reached, by entry point and reason (caller_limit, sidecar_limit)",
            m.legacy_sessions_refused.clone(),
        );
        r.register(
            "audit_events_dropped",
            "Audit events a reader of the admin listener's /events missed because it did not keep up (its queue was full)",
            m.audit_events_dropped.clone(),
        );
        m.auth.register(r);
        // sluice_trace_export_errors_total, sluice_trace_spans_dropped_total,
        // sluice_trace_spans_exported_total.
        m.trace.register_in(r);
        m
    }
}

/// Labels of `sluice_auth_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthFailureLabels {
    pub entry_point: Arc<str>,
    pub reason: &'static str,
}

/// An entry point and an outcome (`hit`/`miss`, `ok`/`failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryResultLabels {
    pub entry_point: Arc<str>,
    pub result: &'static str,
}

/// Labels of `sluice_identity_provider_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderErrorLabels {
    pub entry_point: Arc<str>,
    /// `whoami`, `upstream`, `token_review` or `jwks`.
    pub provider: &'static str,
    pub kind: &'static str,
}

/// Authentication metrics (the label values are in auth/mod.rs).
#[derive(Debug, Default)]
pub struct AuthMetrics {
    pub auth_failures: Family<AuthFailureLabels, Counter>,
    pub whoami_cache: Family<EntryResultLabels, Counter>,
    pub identity_provider_errors: Family<ProviderErrorLabels, Counter>,
    pub jwks_refreshes: Family<EntryResultLabels, Counter>,
}

impl AuthMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "auth_failures",
            "Callers refused by authentication, by entry point and reason",
            self.auth_failures.clone(),
        );
        r.register(
            "whoami_cache",
            "Who-is-this-token lookups (Phabricator's user.whoami, or the upstream's pha_user_whoami in mode oauth): hit (from the cache, or a call already in flight) or miss (a call)",
            self.whoami_cache.clone(),
        );
        r.register(
            "identity_provider_errors",
            "Failed calls to user.whoami, the upstream's pha_user_whoami, TokenReview and JWKS endpoints, by provider and kind",
            self.identity_provider_errors.clone(),
        );
        r.register(
            "jwks_refreshes",
            "JWKS fetches by result",
            self.jwks_refreshes.clone(),
        );
    }
}

/// The `status` label: `2xx` … `5xx`.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The `http_method` label, bounded.
pub fn http_method(method: &http::Method) -> &'static str {
    match *method {
        http::Method::POST => "POST",
        http::Method::GET => "GET",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// Holds a gauge up by one while alive (a request in flight, a stream open).
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increments `gauge` until the guard is dropped.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Tool label values, capped at [`MAX_TOOL_LABELS`] so callers cannot grow the metric without
/// bound. Reads are lock-free; the set is copied on the rare insert.
#[derive(Debug)]
pub struct ToolLabels {
    seen: ArcSwap<HashSet<Arc<str>>>,
    none: Arc<str>,
    other: Arc<str>,
}

impl Default for ToolLabels {
    fn default() -> Self {
        Self {
            seen: ArcSwap::default(),
            none: Arc::from(""),
            other: Arc::from("other"),
        }
    }
}

impl ToolLabels {
    /// The label for `tool`: itself once admitted, else `other`; empty for no tool. Looking
    /// never admits: a caller naming invented tools must not spend the slots.
    pub fn label(&self, tool: Option<&str>) -> Arc<str> {
        let Some(tool) = tool else {
            return self.none.clone();
        };
        self.seen
            .load()
            .get(tool)
            .cloned()
            .unwrap_or_else(|| self.other.clone())
    }

    /// Gives `tool` a label of its own while the cap allows: for names the policy allowed and
    /// names the upstream listed, never for a refused caller's invention.
    pub fn admit(&self, tool: &str) {
        {
            let seen = self.seen.load();
            let valid = tool.len() <= 128
                && tool
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b));
            if seen.contains(tool) || !valid || seen.len() >= MAX_TOOL_LABELS {
                return;
            }
        }
        let name: Arc<str> = Arc::from(tool);
        self.seen.rcu(|seen| {
            let mut next = HashSet::clone(seen);
            if seen.len() < MAX_TOOL_LABELS {
                next.insert(name.clone());
            }
            next
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_labels_are_admitted_names_only_and_capped() {
        let t = ToolLabels::default();
        // Looking a name up spends no slot.
        for i in 0..1000 {
            assert_eq!(&*t.label(Some(&format!("invented_{i}"))), "other");
        }
        for i in 0..MAX_TOOL_LABELS {
            t.admit(&format!("tool_{i}"));
            assert_eq!(&*t.label(Some(&format!("tool_{i}"))), format!("tool_{i}"));
        }
        t.admit("one_too_many");
        assert_eq!(&*t.label(Some("one_too_many")), "other");
        assert_eq!(&*t.label(Some("tool_3")), "tool_3");
        t.admit("bad name");
        assert_eq!(&*t.label(Some("bad name")), "other");
        assert_eq!(&*t.label(None), "");
    }

    #[test]
    fn metrics_are_prefixed() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.config_reloads
            .get_or_create(&ResultLabels { result: "applied" })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("sluice_config_reloads_total{result=\"applied\"} 1"),
            "{text}"
        );
    }
}
