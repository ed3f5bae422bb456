//! `sluice-bridge`: a stdio MCP server served as MCP's Streamable HTTP on loopback, for the
//! Sluice sidecar in front of it. It runs in the server's own container (an init container
//! installs it there from the sidecar's image), one server process per MCP session.
//!
//! - `bridge`: sessions and their processes, restarted after crashes with backoff
//! - `session`: one session's process I/O and which caller each server message goes to
//! - `process`: starting a process and pumping its stdin, stdout and stderr
//! - `http`: the Streamable HTTP endpoint
//! - `jsonrpc`, `lines`, `sse`, `backoff`: the small pieces those stand on

mod backoff;
mod bridge;
mod http;
mod install;
mod jsonrpc;
mod lines;
mod process;
mod session;
mod sse;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::bridge::{Bridge, Limits};
use crate::process::Program;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bridge",
    version,
    about = "Serves a stdio MCP server as Streamable HTTP on loopback, one process per session"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Copies this binary to DIR/sluice-bridge (what the init container runs).
    Install { dir: PathBuf },
    /// Serves COMMAND ARG... at http://127.0.0.1:PORT/mcp.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The loopback port to serve MCP on.
    #[arg(long)]
    port: u16,
    /// Server processes (= sessions) at once; a new session beyond it gets HTTP 503.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_processes: u32,
    /// A session with no message either way and no open stream for this long is ended.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// The most bytes one message may have, either way; a longer stdout line is skipped.
    #[arg(long, default_value_t = 16 << 20)]
    max_message_bytes: usize,
    /// The wait before the first restart after a crash; it doubles with each crash in a row.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    restart_backoff: Duration,
    /// The longest wait between restarts.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    max_restart_backoff: Duration,
    /// The stdio server's command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

/// Events that may wait unread on one caller's stream before the server's stdout waits.
const STREAM_BUFFER: usize = 16;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_BRIDGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Commands::Install { dir } => match install::install(&dir) {
            Ok(path) => {
                tracing::info!(path = %path.display(), "installed");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot install");
                ExitCode::FAILURE
            }
        },
        Commands::Run(args) => {
            // One thread: the bridge moves bytes between pipes and one loopback peer.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the runtime");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "the bridge stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> std::io::Result<()> {
    let mut command = args.command.into_iter();
    let program = Program {
        command: command.next().unwrap_or_default(),
        args: command.collect(),
        max_message_bytes: args.max_message_bytes,
    };
    let limits = Limits {
        max_processes: args.max_processes as usize,
        idle_timeout: args.idle_timeout,
        stream_buffer: STREAM_BUFFER,
        restart_backoff: args.restart_backoff,
        max_restart_backoff: args.max_restart_backoff,
    };
    // Loopback only: the sidecar in the same pod is the one caller.
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = TcpListener::bind(address).await?;
    tracing::info!(%address, command = %program.command, "serving MCP at /mcp; one server process per session");
    let bridge = Bridge::new(program, limits);
    tokio::spawn(Arc::clone(&bridge).reap_idle());
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let bridge = Arc::clone(&bridge);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let bridge = Arc::clone(&bridge);
                async move { Ok::<_, std::convert::Infallible>(http::handle(bridge, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    tracing::info!(
        sessions = bridge.live_sessions(),
        "stopping: ending every session"
    );
    bridge.shut_down();
    // Every process has its stdin closed, then STOP_GRACE to exit before it is killed: wait for
    // that (bounded), so a server can finish what it does at end of input.
    let ended = tokio::time::timeout(
        process::STOP_GRACE + Duration::from_secs(1),
        bridge.processes_ended(),
    )
    .await;
    if ended.is_err() {
        tracing::warn!("processes still running after the grace period; exiting anyway");
    }
    Ok(())
}
