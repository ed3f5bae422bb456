//! The operator Deployment the chart renders: hardened exactly like the pods the operator
//! creates (compared with what `sluice-operator render` prints for an example), its API token
//! mounted explicitly, probes on the admin port, placement passed through, replicas with leader
//! election and a disruption budget, the scope, only flags `sluice-operator run` has, the
//! images the operator itself falls back to, the OpenTelemetry variables of its traces, and a
//! metrics Service and ServiceMonitor that reach the admin port.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use serde_json::{Value, json};
use sluice_e2e::helm::{self, NAMESPACE, RELEASE, Rendered, Values};
use sluice_e2e::render::{operator_output, render_files};
use sluice_e2e::workspace::workspace_path;

/// The operator's UID and GID, as in the pods it creates (distroless `nonroot`).
const NON_ROOT: i64 = 65532;

fn scenarios() -> Vec<(String, Values)> {
    helm::scenarios().unwrap()
}

fn render(values: &Values) -> Rendered {
    helm::render(values, RELEASE, NAMESPACE).unwrap()
}

fn ci(name: &str) -> Values {
    helm::ci_values(name)
}

/// The objects `sluice-operator render` prints for an example manifest.
fn operator_render(example: &str) -> Vec<Value> {
    let path = workspace_path("examples").join(example);
    helm::parse_yaml_stream(&render_files(&[path.as_path()]).unwrap()).unwrap()
}

fn operator_container(rendered: &Rendered) -> Value {
    let deployment = rendered.one("Deployment").unwrap();
    let containers = deployment.object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "the operator pod runs one container");
    containers[0].clone()
}

fn operator_args(rendered: &Rendered) -> Vec<String> {
    operator_container(rendered)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap().to_owned())
        .collect()
}

/// The value of `--flag=value` among the operator's arguments.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    args.iter().find_map(|arg| arg.strip_prefix(&prefix))
}

#[test]
fn operator_deployment_is_hardened_like_the_pods_it_creates() {
    // What the operator itself renders for an McpServer: the reference the chart must match.
    let server_objects = operator_render("phabricator-header-token.yaml");
    let server_pod = server_objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .map(|d| d["spec"]["template"]["spec"].clone())
        .unwrap();
    let sidecar = server_pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sluice-proxy")
        .unwrap()
        .clone();

    for (scenario, values) in scenarios() {
        let rendered = render(&values);
        let deployment = &rendered.one("Deployment").unwrap().object;
        let pod = &deployment["spec"]["template"]["spec"];
        let container = operator_container(&rendered);

        assert_eq!(
            pod["securityContext"], server_pod["securityContext"],
            "{scenario}: the operator pod's securityContext differs from an McpServer pod's"
        );
        assert_eq!(
            container["securityContext"], sidecar["securityContext"],
            "{scenario}: the operator container's securityContext differs from the sidecar's"
        );
        // Spelled out too, so the two cannot drift apart together.
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{scenario}");
        assert_eq!(security["runAsUser"], NON_ROOT, "{scenario}");
        assert_eq!(security["runAsGroup"], NON_ROOT, "{scenario}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{scenario}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{scenario}");
        assert_eq!(security["privileged"], false, "{scenario}");
        assert_eq!(
            security["capabilities"],
            json!({"drop": ["ALL"]}),
            "{scenario}"
        );
        assert_eq!(
            security["seccompProfile"],
            json!({"type": "RuntimeDefault"}),
            "{scenario}"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{scenario}");
        assert_eq!(pod["securityContext"]["fsGroup"], NON_ROOT, "{scenario}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"],
            json!({"type": "RuntimeDefault"}),
            "{scenario}"
        );
        assert_eq!(pod["hostNetwork"], Value::Null, "{scenario}");
        assert_eq!(pod["hostPID"], Value::Null, "{scenario}");
        assert_eq!(pod["enableServiceLinks"], false, "{scenario}");

        // The API token: not automounted; one projected, read-only volume in the one container.
        // Besides it, only Secrets (the trace export's headers), read-only too.
        assert_eq!(pod["automountServiceAccountToken"], false, "{scenario}");
        let volumes = pod["volumes"].as_array().unwrap();
        assert_eq!(volumes[0]["name"], "api-token", "{scenario}: {volumes:?}");
        for volume in &volumes[1..] {
            assert!(volume["secret"].is_object(), "{scenario}: {volume}");
        }
        let sources = volumes[0]["projected"]["sources"].as_array().unwrap();
        let token = sources
            .iter()
            .find_map(|s| s.get("serviceAccountToken"))
            .unwrap();
        assert!(
            token["expirationSeconds"].as_i64().unwrap() <= 3607,
            "{scenario}: {token}"
        );
        let mounts = container["volumeMounts"].as_array().unwrap();
        assert_eq!(
            mounts[0],
            json!({
                "name": volumes[0]["name"],
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": true,
            }),
            "{scenario}"
        );
        assert_eq!(mounts.len(), volumes.len(), "{scenario}: {mounts:?}");
        for mount in &mounts[1..] {
            assert_eq!(mount["readOnly"], true, "{scenario}: {mount}");
        }
        for account in rendered.of_kind("ServiceAccount") {
            assert_eq!(
                account.object["automountServiceAccountToken"], false,
                "{scenario}: the ServiceAccount would hand tokens to any pod using it"
            );
        }

        // Resources and probes on the admin port.
        let resources = &container["resources"];
        assert!(
            resources["requests"]["memory"].is_string()
                && resources["limits"]["memory"].is_string(),
            "{scenario}: {resources}"
        );
        let ports = container["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1, "{scenario}: {ports:?}");
        assert_eq!(ports[0]["name"], "admin", "{scenario}");
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(
                container[probe]["httpGet"],
                json!({"path": path, "port": "admin"}),
                "{scenario}: {probe}"
            );
        }
        let admin = ports[0]["containerPort"].as_i64().unwrap();
        let address = flag(&operator_args(&rendered), "--admin-address")
            .unwrap()
            .to_owned();
        assert!(
            address.ends_with(&format!(":{admin}")),
            "{scenario}: the operator listens on {address}, the probes go to {admin}"
        );
    }
}

