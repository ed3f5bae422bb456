//! The Helm chart (`charts/sluice`), through the real Helm SDK: it lints clean under `--strict`,
//! renders objects that pass strict Kubernetes 1.30 and 1.37 validation for the default values
//! and every values file in `charts/sluice/ci/`, renders the objects of each mode with the
//! standard labels, refuses bad values by its schema, ships the generated CRDs and tells the
//! user what to do next. The operator Deployment is tested in chart_operator.rs, the RBAC in
//! chart_rbac.rs.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sluice_e2e::helm::{self, NAMESPACE, RELEASE, Rendered, Values};
use sluice_e2e::kubernetes::{self, KUBERNETES_VERSIONS, Status};
use sluice_e2e::workspace::workspace_path;

/// The values files the issue asks for; `ci/` may hold more, and every one is tested.
const CI_FILES: [&str; 4] = [
    "cluster-wide-values.yaml",
    "metrics-values.yaml",
    "namespaced-values.yaml",
    "observability-values.yaml",
];

/// Lint and validate for the oldest and newest Kubernetes Sluice supports.
const LINT_KUBE_VERSIONS: [&str; 2] = ["v1.30.0", "v1.37.0"];

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn scenarios() -> Vec<(String, Values)> {
    helm::scenarios().unwrap()
}

fn render(values: &Values) -> Rendered {
    helm::render(values, RELEASE, NAMESPACE).unwrap()
}

fn ci(name: &str) -> Values {
    helm::ci_values(name)
}

fn kinds(rendered: &Rendered) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for object in &rendered.objects {
        *kinds.entry(object.kind().to_owned()).or_default() += 1;
    }
    kinds
}

#[test]
fn the_ci_values_files_cover_the_three_modes() {
    let names: Vec<String> = helm::ci_files()
        .unwrap()
        .iter()
        .map(|f| file_name(f))
        .collect();
    for expected in CI_FILES {
        assert!(
            names.contains(&expected.to_owned()),
            "charts/sluice/ci/ lacks {expected}: {names:?}"
        );
    }
}

#[test]
fn lint_strict_is_clean_for_every_values_file_and_kubernetes_version() {
    for (scenario, values) in scenarios() {
        for version in LINT_KUBE_VERSIONS {
            let report = helm::lint(&values, version).unwrap();
            let failures = report.failures();
            assert!(
                failures.is_empty(),
                "helm lint --strict --kube-version {version} with {scenario}:\n{}",
                failures.join("\n")
            );
            // Info findings do not fail --strict; the only one allowed is the missing icon
            // (Sluice has no logo), so that any new one is noticed.
            for message in &report.messages {
                assert!(
                    message.error.contains("icon is recommended"),
                    "unexpected lint finding with {scenario}: {message:?}"
                );
            }
        }
    }
}

#[test]
fn lint_fails_on_a_broken_values_file() {
    // The lint above can fail: the same call reports a value the schema refuses.
    let report = helm::lint(&Values::json(json!({"replicas": "two"})), "v1.30.0").unwrap();
    assert!(
        report.failures().iter().any(|f| f.contains("/replicas")),
        "{report:?}"
    );
}

