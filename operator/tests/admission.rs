//! Admission against the generated CRDs: every example is accepted, every file of the
//! invalid corpus is refused with the message it declares, and every rule has such a file.
#![allow(
    clippy::unwrap_used,
    reason = "a test's helpers fail the test by panicking"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use sluice_crds::{McpRoute, McpServer};
use sluice_operator::admission::{Admission, Admitted, Problems};
use sluice_operator::manifest::{self, Input, Kind, MAX_INPUT_BYTES};
use sluice_operator::render::RenderOptions;

/// The compiled schemas, shared by all tests (compiling takes a moment in debug builds).
fn admission() -> &'static Admission {
    static ADMISSION: OnceLock<Admission> = OnceLock::new();
    ADMISSION.get_or_init(|| Admission::new().unwrap())
}

/// The namespace the corpus is loaded into (as `render --namespace tools` would).
const NAMESPACE: &str = "tools";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid")
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// What `render` reports for these files: one line per problem, or none when it renders.
fn problems_rendering(paths: &[PathBuf]) -> Vec<String> {
    let paths: Vec<String> = paths
        .iter()
        .map(|path| path.to_string_lossy().into_owned())
        .collect();
    let outcome = admission()
        .load_files(&paths, NAMESPACE)
        .and_then(|admitted| admitted.render(&RenderOptions::default()));
    match outcome {
        Ok(_) => Vec::new(),
        Err(problems) => problems.0.iter().map(ToString::to_string).collect(),
    }
}

