//! What the checks so far say: the verdict `/readyz` and `/upstream/livez` follow, and what
//! `/upstream` reports. Pure state, fed one outcome per check.

use std::time::SystemTime;

use serde::Serialize;

use super::exchange::{Findings, Miss, ServerInfo};

/// The checks' verdict on the upstream.
#[derive(Debug)]
pub struct Verdict {
    /// The upstream's MCP endpoint, as messages name it.
    endpoint: String,
    /// When the last check ended; `None` before the first.
    checked_at: Option<SystemTime>,
    /// When a check last got an answer; `None` while the upstream never answered.
    last_answered_at: Option<SystemTime>,
    /// Checks missed since the last answer.
    consecutive_misses: u32,
    /// `upstream.check.failureThreshold` as of the last check.
    failure_threshold: u32,
    /// Why the last check missed; `None` when it got an answer.
    last_error: Option<String>,
    /// What the last answer told (kept through misses: it describes the server as last seen).
    findings: Findings,
}

impl Verdict {
    /// No check yet, for the upstream at `endpoint`.
    pub fn new(endpoint: String) -> Self {
        Self {
            endpoint,
            checked_at: None,
            last_answered_at: None,
            consecutive_misses: 0,
            failure_threshold: 1,
            last_error: None,
            findings: Findings::default(),
        }
    }

    /// Takes in the outcome of a check of `endpoint` that ended `at`.
    pub fn record(
        &mut self,
        endpoint: &str,
        outcome: &Result<Findings, Miss>,
        at: SystemTime,
        failure_threshold: u32,
    ) {
        if self.endpoint != endpoint {
            endpoint.clone_into(&mut self.endpoint);
        }
        self.checked_at = Some(at);
        self.failure_threshold = failure_threshold.max(1);
        match outcome {
            Ok(findings) => {
                self.last_answered_at = Some(at);
                self.consecutive_misses = 0;
                self.last_error = None;
                self.findings = findings.clone();
            }
            Err(miss) => {
                self.consecutive_misses = self.consecutive_misses.saturating_add(1);
                self.last_error = Some(miss.reason.clone());
            }
        }
    }

    /// Whether the upstream answers MCP: it has answered, and has not missed
    /// `failure_threshold` checks in a row since.
    pub fn answering(&self) -> bool {
        self.last_answered_at.is_some() && self.consecutive_misses < self.failure_threshold
    }

    /// Whether the upstream ever answered.
    pub fn ever_answered(&self) -> bool {
        self.last_answered_at.is_some()
    }

    /// Why the upstream does not count as answering; `None` when it does.
    pub fn problem(&self) -> Option<String> {
        if self.answering() {
            return None;
        }
        let endpoint = &self.endpoint;
        let reason = self.last_error.as_deref().unwrap_or("no reason known");
        Some(match (self.last_answered_at, self.checked_at) {
            (None, None) => {
                format!("upstream {endpoint} has not answered MCP yet (no check has finished)")
            }
            (None, Some(_)) => format!("upstream {endpoint} has not answered MCP yet: {reason}"),
            (Some(_), _) => format!(
                "upstream {endpoint} has not answered MCP for {} checks: {reason}",
                self.consecutive_misses
            ),
        })
    }

    /// What `/upstream` shows.
    pub fn report(&self) -> Report<'_> {
        Report {
            endpoint: &self.endpoint,
            answering: self.answering(),
            checked_at: self.checked_at.map(rfc3339),
            last_answered_at: self.last_answered_at.map(rfc3339),
            consecutive_misses: self.consecutive_misses,
            last_error: self.last_error.as_deref(),
            protocol_version: self.findings.protocol_version.as_deref(),
            server_info: self.findings.server.as_ref(),
            tools: self.findings.tools,
            behind_oauth: self.findings.behind_oauth,
        }
    }
}

/// The body of `GET /upstream`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report<'a> {
    /// The MCP endpoint checked.
    pub endpoint: &'a str,
    /// The verdict `/readyz` and `/upstream/livez` follow.
    pub answering: bool,
    pub checked_at: Option<String>,
    pub last_answered_at: Option<String>,
    pub consecutive_misses: u32,
    pub last_error: Option<&'a str>,
    pub protocol_version: Option<&'a str>,
    pub server_info: Option<&'a ServerInfo>,
    /// Tools `tools/list` named, every page counted; `None` when it did not say.
    pub tools: Option<u64>,
    /// The endpoint answered with an OAuth challenge.
    #[serde(rename = "behindOAuth")]
    pub behind_oauth: bool,
}

/// `at` as `2026-11-22T02:19:48Z`.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream_check::exchange::MissKind;

    const ENDPOINT: &str = "http://127.0.0.1:8000/mcp";

    fn answer() -> Result<Findings, Miss> {
        Ok(Findings {
            protocol_version: Some("2025-11-25".into()),
            server: Some(ServerInfo {
                name: "Conduit".into(),
                version: "1.0".into(),
            }),
            tools: Some(51),
            behind_oauth: false,
        })
    }

    fn miss(reason: &str) -> Result<Findings, Miss> {
        Err(Miss {
            kind: MissKind::Timeout,
            reason: reason.into(),
        })
    }

    #[test]
    fn not_answering_until_the_first_answer_then_until_the_threshold_of_misses() {
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut v = Verdict::new(ENDPOINT.into());
        assert_eq!(
            v.problem().unwrap(),
            "upstream http://127.0.0.1:8000/mcp has not answered MCP yet (no check has finished)"
        );
        v.record(ENDPOINT, &miss("cannot connect"), t(1), 3);
        assert_eq!(
            v.problem().unwrap(),
            "upstream http://127.0.0.1:8000/mcp has not answered MCP yet: cannot connect"
        );
        v.record(ENDPOINT, &answer(), t(2), 3);
        assert!(v.answering() && v.problem().is_none());
        v.record(ENDPOINT, &miss("timed out after 5s"), t(3), 3);
        v.record(ENDPOINT, &miss("timed out after 5s"), t(4), 3);
        assert!(v.answering(), "two misses of three");
        v.record(ENDPOINT, &miss("timed out after 5s"), t(5), 3);
        assert_eq!(
            v.problem().unwrap(),
            "upstream http://127.0.0.1:8000/mcp has not answered MCP for 3 checks: timed out after 5s"
        );
        let report = serde_json::to_value(v.report()).unwrap();
        assert_eq!(report["answering"], false);
        assert_eq!(report["consecutiveMisses"], 3);
        assert_eq!(report["checkedAt"], "1970-01-01T00:00:05Z");
        assert_eq!(report["lastAnsweredAt"], "1970-01-01T00:00:02Z");
        // What the last answer told stays, dated by lastAnsweredAt.
        assert_eq!(report["serverInfo"]["name"], "Conduit");
        assert_eq!(report["tools"], 51);

        v.record(ENDPOINT, &answer(), t(6), 3);
        assert!(v.answering());
        let report = serde_json::to_value(v.report()).unwrap();
        assert_eq!(report["lastError"], serde_json::Value::Null);
        assert_eq!(report["consecutiveMisses"], 0);
        assert_eq!(report["behindOAuth"], false);
    }

    #[test]
    fn a_threshold_of_one_fails_at_the_first_miss() {
        let mut v = Verdict::new(ENDPOINT.into());
        v.record(ENDPOINT, &answer(), SystemTime::UNIX_EPOCH, 1);
        v.record(ENDPOINT, &miss("x"), SystemTime::UNIX_EPOCH, 1);
        assert!(!v.answering());
    }
}
