//! Everything Sluice ships or renders passes strict validation against the Kubernetes 1.30 and
//! 1.37 schemas (kubernetes-validate: unknown fields are errors): the CRDs in `crds/`, and every
//! object `sluice-operator render` prints for every manifest in `examples/`.
//!
//! kubernetes-validate has no schema for custom resources (HTTPRoute, ServiceMonitor): those are
//! reported as not validated, and the tests insist that the set of such types is exactly the one
//! expected, so that a typo'd apiVersion or an unexpected kind cannot slip through unvalidated.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sluice_e2e::kubernetes::{KUBERNETES_VERSIONS, Status, ValidationReport};
use sluice_e2e::{kubernetes, render, workspace_root};

/// The CRD files `sluice-operator crds` generates, one per CRD.
const CRD_FILES: [&str; 2] = ["mcproutes.sluice.dev.yaml", "mcpservers.sluice.dev.yaml"];

/// The types (apiVersion, kind) that rendering all of `examples/` produces and that have no
/// bundled schema. Today every example renders only built-in kinds (the public route is an
/// Ingress, monitoring is off). An example that renders a Gateway-API HTTPRoute or a
/// ServiceMonitor must add it here: the point is that it is noticed.
const EXPECTED_UNVALIDATED: &[(&str, &str)] = &[];

fn yaml_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn assert_valid(report: &ValidationReport) {
    if let Err(error) = report.ensure_valid() {
        panic!("{error:#}");
    }
    for document in &report.documents {
        assert_eq!(
            document
                .results
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            KUBERNETES_VERSIONS.to_vec(),
            "{} was not checked against every version",
            document.label()
        );
    }
}

#[test]
fn crds_are_valid_custom_resource_definitions() {
    let files = yaml_files_in(&workspace_root().join("crds"));
    let names: Vec<String> = files.iter().map(|path| file_name(path)).collect();
    assert_eq!(
        names, CRD_FILES,
        "crds/ should hold exactly the generated CRD files"
    );

    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let report = kubernetes::validate_files(&paths, &KUBERNETES_VERSIONS).unwrap();
    assert_valid(&report);

    assert_eq!(report.documents.len(), CRD_FILES.len(), "one CRD per file");
    for document in &report.documents {
        assert_eq!(
            document.type_key(),
            (
                "apiextensions.k8s.io/v1".to_owned(),
                "CustomResourceDefinition".to_owned()
            ),
            "{}",
            document.label()
        );
        let expected_name = document
            .source
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".yaml");
        assert_eq!(
            document.name.as_deref(),
            Some(expected_name),
            "{}",
            document.label()
        );
    }
    assert_eq!(report.fully_valid(), CRD_FILES.len());
    assert_eq!(report.unvalidated_types(), BTreeSet::new());
}

