//! The RBAC the controller needs, declared next to the code that uses it: each rule says why.
//! `sluice-operator rbac` prints it as roles; the Helm chart is tested against that output.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Where a rule must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// In every watched namespace (cluster-wide when all namespaces are watched).
    Watched,
    /// Cluster-scoped objects: always a ClusterRole.
    Cluster,
    /// The operator's own namespace, where the leader Lease lives.
    Own,
}

/// A rule with the reason the controller needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Declared {
    /// Where it must hold.
    pub reach: Reach,
    pub rule: PolicyRule,
    /// Why the operator needs it, printed above the rule.
    pub reason: &'static str,
}

/// The default name of the leader Lease.
pub const LEASE_NAME: &str = "sluice-operator";

/// Verbs on a kind the operator owns: watched by label, applied (server-side apply that
/// creates an object is authorised as `create`), pruned.
const OWNED: &[&str] = &["list", "watch", "create", "patch", "delete"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        resource_names: (!names.is_empty()).then(|| strings(names)),
        non_resource_urls: None,
    }
}

/// Every rule the controller needs. `lease_name` is the leader Lease's name.
pub fn declared(lease_name: &str) -> Vec<Declared> {
    use Reach::{Cluster, Own, Watched};
    let d = |reach, rule, reason| Declared {
        reach,
        rule,
        reason,
    };
    vec![
        d(
            Watched,
            rule(
                &["sluice.dev"],
                &["mcpservers", "mcproutes"],
                &["list", "watch"],
                &[],
            ),
            "the controllers watch McpServers and McpRoutes",
        ),
        d(
            Watched,
            rule(&["sluice.dev"], &["mcpservers"], &["patch"], &[]),
            "adds and removes the finalizer sluice.dev/cluster-objects (JSON patch) on servers with a TokenReview ClusterRoleBinding",
        ),
        d(
            Watched,
            rule(
                &["sluice.dev"],
                &["mcpservers/status", "mcproutes/status"],
                &["patch"],
                &[],
            ),
            "writes status with server-side apply",
        ),
        d(
            Watched,
            rule(
                &["sluice.dev"],
                &["mcpservers/finalizers", "mcproutes/finalizers"],
                &["update"],
                &[],
            ),
            "owner references with blockOwnerDeletion to McpServers and McpRoutes (required where the OwnerReferencesPermissionEnforcement admission plugin runs)",
        ),
        d(
            Watched,
            rule(
                &[""],
                &["serviceaccounts", "services", "configmaps"],
                OWNED,
                &[],
            ),
            "owned ServiceAccounts, Services and sidecar ConfigMaps: watched by label, server-side applied (creation is authorised as create), pruned; ConfigMaps are also watched (metadata only) for the CA bundles specs refer to",
        ),
        d(
            Watched,
            rule(&[""], &["persistentvolumeclaims"], OWNED, &[]),
            "owned PersistentVolumeClaims for Conduit's OAuth state (auth.oauth.state storage persistent or shared): applied, pruned when the spec stops asking for them; a claim the spec names (claimName) carries no operator label and is never touched",
        ),
        d(
            Watched,
            rule(&["apps"], &["deployments"], OWNED, &[]),
            "owned Deployments: watched by label (readiness for status), applied (a merge patch first when the strategy switches to or from Recreate), pruned",
        ),
        d(
            Watched,
            rule(&["autoscaling"], &["horizontalpodautoscalers"], OWNED, &[]),
            "owned HorizontalPodAutoscalers: applied with spec.autoscaling, pruned without",
        ),
        d(
            Watched,
            rule(&["policy"], &["poddisruptionbudgets"], OWNED, &[]),
            "owned PodDisruptionBudgets: applied with more than one replica (with autoscaling: at the minimum), pruned otherwise",
        ),
        d(
            Watched,
            rule(
                &["networking.k8s.io"],
                &["networkpolicies", "ingresses"],
                OWNED,
                &[],
            ),
            "owned NetworkPolicies and route Ingresses: applied, pruned when exposure is removed",
        ),
        d(
            Watched,
            rule(&["gateway.networking.k8s.io"], &["httproutes"], OWNED, &[]),
            "owned route HTTPRoutes (used only when the Gateway API is installed)",
        ),
        d(
            Watched,
            rule(&["monitoring.coreos.com"], &["servicemonitors"], OWNED, &[]),
            "owned ServiceMonitors (used only when the Prometheus Operator's CRDs are installed)",
        ),
        d(
            Watched,
            rule(&[""], &["secrets"], &["list", "watch"], &[]),
            "metadata-only watch of Secrets: whether a referenced Secret exists (SecretNotFound) and its resourceVersion (a change rolls the pods); values are never requested or cached",
        ),
        d(
            Watched,
            rule(&["events.k8s.io"], &["events"], &["create", "patch"], &[]),
            "Events for transitions (a repeated event is patched into a series)",
        ),
        d(
            Cluster,
            rule(
                &["rbac.authorization.k8s.io"],
                &["clusterrolebindings"],
                OWNED,
                &[],
            ),
            "the TokenReview ClusterRoleBinding of servers whose policy authenticates Kubernetes ServiceAccount tokens: watched by label, applied, deleted by the finalizer",
        ),
        d(
            Cluster,
            rule(
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
                &["bind"],
                &["system:auth-delegator"],
            ),
            "binding system:auth-delegator without holding its permissions (the RBAC escalation check)",
        ),
        d(
            Own,
            rule(&["coordination.k8s.io"], &["leases"], &["create"], &[]),
            "creates the leader Lease the first time (create cannot be limited by name)",
        ),
        d(
            Own,
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "patch"],
                &[lease_name],
            ),
            "leader election: reads, takes, renews and releases the Lease",
        ),
    ]
}