#[test]
fn placement_and_pod_settings_pass_through() {
    let rendered = render(&ci("namespaced-values.yaml"));
    let deployment = &rendered.one("Deployment").unwrap().object;
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "registry-example-com"}])
    );
    // A spread constraint without a selector selects the operator pods.
    assert_eq!(
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["team"], "platform");
    for (key, value) in deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[key], value, "the pods must match the selector");
    }
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["example.com/owner"],
        "platform"
    );
    let container = operator_container(&rendered);
    assert_eq!(
        container["image"],
        "registry.example.com:5000/platform/sluice-operator:0.1.0@sha256:\
         0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"]["limits"]["cpu"], "1");

    let affinity = render(&ci("cluster-wide-values.yaml"));
    let pod = &affinity.one("Deployment").unwrap().object["spec"]["template"]["spec"];
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "kubernetes.io/arch"
    );
    assert_eq!(pod["serviceAccountName"], "sluice-controller");
    let account = affinity.one("ServiceAccount").unwrap();
    assert_eq!(account.name(), "sluice-controller");
    assert!(
        account.object["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].is_string()
    );
}

#[test]
fn replicas_get_leader_election_and_a_disruption_budget() {
    let single = render(&Values::defaults());
    assert_eq!(
        single.of_kind("PodDisruptionBudget").count(),
        0,
        "one replica: no PDB"
    );
    let args = operator_args(&single);
    assert!(
        args.contains(&"--leader-election=true".to_owned()),
        "{args:?}"
    );
    assert_eq!(flag(&args, "--lease-namespace"), Some(NAMESPACE));

    let several = render(&Values::json(json!({"replicas": 3})));
    let budget = several.one("PodDisruptionBudget").unwrap();
    assert_eq!(budget.object["spec"]["maxUnavailable"], 1);
    let deployment = &several.one("Deployment").unwrap().object;
    assert_eq!(
        budget.object["spec"]["selector"], deployment["spec"]["selector"],
        "the PDB must cover the operator pods"
    );

    let without = render(&ci("cluster-wide-values.yaml"));
    let args = operator_args(&without);
    assert!(
        args.contains(&"--leader-election=false".to_owned()),
        "{args:?}"
    );
    assert_eq!(flag(&args, "--lease-name"), None);
    assert_eq!(flag(&args, "--log-format"), Some("text"));
    assert_eq!(flag(&args, "--admin-address"), Some("[::]:9191"));
}

#[test]
fn scope_is_passed_to_the_operator() {
    assert_eq!(
        flag(&operator_args(&render(&Values::defaults())), "--namespaces"),
        None
    );
    let namespaced = operator_args(&render(&ci("namespaced-values.yaml")));
    assert_eq!(flag(&namespaced, "--namespaces"), Some("tools,agents"));
}

/// The value of env variable `name` in the operator container, or its `valueFrom`.
fn env_var(container: &Value, name: &str) -> Option<Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| {
            e.get("value")
                .cloned()
                .unwrap_or_else(|| e["valueFrom"].clone())
        })
}

