//! The cluster tier: the operator binary against a real Kubernetes API server (kind, k3d, any
//! cluster `KUBECONFIG` points at). It installs the CRDs, runs `sluice-operator run` for one
//! fresh namespace, applies the examples there, waits for the statuses and objects, deletes
//! the servers (the finalizer must remove the TokenReview binding) and cleans up.
//!
//! Without `KUBECONFIG`, or when its cluster does not answer, it says so plainly and passes:
//! the one place a missing peer is not a failure (no API server can be installed on the CI
//! machines). See e2e/CLUSTER.md for running it with kind or k3d.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use kube::api::GroupVersionKind;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use serde_json::Value;
use sluice_e2e::{Process, free_port, sluice_operator, workspace_root};
// Deadlines of the async waits below: tokio's clock, the one their sleeps run on.
use tokio::time::Instant;

/// How long the whole flow may wait for the operator at each step.
const PATIENCE: Duration = Duration::from_secs(180);

/// The field manager of the test's own writes.
const MANAGER: &str = "sluice-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_the_examples_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("KUBECONFIG") else {
        println!("cluster tier did not run: no cluster reachable (KUBECONFIG unset)");
        return;
    };
    let client = match reachable().await {
        Ok(client) => client,
        Err(error) => {
            println!(
                "cluster tier did not run: no cluster reachable (KUBECONFIG={}: {error})",
                kubeconfig.to_string_lossy()
            );
            return;
        }
    };
    let namespace = format!("sluice-e2e-{}", std::process::id());
    let outcome = flow(&client, &namespace).await;
    // Clean up whatever happened; report the flow's failure first.
    let cleanup = cleanup(&client, &namespace).await;
    outcome.unwrap();
    cleanup.unwrap();
}

