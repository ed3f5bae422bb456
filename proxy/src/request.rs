//! What the steps of one request learn and share: who is calling, what the body says, and the
//! request itself. The proxy's lowest layer: it imports nothing of the proxy, so every step can
//! read it without depending on another step or on the containers around them.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method as HttpMethod, Uri};
use serde_json::value::RawValue;
use tokio::time::Instant;

/// What the steps of one request learn and share.
pub struct RequestContext {
    /// The entry point it came in on.
    pub entry_point: Arc<str>,
    pub started: Instant,
    pub method: HttpMethod,
    /// The URI as the caller sent it (a cheap clone of shared bytes).
    pub uri: Uri,
    /// The caller's address: the TCP peer, or what the entry point's trusted proxies report
    /// (`client_address`). What rate limits by `clientAddress` and the logs go by.
    pub client: IpAddr,
    /// The request's id (`X-Request-Id`: the caller's when well formed, else the proxy's), in
    /// its log lines, to the upstream and back in the answer.
    pub request_id: HeaderValue,
    /// What the body says (inspected POSTs only).
    pub inspection: Option<Inspection>,
    /// Who is calling, once authentication established it.
    pub identity: Option<Identity>,
    /// The allowed Origin of a browser page calling, once the Origin check passed it.
    pub page_origin: Option<HeaderValue>,
    /// The request's span (trace.rs), with tracing on.
    pub span: Option<sluice_otlp::Span>,
    /// Whether the request's body was read whole: until then the connection cannot carry
    /// another request.
    pub body_read: bool,
}

impl RequestContext {
    /// The id refusals answer with.
    pub fn reply_id(&self) -> Option<&RawValue> {
        self.inspection.as_ref().and_then(Inspection::reply_id)
    }
}

// === who is calling ===

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The caller's name: a Phabricator user name, an API-key client name,
    /// `system:serviceaccount:<namespace>:<name>`, or a JWT's identity claim.
    pub name: Arc<str>,
    /// The caller's groups (from a JWT groups claim), for group-based tool rules.
    pub groups: Arc<[Arc<str>]>,
}

impl Identity {
    /// An identity without groups.
    pub fn named(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            groups: Arc::new([]),
        }
    }
}

// === what the body says ===

/// What a POST body says, for the policies that act on it.
#[derive(Debug)]
pub struct Inspection {
    messages: Messages,
}

#[derive(Debug)]
enum Messages {
    One(Message),
    Batch(Vec<Message>),
}

/// One JSON-RPC message.
#[derive(Debug)]
pub struct Message {
    method: Option<Method>,
    id: Option<Box<RawValue>>,
    name: Option<Box<str>>,
}

/// A JSON-RPC method; the ones MCP defines are interned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// A method of the MCP specification.
    Known(&'static str),
    /// Anything else, as sent.
    Other(Box<str>),
}

// === impl Inspection ===

impl Inspection {
    /// A body holding one message.
    pub fn one(message: Message) -> Self {
        Self {
            messages: Messages::One(message),
        }
    }

    /// A body holding a batch.
    pub fn batch(messages: Vec<Message>) -> Self {
        Self {
            messages: Messages::Batch(messages),
        }
    }

    /// The messages, in body order.
    pub fn messages(&self) -> &[Message] {
        match &self.messages {
            Messages::One(m) => std::slice::from_ref(m),
            Messages::Batch(v) => v,
        }
    }

    /// The message when the body is not a batch.
    pub fn single(&self) -> Option<&Message> {
        match &self.messages {
            Messages::One(m) => Some(m),
            Messages::Batch(_) => None,
        }
    }

    /// Whether the body is a JSON array of messages.
    pub fn is_batch(&self) -> bool {
        matches!(self.messages, Messages::Batch(_))
    }

    /// The id a refusal answers with: a single request's id; none for batches.
    pub fn reply_id(&self) -> Option<&RawValue> {
        self.single().and_then(Message::id)
    }

    /// The `mcp_method` metric label: a known method, `other`, `response` or `batch`.
    pub fn method_label(&self) -> &'static str {
        match &self.messages {
            Messages::One(m) => m.method.as_ref().map_or("response", Method::label),
            Messages::Batch(_) => "batch",
        }
    }

    /// The tool of a single `tools/call`.
    pub fn tool(&self) -> Option<&str> {
        let m = self.single()?;
        (m.method.as_ref()?.as_str() == "tools/call").then_some(m.name.as_deref()?)
    }
}

// === impl Message ===

impl Message {
    pub fn new(method: Option<Method>, id: Option<Box<RawValue>>, name: Option<Box<str>>) -> Self {
        Self { method, id, name }
    }

    /// The method; `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The id as sent (a JSON string or number; `null` only on responses).
    pub fn id(&self) -> Option<&RawValue> {
        self.id.as_deref()
    }

    /// `params.name` of `tools/call` and `prompts/get`, `params.uri` of `resources/read`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// A request expects an answer: a method and an id.
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }

    /// A notification: a method without an id.
    pub fn is_notification(&self) -> bool {
        self.method.is_some() && self.id.is_none()
    }
}

// === impl Method ===

impl Method {
    /// The method named `name`.
    pub fn new(name: &str) -> Self {
        KNOWN_METHODS
            .iter()
            .find(|known| **known == name)
            .map_or_else(|| Method::Other(name.into()), |known| Method::Known(known))
    }

    /// The method as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Known(m) => m,
            Method::Other(m) => m,
        }
    }

    /// A metric label of bounded cardinality.
    pub fn label(&self) -> &'static str {
        match self {
            Method::Known(m) => m,
            Method::Other(_) => "other",
        }
    }
}

/// The methods of MCP revisions 2024-11-05 to 2026-07-28, most frequent first.
const KNOWN_METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "notifications/initialized",
    "initialize",
    "ping",
    "resources/read",
    "resources/list",
    "resources/templates/list",
    "prompts/get",
    "prompts/list",
    "server/discover",
    "subscriptions/listen",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "completion/complete",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
];