#[test]
fn every_rendered_object_is_valid_for_kubernetes_1_30_and_1_37() {
    let dir = tempfile::tempdir().unwrap();
    for (scenario, values) in scenarios() {
        let rendered = render(&values);
        assert!(!rendered.objects.is_empty(), "{scenario} rendered nothing");
        // One file per template, named after the scenario and template, so every validation
        // error says where it comes from.
        let mut files = Vec::new();
        for (template, text) in &rendered.manifests {
            if text.trim().is_empty() {
                continue;
            }
            let name = format!("{scenario}--{}", template.replace('/', "_"));
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            files.push(path);
        }
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let report = kubernetes::validate_files(&paths, &KUBERNETES_VERSIONS).unwrap();
        if let Err(error) = report.ensure_valid() {
            panic!("{scenario}: {error:#}");
        }
        assert_eq!(
            report.documents.len(),
            rendered.objects.len(),
            "{scenario}: the validator and the Helm SDK disagree on the number of objects"
        );
        for document in &report.documents {
            assert_eq!(
                document.results.keys().cloned().collect::<Vec<_>>(),
                KUBERNETES_VERSIONS.map(str::to_owned).to_vec(),
                "{scenario}: {}",
                document.label()
            );
        }
        // Only the Prometheus Operator's kinds (ServiceMonitor, PrometheusRule) have no bundled
        // schema; anything else unvalidated is a typo'd apiVersion or an unexpected kind. (The
        // PrometheusRule's content is checked in observability.rs.)
        let prometheus_operator: Vec<&str> = rendered
            .objects
            .iter()
            .map(|o| o.kind())
            .filter(|kind| matches!(*kind, "ServiceMonitor" | "PrometheusRule"))
            .collect();
        let expected: BTreeSet<(String, String)> = prometheus_operator
            .iter()
            .map(|kind| ("monitoring.coreos.com/v1".to_owned(), (*kind).to_owned()))
            .collect();
        assert_eq!(report.unvalidated_types(), expected, "{scenario}");
        let valid = report
            .documents
            .iter()
            .filter(|d| d.results.values().all(|r| r.status == Status::Valid))
            .count();
        assert_eq!(
            valid,
            rendered.objects.len() - prometheus_operator.len(),
            "{scenario}"
        );
    }
}

#[test]
fn each_mode_renders_its_objects() {
    let defaults = kinds(&render(&Values::defaults()));
    assert_eq!(
        defaults,
        BTreeMap::from(
            [
                ("ClusterRole", 1),
                ("ClusterRoleBinding", 1),
                ("Deployment", 1),
                ("Role", 1),
                ("RoleBinding", 1),
                ("Service", 1),
                ("ServiceAccount", 1),
            ]
            .map(|(k, n)| (k.to_owned(), n))
        ),
        "defaults: cluster-wide, one replica (no PDB), no ServiceMonitor"
    );

    let namespaced = render(&ci("namespaced-values.yaml"));
    let kinds_namespaced = kinds(&namespaced);
    assert_eq!(
        kinds_namespaced.get("ClusterRole"),
        Some(&1),
        "namespaced mode keeps a ClusterRole for the cluster-scoped TokenReview bindings"
    );
    assert_eq!(kinds_namespaced.get("PodDisruptionBudget"), Some(&1));
    for kind in ["Role", "RoleBinding"] {
        let namespaces: BTreeSet<&str> = namespaced
            .of_kind(kind)
            .filter_map(|object| object.namespace())
            .collect();
        assert_eq!(
            namespaces,
            BTreeSet::from(["agents", "sluice-system", "tools"]),
            "a {kind} in each watched namespace, and one for the Lease in the release namespace"
        );
    }

    let single = kinds(&render(&ci("cluster-wide-values.yaml")));
    assert_eq!(
        single.get("Role"),
        None,
        "no leader election, no Lease Role: {single:?}"
    );
    assert_eq!(single.get("RoleBinding"), None, "{single:?}");

    let metrics = render(&ci("metrics-values.yaml"));
    assert_eq!(kinds(&metrics).get("ServiceMonitor"), Some(&1));
    assert_eq!(defaults.get("ServiceMonitor"), None);

    // Dashboards and alerts are off by default.
    let observability = kinds(&render(&ci("observability-values.yaml")));
    assert_eq!(observability.get("PrometheusRule"), Some(&1));
    assert_eq!(observability.get("ConfigMap"), Some(&1));
    assert_eq!(defaults.get("PrometheusRule"), None);
    assert_eq!(defaults.get("ConfigMap"), None);
}

