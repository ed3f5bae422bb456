//! A span being recorded: started, given attributes and events, and sent to the exporter's
//! queue when it ends. A span that is not sampled records nothing and costs its ids only.

use std::borrow::Cow;
use std::time::SystemTime;

use tokio::time::Instant;

use crate::context::{SpanContext, SpanId};
use crate::export::Queue;
use crate::proto::{self, any_value};

pub use crate::proto::SpanKind;

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(Cow<'static, str>),
    Int(i64),
    Bool(bool),
    Double(f64),
}

/// An attribute: a key and its value.
pub type KeyValue = (&'static str, Value);

/// A span; it ends when [`Span::end`] is called or it is dropped.
pub struct Span {
    context: SpanContext,
    record: Option<Record>,
}

struct Record {
    data: Box<proto::Span>,
    /// The clock spans are timed with (monotonic), and the wall time it started at.
    started: Instant,
    start_unix_nano: u64,
    queue: Queue,
}

impl Span {
    /// A span with `context`, child of `parent`; recording (sent to `queue` when it ends)
    /// when the context is sampled.
    pub(crate) fn new(
        name: Cow<'static, str>,
        kind: SpanKind,
        context: SpanContext,
        parent: Option<SpanId>,
        queue: &Queue,
    ) -> Self {
        let record = context.sampled.then(|| {
            let start_unix_nano = unix_nano_now();
            Record {
                data: Box::new(proto::Span {
                    trace_id: context.trace_id.0.to_vec(),
                    span_id: context.span_id.0.to_vec(),
                    parent_span_id: parent.map(|p| p.0.to_vec()).unwrap_or_default(),
                    flags: u32::from(context.sampled),
                    name: name.into_owned(),
                    kind: kind as i32,
                    start_time_unix_nano: start_unix_nano,
                    ..proto::Span::default()
                }),
                started: Instant::now(),
                start_unix_nano,
                queue: queue.clone(),
            }
        });
        Self { context, record }
    }

    /// A span that records nothing and has no context of its own to pass on.
    pub fn disabled(context: SpanContext) -> Self {
        Self {
            context,
            record: None,
        }
    }

    /// This span's context: what a child's `traceparent` names.
    pub fn context(&self) -> SpanContext {
        self.context
    }

    /// Whether the span is sampled, so attributes and events are kept.
    pub fn is_recording(&self) -> bool {
        self.record.is_some()
    }

    /// Renames the span (once what it is about is known).
    pub fn set_name(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(r) = &mut self.record {
            r.data.name = name.into().into_owned();
        }
    }

    /// Sets an attribute; a key set twice keeps both, as OTLP allows (set each once).
    pub fn set_attribute(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(r) = &mut self.record {
            r.data.attributes.push(key_value((key, value.into())));
        }
    }

    /// Records an event, now.
    pub fn add_event(&mut self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        if let Some(r) = &mut self.record {
            let time_unix_nano = r.now_unix_nano();
            r.data.events.push(proto::Event {
                time_unix_nano,
                name: name.into().into_owned(),
                attributes: attributes.into_iter().map(key_value).collect(),
            });
        }
    }

    /// Marks the span failed, saying why.
    pub fn set_error(&mut self, message: impl Into<String>) {
        if let Some(r) = &mut self.record {
            r.data.status = Some(proto::Status {
                message: message.into(),
                code: proto::StatusCode::Error as i32,
            });
        }
    }

    /// Ends the span now.
    pub fn end(self) {}
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.data.end_time_unix_nano = r.now_unix_nano();
            r.queue.push(r.data);
        }
    }
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("context", &self.context)
            .field("recording", &self.is_recording())
            .finish()
    }
}

impl Record {
    fn now_unix_nano(&self) -> u64 {
        let elapsed = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.start_unix_nano.saturating_add(elapsed)
    }
}

fn unix_nano_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(crate) fn key_value((key, value): KeyValue) -> proto::KeyValue {
    proto::KeyValue {
        key: key.to_owned(),
        value: Some(value.into_proto()),
    }
}

impl Value {
    pub(crate) fn into_proto(self) -> proto::AnyValue {
        proto::AnyValue {
            value: Some(match self {
                Value::String(s) => any_value::Value::StringValue(s.into_owned()),
                Value::Int(i) => any_value::Value::IntValue(i),
                Value::Bool(b) => any_value::Value::BoolValue(b),
                Value::Double(d) => any_value::Value::DoubleValue(d),
            }),
        }
    }
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Self {
        Value::String(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(Cow::Owned(s))
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<u16> for Value {
    fn from(i: u16) -> Self {
        Value::Int(i.into())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Value::Double(d)
    }
}
