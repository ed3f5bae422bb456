//! The `sluice-operator` binary: parses the command line and wires the library together.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sluice_operator::admission::{Admission, Problems};
use sluice_operator::controller::{self, Scope};
use sluice_operator::leader::LeaderOptions;
use sluice_operator::metrics::Metrics;
use sluice_operator::rbac;
use sluice_operator::render::RenderOptions;
use sluice_operator::run::RunOptions;

/// The Sluice operator: runs the Phabricator MCP server (Conduit) on Kubernetes from
/// McpServer and McpRoute resources.
#[derive(Debug, Parser)]
#[command(name = "sluice-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller in a cluster (the default).
    Run(Box<RunArgs>),
    /// Print the McpServer and McpRoute CRDs as a YAML stream.
    Crds,
    /// Print the objects the operator would apply for McpServer and McpRoute manifests.
    ///
    /// Needs no cluster: the manifests are checked against the CRD schema and its CEL rules,
    /// as the API server would, and rendered by the controller's own builders.
    Render(RenderArgs),
    /// Print the RBAC the controller needs, as a ClusterRole and Roles (each rule with its
    /// reason).
    Rbac(RbacArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; empty: every namespace.
    #[arg(
        long,
        env = "SLUICE_NAMESPACES",
        value_name = "NS,...",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Conduit image for servers that do not pin one.
    #[arg(long, env = "SLUICE_CONDUIT_IMAGE", value_name = "IMAGE", default_value = sluice_crds::defaults::CONDUIT_IMAGE)]
    conduit_image: String,
    /// Sidecar image for servers that do not pin one.
    #[arg(long, env = "SLUICE_PROXY_IMAGE", value_name = "IMAGE", default_value = sluice_crds::defaults::PROXY_IMAGE)]
    proxy_image: String,
    /// Address of the admin endpoint (/healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "SLUICE_ADMIN_ADDRESS",
        value_name = "ADDR",
        default_value = "[::]:8080"
    )]
    admin_address: SocketAddr,
    /// Hold a Lease and reconcile only while holding it, so several replicas can run.
    #[arg(
        long,
        env = "SLUICE_LEADER_ELECTION",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value_t = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "SLUICE_LEASE_NAME", value_name = "NAME", default_value = rbac::LEASE_NAME)]
    lease_name: String,
    /// Namespace of the leader Lease; defaults to the kubeconfig's namespace.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    lease_namespace: Option<String>,
    /// How long the Lease holds without renewal (how long a crashed leader blocks the others).
    #[arg(long, env = "SLUICE_LEASE_DURATION", value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// This replica's identity in the Lease and in events; defaults to the pod name.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    identity: Option<String>,
    /// Log format: `json` (one object per line) or `text`.
    #[arg(
        long,
        env = "SLUICE_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "json"
    )]
    log_format: LogFormat,
    /// Reconciles running at once, per controller and namespace.
    #[arg(
        long,
        env = "SLUICE_CONCURRENCY",
        value_name = "N",
        default_value_t = 8
    )]
    concurrency: u16,
    /// How long after a successful reconcile an object is reconciled again regardless.
    #[arg(long, env = "SLUICE_RESYNC", value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    resync: Duration,
    /// Where each McpServer's sidecar admin port is reached to read what Conduit is (the
    /// `Verified` condition): `{name}` and `{namespace}` are replaced. `none` never asks.
    #[arg(
        long,
        env = "SLUICE_SIDECAR_ADMIN_URL",
        value_name = "URL",
        default_value = controller::SIDECAR_ADMIN_URL
    )]
    sidecar_admin_url: String,
    /// How often each McpServer's sidecar is asked at most.
    #[arg(long, env = "SLUICE_VERIFY_EVERY", value_name = "DURATION", default_value = "1m", value_parser = humantime::parse_duration)]
    verify_every: Duration,
}

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, clap::Args)]
struct RbacArgs {
    /// Print the namespaced form: a ClusterRole for cluster-scoped objects only, and a Role to
    /// bind in every watched namespace.
    #[arg(long)]
    namespaced: bool,
    /// Name of the leader Lease (the Lease Role names it).
    #[arg(long, value_name = "NAME", default_value = rbac::LEASE_NAME)]
    lease_name: String,
}

