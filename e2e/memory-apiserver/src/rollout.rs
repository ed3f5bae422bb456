//! Playing kube-controller-manager's Deployment controller: the status a rollout reports.

use serde_json::{Map, Value, json};

/// The status of `deploy` with `ready` pods ready and every pod on the current template.
///
/// Mirrors the Deployment controller: `Available` holds once `ready` reaches
/// `replicas - maxUnavailable` (RollingUpdate; 25% by default, rounded down; none for
/// Recreate), `Progressing` says `NewReplicaSetAvailable` once all are ready. Zero counts are
/// omitted, as Go's `omitempty` does. Transition times of unchanged conditions are kept.
pub(crate) fn deployment_status(deploy: &Value, ready: i32, now: &str) -> Value {
    let replicas = deploy
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0);
    let ready = i64::from(ready).clamp(0, replicas);
    let generation = deploy
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let min_available = replicas - max_unavailable(deploy, replicas);
    let available = ready >= min_available;
    let complete = ready == replicas;
    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(generation));
    for (field, n) in [
        ("replicas", replicas),
        ("updatedReplicas", replicas),
        ("readyReplicas", ready),
        ("availableReplicas", ready),
        ("unavailableReplicas", replicas - ready),
    ] {
        if n != 0 {
            status.insert(field.into(), json!(n));
        }
    }
    let old = deploy
        .pointer("/status/conditions")
        .and_then(Value::as_array);
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let previous = old.and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        });
        let same = |key: &str, want: &str| {
            previous.and_then(|p| p.get(key)).and_then(Value::as_str) == Some(want)
        };
        let transition = match previous.and_then(|p| p.get("lastTransitionTime")) {
            Some(t) if same("status", status) => t.clone(),
            _ => json!(now),
        };
        let update = match previous.and_then(|p| p.get("lastUpdateTime")) {
            Some(t)
                if same("status", status)
                    && same("reason", reason)
                    && same("message", &message) =>
            {
                t.clone()
            }
            _ => json!(now),
        };
        json!({
            "type": type_,
            "status": status,
            "lastUpdateTime": update,
            "lastTransitionTime": transition,
            "reason": reason,
            "message": message,
        })
    };
    let name = deploy
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let conditions = vec![
        if available {
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            )
        } else {
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        },
        if complete {
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{name}\" has successfully progressed."),
            )
        } else {
            condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{name}\" is progressing."),
            )
        },
    ];
    status.insert("conditions".into(), Value::Array(conditions));
    Value::Object(status)
}

fn max_unavailable(deploy: &Value, replicas: i64) -> i64 {
    if deploy
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str)
        == Some("Recreate")
    {
        return 0;
    }
    let value = deploy.pointer("/spec/strategy/rollingUpdate/maxUnavailable");
    let n = match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(pct) => replicas * pct / 100,
            None => 0,
        },
        _ => replicas * 25 / 100,
    };
    n.clamp(0, replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": 3}, "spec": {"replicas": replicas}})
    }

    #[test]
    fn ready_rollout() {
        let s = deployment_status(&deploy(4), 4, "t0");
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["readyReplicas"], 4);
        assert!(s.get("unavailableReplicas").is_none());
        assert_eq!(s["conditions"][0]["status"], "True");
        assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
    }

    #[test]
    fn partial_rollout_respects_max_unavailable() {
        // 4 replicas, 25% → 1 may be unavailable: 3 ready is available, 2 is not.
        assert_eq!(
            deployment_status(&deploy(4), 3, "t")["conditions"][0]["status"],
            "True"
        );
        let s = deployment_status(&deploy(4), 2, "t");
        assert_eq!(s["conditions"][0]["status"], "False");
        assert_eq!(s["unavailableReplicas"], 2);
        assert!(
            deployment_status(&deploy(2), 0, "t")
                .get("readyReplicas")
                .is_none()
        );
    }

    #[test]
    fn unchanged_conditions_keep_their_times() {
        let mut d = deploy(1);
        d["status"] = deployment_status(&d, 1, "t0");
        let again = deployment_status(&d, 1, "t1");
        assert_eq!(again["conditions"][0]["lastTransitionTime"], "t0");
        assert_eq!(again, d["status"]);
    }
}
