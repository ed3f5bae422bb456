//! Logs: tracing to stdout, JSON or text, at the config's level. `RUST_LOG`, when set, wins
//! over the config; otherwise a reload that changes `log.level` takes effect at once (the
//! format and the audit sink are fixed at start).
//!
//! Lines are formatted where they happen (JSON ones by log_format.rs) and written in batches by
//! a thread of their own (log_writer.rs): a request never waits on stdout. [`Logs`] writes out
//! what is pending when it is dropped.
//!
//! Audit events (target `audit`) go with the rest, or with `log.audit.sink: file` as JSON lines
//! to their own file, by a writer thread of their own, and then whatever the level: an audit
//! trail that a quieter log level silenced would not be one.

use std::io;

use sluice_proxy_config::{AuditSink, Log, LogFormat, LogLevel};
use tracing::Metadata;
use tracing_subscriber::filter::{Directive, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::log_format::JsonLines;
use crate::log_writer::{self, Batched, Flusher};

/// The target of audit events (audit.rs).
const AUDIT: &str = "audit";

/// Changes the log level of a running proxy.
#[derive(Clone, Debug)]
pub struct LogLevelControl {
    handle: reload::Handle<EnvFilter, Registry>,
    audit_to_file: bool,
}

impl LogLevelControl {
    /// Logs at `level` from now on.
    pub fn set(&self, level: LogLevel) {
        let filter = with_audit(EnvFilter::new(level.as_str()), self.audit_to_file);
        if let Err(e) = self.handle.reload(filter) {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
}

/// `filter`, letting audit events through whatever its level when they have a file of their
/// own.
fn with_audit(filter: EnvFilter, audit_to_file: bool) -> EnvFilter {
    match audit_to_file.then(|| format!("{AUDIT}=info").parse::<Directive>()) {
        Some(Ok(directive)) => filter.add_directive(directive),
        _ => filter,
    }
}

/// The installed logging: keep it until the process ends, as dropping it writes out the lines
/// still queued.
pub struct Logs {
    /// Set unless `RUST_LOG` fixes the level.
    pub level: Option<LogLevelControl>,
    _flush_on_drop: Vec<Flusher>,
}

/// Installs the global subscriber and its writer threads.
pub fn init(log: &Log) -> Logs {
    let mut flushers = Vec::new();
    let stdout = match log_writer::start() {
        Ok((writer, flusher)) => {
            flushers.push(flusher);
            Some(writer)
        }
        Err(e) => {
            eprintln!("cannot start the log writer thread, writing logs directly: {e}");
            None
        }
    };
    let audit_file = match (log.audit.sink, &log.audit.path) {
        (AuditSink::File, Some(path)) => match log_writer::start_file(path.clone()) {
            Ok((writer, flusher)) => {
                flushers.push(flusher);
                Some(writer)
            }
            Err(e) => {
                eprintln!(
                    "cannot start the audit log's writer thread, audit events stay on stdout: {e}"
                );
                None
            }
        },
        // Validation refuses a file sink without a path.
        _ => None,
    };
    let audit_to_file = audit_file.is_some();
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = with_audit(
        from_env.unwrap_or_else(|| EnvFilter::new(log.level.as_str())),
        audit_to_file,
    );
    let (filter, handle) = reload::Layer::new(filter);
    let json = log.format == LogFormat::Json;
    // The main stream: JSON lines hand audit events to their file, text lines leave them to
    // the JSON layer below.
    let main = Writer {
        stdout: stdout.clone(),
        audit: match (&audit_file, json) {
            (None, _) => AuditRoute::Stdout,
            (Some(file), true) => AuditRoute::File(file.clone()),
            (Some(_), false) => AuditRoute::Discard,
        },
    };
    let json_layer = json.then(|| {
        fmt::layer()
            .event_format(JsonLines)
            .with_writer(main.clone())
    });
    let text_layer = (!json).then(|| fmt::layer().with_writer(main.clone()));
    let audit_layer = audit_file.filter(|_| !json).map(|file| {
        fmt::layer()
            .event_format(JsonLines)
            .with_writer(file)
            .with_filter(filter_fn(|meta| meta.target() == AUDIT))
    });
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(json_layer)
        .with(text_layer)
        .with(audit_layer)
        .try_init();
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
        return Logs {
            level: None,
            _flush_on_drop: Vec::new(),
        };
    }
    Logs {
        level: (!fixed).then_some(LogLevelControl {
            handle,
            audit_to_file,
        }),
        _flush_on_drop: flushers,
    }
}

/// Where the main layer's audit events go.
#[derive(Clone)]
enum AuditRoute {
    Stdout,
    File(Batched),
    /// Another layer writes them.
    Discard,
}

/// The batching writer, or stdout directly if its thread could not start; audit events
/// where their route says.
#[derive(Clone)]
struct Writer {
    stdout: Option<Batched>,
    audit: AuditRoute,
}

/// One line's writer.
enum LineWriter<'a> {
    Batched(log_writer::LineWriter<'a>),
    Stdout(io::Stdout),
    Discard,
}

impl io::Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LineWriter::Batched(w) => w.write(buf),
            LineWriter::Stdout(w) => w.write(buf),
            LineWriter::Discard => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LineWriter::Batched(w) => w.flush(),
            LineWriter::Stdout(w) => w.flush(),
            LineWriter::Discard => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for Writer {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match &self.stdout {
            Some(batched) => LineWriter::Batched(batched.make_writer()),
            None => LineWriter::Stdout(io::stdout()),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        if meta.target() != AUDIT {
            return self.make_writer();
        }
        match &self.audit {
            AuditRoute::Stdout => self.make_writer(),
            AuditRoute::File(file) => LineWriter::Batched(file.make_writer()),
            AuditRoute::Discard => LineWriter::Discard,
        }
    }
}