#[derive(Debug, clap::Args)]
struct RenderArgs {
    /// A manifest file, or a directory of them (YAML, several documents allowed); `-` reads
    /// stdin. Repeat to read more.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    files: Vec<String>,
    /// Namespace of the objects whose manifest names none.
    #[arg(short = 'n', long, value_name = "NS", default_value = "default")]
    namespace: String,
    /// Conduit image for servers that do not pin one.
    #[arg(long, value_name = "IMAGE", default_value = sluice_crds::defaults::CONDUIT_IMAGE)]
    conduit_image: String,
    /// Sidecar image for servers that do not pin one.
    #[arg(long, value_name = "IMAGE", default_value = sluice_crds::defaults::PROXY_IMAGE)]
    proxy_image: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or_default() {
        Command::Run(args) => finish(run(*args)),
        Command::Crds => finish(print_crds()),
        Command::Render(args) => finish(render(args)),
        Command::Rbac(args) => finish(print(&rbac::to_yaml(args.namespaced, &args.lease_name))),
    }
}

impl Default for Command {
    fn default() -> Self {
        // `sluice-operator` alone runs the controller with flags from the environment.
        let args = RunArgs::parse_from(["run"]);
        Self::Run(Box::new(args))
    }
}

impl RunArgs {
    fn parse_from(argv: [&str; 1]) -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: RunArgs,
        }
        Only::parse_from(argv).args
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let scope = Scope::from_list(&args.namespaces)?;
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach a Kubernetes API server (in-cluster config or KUBECONFIG): {e}"
        )
    })?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let leader = args.leader_election.then(|| LeaderOptions {
        lease_name: args.lease_name.clone(),
        namespace: args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string()),
        identity: identity.clone(),
        duration: args.lease_duration,
        grace: (args.lease_duration / 3).max(Duration::from_secs(1)),
    });
    if let Some(leader) = &leader {
        leader.validate()?;
    }
    // The IPv6 wildcard (the default) serves IPv4 too, so probes and scrapes reach the operator
    // on IPv4-only, dual-stack and IPv6-only clusters.
    let admin = sluice_net::bind(args.admin_address)
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| {
            anyhow::anyhow!(
                "admin endpoint: cannot listen on {}: {e}",
                args.admin_address
            )
        })?;
    // Off unless OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT) is set;
    // the exporter's own metrics join the operator's.
    let (metrics, tracer) =
        Metrics::new_with(|registry| sluice_otlp::Tracer::from_env("sluice-operator", registry));
    let tracer = tracer.map_err(|e| anyhow::anyhow!("OpenTelemetry tracing: {e}"))?;
    if tracer.is_some() {
        tracing::info!("exporting a trace span per reconcile over OTLP");
    }
    let options = RunOptions {
        controller: controller::Options {
            render: RenderOptions {
                conduit_image: args.conduit_image,
                proxy_image: args.proxy_image,
            },
            scope,
            concurrency: args.concurrency.max(1),
            requeue: args.resync,
            identity,
            sidecar_admin_url: (args.sidecar_admin_url != "none").then_some(args.sidecar_admin_url),
            verify_every: args.verify_every,
            tracer: tracer.clone(),
            ..controller::Options::default()
        },
        leader,
        admin: Some(admin),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
        // A second signal does not wait for the graceful shutdown.
        shutdown_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    let outcome = sluice_operator::run::run(client, options, metrics, stopped).await;
    if let Some(tracer) = tracer {
        // The last reconciles' spans, before the pod goes.
        tracer.flush(Duration::from_secs(2)).await;
    }
    outcome?;
    Ok(())
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The host name (the pod name in a pod) with a random suffix, so two processes on one host
/// never share an identity.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "sluice-operator".into());
    let mut bytes = [0u8; 4];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    bytes.copy_from_slice(&(nanos ^ std::process::id()).to_le_bytes());
    format!("{host}-{}", hex::encode(bytes))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn render(args: RenderArgs) -> anyhow::Result<()> {
    let admission = Admission::new()?;
    let admitted = admission.load_files(&args.files, &args.namespace)?;
    let options = RenderOptions {
        conduit_image: args.conduit_image,
        proxy_image: args.proxy_image,
    };
    let output = admitted.render(&options)?;
    let stream = sluice_operator::render::to_yaml_stream(&output.objects)?;
    for warning in &output.warnings {
        eprintln!("warning: {warning}");
    }
    for note in &output.notes {
        eprintln!("note: {note}");
    }
    print(&stream)
}

fn print_crds() -> anyhow::Result<()> {
    print(&sluice_operator::crdgen::crd_stream()?)
}

/// Writes to stdout; a closed pipe is an error like any other, not a panic.
fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Reports an error on stderr and turns the outcome into an exit status. Problems with the
/// inputs get one line each, so every one of them is easy to find.
fn finish(outcome: anyhow::Result<()>) -> ExitCode {
    let Err(error) = outcome else {
        return ExitCode::SUCCESS;
    };
    match error.downcast_ref::<Problems>() {
        Some(problems) => {
            for problem in &problems.0 {
                eprintln!("error: {problem}");
            }
        }
        None => eprintln!("error: {error:#}"),
    }
    ExitCode::FAILURE
}
