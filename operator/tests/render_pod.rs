//! The rendered pod: hardening that no spec can weaken, overrides, env, shutdown, images.

mod render_fixtures;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use render_fixtures::*;
use serde_json::json;
use sluice_crds::{McpRoute, McpServer};
use sluice_operator::render::RESTART_HASH_ANNOTATION;
/// A server that sets every pod override, trying to weaken the pod where it can.
fn server_with_every_override() -> McpServer {
    ServerBuilder::new("overridden")
        .set("replicas", json!(3))
        .set(
            "pod",
            json!({
                "labels": {"team": "ai", "app.kubernetes.io/name": "hijack"},
                "annotations": {
                    "owner": "ai-team",
                    "sluice.dev/restart-hash": "forced",
                    "kubectl.kubernetes.io/default-container": "sluice-proxy",
                },
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ai", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
                }}},
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
                    {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                     "labelSelector": {"matchLabels": {"custom": "yes"}}}
                ],
                "priorityClassName": "high",
            }),
        )
        .set("imagePullPolicy", json!("Always"))
        .set("imagePullSecrets", json!([{"name": "registry"}]))
        .build()
}

/// Servers (with routes) covering every feature that touches the pod.
fn pod_variants() -> Vec<(Vec<McpServer>, Vec<McpRoute>)> {
    vec![
        (vec![ServerBuilder::new("plain").build()], vec![]),
        (
            vec![
                ServerBuilder::new("oauth")
                    .oauth("oauth-client", Some("https://mcp.example.com"))
                    .set(
                        "phabricator.caBundle",
                        json!({"secretKeyRef": {"name": "corp-ca", "key": "bundle.pem"}}),
                    )
                    .set("phabricator.proxy", json!("socks5://proxy.internal:1080"))
                    .set("phabricator.insecureSkipVerify", json!(true))
                    .set("sessions", json!("stateful"))
                    .set(
                        "proxy.tracing",
                        json!({"endpoint": "https://otlp.example.com", "headersSecretRef": {"name": "otlp"},
                            "caBundle": {"secretKeyRef": {"name": "corp-ca", "key": "bundle.pem"}}}),
                    )
                    .build(),
            ],
            vec![],
        ),
        (
            vec![server_with_every_override()],
            vec![
                RouteBuilder::new("bots", "overridden")
                    .set(
                        "policy.authentication",
                        json!({"mode": "serviceAccount", "serviceAccount": {"allowed": ["ci/*"]}}),
                    )
                    .set(
                        "policy.upstreamToken",
                        json!({"secretKeyRef": {"name": "bot", "key": "token"}}),
                    )
                    .build(),
                RouteBuilder::new("keys", "overridden")
                    .set(
                        "policy.authentication",
                        json!({"mode": "apiKey", "apiKey": {"secretRef": {"name": "api-keys"}}}),
                    )
                    .build(),
            ],
        ),
    ]
}

fn assert_container_hardened(c: &Container) {
    let sc = c
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{}: no securityContext", c.name));
    assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
    assert_eq!(sc.run_as_user, Some(65532), "{}", c.name);
    assert_eq!(sc.run_as_group, Some(65532), "{}", c.name);
    assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
    assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
    assert_ne!(sc.privileged, Some(true), "{}", c.name);
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(
        caps.drop.as_deref(),
        Some(&["ALL".to_string()][..]),
        "{}",
        c.name
    );
    assert!(caps.add.as_ref().is_none_or(Vec::is_empty), "{}", c.name);
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert!(
        sc.windows_options.is_none() && sc.se_linux_options.is_none() && sc.proc_mount.is_none()
    );
}

