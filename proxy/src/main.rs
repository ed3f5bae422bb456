//! The sluice-proxy binary: parses the command line and runs the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sluice_proxy::{Options, Proxy, init_logging};
use sluice_proxy_config::{ConfigError, ProxyConfig};

// mimalloc: fewer cycles per request than glibc's malloc for hyper's many small allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An MCP-aware reverse proxy in front of Conduit.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The config file (YAML or JSON); re-read when it changes.
    #[arg(
        long,
        env = "SLUICE_CONFIG",
        value_name = "FILE",
        required_unless_present = "check"
    )]
    config: Option<PathBuf>,
    /// Validate FILE and exit (whatever --config says): 0 when it is valid, 1 with every
    /// problem listed otherwise.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// How often the config and certificate files are checked for changes (e.g. 2s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = sluice_proxy_config::Duration::parse)]
    reload_interval: sluice_proxy_config::Duration,
    /// Threads serving traffic: 1 runs everything on one thread, as a sidecar with one CPU
    /// wants; more spread connections over that many threads.
    #[arg(long, env = "SLUICE_WORKER_THREADS", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = cli.check {
        return check(&path);
    }
    let Some(config_path) = cli.config else {
        eprintln!("--config FILE (or SLUICE_CONFIG) is required");
        return ExitCode::FAILURE;
    };
    // Read once for the log settings; Proxy::start reads it again (and validates it) itself.
    let config = match ProxyConfig::from_file(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Held to the end of main: dropping it writes out the log lines still queued.
    let logs = init_logging(&config.log);
    let mut builder = if cli.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(usize::from(cli.worker_threads))
            .thread_name("sluice-worker");
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options {
        config_path,
        reload_interval: cli.reload_interval.get(),
        log_level: logs.level.clone(),
    };
    let code = runtime.block_on(async {
        let proxy = match Proxy::start(options).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        match proxy.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "cannot wait for signals");
                ExitCode::FAILURE
            }
        }
    });
    // What is still running (cut streams, idle tasks) needs no goodbye: exit now.
    runtime.shutdown_background();
    drop(logs);
    code
}

fn check(path: &std::path::Path) -> ExitCode {
    match ProxyConfig::from_file(path) {
        Ok(_) => {
            println!("{}: valid", path.display());
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(problems)) => {
            eprintln!("{}: invalid", path.display());
            for p in problems {
                eprintln!("  {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