#[test]
fn every_object_carries_the_standard_labels() {
    let metadata = helm::show().unwrap().metadata;
    let app_version = metadata["appVersion"].as_str().unwrap();
    let chart = format!("sluice-{}", metadata["version"].as_str().unwrap());
    for (scenario, values) in scenarios() {
        let rendered = render(&values);
        for object in &rendered.objects {
            let labels = &object.object["metadata"]["labels"];
            let expected = [
                ("app.kubernetes.io/name", "sluice"),
                ("app.kubernetes.io/instance", RELEASE),
                ("app.kubernetes.io/version", app_version),
                ("app.kubernetes.io/managed-by", "Helm"),
                ("app.kubernetes.io/part-of", "sluice"),
                ("helm.sh/chart", chart.as_str()),
            ];
            for (key, value) in expected {
                assert_eq!(
                    labels[key].as_str(),
                    Some(value),
                    "{scenario}: {} {} lacks {key}={value}: {labels}",
                    object.kind(),
                    object.name()
                );
            }
            if object.kind() != "CustomResourceDefinition" && object.namespace().is_none() {
                assert!(
                    matches!(object.kind(), "ClusterRole" | "ClusterRoleBinding"),
                    "{scenario}: {} {} has no namespace",
                    object.kind(),
                    object.name()
                );
            }
        }
    }
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let generated_dir = workspace_path("crds");
    let chart_dir = helm::chart_dir().join("crds");
    let yaml_in = |dir: &Path| -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
            .map(|path| (file_name(&path), std::fs::read_to_string(&path).unwrap()))
            .collect()
    };
    let generated = yaml_in(&generated_dir);
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        ["mcproutes.sluice.dev.yaml", "mcpservers.sluice.dev.yaml"]
    );
    assert!(
        yaml_in(&chart_dir) == generated,
        "charts/sluice/crds/ differs from crds/: run `make generate`"
    );
    // And Helm sees them as the chart's CRDs (installed before the templates).
    let loaded = helm::show().unwrap().crds;
    assert!(
        loaded == generated,
        "the Helm SDK loaded other CRDs: {:?}",
        loaded.keys()
    );
}

/// A values case the schema must refuse, and a piece of Helm's message that names the cause.
struct BadValues {
    what: &'static str,
    values: Value,
    error: &'static str,
}

fn bad_values() -> Vec<BadValues> {
    let case = |what, values, error| BadValues {
        what,
        values,
        error,
    };
    vec![
        case(
            "unknown top-level key (typo of replicas)",
            json!({"replica": 2}),
            "additional properties 'replica' not allowed",
        ),
        case(
            "unknown nested key",
            json!({"image": {"tags": "1.0"}}),
            "additional properties 'tags' not allowed",
        ),
        case(
            "unknown key in the ServiceMonitor settings",
            json!({"metrics": {"serviceMonitor": {"enable": true}}}),
            "additional properties 'enable' not allowed",
        ),
        case(
            "wrong type: replicas as a string",
            json!({"replicas": "2"}),
            "at '/replicas': got string, want integer",
        ),
        case(
            "wrong type: watchNamespaces as a comma-separated string",
            json!({"watchNamespaces": "a,b"}),
            "at '/watchNamespaces': got string, want array",
        ),
        case(
            "wrong type: a boolean as a string",
            json!({"leaderElection": {"enabled": "yes"}}),
            "at '/leaderElection/enabled': got string, want boolean",
        ),
        case(
            "bad enum: log format",
            json!({"logFormat": "xml"}),
            "at '/logFormat'",
        ),
        case(
            "bad enum: pull policy",
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "at '/image/pullPolicy'",
        ),
        case(
            "not a namespace name",
            json!({"watchNamespaces": ["Tools"]}),
            "at '/watchNamespaces/0'",
        ),
        case(
            "a namespace twice",
            json!({"watchNamespaces": ["tools", "tools"]}),
            "at '/watchNamespaces'",
        ),
        case(
            "no replicas",
            json!({"replicas": 0}),
            "at '/replicas': minimum: got 0, want 1",
        ),
        case(
            "a privileged admin port",
            json!({"adminPort": 80}),
            "at '/adminPort': minimum: got 80",
        ),
        case(
            "a digest that is not sha256",
            json!({"proxyImage": {"digest": "md5:abc"}}),
            "at '/proxyImage/digest'",
        ),
        case(
            "several replicas without leader election",
            json!({"replicas": 2, "leaderElection": {"enabled": false}}),
            "at '/replicas': maximum: got 2, want 1",
        ),
        case(
            "an existing ServiceAccount without a name",
            json!({"serviceAccount": {"create": false}}),
            "at '/serviceAccount/name'",
        ),
        case(
            "a required key removed",
            json!({"image": {"repository": null}}),
            "at '/image'",
        ),
        case(
            "a scrape interval that is not a duration",
            json!({"metrics": {"serviceMonitor": {"interval": "often"}}}),
            "at '/metrics/serviceMonitor/interval'",
        ),
        case(
            "a trace endpoint that is not an http(s) URL",
            json!({"tracing": {"endpoint": "otel-collector:4318"}}),
            "at '/tracing/endpoint'",
        ),
        case(
            "a sampling ratio as a number",
            json!({"tracing": {"samplingRatio": 0.5}}),
            "at '/tracing/samplingRatio': got number, want string",
        ),
        case(
            "a sampling ratio above 1",
            json!({"tracing": {"samplingRatio": "2"}}),
            "at '/tracing/samplingRatio'",
        ),
    ]
}