fn assert_pod_hardened(pod: &PodSpec) {
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["conduit", "sluice-proxy"]);
    assert!(pod.init_containers.is_none() && pod.ephemeral_containers.is_none());
    for c in &pod.containers {
        assert_container_hardened(c);
    }
    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.run_as_group, Some(65532));
    assert_eq!(psc.fs_group, Some(65532));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert!(psc.sysctls.is_none());
    assert_eq!(pod.automount_service_account_token, Some(false));
    for flag in [pod.host_network, pod.host_pid, pod.host_ipc] {
        assert_ne!(flag, Some(true));
    }

    // Conduit listens on loopback only, and nothing in the pod spec exposes its port.
    let conduit = container(pod, "conduit");
    let args = conduit.args.clone().unwrap_or_default();
    assert_eq!(
        args[..6],
        [
            "--transport",
            "http",
            "--host",
            "127.0.0.1",
            "--port",
            "8000"
        ]
    );
    assert!(conduit.ports.is_none());
    let sidecar = container(pod, "sluice-proxy");
    let ports: Vec<(Option<&str>, i32)> = sidecar
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(ports, [(Some("http"), 8080), (Some("admin"), 9090)]);

    // Every mount is read-only except Conduit's /tmp; no hostPath; /tmp is size-limited.
    for c in &pod.containers {
        for m in c.volume_mounts.iter().flatten() {
            let writable = c.name == "conduit" && m.mount_path == "/tmp";
            assert_eq!(
                m.read_only == Some(true),
                !writable,
                "{} {}",
                c.name,
                m.mount_path
            );
            assert!(
                m.sub_path.is_none(),
                "{}: no subPath, so updates arrive",
                m.mount_path
            );
        }
    }
    for v in pod.volumes.iter().flatten() {
        assert!(v.host_path.is_none(), "{}", v.name);
    }
    let tmp = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "tmp")
        .expect("tmp volume");
    assert_eq!(
        tmp.empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.as_ref())
            .map(|q| q.0.as_str()),
        Some("64Mi")
    );
    // A ServiceAccount token reaches the sidecar at most, never Conduit.
    for m in conduit.volume_mounts.iter().flatten() {
        assert!(
            !m.mount_path.starts_with("/var/run/secrets"),
            "{}",
            m.mount_path
        );
    }
}

#[test]
fn every_spec_renders_a_hardened_pod() {
    for (servers, routes) in pod_variants() {
        let docs = rendered_documents(&servers, &routes);
        for server in &servers {
            let name = server.metadata.name.as_deref().expect("named");
            assert_pod_hardened(&pod_of(&docs, name));
            let sa: k8s_openapi::api::core::v1::ServiceAccount =
                find(&docs, "ServiceAccount", name);
            assert_eq!(sa.automount_service_account_token, Some(false));
        }
    }
}

#[test]
fn pod_overrides_apply_without_touching_sluice_labels_or_annotations() {
    let docs = rendered_documents(&[server_with_every_override()], &[]);
    let overridden = deployment(&docs, "overridden");
    let template = overridden.spec.as_ref().expect("spec").template.clone();
    let meta = template.metadata.expect("template metadata");
    let labels = meta.labels.expect("labels");
    assert_eq!(labels["team"], "ai");
    assert_eq!(
        labels["app.kubernetes.io/name"], "mcp-server",
        "Sluice's selector labels win"
    );
    assert_eq!(labels["app.kubernetes.io/instance"], "overridden");
    let annotations = meta.annotations.expect("annotations");
    assert_eq!(annotations["owner"], "ai-team");
    assert_ne!(annotations[RESTART_HASH_ANNOTATION], "forced");
    assert_eq!(
        annotations["kubectl.kubernetes.io/default-container"],
        "conduit"
    );

    let pod = template.spec.expect("pod");
    assert_eq!(
        pod.node_selector.as_ref().expect("nodeSelector")["kubernetes.io/os"],
        "linux"
    );
    assert_eq!(
        pod.tolerations.as_ref().expect("tolerations")[0]
            .key
            .as_deref(),
        Some("dedicated")
    );
    assert!(
        pod.affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .is_some()
    );
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
    let spread = pod.topology_spread_constraints.expect("spread");
    let selector = |i: usize| {
        spread[i]
            .label_selector
            .clone()
            .and_then(|s| s.match_labels)
            .expect("selector")
    };
    assert_eq!(
        selector(0),
        BTreeMap::from([
            (
                "app.kubernetes.io/instance".to_string(),
                "overridden".to_string()
            ),
            (
                "app.kubernetes.io/name".to_string(),
                "mcp-server".to_string()
            ),
        ]),
        "an empty labelSelector selects the server's own pods"
    );
    assert_eq!(
        selector(1),
        BTreeMap::from([("custom".to_string(), "yes".to_string())])
    );
    assert_eq!(
        pod.image_pull_secrets.expect("pull secrets")[0].name,
        "registry"
    );
    for c in &pod.containers {
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    }
    let selector = overridden
        .spec
        .expect("spec")
        .selector
        .match_labels
        .expect("selector");
    assert_eq!(
        selector.len(),
        2,
        "the immutable selector holds name and instance only"
    );
}

