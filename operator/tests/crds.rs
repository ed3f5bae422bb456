//! The committed CRD YAML must match the API types, and the CRDs must carry what users see.
#![allow(
    clippy::unwrap_used,
    reason = "a test's helpers fail the test by panicking"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use serde_json::Value;
use sluice_operator::crdgen::{CRD_DIRS, crd_files};

const REGENERATE: &str = "regenerate them with \
    `SLUICE_UPDATE_GENERATED=1 cargo test -p sluice-operator --test crds`";

/// kube-derive's description for a type without a doc comment.
const PLACEHOLDER_DESCRIPTION: &str = "Auto-generated derived type";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files_in(dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect()
}

#[test]
fn committed_crds_match_the_api_types_in_every_folder() {
    let generated = crd_files().unwrap();
    let update = std::env::var_os("SLUICE_UPDATE_GENERATED").is_some();
    let mut problems = Vec::new();
    for dir in CRD_DIRS {
        let path = repository_root().join(dir);
        if update {
            std::fs::create_dir_all(&path).unwrap();
            for stale in yaml_files_in(&path) {
                if !generated.iter().any(|file| file.file_name == stale) {
                    std::fs::remove_file(path.join(&stale)).unwrap();
                }
            }
            for file in &generated {
                std::fs::write(path.join(&file.file_name), &file.yaml).unwrap();
            }
        }
        for file in &generated {
            let committed = std::fs::read_to_string(path.join(&file.file_name)).unwrap_or_default();
            if committed != file.yaml {
                problems.push(format!(
                    "{dir}/{} is missing or out of date",
                    file.file_name
                ));
            }
        }
        for name in yaml_files_in(&path) {
            if !generated.iter().any(|file| file.file_name == name) {
                problems.push(format!("{dir}/{name} is not generated from any API type"));
            }
        }
    }
    assert!(problems.is_empty(), "{}; {REGENERATE}", problems.join("; "));
}

fn crd(kind: &str) -> CustomResourceDefinition {
    sluice_crds::crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn only_version(crd: &CustomResourceDefinition) -> &CustomResourceDefinitionVersion {
    assert_eq!(
        crd.spec.versions.len(),
        1,
        "{} serves one version",
        crd.spec.names.kind
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    version
}

#[test]
fn names_scope_and_category_let_kubectl_find_both_kinds() {
    for (kind, plural, short) in [
        ("McpServer", "mcpservers", "mcps"),
        ("McpRoute", "mcproutes", "mcpr"),
    ] {
        let crd = crd(kind);
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{plural}.sluice.dev").as_str())
        );
        assert_eq!(crd.spec.group, "sluice.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["mcp".to_string()][..])
        );
    }
}

#[test]
fn both_kinds_have_a_status_subresource() {
    for kind in ["McpServer", "McpRoute"] {
        let crd = crd(kind);
        let subresources = only_version(&crd).subresources.as_ref();
        assert!(
            subresources.and_then(|s| s.status.as_ref()).is_some(),
            "{kind} has no status"
        );
    }
}

/// The columns `kubectl get` must show, in this order (others may sit between them).
#[test]
fn printer_columns_show_readiness_and_urls() {
    for (kind, wanted) in [
        ("McpServer", &["Ready", "Replicas", "URL", "Age"][..]),
        ("McpRoute", &["Server", "URL", "Ready"][..]),
    ] {
        let crd = crd(kind);
        let columns: Vec<String> = only_version(&crd)
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|column| column.name.clone())
            .collect();
        let mut rest = columns.iter();
        for name in wanted {
            assert!(
                rest.any(|column| column == name),
                "{kind} printer columns {columns:?} lack {name} (or have it out of order)"
            );
        }
    }
}

fn schema_of(kind: &str) -> Value {
    let crd = crd(kind);
    let schema = only_version(&crd)
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("the CRD has a schema")).unwrap()
}