#[test]
fn tracing_sets_the_standard_opentelemetry_variables() {
    const OTEL: [&str; 6] = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "SLUICE_OTLP_HEADERS_DIR",
    ];
    // Off by default: no variable, no volume.
    let off = operator_container(&render(&Values::defaults()));
    for name in OTEL {
        assert_eq!(env_var(&off, name), None, "{name}");
    }

    let rendered = render(&ci("observability-values.yaml"));
    let container = operator_container(&rendered);
    let env = |name| env_var(&container, name);
    assert_eq!(
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        Some(json!("https://otlp.example.com/v1/traces"))
    );
    assert_eq!(env("OTEL_TRACES_SAMPLER"), Some(json!("traceidratio")));
    assert_eq!(env("OTEL_TRACES_SAMPLER_ARG"), Some(json!("0.5")));
    assert_eq!(env("OTEL_SERVICE_NAME"), Some(json!("sluice-operator")));
    assert_eq!(
        env("OTEL_RESOURCE_ATTRIBUTES"),
        Some(json!(
            "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),k8s.deployment.name=sluice"
        ))
    );
    // `$(VAR)` expands only variables defined before it.
    let names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let position = |name| names.iter().position(|n| *n == name).unwrap();
    assert!(position("POD_NAME") < position("OTEL_RESOURCE_ATTRIBUTES"));
    assert!(position("POD_NAMESPACE") < position("OTEL_RESOURCE_ATTRIBUTES"));
    assert_eq!(
        env("POD_NAMESPACE"),
        Some(json!({"fieldRef": {"fieldPath": "metadata.namespace"}}))
    );

    // The headers: a Secret mounted read-only where SLUICE_OTLP_HEADERS_DIR points.
    let dir = env("SLUICE_OTLP_HEADERS_DIR").unwrap();
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == dir)
        .unwrap()
        .clone();
    assert_eq!(mount["readOnly"], true);
    let pod = &rendered.one("Deployment").unwrap().object["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], "otlp-headers");

    // An endpoint without headers: no headers variable, no volume.
    let bare = render(&Values::json(
        json!({"tracing": {"endpoint": "http://otel-collector.observability.svc:4318/v1/traces"}}),
    ));
    let container = operator_container(&bare);
    assert_eq!(env_var(&container, "SLUICE_OTLP_HEADERS_DIR"), None);
    assert_eq!(
        env_var(&container, "OTEL_TRACES_SAMPLER_ARG"),
        Some(json!("1"))
    );
    assert_eq!(container["volumeMounts"].as_array().unwrap().len(), 1);
}

#[test]
fn the_flags_the_chart_passes_are_flags_of_the_operator() {
    let help = operator_output(&["run", "--help"], None).unwrap();
    assert!(
        help.status.success(),
        "sluice-operator run --help failed: {help:?}"
    );
    let help = String::from_utf8(help.stdout).unwrap();
    for (scenario, values) in scenarios() {
        let args = operator_args(&render(&values));
        assert_eq!(args.first().map(String::as_str), Some("run"), "{scenario}");
        for arg in &args[1..] {
            let name = arg.split('=').next().unwrap();
            assert!(
                help.contains(&format!("{name} "))
                    || help.contains(&format!("{name}["))
                    || help.contains(&format!("{name}=")),
                "{scenario}: the chart passes {name}, which `sluice-operator run --help` does not list:\n{help}"
            );
        }
    }
}

#[test]
fn default_images_are_the_operator_defaults() {
    let chart = helm::show().unwrap();
    // appVersion is the workspace version: the tags the images default to.
    let version = operator_output(&["--version"], None).unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let app_version = chart.metadata["appVersion"].as_str().unwrap();
    assert_eq!(
        version.trim(),
        format!("sluice-operator {app_version}"),
        "Chart.yaml appVersion must be the release version"
    );

    // With no image flags, `sluice-operator render` uses its built-in defaults: the chart's
    // defaults must be the same images.
    let objects = operator_render("phabricator-header-token.yaml");
    let pod =
        &objects.iter().find(|o| o["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"];
    let image_of = |name: &str| {
        pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["image"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let args = operator_args(&render(&Values::defaults()));
    assert_eq!(
        flag(&args, "--conduit-image"),
        Some(image_of("conduit").as_str())
    );
    assert_eq!(
        flag(&args, "--proxy-image"),
        Some(image_of("sluice-proxy").as_str())
    );
    assert_eq!(
        flag(&args, "--conduit-image"),
        Some("ghcr.io/skroutz/conduit:0.2.2"),
        "the Conduit image is pinned"
    );
    let operator_image = operator_container(&render(&Values::defaults()))["image"].clone();
    assert_eq!(
        operator_image,
        format!("ghcr.io/sluice-dev/sluice-operator:{app_version}")
    );
}

#[test]
fn metrics_service_and_service_monitor_reach_the_admin_port() {
    let rendered = render(&ci("metrics-values.yaml"));
    let service = &rendered.one("Service").unwrap().object;
    let deployment = &rendered.one("Deployment").unwrap().object;
    let monitor = &rendered.one("ServiceMonitor").unwrap().object;
    // Service → pods.
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod_labels[key], value,
            "the metrics Service selects no operator pod"
        );
    }
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["port"], 8080);
    assert_eq!(port["targetPort"], "admin");
    // ServiceMonitor → Service.
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the ServiceMonitor selects no metrics Service"
        );
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([NAMESPACE])
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], port["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(endpoint["scrapeTimeout"], "5s");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
}