#[test]
fn rendered_examples_are_deterministic_and_valid() {
    let examples = yaml_files_in(&workspace_root().join("examples"));
    let names: Vec<String> = examples.iter().map(|path| file_name(path)).collect();
    assert!(
        names.contains(&"phabricator-header-token.yaml".to_owned()),
        "examples/ lacks the README's first example: {names:?}"
    );

    // Render each example twice, in two processes: the outputs must be byte-identical.
    let rendered_dir = tempfile::tempdir().unwrap();
    let mut rendered = Vec::new();
    for example in &examples {
        let first = render::render_files(&[example]).unwrap();
        let second = render::render_files(&[example]).unwrap();
        assert!(
            first == second,
            "rendering {} twice gave different output:\n--- first ---\n{first}\n--- second ---\n{second}",
            example.display()
        );
        assert!(
            !first.trim().is_empty(),
            "{} rendered nothing",
            example.display()
        );
        // Named after the example, so every validation message says which example it is from.
        let path = rendered_dir.path().join(file_name(example));
        std::fs::write(&path, &first).unwrap();
        rendered.push(path);
    }

    let paths: Vec<&Path> = rendered.iter().map(PathBuf::as_path).collect();
    let report = kubernetes::validate_files(&paths, &KUBERNETES_VERSIONS).unwrap();
    assert_valid(&report);

    // Not vacuous: every example renders real workload objects that were validated.
    for name in &names {
        let validated_kinds: BTreeSet<&str> = report
            .documents
            .iter()
            .filter(|document| document.source.ends_with(&format!("/{name}")))
            .filter(|document| document.results.values().all(|r| r.status == Status::Valid))
            .filter_map(|document| document.kind.as_deref())
            .collect();
        for kind in ["Deployment", "Service", "ConfigMap"] {
            assert!(
                validated_kinds.contains(kind),
                "{name} rendered no validated {kind}: {validated_kinds:?}"
            );
        }
    }

    let expected: BTreeSet<(String, String)> = EXPECTED_UNVALIDATED
        .iter()
        .map(|(api_version, kind)| ((*api_version).to_owned(), (*kind).to_owned()))
        .collect();
    let unvalidated: Vec<String> = report
        .documents
        .iter()
        .filter(|document| {
            document
                .results
                .values()
                .any(|r| r.status == Status::NoSchema)
        })
        .map(|document| document.label())
        .collect();
    assert_eq!(
        report.unvalidated_types(),
        expected,
        "objects without a Kubernetes schema (not validated): {unvalidated:#?}"
    );
}

/// OAuth state on a claim the operator creates (persistent, shared) or one the user names: the
/// PersistentVolumeClaim and the Deployment mounting it pass strict validation, and a named
/// claim renders none.
#[test]
fn rendered_oauth_state_claims_are_valid() {
    let server = |name: &str, replicas: u32, state: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata: {{name: {name}, namespace: tools}}
spec:
  phabricator: {{url: https://phabricator.example.com}}
  replicas: {replicas}
  auth:
    mode: oauth
    oauth:
      clientId: PHID-OASC-abcdefghijklmnopqrst
      clientSecretRef: {{name: phabricator-oauth, key: client-secret}}
      publicUrl: https://phabricator.example.com/{name}
      state: {state}
"
        )
    };
    let cases = [
        // (server, manifest, the claim it renders)
        (
            "persistent",
            server("persistent", 1, "{storage: persistent}"),
            Some("persistent-oauth-state"),
        ),
        (
            "named",
            server("named", 1, "{storage: persistent, claimName: logins}"),
            None,
        ),
        (
            "shared",
            server(
                "shared",
                3,
                "{storage: shared, size: 5Gi, storageClassName: nfs-client}",
            ),
            Some("shared-oauth-state-shared"),
        ),
    ];
    for (name, manifest, claim) in cases {
        let rendered = render::render_stdin(&manifest).unwrap();
        let report = kubernetes::validate_yaml(&rendered, &KUBERNETES_VERSIONS).unwrap();
        assert_valid(&report);
        assert_eq!(report.unvalidated_types(), BTreeSet::new(), "{name}");
        let valid = |kind: &str| {
            report
                .documents
                .iter()
                .filter(|d| d.kind.as_deref() == Some(kind))
                .filter(|d| d.results.values().all(|r| r.status == Status::Valid))
                .filter_map(|d| d.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(valid("Deployment"), [name.to_owned()], "{name}");
        assert_eq!(
            valid("PersistentVolumeClaim"),
            claim.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>(),
            "{name}"
        );
    }
}

/// A server that uses every egress destination and narrows each (IPv4 and IPv6 CIDRs, DNS by
/// pod and namespace selectors), besides a rule of its own: the NetworkPolicy, one rule per
/// destination, passes strict validation. (The examples cover the policy without
/// `egressDestinations`; the trace collector is https with a CA of its own.)
#[test]
fn rendered_egress_destinations_are_valid() {
    let manifest = "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata: {name: fenced, namespace: tools}
spec:
  phabricator:
    url: https://phabricator.example.com
    proxy: http://proxy.corp.example.com:3128
  redis: {address: redis.infra.svc:6379}
  proxy:
    tracing:
      endpoint: https://otel-collector.observability.svc:4318
      caBundle: {configMapKeyRef: {name: collector-ca, key: ca.crt}}
  policy:
    authentication:
      mode: jwt
      jwt: {issuer: https://idp.example.com, audiences: [mcp]}
  networkPolicy:
    egressDestinations:
      phabricator: [192.0.2.10/32, 2001:db8:10::/48]
      identityProviders: [198.51.100.0/24]
      redis: [10.244.0.0/16]
      kubernetesApi: [172.18.0.2/32, fd00:10:96::1/128]
      traceCollector: [fd00:4318::/64]
      dns:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
          podSelector: {matchLabels: {k8s-app: kube-dns}}
        - ipBlock: {cidr: 169.254.20.10/32}
    egress:
      - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/16]}}]
        ports: [{port: 5432, protocol: TCP}]