#[test]
fn values_schema_refuses_bad_values() {
    let cases = bad_values();
    let values: Vec<Value> = cases.iter().map(|case| case.values.clone()).collect();
    let answers = helm::refusals(&values).unwrap();
    let mut problems = Vec::new();
    for (case, answer) in cases.iter().zip(answers) {
        // The schema check says why; `helm install` refuses the same values before rendering.
        for (what, message) in [
            ("schema", answer.schema_error),
            ("render", answer.render_error),
        ] {
            match message {
                None => problems.push(format!("{}: {what} accepted {}", case.what, case.values)),
                Some(message) if !message.contains(case.error) => problems.push(format!(
                    "{}: {what} refused {}, but the message lacks {:?}: {message}",
                    case.what, case.values, case.error
                )),
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn values_schema_accepts_the_defaults_and_every_ci_file() {
    for (scenario, values) in scenarios() {
        assert_eq!(helm::check_values(&values).unwrap(), Ok(()), "{scenario}");
    }
    // A dependency of an umbrella chart receives `global`.
    assert_eq!(
        helm::check_values(&Values::json(json!({"global": {"imageRegistry": "x"}}))).unwrap(),
        Ok(())
    );
}

#[test]
fn every_schema_key_is_described_and_closed() {
    let schema = helm::show().unwrap().schema;
    let mut problems = Vec::new();
    walk_schema(&schema, "", &mut |path, node| {
        if !path.is_empty() && node["description"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{path}: no description"));
        }
        if node.get("properties").is_some() && node["additionalProperties"] != json!(false) {
            problems.push(format!("{path}: unknown keys are not refused"));
        }
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Calls `visit(path, node)` for the schema and each property below it.
fn walk_schema(node: &Value, path: &str, visit: &mut dyn FnMut(&str, &Value)) {
    visit(path, node);
    if let Some(properties) = node["properties"].as_object() {
        for (key, child) in properties {
            let child_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk_schema(child, &child_path, visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk_schema(items, &format!("{path}[]"), visit);
    }
}

#[test]
fn notes_say_what_to_do_next() {
    let notes = render(&Values::defaults()).notes.unwrap();
    for needle in [
        "kubectl -n sluice-system rollout status deployment/sluice",
        "kubectl apply -n tools -f examples/phabricator-header-token.yaml",
        "kubectl get mcp -n tools",
        "kubectl describe mcps -n tools phabricator-mcp",
        "kubectl -n sluice-system logs deployment/sluice",
        "every namespace",
        "ghcr.io/skroutz/conduit:0.2.2",
    ] {
        assert!(
            notes.contains(needle),
            "NOTES.txt lacks {needle:?}:\n{notes}"
        );
    }
    let namespaced = render(&ci("namespaced-values.yaml")).notes.unwrap();
    for needle in [
        "only these namespaces: tools, agents",
        "kubectl apply -n tools -f examples/phabricator-header-token.yaml",
        "add its namespace",
    ] {
        assert!(
            namespaced.contains(needle),
            "NOTES.txt lacks {needle:?}:\n{namespaced}"
        );
    }
    assert!(
        !namespaced.contains("kubectl create namespace"),
        "{namespaced}"
    );
}