/// Calls `visit(path, node)` for every schema node below `node` that describes a field.
fn walk_fields(node: &Value, path: &str, visit: &mut dyn FnMut(&str, &Value)) {
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            let child_path = format!("{path}.{name}");
            visit(&child_path, child);
            walk_fields(child, &child_path, visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk_fields(items, &format!("{path}[]"), visit);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk_fields(values, &format!("{path}{{}}"), visit);
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for branch in node
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk_fields(branch, path, visit);
        }
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    for kind in ["McpServer", "McpRoute"] {
        let schema = schema_of(kind);
        let mut undocumented = Vec::new();
        let mut fields = 0;
        walk_fields(&schema, kind, &mut |path, node| {
            fields += 1;
            let description = node
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            if description.trim().is_empty() || description.contains(PLACEHOLDER_DESCRIPTION) {
                undocumented.push(path.to_string());
            }
        });
        assert!(
            fields > 50,
            "{kind}: only {fields} fields walked; is the walk broken?"
        );
        assert!(
            undocumented.is_empty(),
            "{kind}: fields without a description: {undocumented:?}"
        );
    }
}

#[test]
fn no_description_anywhere_is_the_derive_placeholder() {
    let yaml: String = crd_files()
        .unwrap()
        .into_iter()
        .map(|file| file.yaml)
        .collect();
    assert!(!yaml.contains(PLACEHOLDER_DESCRIPTION));
}

/// The API server only accepts structural schemas: every field says its type.
#[test]
fn every_field_has_a_type() {
    for kind in ["McpServer", "McpRoute"] {
        let schema = schema_of(kind);
        let mut untyped = Vec::new();
        walk_fields(&schema, kind, &mut |path, node| {
            let typed = node.get("type").is_some()
                || node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
                || node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if !typed {
                untyped.push(path.to_string());
            }
        });
        assert!(
            untyped.is_empty(),
            "{kind}: fields without a type: {untyped:?}"
        );
    }
}

#[test]
fn the_generated_files_hold_exactly_the_crds() {
    let stream = sluice_operator::crdgen::crd_stream().unwrap();
    let parsed: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&stream).unwrap();
    assert_eq!(parsed, sluice_crds::crds());
}

/// The API server refuses a CRD whose rule's `fieldPath` does not name a field declared
/// below the rule's node (kube-cel does not check this).
#[test]
fn every_cel_field_path_names_a_declared_field() {
    fn check(node: &Value, path: &str, problems: &mut Vec<String>) {
        let rules = node
            .get("x-kubernetes-validations")
            .and_then(Value::as_array);
        for rule in rules.into_iter().flatten() {
            let Some(field_path) = rule.get("fieldPath").and_then(Value::as_str) else {
                continue;
            };
            let declared = field_path
                .strip_prefix('.')
                .unwrap_or(field_path)
                .split('.')
                .try_fold(node, |current, name| current.get("properties")?.get(name));
            if declared.is_none() {
                problems.push(format!(
                    "{path}: fieldPath {field_path} names no declared field"
                ));
            }
        }
        for (name, child) in node
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            check(child, &format!("{path}.{name}"), problems);
        }
        if let Some(items) = node.get("items") {
            check(items, &format!("{path}[]"), problems);
        }
    }
    let mut problems = Vec::new();
    let mut rules_with_field_paths = 0;
    for kind in ["McpServer", "McpRoute"] {
        let schema = schema_of(kind);
        check(&schema, kind, &mut problems);
        walk_fields(&schema, kind, &mut |_, node| {
            let rules = node
                .get("x-kubernetes-validations")
                .and_then(Value::as_array);
            rules_with_field_paths += rules
                .into_iter()
                .flatten()
                .filter(|rule| rule.get("fieldPath").is_some())
                .count();
        });
    }
    assert!(
        rules_with_field_paths > 0,
        "no rule has a fieldPath; is the walk broken?"
    );
    assert!(problems.is_empty(), "{problems:#?}");
}
