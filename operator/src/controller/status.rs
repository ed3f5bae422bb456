//! Status of McpServers and McpRoutes: conditions computed from what render and the cluster
//! say, written with server-side apply on `/status`, and only when they change.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde_json::json;
use sluice_crds::conditions::{self, reasons};
use sluice_crds::route::DiscoveryUrls;
use sluice_crds::{
    API_VERSION, McpRoute, McpRouteStatus, McpServer, McpServerSpec, McpServerStatus,
};

use super::FIELD_MANAGER;
use super::verify::Verification;
use crate::render::{AcceptedRoute, Notice};
use crate::{Error, Result};

/// A condition's `status`, spelled as the API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// What one condition says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: Truth,
    /// From `sluice_crds::conditions::reasons`.
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    /// A `True` verdict.
    pub fn yes(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: Truth::True,
            reason,
            message: message.into(),
        }
    }

    /// A `False` verdict.
    pub fn no(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: Truth::False,
            reason,
            message: message.into(),
        }
    }

    /// An `Unknown` verdict: nothing to judge by.
    pub fn unknown(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: Truth::Unknown,
            reason,
            message: message.into(),
        }
    }
}

/// Condition `type_` saying `verdict`. Its `lastTransitionTime` stays what it was while the
/// status (True/False) stays the same; a new reason or message is no transition.
pub fn condition(
    type_: &str,
    verdict: &Verdict,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = verdict.status.as_str();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: verdict.reason.into(),
        message: verdict.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// The condition of type `type_`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `new` differs from `previous` as the API would store them (times in seconds).
pub fn changed<T: Serialize>(previous: Option<&T>, new: &T) -> bool {
    let new = serde_json::to_value(new).ok();
    let previous = previous.and_then(|p| serde_json::to_value(p).ok());
    new != previous
}

// === McpServer ===

/// What decides a server's status.
#[derive(Clone, Debug, Default)]
pub struct ServerFacts<'a> {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The pods the server should have now ([`desired_replicas`]).
    pub desired_replicas: i32,
    /// The pods' label selector, for the scale subresource.
    pub selector: Option<String>,
    /// Why the server cannot be (fully) applied: a spec render refuses, or objects the API
    /// server refused. Overrides the Deployment's readiness.
    pub problem: Option<Verdict>,
    /// Referenced Secrets and ConfigMaps that do not exist: `(kind, name)`.
    pub missing: Vec<(&'static str, String)>,
    pub deployment: Option<&'a Deployment>,
    /// Why it works, but not as it should.
    pub degraded: Vec<Notice>,
    /// The in-cluster MCP endpoint.
    pub url: Option<String>,
    /// OAuth discovery URLs of the server's own entry point (OAuth mode).
    pub discovery: Option<DiscoveryUrls>,
    /// What a sidecar said of Conduit; `None`: not asked this time (the previous `Verified`
    /// condition and `mcp` stay).
    pub verification: Option<Verification>,
}

/// The status `facts` call for, keeping transition times from `previous`.
pub fn server_status(
    previous: Option<&McpServerStatus>,
    facts: &ServerFacts<'_>,
    now: &Time,
) -> McpServerStatus {
    let old = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let rollout = Rollout::of(facts.deployment, facts.desired_replicas);
    let ready = if let Some(problem) = &facts.problem {
        problem.clone()
    } else if !facts.missing.is_empty() {
        missing_verdict(&facts.missing)
    } else {
        rollout.ready.clone()
    };
    let degraded = match facts.degraded.first() {
        Some(first) => Verdict::yes(
            first.reason,
            facts
                .degraded
                .iter()
                .map(|n| n.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => Verdict::no(reasons::AS_EXPECTED, ""),
    };
    let generation = facts.generation;
    let mut conditions = vec![
        condition(conditions::READY, &ready, old, generation, now),
        condition(
            conditions::PROGRESSING,
            &rollout.progressing,
            old,
            generation,
            now,
        ),
        condition(conditions::DEGRADED, &degraded, old, generation, now),
    ];
    let mcp = match &facts.verification {
        Some(verification) => {
            conditions.push(condition(
                conditions::VERIFIED,
                &verification.verdict,
                old,
                generation,
                now,
            ));
            verification.info.clone()
        }
        None => {
            conditions.extend(find(old, conditions::VERIFIED).cloned());
            previous.and_then(|s| s.mcp.clone())
        }
    };
    McpServerStatus {
        observed_generation: generation,
        conditions,
        mcp,
        replicas: rollout.replicas,
        ready_replicas: rollout.ready_replicas,
        selector: facts.selector.clone(),
        url: facts.url.clone(),
        discovery: facts.discovery.clone(),
    }
}

/// The pods a server should have now: `spec.replicas`, or with an autoscaler the count it
/// chose (the Deployment's), never under its minimum.
pub fn desired_replicas(spec: &McpServerSpec, deployment: Option<&Deployment>) -> i32 {
    match &spec.autoscaling {
        None => spec.replicas,
        Some(autoscaling) => deployment
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(autoscaling.min_replicas)
            .max(autoscaling.min_replicas),
    }
}

fn missing_verdict(missing: &[(&'static str, String)]) -> Verdict {
    let reason = if missing.iter().any(|(kind, _)| *kind == "Secret") {
        reasons::SECRET_NOT_FOUND
    } else {
        reasons::CONFIG_MAP_NOT_FOUND
    };
    let listed: Vec<String> = missing
        .iter()
        .map(|(kind, name)| format!("{kind} {name:?}"))
        .collect();
    Verdict::no(
        reason,
        format!(
            "{} not found in the namespace; the pods cannot start until it exists",
            listed.join(", ")
        ),
    )
}

/// Readiness and rollout progress of a server's Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// The `Ready` verdict.
    pub ready: Verdict,
    /// The `Progressing` verdict.
    pub progressing: Verdict,
    /// Pods of the Deployment.
    pub replicas: Option<i32>,
    /// Pods ready to serve.
    pub ready_replicas: Option<i32>,
}

impl Rollout {
    /// Reads the Deployment's status the way `kubectl rollout status` does.
    pub fn of(deployment: Option<&Deployment>, desired: i32) -> Self {
        let Some(deployment) = deployment else {
            return Self {
                ready: Verdict::no(
                    reasons::DEPLOYMENT_UNAVAILABLE,
                    "the Deployment does not exist yet",
                ),
                progressing: Verdict::yes(reasons::ROLLING_OUT, "creating the Deployment"),
                replicas: None,
                ready_replicas: None,
            };
        };
        let status = deployment.status.clone().unwrap_or_default();
        let ready_replicas = status.ready_replicas.unwrap_or(0);
        let replicas = status.replicas.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0);
        let available = status.available_replicas.unwrap_or(0);
        let generation = deployment.metadata.generation.unwrap_or(0);
        let observed = status.observed_generation.unwrap_or(0);

        let ready = if desired == 0 {
            Verdict::no(
                reasons::DEPLOYMENT_UNAVAILABLE,
                "scaled to zero (spec.replicas is 0)",
            )
        } else if ready_replicas >= desired {
            Verdict::yes(
                reasons::AVAILABLE,
                format!("{ready_replicas} of {desired} pods ready"),
            )
        } else {
            Verdict::no(
                reasons::DEPLOYMENT_UNAVAILABLE,
                format!("{ready_replicas} of {desired} pods ready"),
            )
        };
        let rolling = |message: String| Verdict::yes(reasons::ROLLING_OUT, message);
        let progressing = if observed < generation {
            rolling("waiting for the Deployment controller to see the new spec".into())
        } else if updated < desired {
            rolling(format!("{updated} of {desired} pods updated"))
        } else if replicas > updated {
            rolling(format!(
                "{} old pods are terminating",
                replicas.saturating_sub(updated)
            ))
        } else if available < updated {
            rolling(format!("{available} of {updated} updated pods available"))
        } else {
            Verdict::no(reasons::ROLLED_OUT, "the Deployment is up to date")
        };
        Self {
            ready,
            progressing,
            replicas: Some(replicas),
            ready_replicas: Some(ready_replicas),
        }
    }
}

// === McpRoute ===

/// What decides a route's status.
#[derive(Clone, Debug)]
pub enum RouteFacts<'a> {
    /// Part of its server's config.
    Accepted {
        /// Its port and URLs.
        accepted: &'a AcceptedRoute,
        /// Whether its objects are in place.
        programmed: Verdict,
    },
    /// Left out of its server's config.
    Rejected {
        /// From `sluice_crds::conditions::reasons`.
        reason: &'static str,
        message: String,
    },
}

/// The status `facts` call for, keeping transition times from `previous`.
pub fn route_status(
    previous: Option<&McpRouteStatus>,
    generation: Option<i64>,
    facts: &RouteFacts<'_>,
    now: &Time,
) -> McpRouteStatus {
    let old = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    match facts {
        RouteFacts::Accepted {
            accepted,
            programmed,
        } => McpRouteStatus {
            observed_generation: generation,
            conditions: vec![
                condition(
                    conditions::ACCEPTED,
                    &Verdict::yes(reasons::ACCEPTED, "part of its server's sidecar config"),
                    old,
                    generation,
                    now,
                ),
                condition(conditions::PROGRAMMED, programmed, old, generation, now),
            ],
            url: Some(accepted.url.clone()),
            internal_url: Some(accepted.internal_url.clone()),
            listener_port: Some(i32::from(accepted.listener_port)),
            discovery: accepted.discovery.clone(),
        },
        RouteFacts::Rejected { reason, message } => {
            let verdict = Verdict::no(reason, message.clone());
            McpRouteStatus {
                observed_generation: generation,
                conditions: vec![
                    condition(conditions::ACCEPTED, &verdict, old, generation, now),
                    condition(conditions::PROGRAMMED, &verdict, old, generation, now),
                ],
                ..McpRouteStatus::default()
            }
        }
    }
}

// === writing ===

/// Writes an McpServer's status with server-side apply, unless it is what the object has.
/// Returns whether it wrote.
pub async fn write_server(
    api: &Api<McpServer>,
    server: &McpServer,
    status: &McpServerStatus,
) -> Result<bool> {
    if !changed(server.status.as_ref(), status) {
        return Ok(false);
    }
    let name = server.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({
        "apiVersion": API_VERSION,
        "kind": "McpServer",
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(name, &apply_params(), &Patch::Apply(patch))
        .await
        .map_err(|e| Error::kube(format!("write the status of McpServer {name}"), e))?;
    Ok(true)
}

/// Writes an McpRoute's status with server-side apply, unless it is what the object has.
/// Returns whether it wrote.
pub async fn write_route(
    api: &Api<McpRoute>,
    route: &McpRoute,
    status: &McpRouteStatus,
) -> Result<bool> {
    if !changed(route.status.as_ref(), status) {
        return Ok(false);
    }
    let name = route.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({
        "apiVersion": API_VERSION,
        "kind": "McpRoute",
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(name, &apply_params(), &Patch::Apply(patch))
        .await
        .map_err(|e| Error::kube(format!("write the status of McpRoute {name}"), e))?;
    Ok(true)
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Now, as a condition time.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::ObjectMeta;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn deployment(generation: i64, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            status: Some(status),
            ..Deployment::default()
        }
    }

    fn settled(replicas: i32, ready: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(replicas),
            updated_replicas: Some(replicas),
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            ..DeploymentStatus::default()
        }
    }

    #[test]
    fn transition_time_stays_while_the_status_does() {
        let first = condition("Ready", &Verdict::no("A", "x"), &[], Some(1), &at(100));
        assert_eq!(first.last_transition_time, at(100));
        let same = condition(
            "Ready",
            &Verdict::no("B", "other message"),
            std::slice::from_ref(&first),
            Some(2),
            &at(200),
        );
        assert_eq!(
            same.last_transition_time,
            at(100),
            "reason changes are no transition"
        );
        assert_eq!(same.reason, "B");
        assert_eq!(same.observed_generation, Some(2));
        let flipped = condition("Ready", &Verdict::yes("C", ""), &[same], Some(2), &at(300));
        assert_eq!(flipped.last_transition_time, at(300));
    }

    #[test]
    fn readiness_follows_ready_replicas() {
        let ready = Rollout::of(Some(&deployment(1, settled(2, 2))), 2);
        assert_eq!(ready.ready.status, Truth::True);
        assert_eq!(ready.ready.reason, reasons::AVAILABLE);
        assert_eq!(ready.progressing.reason, reasons::ROLLED_OUT);
        assert_eq!(ready.progressing.status, Truth::False);
        assert_eq!((ready.replicas, ready.ready_replicas), (Some(2), Some(2)));

        let short = Rollout::of(Some(&deployment(1, settled(2, 1))), 2);
        assert_eq!(short.ready.reason, reasons::DEPLOYMENT_UNAVAILABLE);
        assert_eq!(short.ready.message, "1 of 2 pods ready");
        assert_eq!(short.progressing.reason, reasons::ROLLING_OUT);

        let none = Rollout::of(None, 1);
        assert_eq!(none.ready.status, Truth::False);
        assert_eq!(none.progressing.status, Truth::True);

        let zero = Rollout::of(Some(&deployment(1, settled(0, 0))), 0);
        assert_eq!(zero.ready.status, Truth::False);
        assert_eq!(zero.progressing.reason, reasons::ROLLED_OUT);
    }

    #[test]
    fn a_new_spec_not_yet_observed_is_rolling_out() {
        let rollout = Rollout::of(Some(&deployment(2, settled(1, 1))), 1);
        assert_eq!(rollout.ready.status, Truth::True);
        assert_eq!(rollout.progressing.reason, reasons::ROLLING_OUT);
        let old_pods = DeploymentStatus {
            replicas: Some(3),
            ..settled(2, 2)
        };
        let rollout = Rollout::of(Some(&deployment(1, old_pods)), 2);
        assert_eq!(rollout.progressing.message, "1 old pods are terminating");
    }

    #[test]
    fn problems_and_missing_references_override_readiness() {
        let live = deployment(1, settled(1, 1));
        let mut facts = ServerFacts {
            generation: Some(3),
            desired_replicas: 1,
            deployment: Some(&live),
            missing: vec![("ConfigMap", "ca".into()), ("Secret", "oauth".into())],
            ..ServerFacts::default()
        };
        let status = server_status(None, &facts, &at(1));
        let ready = find(&status.conditions, conditions::READY).unwrap();
        assert_eq!(ready.reason, reasons::SECRET_NOT_FOUND);
        assert!(
            ready.message.contains("Secret \"oauth\""),
            "{}",
            ready.message
        );
        assert_eq!(status.observed_generation, Some(3));

        facts.problem = Some(Verdict::no(reasons::INVALID_SPEC, "bad"));
        let status = server_status(None, &facts, &at(1));
        assert_eq!(
            find(&status.conditions, conditions::READY).unwrap().reason,
            reasons::INVALID_SPEC
        );

        facts.problem = None;
        facts.missing.clear();
        let status = server_status(None, &facts, &at(1));
        assert_eq!(
            find(&status.conditions, conditions::READY).unwrap().status,
            "True"
        );
    }

    #[test]
    fn degraded_names_the_first_notice_and_lists_all() {
        let facts = ServerFacts {
            degraded: vec![
                Notice {
                    reason: reasons::INSECURE,
                    message: "tls off".into(),
                },
                Notice {
                    reason: reasons::UNAUTHENTICATED,
                    message: "open door".into(),
                },
            ],
            ..ServerFacts::default()
        };
        let status = server_status(None, &facts, &at(1));
        let degraded = find(&status.conditions, conditions::DEGRADED).unwrap();
        assert_eq!(degraded.status, "True");
        assert_eq!(degraded.reason, reasons::INSECURE);
        assert_eq!(degraded.message, "tls off; open door");
        let fine = server_status(None, &ServerFacts::default(), &at(1));
        assert_eq!(
            find(&fine.conditions, conditions::DEGRADED).unwrap().reason,
            reasons::AS_EXPECTED
        );
    }

    #[test]
    fn an_unchanged_status_is_not_a_change() {
        let facts = ServerFacts {
            generation: Some(1),
            desired_replicas: 1,
            url: Some("http://phab.tools.svc/mcp".into()),
            ..ServerFacts::default()
        };
        let first = server_status(None, &facts, &at(10));
        assert!(changed(None, &first));
        let second = server_status(Some(&first), &facts, &at(20));
        assert!(!changed(Some(&first), &second));
        let moved = ServerFacts {
            generation: Some(2),
            ..facts
        };
        assert!(changed(
            Some(&first),
            &server_status(Some(&first), &moved, &at(30))
        ));
    }

    #[test]
    fn the_servers_discovery_urls_are_reported_and_dropped_with_them() {
        let discovery = DiscoveryUrls {
            protected_resource: Some(
                "http://phab.tools.svc/.well-known/oauth-protected-resource/mcp".into(),
            ),
            redirect_uri: Some("https://phab.example.com/auth/callback".into()),
            ..DiscoveryUrls::default()
        };
        let facts = ServerFacts {
            url: Some("http://phab.tools.svc/mcp".into()),
            discovery: Some(discovery.clone()),
            ..ServerFacts::default()
        };
        let status = server_status(None, &facts, &at(1));
        assert_eq!(status.discovery, Some(discovery));
        // A spec that no longer renders (or left OAuth mode) reports none.
        let without = server_status(Some(&status), &ServerFacts::default(), &at(2));
        assert_eq!(without.discovery, None);
        assert!(changed(Some(&status), &without));
    }

    #[test]
    fn route_statuses() {
        let accepted = AcceptedRoute {
            listener_port: 8081,
            internal_url: "http://r.tools.svc/ai/mcp".into(),
            public_url: Some("https://h/ai".into()),
            url: "https://h/ai/mcp".into(),
            discovery: None,
        };
        let status = route_status(
            None,
            Some(4),
            &RouteFacts::Accepted {
                accepted: &accepted,
                programmed: Verdict::yes(reasons::PROGRAMMED, ""),
            },
            &at(1),
        );
        assert_eq!(status.listener_port, Some(8081));
        assert_eq!(status.url.as_deref(), Some("https://h/ai/mcp"));
        assert_eq!(
            find(&status.conditions, conditions::ACCEPTED)
                .unwrap()
                .status,
            "True"
        );

        let rejected = route_status(
            Some(&status),
            Some(5),
            &RouteFacts::Rejected {
                reason: reasons::CONFLICTING_ROUTE,
                message: "taken".into(),
            },
            &at(2),
        );
        assert_eq!(rejected.listener_port, None);
        assert_eq!(rejected.url, None);
        let accepted_condition = find(&rejected.conditions, conditions::ACCEPTED).unwrap();
        assert_eq!(accepted_condition.reason, reasons::CONFLICTING_ROUTE);
        assert_eq!(accepted_condition.last_transition_time, at(2));
        assert_eq!(rejected.observed_generation, Some(5));
    }
}
