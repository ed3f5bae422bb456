//! Whether the upstream answers MCP, checked by the sidecar itself in the background: an
//! `initialize` (and `tools/list`) on an interval, over a connection of its own, without
//! credentials (`exchange`). A TCP connect is not enough: a Conduit that accepts connections
//! and never answers would pass it forever.
//!
//! The verdict (`verdict`) is what `/readyz` and `/upstream/livez` follow: not answering
//! until the first answer, then answering until `upstream.check.failureThreshold` checks in a
//! row miss, and answering again at the next answer. `/upstream` shows what the checks
//! learned (server, revision, tools). Each round reads the current config, so a reload's
//! check settings apply from the next round. Not on the request path.

mod exchange;
mod verdict;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sluice_proxy_config::ProxyConfig;

use exchange::{Findings, Miss, MissKind, Target};
use verdict::Verdict;

use crate::metrics::{CheckFailureLabels, Metrics};

/// The most time between checks until the upstream first answers, so a pod turns ready soon
/// after the upstream starts (the configured interval applies from then on).
const UNANSWERED_INTERVAL: Duration = Duration::from_secs(1);

/// The checks' verdict, shared by the check task and the admin listener.
#[derive(Debug)]
pub struct UpstreamCheck {
    verdict: Mutex<Verdict>,
    answering: Gauge,
    failures: Family<CheckFailureLabels, Counter>,
}

impl UpstreamCheck {
    /// No check yet, of the MCP endpoint `mcp_path` of the upstream at `upstream_url`.
    pub fn new(metrics: &Metrics, upstream_url: &str, mcp_path: &str) -> Self {
        Self {
            verdict: Mutex::new(Verdict::new(endpoint(upstream_url, mcp_path))),
            answering: metrics.upstream_answering.clone(),
            failures: metrics.upstream_check_failures.clone(),
        }
    }

    /// Why the upstream does not count as answering MCP; `None` while it does.
    pub fn problem(&self) -> Option<String> {
        self.verdict().problem()
    }

    /// `GET /upstream`'s body: what the checks learned, as JSON.
    pub fn report_json(&self) -> String {
        serde_json::to_string(&self.verdict().report()).unwrap_or_else(|e| {
            serde_json::json!({"error": format!("cannot write the report: {e}")}).to_string()
        })
    }

    /// Takes in one check's outcome; logs the verdict when it turns.
    fn record(&self, endpoint: &str, outcome: &Result<Findings, Miss>, failure_threshold: u32) {
        let mut verdict = self.verdict();
        let was_answering = verdict.answering();
        verdict.record(endpoint, outcome, SystemTime::now(), failure_threshold);
        let answering = verdict.answering();
        self.answering.set(i64::from(answering));
        match outcome {
            Err(miss) => {
                self.failures
                    .get_or_create(&CheckFailureLabels {
                        kind: miss.kind.label(),
                    })
                    .inc();
                if was_answering && !answering {
                    tracing::warn!(
                        problem = %verdict.problem().unwrap_or_default(),
                        "the upstream stopped answering MCP"
                    );
                } else {
                    tracing::debug!(upstream = %endpoint, reason = %miss.reason, "upstream check missed");
                }
            }
            Ok(findings) if !was_answering => {
                let server = findings.server.as_ref();
                tracing::info!(
                    upstream = %endpoint,
                    server = server.map_or("", |s| s.name.as_str()),
                    version = server.map_or("", |s| s.version.as_str()),
                    protocol_version = findings.protocol_version.as_deref().unwrap_or(""),
                    tools = findings.tools.map(|t| t.to_string()).unwrap_or_default(),
                    behind_oauth = findings.behind_oauth,
                    "the upstream answers MCP"
                );
            }
            Ok(_) => {}
        }
    }

    /// Whether the upstream ever answered.
    fn ever_answered(&self) -> bool {
        self.verdict().ever_answered()
    }

