//! What a server is, as its sidecar saw it answer MCP: the operator reads `GET /upstream` on
//! a ready pod's admin port, through the server's Service, and turns it into the `Verified`
//! condition and `status.mcp`.
//!
//! The sidecar checks Conduit every few seconds; the operator asks it at most once per
//! [`Verifier::every`] per server and writes status only when the answer changed, so a
//! converged operator stays quiet. The Service only routes to ready pods: with none, there is
//! nobody to ask, and the condition says so rather than guess.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sluice_crds::conditions::reasons;
use sluice_crds::server::McpServerInfo;
use tokio::time::Instant;

use super::status::Verdict;
use crate::key::ObjectKey;

/// The sidecar's report, `GET /upstream` on its admin port (sluice-proxy's
/// `upstream_check::Report`); fields the operator does not read are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarReport {
    pub answering: bool,
    #[serde(default)]
    pub consecutive_misses: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub protocol_version: Option<String>,
    #[serde(default)]
    pub server_info: Option<ServerInfo>,
    #[serde(default)]
    pub tools: Option<u64>,
    #[serde(default, rename = "behindOAuth")]
    pub behind_oauth: bool,
}

/// `serverInfo` of the MCP `initialize` result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ServerInfo {
    pub name: String,
    #[serde(default)]
    pub version: String,
}

/// What the operator learned about a server: the `Verified` verdict and, when it answered,
/// what it said of itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    pub verdict: Verdict,
    pub info: Option<McpServerInfo>,
}

/// Asks sidecars, remembering each server's last answer for [`Verifier::every`].
#[derive(Debug)]
pub struct Verifier {
    /// Where a server's sidecar admin port is: `{name}` and `{namespace}` are replaced, e.g.
    /// `http://{name}.{namespace}.svc:9090`.
    url_template: String,
    /// How long an answer is reused.
    pub every: Duration,
    timeout: Duration,
    answers: Mutex<HashMap<ObjectKey, Answer>>,
}

/// A sidecar's report, or why there was none, and when it was asked.
type Answer = (Instant, Result<SidecarReport, String>);

/// Largest report read: a few hundred bytes in practice.
const MAX_REPORT_BYTES: usize = 64 * 1024;

impl Verifier {
    pub fn new(url_template: String, every: Duration) -> Self {
        Self {
            url_template,
            every,
            timeout: Duration::from_secs(2),
            answers: Mutex::new(HashMap::new()),
        }
    }

    /// The verification of `key`, asking its sidecar when the last answer is older than
    /// [`Verifier::every`] and `ready_pods` says there is a sidecar to ask.
    pub async fn verify(&self, key: &ObjectKey, ready_pods: i32) -> Verification {
        if ready_pods < 1 {
            self.forget(key);
            return Verification {
                verdict: Verdict::unknown(
                    reasons::NO_READY_POD,
                    "no pod is ready, so no sidecar to ask whether the server answers MCP",
                ),
                info: None,
            };
        }
        let url = self.report_url(key);
        let cached = self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.every)
            .map(|(_, answer)| answer.clone());
        let answer = match cached {
            Some(answer) => answer,
            None => {
                let answer = fetch(&url, self.timeout).await;
                self.answers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.clone(), (Instant::now(), answer.clone()));
                answer
            }
        };
        verification(&url, answer)
    }

    /// Forgets a server (deleted, or without ready pods).
    pub fn forget(&self, key: &ObjectKey) {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    fn report_url(&self, key: &ObjectKey) -> String {
        let base = self
            .url_template
            .replace("{name}", &key.name)
            .replace("{namespace}", &key.namespace);
        format!("{}/upstream", base.trim_end_matches('/'))
    }
}

/// The verdict a report (or the failure to get one) calls for.
pub fn verification(url: &str, answer: Result<SidecarReport, String>) -> Verification {
    let report = match answer {
        Ok(report) => report,
        Err(error) => {
            return Verification {
                verdict: Verdict::unknown(
                    reasons::SIDECAR_UNREACHABLE,
                    format!(
                        "cannot read the sidecar's report at {url}: {error} (the NetworkPolicy's metricsFrom must admit the operator's pods to the admin port)"
                    ),
                ),
                info: None,
            };
        }
    };
    if !report.answering {
        let why = report
            .last_error
            .as_deref()
            .unwrap_or("it has not answered yet");
        return Verification {
            verdict: Verdict::no(
                reasons::NOT_ANSWERING,
                format!(
                    "the server did not answer the sidecar's last {} MCP checks: {why}",
                    report.consecutive_misses
                ),
            ),
            info: None,
        };
    }
    if report.behind_oauth {
        return Verification {
            verdict: Verdict::yes(
                reasons::ANSWERS_BEHIND_OAUTH,
                "the server answers MCP requests with an OAuth challenge; its name, version and tools are shown to logged-in callers only",
            ),
            info: None,
        };
    }
    let info = McpServerInfo {
        protocol_version: report.protocol_version.clone(),
        name: report.server_info.as_ref().map(|s| s.name.clone()),
        version: report.server_info.as_ref().map(|s| s.version.clone()),
        tools: report.tools,
    };
    let mut message = format!(
        "answers MCP {}",
        info.protocol_version
            .as_deref()
            .unwrap_or("(version not said)")
    );
    if let Some(server) = &report.server_info {
        message.push_str(&format!(" as {} {}", server.name, server.version));
    }
    if let Some(tools) = info.tools {
        message.push_str(&format!(" with {tools} tools"));
    }
    Verification {
        verdict: Verdict::yes(reasons::ANSWERS_MCP, message),
        info: Some(info),
    }
}

