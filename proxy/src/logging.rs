//! Logs: tracing to stdout, JSON or text, at the config's level (`RUST_LOG` overrides).

use sluice_proxy_config::{Log, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The level and format apply from start; a reload does not
/// change them.
pub fn init(log: &Log) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(log.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}
