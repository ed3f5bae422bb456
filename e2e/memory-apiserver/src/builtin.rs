//! The few defaults and validations of built-in kinds that the operator's behaviour depends
//! on, as the real registry strategies apply them: quantities in canonical form, a
//! Deployment's replica count and rollout strategy, and a PersistentVolumeClaim's immutable
//! spec. Every other built-in field is stored as written.

use serde_json::{Value, json};

use crate::catalog::ResourceType;
use crate::quantity_fields;
use crate::status::{ApiError, Cause};

/// Defaults, then validates, an object about to be stored.
pub(crate) fn default_and_validate(
    ty: &ResourceType,
    obj: &mut Value,
    name: &str,
) -> Result<(), ApiError> {
    quantity_fields::canonicalize(ty, obj)?;
    if is(ty, "apps", "deployments") {
        default_deployment_replicas(obj);
        default_deployment_strategy(obj);
        let causes = validate_deployment_strategy(obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&ty.subject(name), causes));
        }
    }
    Ok(())
}

/// Validates a change of a stored object.
pub(crate) fn validate_update(
    ty: &ResourceType,
    old: &Value,
    new: &Value,
    name: &str,
) -> Result<(), ApiError> {
    if is(ty, "", "persistentvolumeclaims") {
        let spec_but_requests = |obj: &Value| {
            let mut spec = obj.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(resources) = spec.get_mut("resources").and_then(Value::as_object_mut) {
                resources.remove("requests");
            }
            spec
        };
        if spec_but_requests(old) != spec_but_requests(new) {
            return Err(ApiError::invalid(
                &ty.subject(name),
                vec![Cause::forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                )],
            ));
        }
    }
    Ok(())
}

fn is(ty: &ResourceType, group: &str, plural: &str) -> bool {
    ty.group == group && ty.plural == plural
}

/// apps/v1 `SetDefaults_Deployment`: one replica when none is given, on every write (an
/// apply that lets go of the field's last owner resets the count to 1).
fn default_deployment_replicas(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("replicas").or_insert_with(|| json!(1));
    }
}

/// apps/v1 `SetDefaults_Deployment`: the strategy is a rolling update of 25% / 25% unless it
/// says otherwise. Fields defaulted here belong to no field manager, as on a real server.
fn default_deployment_strategy(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
    let Some(strategy) = strategy.as_object_mut() else {
        return;
    };
    let type_ = strategy
        .entry("type")
        .or_insert_with(|| json!("RollingUpdate"));
    if type_ != "RollingUpdate" {
        return;
    }
    let rolling = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
    if let Some(rolling) = rolling.as_object_mut() {
        rolling
            .entry("maxUnavailable")
            .or_insert_with(|| json!("25%"));
        rolling.entry("maxSurge").or_insert_with(|| json!("25%"));
    }
}

/// apps validation: `Recreate` takes no `rollingUpdate` (the reason an apply cannot switch a
/// defaulted Deployment to Recreate on its own).
fn validate_deployment_strategy(obj: &Value) -> Vec<Cause> {
    let Some(strategy) = obj.pointer("/spec/strategy") else {
        return Vec::new();
    };
    let type_ = strategy.get("type").and_then(Value::as_str).unwrap_or("");
    let mut causes = Vec::new();
    match type_ {
        "RollingUpdate" => {}
        "Recreate" => {
            if strategy.get("rollingUpdate").is_some() {
                causes.push(Cause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        other => causes.push(Cause::not_supported(
            "spec.strategy.type",
            &json!(other),
            &[json!("Recreate"), json!("RollingUpdate")],
        )),
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn deployments() -> std::sync::Arc<ResourceType> {
        Catalog::with_builtins()
            .get("apps", "v1", "deployments")
            .unwrap()
    }

    #[test]
    fn a_deployment_without_strategy_rolls_25_percent() {
        let mut obj = json!({"spec": {"replicas": 1}});
        default_and_validate(&deployments(), &mut obj, "d").unwrap();
        assert_eq!(
            obj["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        default_and_validate(&deployments(), &mut recreate, "d").unwrap();
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn recreate_with_rolling_update_is_refused() {
        let mut obj = json!({"spec": {"strategy": {
            "type": "Recreate",
            "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
        }}});
        let error = default_and_validate(&deployments(), &mut obj, "d").unwrap_err();
        assert_eq!(error.causes()[0].field, "spec.strategy.rollingUpdate");
    }

    #[test]
    fn a_claims_spec_is_immutable_but_its_requests() {
        let claims = Catalog::with_builtins()
            .get("", "v1", "persistentvolumeclaims")
            .unwrap();
        let claim = |mode: &str, size: &str| {
            json!({"spec": {
                "accessModes": [mode],
                "resources": {"requests": {"storage": size}},
            }})
        };
        let old = claim("ReadWriteOnce", "1Gi");
        validate_update(&claims, &old, &claim("ReadWriteOnce", "2Gi"), "c").unwrap();
        let error =
            validate_update(&claims, &old, &claim("ReadWriteMany", "1Gi"), "c").unwrap_err();
        assert_eq!(error.causes()[0].field, "spec");
    }
}