/// One GET of `url` (plain HTTP: the admin port inside the cluster), bounded in time and size.
async fn fetch(url: &str, timeout: Duration) -> Result<SidecarReport, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| "the URL names no host".to_string())?
        .clone();
    let exchange = async {
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((authority.host(), port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let connection = tokio::spawn(connection);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::get(path)
            .header(hyper::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_REPORT_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        connection.abort();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        serde_json::from_slice::<SidecarReport>(&body)
            .map_err(|e| format!("not a sidecar report: {e}"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::status::Truth;

    const URL: &str = "http://phab.tools.svc:9090/upstream";

    fn report(json: serde_json::Value) -> SidecarReport {
        serde_json::from_value(json).expect("a report")
    }

    #[test]
    fn a_report_reads_as_the_sidecar_writes_it() {
        let answered = report(serde_json::json!({
            "endpoint": "http://127.0.0.1:8000/mcp", "answering": true,
            "checkedAt": "2026-12-06T00:00:00Z", "lastAnsweredAt": "2026-12-06T00:00:00Z",
            "consecutiveMisses": 0, "lastError": null, "protocolVersion": "2025-06-18",
            "serverInfo": {"name": "Phabricator MCP Server", "version": "1.0"},
            "tools": 51, "behindOAuth": false,
        }));
        let verification = verification(URL, Ok(answered));
        assert_eq!(verification.verdict.status, Truth::True);
        assert_eq!(verification.verdict.reason, reasons::ANSWERS_MCP);
        assert_eq!(
            verification.verdict.message,
            "answers MCP 2025-06-18 as Phabricator MCP Server 1.0 with 51 tools"
        );
        let info = verification.info.expect("info");
        assert_eq!(info.tools, Some(51));
        assert_eq!(info.name.as_deref(), Some("Phabricator MCP Server"));
    }

    #[test]
    fn every_other_answer_has_its_verdict() {
        let wedged = report(serde_json::json!({
            "answering": false, "consecutiveMisses": 3,
            "lastError": "no answer within 5s",
        }));
        let v = verification(URL, Ok(wedged));
        assert_eq!(
            (v.verdict.status, v.verdict.reason),
            (Truth::False, reasons::NOT_ANSWERING)
        );
        assert!(
            v.verdict
                .message
                .contains("last 3 MCP checks: no answer within 5s")
        );
        assert!(v.info.is_none());

        let oauth = report(serde_json::json!({"answering": true, "behindOAuth": true}));
        let v = verification(URL, Ok(oauth));
        assert_eq!(
            (v.verdict.status, v.verdict.reason),
            (Truth::True, reasons::ANSWERS_BEHIND_OAUTH)
        );
        assert!(v.info.is_none());

        let v = verification(URL, Err("connection refused".into()));
        assert_eq!(
            (v.verdict.status, v.verdict.reason),
            (Truth::Unknown, reasons::SIDECAR_UNREACHABLE)
        );
        assert!(v.verdict.message.contains(URL), "{}", v.verdict.message);
        assert!(v.verdict.message.contains("metricsFrom"));
    }

    #[tokio::test]
    async fn no_ready_pod_is_no_one_to_ask() {
        let verifier = Verifier::new(
            "http://{name}.{namespace}.svc:9090".into(),
            Duration::from_secs(60),
        );
        let key = ObjectKey {
            kind: crate::key::SERVER_KIND,
            namespace: "tools".into(),
            name: "phab".into(),
        };
        assert_eq!(verifier.report_url(&key), URL);
        let v = verifier.verify(&key, 0).await;
        assert_eq!(
            (v.verdict.status, v.verdict.reason),
            (Truth::Unknown, reasons::NO_READY_POD)
        );
    }
}
