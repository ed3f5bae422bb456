//! Logs: tracing to stdout, JSON or text, at the config's level. `RUST_LOG`, when set, wins
//! over the config; otherwise a reload that changes `log.level` takes effect at once (the
//! format is fixed at start).

use sluice_proxy_config::{Log, LogFormat, LogLevel};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

/// Changes the log level of a running proxy.
#[derive(Clone, Debug)]
pub struct LogLevelControl(reload::Handle<EnvFilter, Registry>);

impl LogLevelControl {
    /// Logs at `level` from now on.
    pub fn set(&self, level: LogLevel) {
        if let Err(e) = self.0.reload(EnvFilter::new(level.as_str())) {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
}

/// Installs the global subscriber; returns a level control unless `RUST_LOG` fixes the level.
pub fn init(log: &Log) -> Option<LogLevelControl> {
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let (filter, handle) =
        reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new(log.level.as_str())));
    let json = (log.format == LogFormat::Json).then(|| {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
    });
    let text = (log.format == LogFormat::Text).then(fmt::layer);
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(text)
        .try_init();
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
        return None;
    }
    (!fixed).then_some(LogLevelControl(handle))
}
