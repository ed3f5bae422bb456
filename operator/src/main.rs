//! The `sluice-operator` binary: parses the command line and wires the library together.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_operator::Error;
use sluice_operator::admission::Admission;
use sluice_operator::render::RenderOptions;

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
    /// Print the objects the operator would apply for McpServer and McpRoute manifests.
    ///
    /// Needs no cluster: the manifests are checked against the CRD schema and its CEL rules,
    /// as the API server would, and rendered by the controller's own builders.
    Render(RenderArgs),
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

/// Exit status of `run` while the controller does not exist yet (as for a command line the
/// binary cannot carry out).
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
        Command::Render(args) => finish(render(args)),
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
    match error.downcast_ref::<Error>() {
        Some(Error::Invalid(problems)) => {
            for problem in &problems.0 {
                eprintln!("error: {problem}");
            }
        }
        _ => eprintln!("error: {error:#}"),
    }
    ExitCode::FAILURE
}
