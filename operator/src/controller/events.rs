//! Kubernetes Events for the transitions a user should notice, with CamelCase reasons.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType, Recorder};
use sluice_crds::conditions::{self, reasons};
use sluice_crds::{McpRouteStatus, McpServerStatus};

use super::status::find;

/// The `action` of every event the operator publishes.
const ACTION: &str = "Reconcile";

/// An event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notable {
    /// `true` for a warning, `false` for a normal event.
    pub warning: bool,
    /// CamelCase reason (the condition's).
    pub reason: String,
    pub note: String,
}

/// The events between two statuses of a server: Ready turning true or false (or false for
/// a new reason), Degraded turning on, changing reason, or clearing. A server that is
/// merely starting (no Deployment yet, pods not ready) is not worth a warning.
pub fn server_transitions(
    previous: Option<&McpServerStatus>,
    current: &McpServerStatus,
) -> Vec<Notable> {
    let old = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut events = Vec::new();
    if let Some(ready) = find(&current.conditions, conditions::READY) {
        let before = find(old, conditions::READY);
        let starting = before.is_none() && ready.reason == reasons::DEPLOYMENT_UNAVAILABLE;
        if moved(before, ready) && !starting {
            events.push(notable(ready, ready.status != "True"));
        }
    }
    if let Some(degraded) = find(&current.conditions, conditions::DEGRADED) {
        let before = find(old, conditions::DEGRADED);
        let was_degraded = before.is_some_and(|c| c.status == "True");
        if degraded.status == "True" && moved(before, degraded) {
            events.push(notable(degraded, true));
        } else if degraded.status != "True" && was_degraded {
            events.push(Notable {
                warning: false,
                reason: degraded.reason.clone(),
                note: "no longer degraded".into(),
            });
        }
    }
    events
}

/// The events between two statuses of a route: rejected (or rejected for a new reason), and
/// accepted again after a rejection.
pub fn route_transitions(
    previous: Option<&McpRouteStatus>,
    current: &McpRouteStatus,
) -> Vec<Notable> {
    let old = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let Some(accepted) = find(&current.conditions, conditions::ACCEPTED) else {
        return Vec::new();
    };
    let before = find(old, conditions::ACCEPTED);
    if accepted.status == "True" {
        if before.is_some_and(|c| c.status != "True") {
            return vec![notable(accepted, false)];
        }
        return Vec::new();
    }
    if moved(before, accepted) {
        return vec![notable(accepted, true)];
    }
    Vec::new()
}

/// Whether a condition changed status, or reason while false.
fn moved(before: Option<&Condition>, now: &Condition) -> bool {
    match before {
        None => true,
        Some(before) => {
            before.status != now.status || (now.status != "True" && before.reason != now.reason)
        }
    }
}

fn notable(condition: &Condition, warning: bool) -> Notable {
    Notable {
        warning,
        reason: condition.reason.clone(),
        note: format!("{}: {}", condition.type_, condition.message),
    }
}

/// Publishes `events` about `object`. A failure is logged, never fatal: events are a
/// courtesy, the status is the record.
pub async fn publish(recorder: &Recorder, object: &ObjectReference, events: Vec<Notable>) {
    for event in events {
        let published = recorder
            .publish(
                &Event {
                    type_: if event.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: event.reason.clone(),
                    note: Some(truncate(&event.note)),
                    action: ACTION.into(),
                    secondary: None,
                },
                object,
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(
                object = object.name.as_deref().unwrap_or_default(),
                reason = %event.reason,
                %error,
                "could not publish an event"
            );
        }
    }
}

/// Event notes are limited to 1 KiB.
fn truncate(note: &str) -> String {
    const LIMIT: usize = 1024;
    if note.len() <= LIMIT {
        return note.to_string();
    }
    let mut end = LIMIT - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: "m".into(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    fn server(conditions: Vec<Condition>) -> McpServerStatus {
        McpServerStatus {
            conditions,
            ..McpServerStatus::default()
        }
    }

    fn reasons_of(events: &[Notable]) -> Vec<(bool, &str)> {
        events
            .iter()
            .map(|e| (e.warning, e.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_starting_server_is_quiet_until_it_is_ready() {
        let starting = server(vec![
            condition(conditions::READY, "False", reasons::DEPLOYMENT_UNAVAILABLE),
            condition(conditions::DEGRADED, "False", reasons::AS_EXPECTED),
        ]);
        assert!(server_transitions(None, &starting).is_empty());
        assert!(server_transitions(Some(&starting), &starting).is_empty());
        let ready = server(vec![
            condition(conditions::READY, "True", reasons::AVAILABLE),
            condition(conditions::DEGRADED, "False", reasons::AS_EXPECTED),
        ]);
        assert_eq!(
            reasons_of(&server_transitions(Some(&starting), &ready)),
            [(false, reasons::AVAILABLE)]
        );
        assert!(server_transitions(Some(&ready), &ready).is_empty());
    }

    #[test]
    fn a_missing_secret_warns_at_once_and_again_only_for_a_new_reason() {
        let missing = server(vec![condition(
            conditions::READY,
            "False",
            reasons::SECRET_NOT_FOUND,
        )]);
        assert_eq!(
            reasons_of(&server_transitions(None, &missing)),
            [(true, reasons::SECRET_NOT_FOUND)]
        );
        assert!(server_transitions(Some(&missing), &missing).is_empty());
        let unavailable = server(vec![condition(
            conditions::READY,
            "False",
            reasons::DEPLOYMENT_UNAVAILABLE,
        )]);
        assert_eq!(
            reasons_of(&server_transitions(Some(&missing), &unavailable)),
            [(true, reasons::DEPLOYMENT_UNAVAILABLE)]
        );
    }

    #[test]
    fn degraded_warns_when_it_starts_and_notes_when_it_ends() {
        let fine = server(vec![condition(
            conditions::DEGRADED,
            "False",
            reasons::AS_EXPECTED,
        )]);
        let insecure = server(vec![condition(
            conditions::DEGRADED,
            "True",
            reasons::INSECURE,
        )]);
        assert_eq!(
            reasons_of(&server_transitions(Some(&fine), &insecure)),
            [(true, reasons::INSECURE)]
        );
        assert!(server_transitions(Some(&insecure), &insecure).is_empty());
        assert_eq!(
            reasons_of(&server_transitions(Some(&insecure), &fine)),
            [(false, reasons::AS_EXPECTED)]
        );
    }

    #[test]
    fn routes_warn_when_rejected_and_note_when_accepted_again() {
        let route = |status: &str, reason: &str| McpRouteStatus {
            conditions: vec![condition(conditions::ACCEPTED, status, reason)],
            ..McpRouteStatus::default()
        };
        let accepted = route("True", reasons::ACCEPTED);
        let conflict = route("False", reasons::CONFLICTING_ROUTE);
        assert!(route_transitions(None, &accepted).is_empty());
        assert_eq!(
            reasons_of(&route_transitions(Some(&accepted), &conflict)),
            [(true, reasons::CONFLICTING_ROUTE)]
        );
        assert!(route_transitions(Some(&conflict), &conflict).is_empty());
        assert_eq!(
            reasons_of(&route_transitions(Some(&conflict), &accepted)),
            [(false, reasons::ACCEPTED)]
        );
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let note = "é".repeat(1000);
        let cut = truncate(&note);
        assert!(cut.len() <= 1024);
        assert!(cut.ends_with("..."));
    }
}
