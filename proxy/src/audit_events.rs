//! The live stream of audit events behind the admin listener's `GET /events`: each reader
//! gets the events its filter (`entry_point=`, `decision=`) lets through, as server-sent
//! events with one JSON object each (the audit line's fields, with a `timestamp`).
//!
//! A request never waits for a reader: publishing hands each reader's bounded queue a shared
//! copy of the event without waiting, and a reader whose queue is full (it reads slowly, or
//! not at all) misses the event, counted in `sluice_audit_events_dropped_total`; the others
//! get it. At most [`MAX_READERS`] read at once. Without readers publishing costs an atomic
//! load: the event is not even serialised.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http_body::{Body, Frame};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::mpsc::{self, error::TrySendError};

/// Readers at once: each holds a queue of up to [`READER_QUEUE`] events.
pub const MAX_READERS: usize = 16;

/// Events queued for one reader before it misses some: with events of a few hundred bytes,
/// some hundred KiB at most per reader (besides what its connection buffers).
pub const READER_QUEUE: usize = 1024;

/// The `decision` values of audit events, which `decision=` accepts.
pub const DECISIONS: &[&str] = &[
    "allowed",
    "denied",
    "rate_limited",
    "limiter_unavailable",
    "refused",
];

/// One audit event: the fields of the audit line (see audit.rs), never an argument value.
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    pub entry_point: &'a str,
    pub client_address: IpAddr,
    pub request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<&'a str>,
    pub tool: &'a str,
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    pub status: u16,
    pub latency_us: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
}

/// The readers of `/events`; process-wide, so a reader outlives config reloads.
#[derive(Debug)]
pub struct AuditEvents {
    readers: Mutex<Vec<Subscription>>,
    /// `readers.len()`, read without the lock by [`AuditEvents::publish`].
    count: AtomicUsize,
    dropped: Counter,
}

#[derive(Debug)]
struct Subscription {
    filter: Filter,
    queue: mpsc::Sender<Bytes>,
}

/// What a reader asked for: each field, when set, lets through any of its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    entry_points: BTreeSet<String>,
    decisions: BTreeSet<&'static str>,
}

/// Why `/events` could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    #[error("unknown query parameter {0:?}: use entry_point= or decision=")]
    UnknownParameter(String),
    #[error(
        "unknown decision {0:?}: one of allowed, denied, rate_limited, limiter_unavailable, refused"
    )]
    UnknownDecision(String),
    #[error("{MAX_READERS} readers of /events already")]
    TooManyReaders,
}

impl Filter {
    /// The filter a query string asks for (`entry_point=main&decision=denied`, either
    /// repeatable); an unknown parameter or decision is refused, not ignored.
    pub fn from_query(query: Option<&str>) -> Result<Self, EventsError> {
        let mut filter = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "entry_point" => {
                    filter.entry_points.insert(value.into_owned());
                }
                "decision" => {
                    let known = DECISIONS
                        .iter()
                        .find(|d| **d == value)
                        .ok_or_else(|| EventsError::UnknownDecision(value.to_string()))?;
                    filter.decisions.insert(known);
                }
                _ => return Err(EventsError::UnknownParameter(key.into_owned())),
            }
        }
        Ok(filter)
    }

    fn lets_through(&self, event: &AuditEvent<'_>) -> bool {
        (self.entry_points.is_empty() || self.entry_points.contains(event.entry_point))
            && (self.decisions.is_empty() || self.decisions.contains(event.decision))
    }
}

