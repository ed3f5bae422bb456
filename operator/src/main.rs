//! The `sluice-operator` binary: parses the command line and wires the library together.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Run,
    /// Print the McpServer and McpRoute CRDs as a YAML stream.
    Crds,
}

/// Exit status of `run` while the controller does not exist yet: the command is known but
/// cannot do its job, which is neither success nor a usage error's 2... except that clap
/// uses 2 for usage errors too, and scripts only need "not zero".
const EXIT_NOT_BUILT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            eprintln!(
                "error: the controller (`sluice-operator run`) is not built yet; \
                 use `sluice-operator render -f FILE` to see what it will apply"
            );
            ExitCode::from(EXIT_NOT_BUILT)
        }
        Command::Crds => finish(print_crds()),
    }
}

fn print_crds() -> anyhow::Result<()> {
    let stream = sluice_operator::crdgen::crd_stream()?;
    std::io::stdout().lock().write_all(stream.as_bytes())?;
    Ok(())
}

/// Reports an error on stderr (with its causes) and turns the outcome into an exit status.
fn finish(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