/// The `# expect: ...` lines a corpus file opens with.
fn expectations(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map_while(|line| line.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

fn all_expectations() -> Vec<String> {
    yaml_files(&corpus_dir())
        .iter()
        .flat_map(|path| expectations(path))
        .collect()
}

// === The corpus ===

#[test]
fn every_invalid_manifest_fails_with_exactly_the_errors_it_declares() {
    let files = yaml_files(&corpus_dir());
    assert!(
        files.len() > 50,
        "the corpus shrank to {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        let expected = expectations(path);
        if expected.is_empty() {
            failures.push(format!(
                "{name}: the first line must be `# expect: <message>`"
            ));
            continue;
        }
        let problems = problems_rendering(std::slice::from_ref(path));
        if problems.is_empty() {
            failures.push(format!("{name}: accepted, expected: {expected:?}"));
            continue;
        }
        for expectation in &expected {
            if !problems
                .iter()
                .any(|problem| problem.contains(expectation.as_str()))
            {
                failures.push(format!(
                    "{name}: no error says {expectation:?}; got {problems:#?}"
                ));
            }
        }
        for problem in &problems {
            if !expected
                .iter()
                .any(|expectation| problem.contains(expectation.as_str()))
            {
                failures.push(format!("{name}: unexpected error {problem:?}"));
            }
            if problem.contains("Internal error") || problem.contains("panicked") {
                failures.push(format!("{name}: {problem:?} is not a user error"));
            }
            if !problem.contains(name.as_ref()) {
                failures.push(format!("{name}: {problem:?} does not name the file"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `x-kubernetes-validations` message of a CRD schema, with the path of its node.
fn cel_rules(node: &Value, path: &str, rules: &mut Vec<(String, String)>) {
    for rule in node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let message = rule
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        rules.push((path.to_string(), message.to_string()));
    }
    for (name, child) in node
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        cel_rules(child, &format!("{path}.{name}"), rules);
    }
    if let Some(items) = node.get("items") {
        cel_rules(items, &format!("{path}[]"), rules);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        cel_rules(values, &format!("{path}{{}}"), rules);
    }
}

fn crd_schemas() -> Vec<(String, Value)> {
    sluice_crds::crds()
        .into_iter()
        .map(|crd| {
            let schema = crd.spec.versions[0]
                .schema
                .clone()
                .unwrap()
                .open_api_v3_schema
                .unwrap();
            (crd.spec.names.kind, serde_json::to_value(schema).unwrap())
        })
        .collect()
}

#[test]
fn every_cel_rule_has_an_invalid_case() {
    let expectations = all_expectations();
    let mut rules = Vec::new();
    for (kind, schema) in crd_schemas() {
        cel_rules(&schema, &kind, &mut rules);
    }
    assert!(
        rules.len() > 40,
        "only {} rules found; is the walk broken?",
        rules.len()
    );
    let untested: BTreeSet<String> = rules
        .into_iter()
        .filter(|(_, message)| !expectations.iter().any(|e| e.contains(message.as_str())))
        .map(|(path, message)| format!("{path}: {message}"))
        .collect();
    assert!(
        untested.is_empty(),
        "CEL rules without a file in operator/tests/invalid/ that triggers them:\n{}",
        untested.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// Schema keywords, and the words of the message a violation of each produces.
const STRUCTURAL_CONSTRAINTS: &[(&str, &str)] = &[
    ("pattern", "should match '"),
    ("enum", "Unsupported value: "),
    ("minimum", "must be greater than or equal to"),
    ("maximum", "must be less than or equal to"),
    ("minLength", "characters long"),
    ("maxLength", "Too long: may not be more than"),
    ("minItems", "items"),
    ("maxItems", "Too many: "),
    ("maxProperties", "entries"),
    ("required", ": Required value"),
    ("type", "must be of type "),
    (
        "x-kubernetes-int-or-string",
        "must be of type integer or string",
    ),
];

/// Every keyword of a schema node and of the nodes below it (field names and the contents
/// of `default` are values, not keywords).
fn keywords_in(node: &Value, found: &mut BTreeSet<String>) {
    let Some(fields) = node.as_object() else {
        return;
    };
    for (key, value) in fields {
        found.insert(key.clone());
        match (key.as_str(), value) {
            ("properties", Value::Object(children)) => children
                .values()
                .for_each(|child| keywords_in(child, found)),
            ("items" | "additionalProperties", child) => keywords_in(child, found),
            ("allOf" | "anyOf" | "oneOf", Value::Array(branches)) => branches
                .iter()
                .for_each(|branch| keywords_in(branch, found)),
            _ => {}
        }
    }
}

#[test]
fn every_kind_of_structural_constraint_has_an_invalid_case() {
    let expectations = all_expectations();
    let mut keywords = BTreeSet::new();
    for (_, schema) in crd_schemas() {
        keywords_in(&schema, &mut keywords);
    }
    let mut untested = Vec::new();
    for (keyword, words) in STRUCTURAL_CONSTRAINTS {
        let tested = expectations.iter().any(|e| e.contains(words));
        if keywords.contains(*keyword) && !tested {
            untested.push(format!("{keyword} (no expectation says {words:?})"));
        }
    }
    // Undeclared fields are refused everywhere, whatever keywords the schema uses.
    if !expectations.iter().any(|e| e.contains("unknown field")) {
        untested.push("unknown fields".to_string());
    }
    assert!(
        untested.is_empty(),
        "constraints without an invalid case: {untested:?}"
    );
    let unknown: Vec<&String> = keywords
        .iter()
        .filter(|k| KNOWN_KEYWORDS.binary_search(&k.as_str()).is_err())
        .collect();
    assert!(
        unknown.is_empty(),
        "the schema uses keywords this test does not know about: {unknown:?}; add an invalid \
         case and a row to STRUCTURAL_CONSTRAINTS (or to KNOWN_KEYWORDS if they constrain nothing)"
    );
}

/// Every keyword (or map key seen while walking) the CRD schemas may use; sorted.
const KNOWN_KEYWORDS: &[&str] = &[
    "additionalProperties",
    "default",
    "description",
    "enum",
    "format",
    "items",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minimum",
    "nullable",
    "pattern",
    "properties",
    "required",
    "title",
    "type",
    "x-kubernetes-int-or-string",
    "x-kubernetes-validations",
];

#[test]
fn every_cel_rule_compiles_in_kube_cel() {
    assert_eq!(admission().rule_compilation_errors(), Vec::<String>::new());
}

// === The examples ===

fn examples() -> Vec<PathBuf> {
    let files = yaml_files(&examples_dir());
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for wanted in [
        "phabricator-header-token.yaml",
        "phabricator-oauth-subpath.yaml",
        "phabricator-serviceaccount.yaml",
    ] {
        assert!(
            names.iter().any(|name| name == wanted),
            "examples/{wanted} is missing"
        );
    }
    files
}

#[test]
fn every_example_is_admitted_and_renders() {
    for example in examples() {
        let problems = problems_rendering(std::slice::from_ref(&example));
        assert!(problems.is_empty(), "{}: {problems:#?}", example.display());
    }
}

#[test]
fn all_examples_render_together() {
    // The examples use distinct names, so a user can apply them side by side.
    let problems = problems_rendering(&examples());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The API server stores objects with schema defaults applied; the operator reads them with
/// serde defaults. Both must give the same typed object.
#[test]
fn schema_defaults_and_serde_defaults_agree_on_the_examples() {
    for example in examples() {
        let text = std::fs::read_to_string(&example).unwrap();
        let parsed = manifest::parse(
            &[Input::new(example.display().to_string(), text)],
            NAMESPACE,
        );
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        for object in parsed.objects {
            let defaulted = admission().check(&object).unwrap();
            let (from_schema, from_serde) = match object.kind {
                Kind::McpServer => (
                    serde_json::to_value(serde_json::from_value::<McpServer>(defaulted).unwrap()),
                    serde_json::to_value(
                        serde_json::from_value::<McpServer>(object.value).unwrap(),
                    ),
                ),
                Kind::McpRoute => (
                    serde_json::to_value(serde_json::from_value::<McpRoute>(defaulted).unwrap()),
                    serde_json::to_value(serde_json::from_value::<McpRoute>(object.value).unwrap()),
                ),
            };
            assert_eq!(
                from_schema.unwrap(),
                from_serde.unwrap(),
                "{}",
                object.origin
            );
        }
    }
}

// === Inputs the corpus cannot hold ===

const MINIMAL_SERVER: &str = "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata:
  name: phabricator
spec:
  phabricator:
    url: https://phabricator.example.com
";

fn scratch_file(name: &str, bytes: &[u8]) -> String {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn problem_lines(result: Result<Admitted, Problems>) -> Vec<String> {
    match result {
        Ok(_) => panic!("accepted"),
        Err(problems) => problems.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_file_over_the_size_cap_is_refused_without_parsing() {
    let mut big = MINIMAL_SERVER.as_bytes().to_vec();
    big.extend(std::iter::repeat_n(b'#', MAX_INPUT_BYTES));
    let path = scratch_file("too-large.yaml", &big);
    let problems = problem_lines(admission().load_files(std::slice::from_ref(&path), NAMESPACE));
    assert_eq!(
        problems,
        [format!(
            "{path}: larger than the limit of {MAX_INPUT_BYTES} bytes per input"
        )]
    );
}

#[test]
fn a_binary_file_is_refused() {
    let path = scratch_file("binary.yaml", &[0xff, 0xfe, 0x00, 0x81, 0x00]);
    let problems = problem_lines(admission().load_files(std::slice::from_ref(&path), NAMESPACE));
    assert_eq!(problems, [format!("{path}: not UTF-8 text")]);
}

#[test]
fn a_missing_file_is_named_and_the_others_are_still_checked() {
    let bad = scratch_file(
        "bad-replicas.yaml",
        format!("{MINIMAL_SERVER}  replicas: -1\n").as_bytes(),
    );
    let problems = problem_lines(
        admission().load_files(&["does-not-exist.yaml".into(), bad.clone()], NAMESPACE),
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("does-not-exist.yaml: cannot read: "),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with(&format!("{bad}: document 1")),
        "{problems:#?}"
    );
    assert!(
        problems[1]
            .contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0")
    );
}

#[test]
fn duplicates_are_found_across_inputs() {
    let inputs = [
        Input::new("a.yaml", MINIMAL_SERVER),
        Input::new("b.yaml", MINIMAL_SERVER),
    ];
    let problems = problem_lines(admission().load(&inputs, NAMESPACE));
    assert_eq!(
        problems,
        [
            "b.yaml: document 1 (McpServer tools/phabricator, line 1): Duplicate value: the same object is also defined at a.yaml: document 1 (McpServer tools/phabricator, line 1)"
        ]
    );
}

#[test]
fn the_same_name_in_two_namespaces_is_two_objects() {
    let other = MINIMAL_SERVER.replace(
        "  name: phabricator\n",
        "  name: phabricator\n  namespace: other\n",
    );
    let inputs = [
        Input::new("a.yaml", MINIMAL_SERVER),
        Input::new("b.yaml", other),
    ];
    let admitted = admission().load(&inputs, NAMESPACE).unwrap();
    let namespaces: Vec<_> = admitted
        .servers
        .iter()
        .map(|s| s.metadata.namespace.clone().unwrap())
        .collect();
    assert_eq!(namespaces, ["tools", "other"]);
}

#[test]
fn every_problem_of_every_document_is_reported_in_input_order() {
    let text = format!(
        "{MINIMAL_SERVER}  replicas: 1000\n---\n{}---\nkind: McpRoute\n---\n{}",
        MINIMAL_SERVER.replace("name: phabricator", "name: second"),
        MINIMAL_SERVER
            .replace("name: phabricator", "name: third")
            .replace("https://", "gopher://"),
    );
    let problems = problem_lines(admission().load(&[Input::new("many.yaml", text)], NAMESPACE));
    let documents: Vec<&str> = problems
        .iter()
        .map(|p| &p[..p.find(" (").unwrap()])
        .collect();
    assert_eq!(
        documents,
        [
            "many.yaml: document 1",
            "many.yaml: document 3",
            "many.yaml: document 3",
            "many.yaml: document 4"
        ],
        "{problems:#?}"
    );
}

#[test]
fn defaults_are_applied_after_admission() {
    let admitted = admission()
        .load(&[Input::new("a.yaml", MINIMAL_SERVER)], NAMESPACE)
        .unwrap();
    let server = &admitted.servers[0];
    assert_eq!(server.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(server.spec.replicas, 1);
    assert_eq!(
        server.spec.policy.max_body_bytes,
        sluice_crds::defaults::MAX_BODY_BYTES
    );
}

/// An OAuth server whose state is `storage`, with `replicas` and no session affinity.
fn oauth_server(storage: &str, replicas: u32) -> String {
    format!(
        "{MINIMAL_SERVER}  replicas: {replicas}
  auth:
    mode: oauth
    oauth:
      clientId: PHID-OASC-abcdefghijklmnopqrst
      clientSecretRef: {{name: phabricator-oauth, key: client-secret}}
      publicUrl: https://phabricator.example.com/ai
      state: {{storage: {storage}}}
"
    )
}

#[test]
fn shared_oauth_state_serves_replicas_without_session_affinity() {
    let admitted = admission()
        .load(
            &[Input::new("shared.yaml", oauth_server("shared", 3))],
            NAMESPACE,
        )
        .unwrap();
    assert_eq!(admitted.servers[0].spec.replicas, 3);
    admitted.render(&RenderOptions::default()).unwrap();

    // The same replicas with the state in each pod, or on a one-pod volume, are refused.
    for storage in ["ephemeral", "persistent"] {
        let problems = problem_lines(
            admission().load(&[Input::new("a.yaml", oauth_server(storage, 3))], NAMESPACE),
        );
        assert_eq!(problems.len(), 1, "{storage}: {problems:#?}");
        assert!(
            problems[0].contains(&format!("auth.oauth.state.storage {storage}")),
            "{storage}: {problems:#?}"
        );
    }
    // One replica is fine with any storage.
    for storage in ["ephemeral", "persistent", "shared"] {
        admission()
            .load(&[Input::new("a.yaml", oauth_server(storage, 1))], NAMESPACE)
            .unwrap_or_else(|e| panic!("{storage}: {e}"));
    }
}

#[test]
fn status_and_nulls_are_ignored_as_the_api_server_ignores_them() {
    let text = format!(
        "{MINIMAL_SERVER}  image: null\n  pod:\n    labels:\nstatus:\n  url: http://elsewhere\n"
    );
    let admitted = admission()
        .load(&[Input::new("a.yaml", text)], NAMESPACE)
        .unwrap();
    assert!(admitted.servers[0].status.is_none());
    assert!(admitted.servers[0].spec.pod.labels.is_empty());
}

#[test]
fn a_bad_default_namespace_is_refused() {
    let problems =
        problem_lines(admission().load(&[Input::new("a.yaml", MINIMAL_SERVER)], "Not_A_Namespace"));
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("--namespace: Invalid value: \"Not_A_Namespace\""),
        "{problems:?}"
    );
}

/// Every CEL rule, with the schema node it is declared on.
fn rules_with_nodes(node: &Value, path: &str, found: &mut Vec<(String, String, Value)>) {
    for rule in node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
        found.push((path.to_string(), text.to_string(), node.clone()));
    }
    for (name, child) in node
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        rules_with_nodes(child, &format!("{path}.{name}"), found);
    }
    if let Some(items) = node.get("items") {
        rules_with_nodes(items, &format!("{path}[]"), found);
    }
}

/// kube-cel's cost estimate is the closest this repository gets to the API server's without
/// a cluster: a rule it flags (a list field without maxItems, a cost over the budget) could
/// make the CRD unregistrable. It is coarse: it looks at lists reached through a field
/// (`self.rateLimits.exists(...)`), not at `self.all(...)` on a list node; the next test
/// covers those. (Its scope check is not used: it mistakes comprehension variables such as
/// the `x` of `self.all(x, ...)` for undeclared ones.)
#[test]
fn cel_rules_stay_within_the_api_server_cost_budget() {
    use kube::core::cel::{compile_schema, estimate_rule_cost};
    // The estimate is live: an unbounded list reached through a field is flagged.
    let unbounded = serde_json::json!({
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "string"}}}
    });
    let control = estimate_rule_cost(
        "self.items.all(x, x.size() > 0)",
        &compile_schema(&unbounded),
    );
    assert!(
        !control.is_empty(),
        "kube-cel's cost estimate flags nothing any more"
    );

    let mut rules = Vec::new();
    for (kind, schema) in crd_schemas() {
        rules_with_nodes(&schema, &kind, &mut rules);
    }
    let warnings: Vec<String> = rules
        .iter()
        .flat_map(|(path, rule, node)| {
            let compiled = compile_schema(node);
            estimate_rule_cost(rule, &compiled)
                .into_iter()
                .map(move |warning| format!("{path}: {rule}: {}", warning.message))
        })
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

/// The API server estimates a rule's cost from the bounds of what it iterates over; a rule
/// on an unbounded list or map (or on a list of unbounded strings) can push the CRD over
/// the cost budget and make it unregistrable.
#[test]
fn cel_rules_on_lists_and_maps_iterate_over_bounded_values() {
    let mut rules = Vec::new();
    for (kind, schema) in crd_schemas() {
        rules_with_nodes(&schema, &kind, &mut rules);
    }
    let mut unbounded = BTreeSet::new();
    for (path, _, node) in &rules {
        let declares = |key: &str| node.get(key).is_some();
        match node.get("type").and_then(Value::as_str) {
            Some("array") if !declares("maxItems") => {
                unbounded.insert(format!("{path}: no maxItems"));
            }
            Some("array")
                if node["items"].get("type") == Some(&Value::from("string"))
                    && node["items"].get("maxLength").is_none()
                    && node["items"].get("enum").is_none() =>
            {
                unbounded.insert(format!("{path}[]: no maxLength"));
            }
            Some("object")
                if node.get("additionalProperties").is_some() && !declares("maxProperties") =>
            {
                unbounded.insert(format!("{path}: no maxProperties"));
            }
            _ => {}
        }
    }
    assert!(unbounded.is_empty(), "{unbounded:#?}");
}

/// The fields the CIDR rule checks, as the YAML that puts one list under each.
const CIDR_FIELDS: [&str; 6] = [
    "  policy:\n    trustedProxies: [{}]\n",
    "  networkPolicy:\n    egressDestinations:\n      phabricator: [{}]\n",
    "  networkPolicy:\n    egressDestinations:\n      identityProviders: [{}]\n",
    "  networkPolicy:\n    egressDestinations:\n      redis: [{}]\n",
    "  networkPolicy:\n    egressDestinations:\n      kubernetesApi: [{}]\n",
    "  networkPolicy:\n    egressDestinations:\n      traceCollector: [{}]\n",
];

/// The schema's rule for CIDRs (`trustedProxies`, `networkPolicy.egressDestinations`) is a
/// regular expression (CEL's `isCIDR()` is not in Kubernetes 1.30); what it admits, the
/// sidecar must read, and what the sidecar refuses, it must refuse. (It refuses IPv6 written
/// with an IPv4 tail, `::ffff:10.0.0.0/104`, which the sidecar would read: stricter, never
/// looser.) Every field it guards admits and refuses the same.
#[test]
fn the_cidr_rule_admits_exactly_cidrs_the_sidecar_reads() {
    let admits = |cidr: &str| {
        let admitted: Vec<bool> = CIDR_FIELDS
            .iter()
            .map(|field| {
                let list = field.replace("{}", &serde_json::to_string(cidr).unwrap());
                admission()
                    .load(
                        &[Input::new("cidrs.yaml", format!("{MINIMAL_SERVER}{list}"))],
                        NAMESPACE,
                    )
                    .is_ok()
            })
            .collect();
        assert!(
            admitted.iter().all(|a| *a == admitted[0]),
            "the fields disagree on {cidr:?}: {admitted:?}"
        );
        admitted[0]
    };
    let cidrs = [
        "10.0.0.0/8",
        "10.0.0.5/32",
        "0.0.0.0/0",
        "255.255.255.255/32",
        "192.168.1.77/24",
        "fd00::/8",
        "FD00::/8",
        "::/0",
        "::1/128",
        "2001:db8::/32",
        "1:2:3:4:5:6:7:8/64",
        "1::/16",
        "1:2:3:4:5:6:7::/112",
        "::2:3:4:5:6:7:8/128",
        "1::8/64",
        "1:2::7:8/100",
        "fe80::1:2/64",
    ];
    for cidr in cidrs {
        assert!(admits(cidr), "the schema refuses {cidr}");
        assert!(
            sluice_proxy_config::parse_cidr(cidr).is_ok(),
            "the sidecar refuses {cidr}"
        );
    }
    let not_cidrs = [
        "",
        "10.0.0.5",
        "10.0.0.0/33",
        "256.0.0.0/8",
        "010.0.0.0/8",
        "10.0.0.0/08",
        "10.0.0/8",
        "10.0.0.0/8/8",
        " 10.0.0.0/8",
        "10.0.0.0/8 ",
        "/8",
        "fd00::",
        "fd00::/129",
        "fd00::/08",
        "1:2:3:4:5:6:7:8:9/64",
        "1::2::3/64",
        "fd00:::/8",
        "12345::/16",
        "g::/16",
        "fe80::1%eth0/64",
        "[fd00::]/8",
    ];
    for not_cidr in not_cidrs {
        assert!(!admits(not_cidr), "the schema admits {not_cidr:?}");
        assert!(
            sluice_proxy_config::parse_cidr(not_cidr).is_err(),
            "the sidecar reads {not_cidr:?}"
        );
    }
}