impl AuditEvents {
    /// No readers yet; `dropped` counts the events readers missed.
    pub fn new(dropped: Counter) -> Self {
        Self {
            readers: Mutex::default(),
            count: AtomicUsize::new(0),
            dropped,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Subscription>> {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new reader of the events `filter` lets through, unless [`MAX_READERS`] read already.
    pub fn subscribe(&self, filter: Filter) -> Result<Reader, EventsError> {
        let mut readers = self.lock();
        readers.retain(|r| !r.queue.is_closed());
        if readers.len() >= MAX_READERS {
            self.count.store(readers.len(), Ordering::Relaxed);
            return Err(EventsError::TooManyReaders);
        }
        let (queue, events) = mpsc::channel(READER_QUEUE);
        readers.push(Subscription { filter, queue });
        self.count.store(readers.len(), Ordering::Relaxed);
        Ok(Reader { events })
    }

    /// Hands `event` to every reader whose filter lets it through, without waiting: a reader
    /// with a full queue misses it (counted). Readers gone are forgotten here.
    pub fn publish(&self, event: &AuditEvent<'_>) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut frame = None;
        let mut readers = self.lock();
        readers.retain(|r| {
            if !r.filter.lets_through(event) {
                return !r.queue.is_closed();
            }
            let frame = frame.get_or_insert_with(|| sse_frame(event)).clone();
            match r.queue.try_send(frame) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.dropped.inc();
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        self.count.store(readers.len(), Ordering::Relaxed);
    }
}

/// `event` as one server-sent event: `data: {...}` and a blank line.
fn sse_frame(event: &AuditEvent<'_>) -> Bytes {
    #[derive(Serialize)]
    struct Stamped<'a> {
        timestamp: String,
        #[serde(flatten)]
        event: &'a AuditEvent<'a>,
    }
    let stamped = Stamped {
        timestamp: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        event,
    };
    let mut frame = b"data: ".to_vec();
    // Strings, numbers and an address: serialising cannot fail, and JSON escapes newlines.
    if serde_json::to_writer(&mut frame, &stamped).is_err() {
        frame.truncate(6);
        frame.extend_from_slice(b"{}");
    }
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// One reader's events, as a response body of server-sent events (without keep-alives: see
/// sse.rs). It ends only if the process-wide [`AuditEvents`] goes away.
#[derive(Debug)]
pub struct Reader {
    events: mpsc::Receiver<Bytes>,
}

impl Body for Reader {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|e| Ok(Frame::data(e))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn event(entry_point: &'static str, decision: &'static str) -> AuditEvent<'static> {
        AuditEvent {
            entry_point,
            client_address: IpAddr::from([203, 0, 113, 7]),
            request_id: "r-1",
            identity: Some("alice"),
            tool: "pha_task_get",
            decision,
            rule: None,
            status: 200,
            latency_us: 42,
            batch: false,
        }
    }

    async fn next(reader: &mut Reader) -> serde_json::Value {
        let frame = reader.frame().await.unwrap().unwrap().into_data().unwrap();
        let text = std::str::from_utf8(&frame).unwrap();
        let json = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        assert!(!json.contains('\n'), "{text:?}");
        serde_json::from_str(json).unwrap()
    }

    fn pending(reader: &mut Reader) -> bool {
        reader.events.try_recv().is_err()
    }

    #[test]
    fn filters_come_from_the_query_and_refuse_what_they_do_not_know() {
        assert_eq!(Filter::from_query(None), Ok(Filter::default()));
        let f =
            Filter::from_query(Some("entry_point=main&decision=denied&decision=refused")).unwrap();
        assert!(f.lets_through(&event("main", "denied")));
        assert!(f.lets_through(&event("main", "refused")));
        assert!(!f.lets_through(&event("main", "allowed")));
        assert!(!f.lets_through(&event("public", "denied")));
        let f = Filter::from_query(Some("entry_point=a%2Db&entry_point=c")).unwrap();
        assert!(f.lets_through(&event("a-b", "allowed")));
        assert!(f.lets_through(&event("c", "rate_limited")));
        assert_eq!(
            Filter::from_query(Some("decision=maybe")),
            Err(EventsError::UnknownDecision("maybe".into()))
        );
        assert_eq!(
            Filter::from_query(Some("tool=x")),
            Err(EventsError::UnknownParameter("tool".into()))
        );
    }

    #[tokio::test]
    async fn readers_get_what_their_filter_lets_through_as_json_events() {
        let events = AuditEvents::new(Counter::default());
        // Nobody reads: nothing is kept.
        events.publish(&event("main", "allowed"));
        let mut all = events.subscribe(Filter::default()).unwrap();
        let mut denied = events
            .subscribe(Filter::from_query(Some("decision=denied")).unwrap())
            .unwrap();
        events.publish(&event("main", "allowed"));
        events.publish(&AuditEvent {
            rule: Some("calls"),
            batch: true,
            identity: None,
            ..event("main", "denied")
        });
        let first = next(&mut all).await;
        assert_eq!(first["decision"], "allowed");
        assert_eq!(first["client_address"], "203.0.113.7");
        assert_eq!(first["identity"], "alice");
        assert_eq!(first["status"], 200);
        assert!(first.get("rule").is_none() && first.get("batch").is_none());
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        let second = next(&mut all).await;
        assert_eq!(
            (&second["rule"], &second["batch"]),
            (&"calls".into(), &true.into())
        );
        assert!(second.get("identity").is_none());
        assert_eq!(next(&mut denied).await["decision"], "denied");
        assert!(pending(&mut denied) && pending(&mut all));
    }

    #[test]
    fn a_full_queue_drops_for_its_reader_only_and_counts() {
        let dropped = Counter::default();
        let events = AuditEvents::new(dropped.clone());
        let mut stuck = events.subscribe(Filter::default()).unwrap();
        let mut other = events
            .subscribe(Filter::from_query(Some("entry_point=main")).unwrap())
            .unwrap();
        for _ in 0..READER_QUEUE + 10 {
            events.publish(&event("main", "allowed"));
            // The other reader keeps up.
            assert!(other.events.try_recv().is_ok());
        }
        assert_eq!(dropped.get(), 10);
        let mut queued = 0;
        while stuck.events.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, READER_QUEUE);
    }

    #[test]
    fn readers_are_bounded_and_a_gone_one_frees_its_place() {
        let events = AuditEvents::new(Counter::default());
        let mut readers: Vec<Reader> = (0..MAX_READERS)
            .map(|_| events.subscribe(Filter::default()).unwrap())
            .collect();
        assert_eq!(
            events.subscribe(Filter::default()).err(),
            Some(EventsError::TooManyReaders)
        );
        readers.pop();
        assert!(events.subscribe(Filter::default()).is_ok());
        // Gone readers are forgotten when an event is published, too.
        readers.clear();
        events.publish(&event("main", "allowed"));
        assert_eq!(events.count.load(Ordering::Relaxed), 0);
    }
}
