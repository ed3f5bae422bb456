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
    data: Box<Finished>,
    /// The clock spans are timed with (monotonic), and the wall time it started at.
    started: Instant,
    queue: Queue,
}

/// A span as recorded: plain data, turned into protobuf messages by the exporter on its own
/// thread, so the request path only fills in what it knows.
pub(crate) struct Finished {
    context: SpanContext,
    parent: Option<SpanId>,
    name: Cow<'static, str>,
    kind: SpanKind,
    start_unix_nano: u64,
    end_unix_nano: u64,
    attributes: Vec<KeyValue>,
    events: Vec<(u64, Cow<'static, str>, Vec<KeyValue>)>,
    error: Option<String>,
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
        let record = context.sampled.then(|| Record {
            data: Box::new(Finished {
                context,
                parent,
                name,
                kind,
                start_unix_nano: unix_nano_now(),
                end_unix_nano: 0,
                attributes: Vec::with_capacity(16),
                events: Vec::new(),
                error: None,
            }),
            started: Instant::now(),
            queue: queue.clone(),
        });
        Self { context, record }
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
            r.data.name = name.into();
        }
    }

    /// Sets an attribute; a key set twice keeps both, as OTLP allows (set each once).
    pub fn set_attribute(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(r) = &mut self.record {
            r.data.attributes.push((key, value.into()));
        }
    }

    /// Records an event, now.
    pub fn add_event(&mut self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        if let Some(r) = &mut self.record {
            let time = r.now_unix_nano();
            r.data.events.push((time, name.into(), attributes));
        }
    }

    /// Marks the span failed, saying why.
    pub fn set_error(&mut self, message: impl Into<String>) {
        if let Some(r) = &mut self.record {
            r.data.error = Some(message.into());
        }
    }

    /// Ends the span now.
    pub fn end(self) {}
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.data.end_unix_nano = r.now_unix_nano();
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
        self.data.start_unix_nano.saturating_add(elapsed)
    }
}

impl Finished {
    /// The span as OTLP sends it.
    pub(crate) fn into_proto(self) -> proto::Span {
        proto::Span {
            trace_id: self.context.trace_id.0.to_vec(),
            span_id: self.context.span_id.0.to_vec(),
            parent_span_id: self.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
            flags: u32::from(self.context.sampled),
            name: self.name.into_owned(),
            kind: self.kind as i32,
            start_time_unix_nano: self.start_unix_nano,
            end_time_unix_nano: self.end_unix_nano,
            attributes: self.attributes.into_iter().map(key_value).collect(),
            events: self
                .events
                .into_iter()
                .map(|(time_unix_nano, name, attributes)| proto::Event {
                    time_unix_nano,
                    name: name.into_owned(),
                    attributes: attributes.into_iter().map(key_value).collect(),
                })
                .collect(),
            status: self.error.map(|message| proto::Status {
                message,
                code: proto::StatusCode::Error as i32,
            }),
            trace_state: String::new(),
        }
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