#[test]
fn conduit_env_follows_the_spec() {
    let docs = rendered_documents(&[ServerBuilder::new("plain").build()], &[]);
    let pod = pod_of(&docs, "plain");
    let conduit = container(&pod, "conduit");
    assert_eq!(
        env(conduit, "PHABRICATOR_URL"),
        Some("https://phabricator.example.com/api/")
    );
    assert_eq!(env(conduit, "FASTMCP_CHECK_FOR_UPDATES"), Some("off"));
    assert_eq!(env(conduit, "FASTMCP_HOME"), Some("/tmp/fastmcp"));
    assert_eq!(env(conduit, "FORWARDED_ALLOW_IPS"), Some("127.0.0.1"));
    for absent in [
        "PHABRICATOR_PROXY",
        "PHABRICATOR_DISABLE_CERT_VERIFY",
        "SSL_CERT_FILE",
        "PHABRICATOR_OAUTH_CLIENT_ID",
        "PHABRICATOR_OAUTH_CLIENT_SECRET",
        "PHABRICATOR_MCP_SERVER_URL",
    ] {
        assert!(
            conduit.env.iter().flatten().all(|e| e.name != absent),
            "{absent}"
        );
    }
    assert_eq!(
        conduit
            .args
            .as_ref()
            .and_then(|a| a.last())
            .map(String::as_str),
        Some("--stateless")
    );

    let server = ServerBuilder::new("tuned")
        .set(
            "phabricator.url",
            json!("https://phab.internal:8443/phab/api"),
        )
        .set("phabricator.proxy", json!("socks5://proxy.internal:1080"))
        .set("phabricator.insecureSkipVerify", json!(true))
        .set(
            "phabricator.caBundle",
            json!({"configMapKeyRef": {"name": "corp-ca", "key": "ca.pem"}}),
        )
        .set("sessions", json!("stateful"))
        .build();
    let docs = rendered_documents(&[server], &[]);
    let pod = pod_of(&docs, "tuned");
    let conduit = container(&pod, "conduit");
    assert_eq!(
        env(conduit, "PHABRICATOR_URL"),
        Some("https://phab.internal:8443/phab/api/")
    );
    assert_eq!(
        env(conduit, "PHABRICATOR_PROXY"),
        Some("socks5://proxy.internal:1080")
    );
    assert_eq!(
        env(conduit, "PHABRICATOR_DISABLE_CERT_VERIFY"),
        Some("true")
    );
    assert_eq!(
        env(conduit, "SSL_CERT_FILE"),
        Some("/etc/sluice/phabricator-ca/ca.crt")
    );
    assert_eq!(
        conduit
            .args
            .as_ref()
            .and_then(|a| a.last())
            .map(String::as_str),
        Some("--no-stateless")
    );
}

#[test]
fn the_sidecars_traffic_threads_follow_its_cpu_limit() {
    let worker_threads = |server: McpServer| {
        let name = server.metadata.name.clone().expect("named");
        let docs = rendered_documents(&[server], &[]);
        let pod = pod_of(&docs, &name);
        let sidecar = container(&pod, "sluice-proxy");
        sidecar
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "SLUICE_WORKER_THREADS")
            .cloned()
    };
    // No CPU limit (the default resources): the proxy's own default, one thread.
    assert_eq!(worker_threads(ServerBuilder::new("plain").build()), None);
    let requested_only = ServerBuilder::new("requested")
        .set("proxy.resources", json!({"requests": {"cpu": "2"}}))
        .build();
    assert_eq!(worker_threads(requested_only), None);

    // A limit: Kubernetes passes it rounded up to whole CPUs (divisor 1).
    let limited = ServerBuilder::new("limited")
        .set(
            "proxy.resources",
            json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1500m", "memory": "128Mi"}}),
        )
        .build();
    let threads = worker_threads(limited).expect("SLUICE_WORKER_THREADS set");
    assert_eq!(threads.value, None);
    let field = threads
        .value_from
        .and_then(|v| v.resource_field_ref)
        .expect("from the downward API");
    assert_eq!(field.container_name.as_deref(), Some("sluice-proxy"));
    assert_eq!(field.resource, "limits.cpu");
    assert_eq!(field.divisor.map(|d| d.0).as_deref(), Some("1"));
    // Conduit's threads are its own business.
    let docs = rendered_documents(
        &[ServerBuilder::new("both")
            .set("proxy.resources", json!({"limits": {"cpu": "2"}}))
            .build()],
        &[],
    );
    let pod = pod_of(&docs, "both");
    assert!(
        container(&pod, "conduit")
            .env
            .iter()
            .flatten()
            .all(|e| e.name != "SLUICE_WORKER_THREADS")
    );
}