/// The checks of issue 16 against a real API server: an autoscaler's writes are never undone,
/// the McpServer's scale subresource works, and a converged operator does not write again over
/// canonicalised quantities (`cpu: "0.5"` is stored as `500m`).
async fn day_two(client: &Client, namespace: &str, process: &mut Process) -> anyhow::Result<()> {
    let mcps = dynamic(client, "sluice.dev/v1alpha1", "McpServer", Some(namespace)).await?;
    let deployments = dynamic(client, "apps/v1", "Deployment", Some(namespace)).await?;
    let hpas = dynamic(
        client,
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        Some(namespace),
    )
    .await?;
    let quantities = serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "McpServer",
        "metadata": {"name": "day-two"},
        "spec": {
            "phabricator": {"url": "https://phabricator.example.com"},
            "replicas": 2,
            "resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}},
            "proxy": {"resources": {"requests": {"cpu": "0.1", "memory": "32Mi"}, "limits": {"memory": "0.125Gi"}}},
        },
    });
    apply_stream(client, &quantities.to_string(), Some(namespace)).await?;
    let generation_of = |d: &DynamicObject| d.metadata.generation.unwrap_or_default();
    let settled = wait("Deployment day-two", process, || async {
        Ok(deployments.get_opt("day-two").await?)
    })
    .await?;
    // Over many idle reconciles (resync 2 s) the operator writes nothing: the live spec says
    // 500m where the McpServer says 0.5.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let later = deployments.get("day-two").await?;
    let stored =
        later.data["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
            .clone();
    println!(
        "cluster tier: cpu \"0.5\" is stored as {stored}; Deployment generation {} → {} over 10 s of reconciles",
        generation_of(&settled),
        generation_of(&later)
    );
    if generation_of(&later) != generation_of(&settled) {
        bail!("the operator rewrote a converged Deployment (canonicalised quantities)");
    }

    // `kubectl scale mcps day-two --replicas 3`: the scale subresource of the McpServer.
    let by_test = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    mcps.patch_scale(
        "day-two",
        &by_test,
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await?;
    wait("the scaled Deployment", process, || async {
        let d = deployments.get("day-two").await?;
        Ok((d.data["spec"]["replicas"] == 3).then_some(()))
    })
    .await?;

    // Autoscaling on: an HPA, and its writes of the count stay.
    let mut autoscaled = quantities.clone();
    autoscaled["spec"]["autoscaling"] = serde_json::json!({"minReplicas": 2, "maxReplicas": 5});
    apply_stream(client, &autoscaled.to_string(), Some(namespace)).await?;
    wait("the HorizontalPodAutoscaler", process, || async {
        Ok(hpas.get_opt("day-two").await?)
    })
    .await?;
    let by_hpa = PatchParams {
        field_manager: Some("sluice-e2e-hpa".into()),
        ..PatchParams::default()
    };
    for count in [4, 5, 2] {
        deployments
            .patch_scale(
                "day-two",
                &by_hpa,
                &Patch::Merge(serde_json::json!({"spec": {"replicas": count}})),
            )
            .await?;
        let scaled = generation_of(&deployments.get("day-two").await?);
        tokio::time::sleep(Duration::from_secs(6)).await;
        let after = deployments.get("day-two").await?;
        println!(
            "cluster tier: scaled to {count}; {} replicas and generation {scaled} → {} after 6 s",
            after.data["spec"]["replicas"],
            generation_of(&after)
        );
        if after.data["spec"]["replicas"] != count || generation_of(&after) != scaled {
            bail!("the operator undid or rewrote the autoscaler's replica count");
        }
    }
    let server = mcps.get("day-two").await?;
    println!(
        "cluster tier: McpServer day-two selector {} Verified {}",
        server.data["status"]["selector"],
        condition(&server.data, "Verified")
            .cloned()
            .unwrap_or_default()
    );
    mcps.delete("day-two", &DeleteParams::default()).await?;
    Ok(())
}

/// A client whose cluster answers within a few seconds.
async fn reachable() -> anyhow::Result<Client> {
    let client = Client::try_default().await?;
    let version = tokio::time::timeout(Duration::from_secs(10), client.apiserver_version())
        .await
        .context("no answer in 10 s")??;
    println!(
        "cluster tier: Kubernetes {}.{}",
        version.major, version.minor
    );
    Ok(client)
}

async fn flow(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let operator = sluice_operator()?;
    apply_stream(client, &output(&operator, &["crds"])?, None).await?;
    wait_established(client).await?;
    apply_stream(
        client,
        &serde_json::to_string(&serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace},
        }))?,
        None,
    )
    .await?;

    let admin = free_port()?;
    let mut command = Command::new(&operator);
    command.args([
        "run",
        "--namespaces",
        namespace,
        "--leader-election=false",
        "--log-format=text",
        "--admin-address",
        &format!("127.0.0.1:{admin}"),
        // Idle reconciles every few seconds, so the day-two checks see a converged operator
        // stay quiet over many of them.
        "--resync=2s",
    ]);
    let mut process = Process::spawn("sluice-operator", command)?;
    process.wait_for_http_ok(&format!("http://127.0.0.1:{admin}/readyz"), PATIENCE)?;

    let examples = workspace_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut servers = Vec::new();
    let mut routes = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
    {
        for object in apply_stream(client, &std::fs::read_to_string(file)?, Some(namespace)).await?
        {
            match object.types.as_ref().map(|t| t.kind.as_str()) {
                Some("McpServer") => servers.push(object.name_any()),
                Some("McpRoute") => routes.push(object.name_any()),
                _ => {}
            }
        }
    }
    if servers.is_empty() {
        bail!("examples/ holds no McpServer");
    }

    let mcps = dynamic(client, "sluice.dev/v1alpha1", "McpServer", Some(namespace)).await?;
    let mcpr = dynamic(client, "sluice.dev/v1alpha1", "McpRoute", Some(namespace)).await?;
    for name in &servers {
        wait(
            &format!("McpServer {name} status"),
            &mut process,
            || async {
                let server = mcps.get_opt(name).await?;
                Ok(server.filter(|s| {
                    s.data["status"]["observedGeneration"].as_i64() == s.metadata.generation
                        && condition(&s.data, "Ready").is_some()
                }))
            },
        )
        .await?;
        let deployments = dynamic(client, "apps/v1", "Deployment", Some(namespace)).await?;
        if deployments.get_opt(name).await?.is_none() {
            bail!("McpServer {name} has no Deployment");
        }
    }
    for name in &routes {
        let route = wait(
            &format!("McpRoute {name} accepted"),
            &mut process,
            || async {
                let route = mcpr.get_opt(name).await?;
                Ok(route.filter(|r| {
                    condition(&r.data, "Accepted").is_some_and(|c| c["status"] == "True")
                }))
            },
        )
        .await?;
        println!(
            "cluster tier: McpRoute {name}: {}",
            route.data["status"]["url"].as_str().unwrap_or("-")
        );
    }
    for name in &servers {
        let server = mcps.get(name).await?;
        let ready = condition(&server.data, "Ready")
            .cloned()
            .unwrap_or_default();
        println!(
            "cluster tier: McpServer {name}: Ready={} ({}: {})",
            ready["status"], ready["reason"], ready["message"]
        );
    }

    day_two(client, namespace, &mut process).await?;

    // Deleting the servers while the operator runs: the finalizer removes the TokenReview
    // binding, owner references take the rest.
    for name in &servers {
        mcps.delete(name, &DeleteParams::default()).await?;
    }
    for name in &servers {
        wait(
            &format!("McpServer {name} deleted"),
            &mut process,
            || async { Ok(mcps.get_opt(name).await?.is_none().then_some(())) },
        )
        .await?;
    }
    let bindings = dynamic(
        client,
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        None,
    )
    .await?;
    let left = bindings
        .list(
            &kube::api::ListParams::default().labels(&format!("sluice.dev/namespace={namespace}")),
        )
        .await?;
    if !left.items.is_empty() {
        bail!(
            "ClusterRoleBindings outlived their servers: {:?}",
            left.items.iter().map(|b| b.name_any()).collect::<Vec<_>>()
        );
    }
    process.terminate(Duration::from_secs(20))?;
    Ok(())
}