/// The roles as a YAML stream, each rule preceded by its reason.
///
/// - Cluster-wide: a ClusterRole `sluice-operator` with every rule but the Lease's, and a
///   Role `sluice-operator-leader-election` for the operator's namespace.
/// - Namespaced (`namespaced`): a ClusterRole `sluice-operator` with the cluster-scoped rules
///   only, a Role `sluice-operator` to bind in every watched namespace, and the Lease Role.
pub fn to_yaml(namespaced: bool, lease_name: &str) -> String {
    let declared = declared(lease_name);
    let mut out = String::new();
    if namespaced {
        role(
            &mut out,
            "ClusterRole",
            "sluice-operator",
            &declared,
            &[Reach::Cluster],
        );
        role(
            &mut out,
            "Role",
            "sluice-operator",
            &declared,
            &[Reach::Watched],
        );
    } else {
        role(
            &mut out,
            "ClusterRole",
            "sluice-operator",
            &declared,
            &[Reach::Watched, Reach::Cluster],
        );
    }
    role(
        &mut out,
        "Role",
        "sluice-operator-leader-election",
        &declared,
        &[Reach::Own],
    );
    out
}

fn role(out: &mut String, kind: &str, name: &str, declared: &[Declared], reaches: &[Reach]) {
    let list = |items: &[String]| serde_json::to_string(items).unwrap_or_default();
    out.push_str("---\napiVersion: rbac.authorization.k8s.io/v1\n");
    out.push_str(&format!(
        "kind: {kind}\nmetadata:\n  name: {name}\nrules:\n"
    ));
    for d in declared.iter().filter(|d| reaches.contains(&d.reach)) {
        out.push_str(&format!("  # {}\n", d.reason));
        let rule = &d.rule;
        out.push_str(&format!(
            "  - apiGroups: {}\n",
            list(rule.api_groups.as_deref().unwrap_or_default())
        ));
        out.push_str(&format!(
            "    resources: {}\n",
            list(rule.resources.as_deref().unwrap_or_default())
        ));
        if let Some(names) = &rule.resource_names {
            out.push_str(&format!("    resourceNames: {}\n", list(names)));
        }
        out.push_str(&format!("    verbs: {}\n", list(&rule.verbs)));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The rules for one role.
    fn rules(declared: &[Declared], reaches: &[Reach]) -> Vec<PolicyRule> {
        declared
            .iter()
            .filter(|d| reaches.contains(&d.reach))
            .map(|d| d.rule.clone())
            .collect()
    }

    /// `(group, resource)` → verbs, across rules.
    fn grants(rules: &[PolicyRule]) -> BTreeMap<(String, String), Vec<String>> {
        let mut grants: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for rule in rules {
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    let verbs = grants.entry((group.clone(), resource.clone())).or_default();
                    verbs.extend(rule.verbs.iter().cloned());
                    verbs.sort();
                    verbs.dedup();
                }
            }
        }
        grants
    }

    #[test]
    fn secrets_are_only_listed_and_watched() {
        let all = rules(
            &declared(LEASE_NAME),
            &[Reach::Watched, Reach::Cluster, Reach::Own],
        );
        let grants = grants(&all);
        assert_eq!(
            grants[&(String::new(), "secrets".to_string())],
            ["list", "watch"]
        );
        for ((_, resource), verbs) in &grants {
            assert!(!verbs.iter().any(|v| v == "*"), "{resource}: no wildcards");
            assert!(
                !verbs.iter().any(|v| v == "update") || resource.ends_with("/finalizers"),
                "{resource}: update only on finalizers (everything else is patched)"
            );
            assert!(
                !verbs.iter().any(|v| v == "get") || resource == "leases",
                "{resource}"
            );
        }
    }

    #[test]
    fn binding_the_auth_delegator_is_limited_to_that_role() {
        let declared = declared(LEASE_NAME);
        let bind: Vec<&Declared> = declared
            .iter()
            .filter(|d| d.rule.verbs.iter().any(|v| v == "bind"))
            .collect();
        assert_eq!(bind.len(), 1);
        assert_eq!(bind[0].reach, Reach::Cluster);
        assert_eq!(
            bind[0].rule.resource_names.as_deref(),
            Some(&["system:auth-delegator".to_string()][..])
        );
    }

    #[test]
    fn every_rule_has_a_reason_and_every_kind_the_operator_applies_is_owned() {
        let declared = declared(LEASE_NAME);
        assert!(declared.iter().all(|d| !d.reason.is_empty()));
        let grants = grants(&rules(&declared, &[Reach::Watched, Reach::Cluster]));
        for (group, resource) in [
            ("", "serviceaccounts"),
            ("", "configmaps"),
            ("", "services"),
            ("", "persistentvolumeclaims"),
            ("apps", "deployments"),
            ("policy", "poddisruptionbudgets"),
            ("networking.k8s.io", "networkpolicies"),
            ("networking.k8s.io", "ingresses"),
            ("gateway.networking.k8s.io", "httproutes"),
            ("monitoring.coreos.com", "servicemonitors"),
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ] {
            assert_eq!(
                grants[&(group.to_string(), resource.to_string())],
                ["create", "delete", "list", "patch", "watch"],
                "{group}/{resource}"
            );
        }
    }

    #[test]
    fn yaml_lists_the_roles_of_each_mode() {
        let cluster = to_yaml(false, "lease");
        assert_eq!(cluster.matches("kind: ClusterRole").count(), 1);
        assert_eq!(cluster.matches("kind: Role\n").count(), 1);
        assert!(cluster.contains("resourceNames: [\"lease\"]"));
        assert!(cluster.contains("# metadata-only watch of Secrets"));
        let namespaced = to_yaml(true, "lease");
        assert_eq!(namespaced.matches("kind: Role\n").count(), 2);
        let cluster_role = namespaced.split("---").nth(1).unwrap();
        assert!(cluster_role.contains("clusterrolebindings"));
        assert!(!cluster_role.contains("deployments"));
        // It is YAML a parser reads back into the same rules.
        for document in cluster.split("---\n").filter(|d| !d.trim().is_empty()) {
            let value: serde_json::Value = serde_saphyr::from_str(document).unwrap();
            let parsed: Vec<PolicyRule> = serde_json::from_value(value["rules"].clone()).unwrap();
            assert!(!parsed.is_empty());
        }
    }
}
