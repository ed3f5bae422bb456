//! The operator's Prometheus metrics, served on the admin endpoint's `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

/// Labels naming the kind a reconcile was for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `McpServer` or `McpRoute`.
    pub kind: &'static str,
}

/// Labels of `sluice_operator_reconciles_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `McpServer` or `McpRoute`.
    pub kind: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Labels of `sluice_operator_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `McpServer` or `McpRoute`.
    pub kind: &'static str,
    /// What failed: `api`, `conflict`, `cache`, `finalizer`, ...
    pub reason: &'static str,
}

/// Labels of `sluice_operator_writes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// The kind written, e.g. `Deployment`.
    pub kind: String,
    /// `apply`, `delete`, `status` or `finalizer`.
    pub verb: &'static str,
}

type Timings = Family<KindLabels, Histogram, fn() -> Histogram>;

/// Every metric the operator exports, with the registry that encodes them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Timings,
    in_flight: Family<KindLabels, Gauge>,
    writes: Family<WriteLabels, Counter>,
    leader: Gauge,
    cached_objects: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn reconcile_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    /// Registers every metric under the `sluice_operator` prefix.
    pub fn new() -> Self {
        Self::new_with(|_| ()).0
    }

    /// Registers every metric, and lets `more` register its own under the same prefix (the
    /// trace exporter's, which exist only when it runs).
    pub fn new_with<T>(more: impl FnOnce(&mut Registry) -> T) -> (Self, T) {
        let mut registry = Registry::with_prefix("sluice_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles finished, by kind and result",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind and what failed",
            errors.clone(),
        );
        let duration: Timings = Family::new_with_constructor(reconcile_histogram);
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take, by kind",
            duration.clone(),
        );
        let in_flight = Family::<KindLabels, Gauge>::default();
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, by kind",
            in_flight.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "writes",
            "Write requests sent to the API server, by kind and verb",
            writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance holds the leader Lease (or runs without election)",
            leader.clone(),
        );
        let cached_objects = Gauge::default();
        registry.register(
            "cached_objects",
            "Objects in the controllers' caches",
            cached_objects.clone(),
        );
        let extra = more(&mut registry);
        let metrics = Self {
            registry: Arc::new(registry),
            reconciles,
            errors,
            duration,
            in_flight,
            writes,
            leader,
            cached_objects,
        };
        (metrics, extra)
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Starts timing a reconcile of `kind`; finish it with [`ReconcileTimer::finish`].
    pub fn reconcile_started(&self, kind: &'static str) -> ReconcileTimer {
        self.in_flight.get_or_create(&KindLabels { kind }).inc();
        ReconcileTimer {
            metrics: self.clone(),
            kind,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Counts a write request.
    pub fn wrote(&self, kind: &str, verb: &'static str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                verb,
            })
            .inc();
    }

    /// Counts a failed reconcile's cause.
    pub fn failed(&self, kind: &'static str, reason: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { kind, reason })
            .inc();
    }

    /// Records whether this instance leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records how many objects the caches hold.
    pub fn set_cached_objects(&self, count: usize) {
        self.cached_objects
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// Times one reconcile; counts it when finished (as an error if dropped unfinished).
#[derive(Debug)]
pub struct ReconcileTimer {
    metrics: Metrics,
    kind: &'static str,
    started: Instant,
    finished: bool,
}

impl ReconcileTimer {
    /// Records the outcome: `error` carries the failure's metric label.
    pub fn finish(mut self, error: Option<&'static str>) {
        self.record(error);
    }

    fn record(&mut self, error: Option<&'static str>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let kind = self.kind;
        let metrics = &self.metrics;
        metrics.in_flight.get_or_create(&KindLabels { kind }).dec();
        metrics
            .duration
            .get_or_create(&KindLabels { kind })
            .observe(self.started.elapsed().as_secs_f64());
        let result = if error.is_some() { "error" } else { "ok" };
        metrics
            .reconciles
            .get_or_create(&ReconcileLabels { kind, result })
            .inc();
        if let Some(reason) = error {
            metrics.failed(kind, reason);
        }
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        // A reconcile cancelled half-way (shutdown) still leaves the in-flight gauge.
        self.record(Some("cancelled"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_by_kind_and_result() {
        let metrics = Metrics::new();
        metrics.reconcile_started("McpServer").finish(None);
        metrics.reconcile_started("McpServer").finish(Some("api"));
        drop(metrics.reconcile_started("McpRoute"));
        let text = metrics.encode();
        for line in [
            "sluice_operator_reconciles_total{kind=\"McpServer\",result=\"ok\"} 1",
            "sluice_operator_reconciles_total{kind=\"McpServer\",result=\"error\"} 1",
            "sluice_operator_reconciles_total{kind=\"McpRoute\",result=\"error\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(text.contains(
            "sluice_operator_reconcile_errors_total{kind=\"McpServer\",reason=\"api\"} 1"
        ));
        assert!(text.contains("sluice_operator_reconciles_in_flight{kind=\"McpServer\"} 0"));
        assert!(
            text.contains("sluice_operator_reconcile_duration_seconds_count{kind=\"McpServer\"} 2")
        );
    }

    #[test]
    fn writes_are_counted_by_kind_and_verb() {
        let metrics = Metrics::new();
        metrics.wrote("Deployment", "apply");
        metrics.wrote("Deployment", "apply");
        metrics.wrote("McpServer", "status");
        metrics.set_leader(true);
        let text = metrics.encode();
        for line in [
            "sluice_operator_writes_total{kind=\"Deployment\",verb=\"apply\"} 2",
            "sluice_operator_writes_total{kind=\"McpServer\",verb=\"status\"} 1",
            "sluice_operator_leader 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