async fn cleanup(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let namespaces = dynamic(client, "v1", "Namespace", None).await?;
    match namespaces.delete(namespace, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn output(binary: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(binary).args(args).output()?;
    if !output.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The condition `type_` of an object's status.
fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// An `Api` for `kind` in `api_version`, found by discovery.
async fn dynamic(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> anyhow::Result<Api<DynamicObject>> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("the cluster does not serve {api_version} {kind}"))?;
    Ok(match (capabilities.scope, namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    })
}

/// Server-side applies every document of a YAML stream (into `namespace` when given).
async fn apply_stream(
    client: &Client,
    stream: &str,
    namespace: Option<&str>,
) -> anyhow::Result<Vec<DynamicObject>> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(stream)?;
    let mut applied = Vec::new();
    for mut document in documents.into_iter().filter(|d| d.is_object()) {
        let api_version = document["apiVersion"]
            .as_str()
            .context("apiVersion")?
            .to_owned();
        let kind = document["kind"].as_str().context("kind")?.to_owned();
        let name = document["metadata"]["name"]
            .as_str()
            .context("name")?
            .to_owned();
        if let Some(ns) = namespace {
            document["metadata"]["namespace"] = ns.into();
        }
        let api = dynamic(client, &api_version, &kind, namespace).await?;
        let object = api
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&document),
            )
            .await
            .with_context(|| format!("apply {kind} {name}"))?;
        applied.push(object);
    }
    Ok(applied)
}

async fn wait_established(client: &Client) -> anyhow::Result<()> {
    let crds = dynamic(
        client,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
    )
    .await?;
    for name in ["mcpservers.sluice.dev", "mcproutes.sluice.dev"] {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let crd = crds.get(name).await?;
            if condition(&crd.data, "Established").is_some_and(|c| c["status"] == "True") {
                break;
            }
            if Instant::now() > deadline {
                bail!("CRD {name} not established");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// Polls `probe` until it yields a value, while the operator keeps running.
async fn wait<T, F, Fut>(what: &str, process: &mut Process, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        process.ensure_running()?;
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}\n{}", process.logs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