---
apiVersion: sluice.dev/v1alpha1
kind: McpRoute
metadata: {name: bots, namespace: tools}
spec:
  serverRef: {name: fenced}
  policy:
    authentication:
      mode: serviceAccount
      serviceAccount: {allowed: [ci/*]}
";
    let rendered = render::render_stdin(manifest).unwrap();
    let report = kubernetes::validate_yaml(&rendered, &KUBERNETES_VERSIONS).unwrap();
    assert_valid(&report);
    assert_eq!(report.unvalidated_types(), BTreeSet::new());
    let policies: Vec<_> = report
        .documents
        .iter()
        .filter(|d| d.kind.as_deref() == Some("NetworkPolicy"))
        .filter(|d| d.results.values().all(|r| r.status == Status::Valid))
        .collect();
    assert_eq!(policies.len(), 1, "{report:#?}");

    // Not vacuous: the validated policy holds a rule per destination, each with its CIDRs.
    let policy: serde_json::Value = serde_saphyr::from_multiple::<serde_json::Value>(&rendered)
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "NetworkPolicy")
        .unwrap();
    let egress = policy["spec"]["egress"].as_array().unwrap();
    let cidrs: Vec<Vec<&str>> = egress
        .iter()
        .map(|rule| {
            rule["to"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|peer| peer["ipBlock"]["cidr"].as_str())
                .collect()
        })
        .collect();
    assert_eq!(
        cidrs,
        [
            vec!["169.254.20.10/32"],
            vec!["192.0.2.10/32", "2001:db8:10::/48"],
            vec!["198.51.100.0/24"],
            vec!["10.244.0.0/16"],
            vec!["172.18.0.2/32", "fd00:10:96::1/128"],
            vec!["fd00:4318::/64"],
            vec!["10.0.0.0/8"],
        ],
        "{egress:#?}"
    );
}

/// Entry points on which the sidecar serves TLS (the server's own with mutual TLS, an exposed
/// route): the Services (443, `appProtocol: https`), the Deployment with the whole-Secret
/// volumes and the Ingress pass strict validation. (The mTLS example covers an in-cluster
/// route.)
#[test]
fn rendered_tls_entry_points_are_valid() {
    let manifest = "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata: {name: secure, namespace: tools}
spec:
  phabricator:
    url: https://phabricator.example.com
  tls:
    secretName: secure-tls
    clientCa: {configMapKeyRef: {name: agents-ca, key: ca.crt}}
  policy:
    authentication: {mode: clientCertificate}
    upstreamToken: {secretKeyRef: {name: bot, key: token}}
---
apiVersion: sluice.dev/v1alpha1
kind: McpRoute
metadata: {name: edge, namespace: tools}
spec:
  serverRef: {name: secure}
  hostnames: [mcp.example.com]
  pathPrefix: /ai
  tls: {secretName: edge-backend-tls}
  expose:
    ingress:
      className: nginx
      annotations: {nginx.ingress.kubernetes.io/backend-protocol: HTTPS}
";
    let rendered = render::render_stdin(manifest).unwrap();
    let report = kubernetes::validate_yaml(&rendered, &KUBERNETES_VERSIONS).unwrap();
    assert_valid(&report);
    assert_eq!(report.unvalidated_types(), BTreeSet::new());
    let valid = |kind: &str| {
        report
            .documents
            .iter()
            .filter(|d| d.kind.as_deref() == Some(kind))
            .filter(|d| d.results.values().all(|r| r.status == Status::Valid))
            .count()
    };
    assert_eq!(
        (valid("Service"), valid("Deployment"), valid("Ingress")),
        (2, 1, 1),
        "{report:#?}"
    );

    // Not vacuous: what was validated carries the TLS fields.
    let docs = serde_saphyr::from_multiple::<serde_json::Value>(&rendered).unwrap();
    for service in docs.iter().filter(|d| d["kind"] == "Service") {
        let port = &service["spec"]["ports"][0];
        assert_eq!(
            (&port["name"], &port["port"], &port["appProtocol"]),
            (&"https".into(), &443.into(), &"https".into()),
            "{service}"
        );
    }
    let ingress = docs.iter().find(|d| d["kind"] == "Ingress").unwrap();
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"],
        443
    );
}

/// A `container` server with every field that reaches the pod (command, env from a Secret,
/// envFrom, writable paths, the UID opt-out) renders a Deployment valid against both
/// schemas. (The everything-http example covers the plainer case.)
#[test]
fn rendered_container_servers_are_valid() {
    let manifest = "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata: {name: any, namespace: tools}
spec:
  container:
    image: ghcr.io/example/mcp-server:1.2.3
    command: [node, dist/index.js]
    args: [streamableHttp]
    env:
      - {name: PORT, value: '3001'}
      - name: API_TOKEN
        valueFrom: {secretKeyRef: {name: upstream-api, key: token}}
    envFrom:
      - configMapRef: {name: any-settings}
      - {prefix: DB_, secretRef: {name: any-db}}
    port: 3001
    path: /api/mcp
    writablePaths:
      - {path: /home/node/.cache, sizeLimit: 1Gi}
      - {path: /tmp, sizeLimit: 256Mi}
      - {path: /data, claimName: any-data}
    runAsUser: 1000
  sessions: stateful
  policy:
    authentication: {mode: apiKey, apiKey: {secretRef: {name: any-keys}}}
  networkPolicy:
    egress:
      - to: [{ipBlock: {cidr: 10.20.0.0/16}}]
        ports: [{port: 5432, protocol: TCP}]
";
    let rendered = render::render_stdin(manifest).unwrap();
    // Not vacuous: the claim is in what is validated.
    assert!(rendered.contains("claimName: any-data"), "{rendered}");
    let report = kubernetes::validate_yaml(&rendered, &KUBERNETES_VERSIONS).unwrap();
    assert_valid(&report);
    assert_eq!(report.unvalidated_types(), BTreeSet::new());
    let valid = |kind: &str| {
        report
            .documents
            .iter()
            .filter(|d| d.kind.as_deref() == Some(kind))
            .filter(|d| d.results.values().all(|r| r.status == Status::Valid))
            .count()
    };
    assert_eq!(
        (valid("Deployment"), valid("NetworkPolicy")),
        (1, 1),
        "{report:#?}"
    );

    // Not vacuous: what was validated carries the container's fields.
    let docs = serde_saphyr::from_multiple::<serde_json::Value>(&rendered).unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let server = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(server["name"], "mcp-server");
    assert_eq!(server["envFrom"][1]["prefix"], "DB_");
    assert_eq!(server["securityContext"]["runAsUser"], 1000);
    assert_eq!(server["volumeMounts"][1]["mountPath"], "/tmp");
}

/// A stdio `container` server (the bridge's init container, its emptyDir, the server's
/// command replaced by the bridge's) renders a Deployment valid against both schemas.
#[test]
fn rendered_stdio_servers_are_valid() {
    let manifest = "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata: {name: any-stdio, namespace: tools}
spec:
  container:
    image: ghcr.io/example/stdio-server:1.2.3
    command: [npx, -y, '@modelcontextprotocol/server-everything']
    args: [stdio]
    env: [{name: HOME, value: /home/mcp}]
    writablePaths: [{path: /home/mcp, sizeLimit: 512Mi}]
    stdio: {maxProcesses: 4, idleTimeout: 1h}
  sessions: stateful
  policy:
    authentication: {mode: none}
";
    let rendered = render::render_stdin(manifest).unwrap();
    let report = kubernetes::validate_yaml(&rendered, &KUBERNETES_VERSIONS).unwrap();
    assert_valid(&report);
    assert_eq!(report.unvalidated_types(), BTreeSet::new());
    let deployments = report
        .documents
        .iter()
        .filter(|d| d.kind.as_deref() == Some("Deployment"))
        .filter(|d| d.results.values().all(|r| r.status == Status::Valid))
        .count();
    assert_eq!(deployments, 1, "{report:#?}");

    // Not vacuous: what was validated carries the bridge.
    let docs = serde_saphyr::from_multiple::<serde_json::Value>(&rendered).unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["name"], "sluice-bridge-install");
    assert_eq!(
        pod["containers"][0]["command"][0],
        "/sluice/bridge/sluice-bridge"
    );
    assert_eq!(pod["containers"][0]["args"][8], "npx");
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "sluice-bridge" && v["emptyDir"]["sizeLimit"] == "32Mi")
    );
}

/// The validator really rejects what the API server would: without this, a validator that
/// accepted everything would make the tests above pass vacuously.
#[test]
fn validator_rejects_invalid_objects() {
    let stream = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: example.com/web:1
          securityContext:
            runAsNonRoot: true
            readOnlyRootFilesytem: true
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
    - port: "eighty"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: fine
data:
  config.yaml: "a: 1"
---
apiVersion: apps/v2
kind: Deployment
metadata:
  name: wrong-group-version
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: route
spec: {}
"#;
    let report = kubernetes::validate_yaml(stream, &KUBERNETES_VERSIONS).unwrap();
    assert!(report.ensure_valid().is_err());
    let [deployment, service, config_map, wrong, route] = report.documents.as_slice() else {
        panic!("expected 5 documents: {report:#?}");
    };
    for version in KUBERNETES_VERSIONS {
        let result = &deployment.results[version];
        assert_eq!(result.status, Status::Invalid, "{version}: {result:?}");
        assert!(
            result.errors.iter().any(|error| error.starts_with(
                "spec.template.spec.containers[0].securityContext: Additional properties"
            ) && error.contains("readOnlyRootFilesytem")),
            "{version}: the misspelt field is not reported: {:?}",
            result.errors
        );
        let result = &service.results[version];
        assert_eq!(result.status, Status::Invalid, "{version}: {result:?}");
        assert!(
            result
                .errors
                .iter()
                .any(|error| error.starts_with("spec.ports[0].port:")),
            "{version}: {:?}",
            result.errors
        );
        assert_eq!(config_map.results[version].status, Status::Valid);
        assert_eq!(wrong.results[version].status, Status::NoSchema);
        assert_eq!(route.results[version].status, Status::NoSchema);
    }
    // A core kind with a wrong apiVersion is "not validated", which the exact-set check above
    // would catch.
    assert_eq!(
        report.unvalidated_types(),
        BTreeSet::from([
            ("apps/v2".to_owned(), "Deployment".to_owned()),
            (
                "gateway.networking.k8s.io/v1".to_owned(),
                "HTTPRoute".to_owned()
            ),
        ])
    );
    assert_eq!(report.fully_valid(), 1);
}

/// Streams that are not Kubernetes objects, or not clean YAML, are refused rather than skipped.
#[test]
fn validator_refuses_malformed_streams() {
    let report = kubernetes::validate_yaml("- just\n- a list\n", &KUBERNETES_VERSIONS).unwrap();
    assert!(report.ensure_valid().is_err(), "{report:#?}");

    let error = kubernetes::validate_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nmetadata: {name: b}\n",
        &KUBERNETES_VERSIONS,
    )
    .unwrap_err();
    assert!(format!("{error:#}").contains("duplicate key"), "{error:#}");
}