    /// Locks the verdict; a panic elsewhere must not take readiness reporting down with it.
    fn verdict(&self) -> MutexGuard<'_, Verdict> {
        self.verdict.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks the upstream forever, with the settings of the config `current` returns each round.
pub async fn run(check: Arc<UpstreamCheck>, current: impl Fn() -> Arc<ProxyConfig>) {
    run_with(check, current, exchange::ask).await;
}

/// [`run`] with its way of asking given (tests give theirs).
async fn run_with<Ask, Asked>(
    check: Arc<UpstreamCheck>,
    current: impl Fn() -> Arc<ProxyConfig>,
    mut ask: Ask,
) where
    Ask: FnMut(Target, Duration) -> Asked,
    Asked: Future<Output = Result<Findings, Miss>>,
{
    loop {
        let config = current();
        let url = &config.upstream.url;
        let settings = &config.upstream.check;
        let path = &config.upstream.mcp_path;
        let outcome = match Target::new(url, path) {
            Ok(target) => ask(target, settings.timeout.get()).await,
            Err(reason) => Err(Miss {
                kind: MissKind::Malformed,
                reason,
            }),
        };
        check.record(&endpoint(url, path), &outcome, settings.failure_threshold);
        let interval = settings.interval.get();
        let pause = if check.ever_answered() {
            interval
        } else {
            interval.min(UNANSWERED_INTERVAL)
        };
        tokio::time::sleep(pause).await;
    }
}

/// The MCP endpoint of the upstream at `upstream_url`, as messages name it.
fn endpoint(upstream_url: &str, mcp_path: &str) -> String {
    format!("{}{mcp_path}", upstream_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use prometheus_client::registry::Registry;

    use super::*;

    fn config(check: &str) -> Arc<ProxyConfig> {
        let yaml = format!(
            "upstream:\n  url: http://127.0.0.1:8000\n  check:\n{check}\
             entryPoints:\n  - name: main\n    listen: 127.0.0.1:0\n    auth:\n      mode: none\n"
        );
        Arc::new(ProxyConfig::from_yaml(&yaml).unwrap())
    }

    /// A check task whose upstream answers while `answers` is set, counting the checks.
    struct Scripted {
        check: Arc<UpstreamCheck>,
        metrics: Metrics,
        answers: Arc<AtomicBool>,
        asked: Arc<AtomicU32>,
        config: Arc<Mutex<Arc<ProxyConfig>>>,
    }

    impl Scripted {
        fn start(config: Arc<ProxyConfig>, answers: bool) -> Self {
            let metrics = Metrics::register(&mut Registry::default());
            let check = Arc::new(UpstreamCheck::new(
                &metrics,
                &config.upstream.url,
                &config.upstream.mcp_path,
            ));
            let answers = Arc::new(AtomicBool::new(answers));
            let asked = Arc::new(AtomicU32::new(0));
            let config = Arc::new(Mutex::new(config));
            let (a, n, c) = (answers.clone(), asked.clone(), config.clone());
            tokio::spawn(run_with(
                check.clone(),
                move || c.lock().unwrap().clone(),
                move |_target, timeout| {
                    n.fetch_add(1, Ordering::SeqCst);
                    let answers = a.load(Ordering::SeqCst);
                    async move {
                        if answers {
                            Ok(Findings::default())
                        } else {
                            Err(Miss {
                                kind: MissKind::Timeout,
                                reason: format!("timed out after {}s", timeout.as_secs()),
                            })
                        }
                    }
                },
            ));
            Self {
                check,
                metrics,
                answers,
                asked,
                config,
            }
        }

        fn answer(&self, answers: bool) {
            self.answers.store(answers, Ordering::SeqCst);
        }

        fn asked(&self) -> u32 {
            self.asked.load(Ordering::SeqCst)
        }

        fn gauge(&self) -> i64 {
            self.metrics.upstream_answering.get()
        }

        fn timeouts(&self) -> u64 {
            self.metrics
                .upstream_check_failures
                .get_or_create(&CheckFailureLabels { kind: "timeout" })
                .get()
        }
    }

    /// Sleeps until `secs` after the start (paused time: at once), between two checks.
    async fn at(start: tokio::time::Instant, secs: f64) {
        tokio::time::sleep_until(start + Duration::from_secs_f64(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn misses_count_after_the_threshold_in_a_row_and_one_answer_recovers() {
        let start = tokio::time::Instant::now();
        let s = Scripted::start(
            config("    interval: 10s\n    timeout: 5s\n    failureThreshold: 3\n"),
            false,
        );
        // Never answered: not answering, and asked again every second.
        at(start, 0.5).await;
        assert_eq!(
            s.check.problem().unwrap(),
            "upstream http://127.0.0.1:8000/mcp has not answered MCP yet: timed out after 5s"
        );
        assert_eq!(s.gauge(), 0);
        s.answer(true);
        at(start, 1.5).await;
        assert_eq!(s.asked(), 2, "checked at 0s and 1s");
        assert_eq!(s.check.problem(), None);
        assert_eq!(s.gauge(), 1);

        // Answered once: checks every 10s (11s, 21s, 31s); two misses are not enough.
        s.answer(false);
        at(start, 21.5).await;
        assert_eq!(s.asked(), 4);
        assert_eq!(s.check.problem(), None, "two misses of three");
        at(start, 31.5).await;
        assert_eq!(
            s.check.problem().unwrap(),
            "upstream http://127.0.0.1:8000/mcp has not answered MCP for 3 checks: timed out after 5s"
        );
        assert_eq!(s.gauge(), 0);
        assert_eq!(
            s.timeouts(),
            4,
            "the miss before the first answer counts too"
        );

        // One answer brings it back.
        s.answer(true);
        at(start, 41.5).await;
        assert_eq!(s.asked(), 6);
        assert_eq!(s.check.problem(), None);
        assert_eq!(s.gauge(), 1);
        let report: serde_json::Value = serde_json::from_str(&s.check.report_json()).unwrap();
        assert_eq!(report["answering"], true);
        assert_eq!(report["consecutiveMisses"], 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_never_answers_never_counts_as_answering() {
        let start = tokio::time::Instant::now();
        let s = Scripted::start(
            config("    interval: 10s\n    timeout: 5s\n    failureThreshold: 1\n"),
            false,
        );
        at(start, 60.5).await;
        assert_eq!(s.asked(), 61, "every second while it never answered");
        assert!(
            s.check
                .problem()
                .unwrap()
                .contains("has not answered MCP yet: timed out after 5s")
        );
        assert_eq!(s.gauge(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reloaded_config_sets_the_next_rounds() {
        let start = tokio::time::Instant::now();
        let s = Scripted::start(config("    interval: 10s\n    timeout: 5s\n"), true);
        at(start, 0.5).await;
        *s.config.lock().unwrap() = config("    interval: 2s\n    timeout: 1s\n");
        // The pause under way ends at 10s; then every 2s.
        at(start, 14.5).await;
        assert_eq!(s.asked(), 4, "checked at 0s, 10s, 12s and 14s");
        s.answer(false);
        at(start, 20.5).await;
        // The default threshold (3) applies: misses at 16s, 18s and 20s.
        assert!(
            s.check
                .problem()
                .unwrap()
                .ends_with("has not answered MCP for 3 checks: timed out after 1s")
        );
    }
}