#[test]
fn shutdown_order_lets_conduit_outlive_the_sidecar() {
    let docs = rendered_documents(&[ServerBuilder::new("plain").build()], &[]);
    let pod = pod_of(&docs, "plain");
    let config = proxy_config(&docs, "plain");
    let drain = config.shutdown.drain_delay.get() + config.shutdown.grace_period.get();
    let conduit = container(&pod, "conduit");
    let sleep = conduit
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .expect("a preStop sleep")
        .seconds;
    assert!(
        sleep >= i64::try_from(drain.as_secs()).expect("small"),
        "{sleep}s < {drain:?}"
    );
    assert!(pod.termination_grace_period_seconds.expect("grace") > sleep);
    let sidecar = container(&pod, "sluice-proxy");
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = p
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("httpGet probe");
        (get.path.clone(), get.port.clone())
    };
    let admin = IntOrString::String("admin".into());
    assert_eq!(
        probe_path(&sidecar.liveness_probe),
        (Some("/healthz".into()), admin.clone())
    );
    assert_eq!(
        probe_path(&sidecar.readiness_probe),
        (Some("/readyz".into()), admin)
    );
    // Conduit's startup and liveness are the sidecar's verdict of whether it answers MCP,
    // by port number: a named port would be looked up in Conduit's own (empty) port list.
    let upstream = (
        Some("/upstream/livez".into()),
        IntOrString::Int(i32::from(sluice_crds::defaults::ADMIN_PORT)),
    );
    assert_eq!(probe_path(&conduit.startup_probe), upstream);
    assert_eq!(probe_path(&conduit.liveness_probe), upstream);
    let startup = conduit.startup_probe.as_ref().expect("startup probe");
    let startup_window =
        startup.period_seconds.unwrap_or(10) * startup.failure_threshold.unwrap_or(3);
    assert!(
        startup_window >= 120,
        "Conduit gets minutes to start: {startup_window}s"
    );
    // Readiness is the pod's, through the sidecar's /readyz: Conduit needs none of its own.
    assert!(conduit.readiness_probe.is_none());
}

#[test]
fn a_pod_disruption_budget_only_with_more_than_one_replica() {
    for (replicas, expected) in [(0, false), (1, false), (2, true), (5, true)] {
        let server = ServerBuilder::new("s")
            .set("replicas", json!(replicas))
            .build();
        let docs = rendered_documents(&[server], &[]);
        assert_eq!(
            has(&docs, "PodDisruptionBudget", "s"),
            expected,
            "{replicas} replicas"
        );
        if expected {
            let pdb: PodDisruptionBudget = find(&docs, "PodDisruptionBudget", "s");
            let spec = pdb.spec.expect("spec");
            assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
            assert!(spec.min_available.is_none());
            assert_eq!(
                spec.selector.and_then(|s| s.match_labels).map(|l| l.len()),
                Some(2)
            );
        }
    }
}

#[test]
fn images_come_from_the_spec_or_the_operator() {
    let docs = rendered_documents(&[ServerBuilder::new("plain").build()], &[]);
    let pod = pod_of(&docs, "plain");
    assert_eq!(
        container(&pod, "conduit").image.as_deref(),
        Some(sluice_crds::defaults::CONDUIT_IMAGE)
    );
    assert_eq!(
        container(&pod, "sluice-proxy").image.as_deref(),
        Some(sluice_crds::defaults::PROXY_IMAGE)
    );
    let plain = deployment(&docs, "plain");
    assert_eq!(
        plain.metadata.labels.expect("labels")["app.kubernetes.io/version"],
        "0.2.2"
    );

    let pinned = ServerBuilder::new("pinned")
        .set("image", json!("registry.internal/conduit@sha256:0123"))
        .set("proxy.image", json!("registry.internal/sluice-proxy:dev"))
        .build();
    let docs = rendered_documents(&[pinned], &[]);
    let pod = pod_of(&docs, "pinned");
    assert_eq!(
        container(&pod, "conduit").image.as_deref(),
        Some("registry.internal/conduit@sha256:0123")
    );
    assert_eq!(
        container(&pod, "sluice-proxy").image.as_deref(),
        Some("registry.internal/sluice-proxy:dev")
    );
    let labels = deployment(&docs, "pinned").metadata.labels.expect("labels");
    assert!(
        !labels.contains_key("app.kubernetes.io/version"),
        "a digest has no version"
    );
}

