//! Logs: tracing to stdout, JSON or text, at the config's level. `RUST_LOG`, when set, wins
//! over the config; otherwise a reload that changes `log.level` takes effect at once (the
//! format is fixed at start).
//!
//! Lines are formatted where they happen (JSON ones by log_format.rs) and written in batches by
//! a thread of their own (log_writer.rs): a request never waits on stdout. [`Logs`] writes out
//! what is pending when it is dropped.

use sluice_proxy_config::{Log, LogFormat, LogLevel};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::EitherWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::log_format::JsonLines;
use crate::log_writer::{self, BatchedStdout, Flusher};

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

/// The installed logging: keep it until the process ends, as dropping it writes out the lines
/// still queued.
pub struct Logs {
    /// Set unless `RUST_LOG` fixes the level.
    pub level: Option<LogLevelControl>,
    _flush_on_drop: Option<Flusher>,
}

/// Installs the global subscriber and its writer thread.
pub fn init(log: &Log) -> Logs {
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let (filter, handle) =
        reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new(log.level.as_str())));
    let (writer, flusher) = match log_writer::start() {
        Ok((writer, flusher)) => (Some(writer), Some(flusher)),
        Err(e) => {
            eprintln!("cannot start the log writer thread, writing logs directly: {e}");
            (None, None)
        }
    };
    let json = (log.format == LogFormat::Json).then(|| {
        fmt::layer()
            .event_format(JsonLines)
            .with_writer(Writer(writer.clone()))
    });
    let text =
        (log.format == LogFormat::Text).then(|| fmt::layer().with_writer(Writer(writer.clone())));
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(text)
        .try_init();
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
        return Logs {
            level: None,
            _flush_on_drop: None,
        };
    }
    Logs {
        level: (!fixed).then_some(LogLevelControl(handle)),
        _flush_on_drop: flusher,
    }
}

/// The batching writer, or stdout directly if its thread could not start.
#[derive(Clone)]
struct Writer(Option<BatchedStdout>);

impl<'a> MakeWriter<'a> for Writer {
    type Writer = EitherWriter<log_writer::LineWriter<'a>, std::io::Stdout>;

    fn make_writer(&'a self) -> Self::Writer {
        match &self.0 {
            Some(batched) => EitherWriter::A(batched.make_writer()),
            None => EitherWriter::B(std::io::stdout()),
        }
    }
}