#[test]
fn autoscaling_renders_an_hpa_and_leaves_the_replica_count_to_it() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    let plain = rendered_documents(&[ServerBuilder::new("s").build()], &[]);
    assert!(!has(&plain, "HorizontalPodAutoscaler", "s"));
    assert_eq!(deployment(&plain, "s").spec.unwrap().replicas, Some(1));

    for (autoscaling, pdb, metrics) in [
        // No target named: CPU at 80%, the autoscaler's own default.
        (
            json!({"maxReplicas": 4}),
            false,
            vec![("Resource", "cpu", "80")],
        ),
        (
            json!({"minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 60}),
            true,
            vec![("Resource", "cpu", "60")],
        ),
        // In flight alone: no CPU target is added behind the user's back.
        (
            json!({"minReplicas": 3, "maxReplicas": 9, "targetInFlightRequests": 20}),
            true,
            vec![("Pods", "sluice_in_flight_requests", "20")],
        ),
        (
            json!({"maxReplicas": 9, "targetInFlightRequests": 20, "targetCPUUtilizationPercentage": 75}),
            false,
            vec![
                ("Resource", "cpu", "75"),
                ("Pods", "sluice_in_flight_requests", "20"),
            ],
        ),
    ] {
        let server = ServerBuilder::new("s")
            // Ignored with an autoscaler: the Deployment leaves the count out.
            .set("replicas", json!(5))
            .set("autoscaling", autoscaling.clone())
            .build();
        let docs = rendered_documents(&[server], &[]);
        assert_eq!(
            deployment(&docs, "s").spec.unwrap().replicas,
            None,
            "{autoscaling}"
        );
        assert_eq!(
            has(&docs, "PodDisruptionBudget", "s"),
            pdb,
            "a PDB follows minReplicas: {autoscaling}"
        );
        let hpa: HorizontalPodAutoscaler = find(&docs, "HorizontalPodAutoscaler", "s");
        let spec = hpa.spec.unwrap();
        assert_eq!(spec.scale_target_ref.name, "s");
        assert_eq!(
            spec.scale_target_ref.api_version.as_deref(),
            Some("apps/v1")
        );
        assert_eq!(
            spec.min_replicas,
            autoscaling["minReplicas"]
                .as_i64()
                .map(|n| n as i32)
                .or(Some(1))
        );
        let rendered: Vec<(String, String, String)> = spec
            .metrics
            .unwrap()
            .into_iter()
            .map(|m| match (m.resource, m.pods) {
                (Some(r), None) => (
                    m.type_,
                    r.name,
                    r.target.average_utilization.unwrap().to_string(),
                ),
                (None, Some(p)) => (m.type_, p.metric.name, p.target.average_value.unwrap().0),
                other => panic!("unexpected metric {other:?}"),
            })
            .collect();
        let expected: Vec<(String, String, String)> = metrics
            .iter()
            .map(|(a, b, c)| ((*a).to_string(), (*b).to_string(), (*c).to_string()))
            .collect();
        assert_eq!(rendered, expected, "{autoscaling}");
    }
}

#[test]
fn the_upstream_check_reaches_the_sidecar_config() {
    let defaults = rendered_documents(&[ServerBuilder::new("s").build()], &[]);
    let check = proxy_config(&defaults, "s").upstream.check;
    assert_eq!(
        (
            check.interval.get().as_secs(),
            check.timeout.get().as_secs(),
            check.failure_threshold
        ),
        (10, 5, 3)
    );
    let tuned = ServerBuilder::new("s")
        .set(
            "proxy.upstreamCheck",
            json!({"interval": "30s", "timeout": "2s", "failureThreshold": 5}),
        )
        .build();
    let check = proxy_config(&rendered_documents(&[tuned], &[]), "s")
        .upstream
        .check;
    assert_eq!(
        (
            check.interval.get().as_secs(),
            check.timeout.get().as_secs(),
            check.failure_threshold
        ),
        (30, 2, 5)
    );
}

#[test]
fn the_legacy_sse_settings_reach_the_sidecar_config() {
    let summary = |config: sluice_proxy_config::ProxyConfig| {
        let legacy = config.legacy_sse;
        (
            legacy.enabled,
            legacy.max_sessions,
            legacy.max_sessions_per_caller,
            legacy.idle_timeout.get().as_secs(),
        )
    };
    let defaults = rendered_documents(&[ServerBuilder::new("s").build()], &[]);
    assert_eq!(
        summary(proxy_config(&defaults, "s")),
        (true, 512, 32, 30 * 60)
    );
    let tuned = ServerBuilder::new("s")
        .set(
            "proxy.legacySse",
            json!({"maxSessions": 100, "maxSessionsPerCaller": 4, "idleTimeout": "5m30s"}),
        )
        .build();
    assert_eq!(
        summary(proxy_config(&rendered_documents(&[tuned], &[]), "s")),
        (true, 100, 4, 330)
    );
    // Turned off, the other fields keep their defaults.
    let off = ServerBuilder::new("s")
        .set("proxy.legacySse", json!({"enabled": false}))
        .build();
    assert_eq!(
        summary(proxy_config(&rendered_documents(&[off], &[]), "s")),
        (false, 512, 32, 30 * 60)
    );
}

#[test]
fn the_audit_event_stream_is_served_only_when_the_server_asks_for_it() {
    let events = |server| {
        proxy_config(&rendered_documents(&[server], &[]), "s")
            .admin
            .audit_events
    };
    assert!(!events(ServerBuilder::new("s").build()));
    assert!(events(
        ServerBuilder::new("s")
            .set("proxy.auditEvents", json!(true))
            .build()
    ));
}

#[test]
fn the_trace_export_reaches_the_sidecar_config_and_each_pod_names_itself() {
    let plain = rendered_documents(&[ServerBuilder::new("s").build()], &[]);
    assert_eq!(proxy_config(&plain, "s").tracing, None);
    let pod = pod_of(&plain, "s");
    for c in &pod.containers {
        for absent in ["POD_NAME", "OTEL_RESOURCE_ATTRIBUTES"] {
            assert!(c.env.iter().flatten().all(|e| e.name != absent), "{absent}");
        }
    }

    let traced = ServerBuilder::new("s")
        .set(
            "proxy.tracing",
            json!({
                "endpoint": "http://otel-collector.observability.svc:4318/v1/traces",
                "samplingRatio": "0.25",
                "resourceAttributes": {"service.name": "phab-proxy", "deployment.environment.name": "prod"},
            }),
        )
        .build();
    let docs = rendered_documents(&[traced], &[]);
    let tracing = proxy_config(&docs, "s").tracing.expect("tracing");
    assert_eq!(
        tracing.otlp.endpoint,
        "http://otel-collector.observability.svc:4318/v1/traces"
    );
    assert_eq!(tracing.otlp.headers_dir, None);
    assert_eq!(tracing.sampling_ratio, 0.25);
    let attributes: Vec<(&str, &str)> = tracing
        .resource_attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // The user's win over the operator's (service.name).
    assert_eq!(
        attributes,
        [
            ("deployment.environment.name", "prod"),
            ("k8s.deployment.name", "s"),
            ("k8s.namespace.name", "tools"),
            ("service.name", "phab-proxy"),
            ("sluice.mcp_server", "s"),
        ]
    );
    // The pod's name comes from the downward API, to the sidecar alone; POD_NAME first, so
    // `$(POD_NAME)` expands.
    let pod = pod_of(&docs, "s");
    let sidecar = container(&pod, "sluice-proxy");
    let names: Vec<&str> = sidecar
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["POD_NAME", "OTEL_RESOURCE_ATTRIBUTES"]);
    let pod_name = sidecar.env.as_ref().expect("env")[0]
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("from the downward API");
    assert_eq!(pod_name.field_path, "metadata.name");
    assert_eq!(
        env(sidecar, "OTEL_RESOURCE_ATTRIBUTES"),
        Some("k8s.pod.name=$(POD_NAME)")
    );
    let conduit = container(&pod, "conduit");
    assert!(
        conduit
            .env
            .iter()
            .flatten()
            .all(|e| e.name != "POD_NAME" && !e.name.starts_with("OTEL_"))
    );

    // Defaults: every trace, and a collector's base URL gets the traces path.
    let base = ServerBuilder::new("s")
        .set(
            "proxy.tracing",
            json!({"endpoint": "http://collector:4318"}),
        )
        .build();
    let tracing = proxy_config(&rendered_documents(&[base], &[]), "s")
        .tracing
        .expect("tracing");
    assert_eq!(tracing.otlp.endpoint, "http://collector:4318/v1/traces");
    assert_eq!(tracing.sampling_ratio, 1.0);
    assert_eq!(tracing.resource_attributes["service.name"], "sluice-proxy");
}
