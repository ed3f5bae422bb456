//! Legacy sessions: who holds them, their stream's channel, and the upstream session behind.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::value::RawValue;
use sluice_proxy_config::LegacySse;
use tokio::sync::{OwnedRwLockWriteGuard, OwnedSemaphorePermit, RwLock, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::stream::LegacyStream;
use super::{DELETE_TIMEOUT, MCP_SESSION_ID, relay};
use crate::body::ResponseBody;
use crate::errors::Refusal;
use crate::forward::Upstream;
use crate::metrics::{EntryLabels, Metrics, ReasonLabels};
use crate::policy::ListFilter;
use crate::request::Identity;

/// Events queued for a session's stream before senders wait for the client to read.
const QUEUED_EVENTS: usize = 64;

/// Messages of one session being exchanged with the upstream at once; more are refused (on
/// the stream) rather than queued without bound.
const EXCHANGES_PER_SESSION: usize = 64;

/// Who may post to a session: whoever opened it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// An authenticated caller, by name.
    Identity(Arc<str>),
    /// A caller of an entry point that names nobody (auth `none`), by address.
    Address(IpAddr),
}

impl Owner {
    /// The owner a request makes: its identity where the entry point tells callers apart,
    /// else its address.
    pub fn of(identity: Option<&Identity>, names_callers: bool, client: IpAddr) -> Self {
        match identity {
            Some(identity) if names_callers => Owner::Identity(identity.name.clone()),
            _ => Owner::Address(client),
        }
    }
}

/// The legacy sessions of this sidecar, all entry points together.
#[derive(Debug)]
pub struct Sessions {
    registry: Mutex<Registry>,
    open: Family<EntryLabels, Gauge>,
    refused: Family<ReasonLabels, Counter>,
    random: SystemRandom,
}

#[derive(Debug, Default)]
struct Registry {
    sessions: HashMap<Box<str>, Arc<Session>>,
    per_owner: HashMap<Owner, usize>,
}

/// One legacy session.
#[derive(Debug)]
pub struct Session {
    id: Box<str>,
    entry_point: Arc<str>,
    owner: Owner,
    events: mpsc::Sender<Bytes>,
    /// The upstream's session, once its `initialize` answered; written under the lock that
    /// orders `initialize` before every later message.
    upstream: Arc<RwLock<UpstreamSession>>,
    /// The last message's upstream request, without its body: what the sidecar's own requests
    /// in this session (its event stream, the final DELETE) are built from, so they carry the
    /// credentials the upstream accepts.
    template: Mutex<Option<Template>>,
    exchanges: Arc<Semaphore>,
    /// The session's exchanges and upstream stream; `None` once it ended (dropping them
    /// cancels them).
    tasks: Mutex<Option<JoinSet<()>>>,
    last_active: Mutex<Instant>,
}

#[derive(Debug, Default)]
struct UpstreamSession {
    id: Option<HeaderValue>,
}

#[derive(Clone, Debug)]
struct Template {
    upstream: Arc<Upstream>,
    uri: Uri,
    headers: HeaderMap,
}

/// A message's place in its session's order: `initialize` holds the upstream session until
/// the upstream answered it (so the next message carries the id it gave); any other message
/// carries the id known when its turn came.
#[derive(Debug)]
pub struct Turn {
    opening: Option<OwnedRwLockWriteGuard<UpstreamSession>>,
    upstream_session: Option<HeaderValue>,
}

impl Turn {
    /// The upstream session id the message goes in.
    pub fn upstream_session(&self) -> Option<&HeaderValue> {
        self.upstream_session.as_ref()
    }
}

/// One message on its way to the upstream, ready for [`Session::relay`].
pub struct Exchange<F> {
    pub turn: Turn,
    pub permit: OwnedSemaphorePermit,
    /// The request's id: what a refusal or a broken answer is reported for.
    pub reply_id: Option<Box<RawValue>>,
    /// After an accepted `notifications/initialized`: open the upstream's event stream for
    /// what the server sends outside any request, filtered with this.
    pub then_listen: Option<Option<ListFilter>>,
    /// The upstream's answer, filtered for the caller.
    pub response: F,
}

// === impl Sessions ===

impl Sessions {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            registry: Mutex::default(),
            open: metrics.legacy_sessions.clone(),
            refused: metrics.legacy_sessions_refused.clone(),
            random: SystemRandom::new(),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session for `owner` on `entry_point`: its event stream, whose first event
    /// names where to POST (`<prefix>/messages/?session_id=…`).
    pub fn open(
        self: &Arc<Self>,
        limits: &LegacySse,
        keep_alive: Option<std::time::Duration>,
        entry_point: &Arc<str>,
        owner: Owner,
        prefix: &str,
    ) -> Result<Response<ResponseBody>, Refusal> {
        let mut raw = [0u8; 16];
        // The OS's generator failing is no reason to hand out a guessable id: refuse, retry.
        self.random
            .fill(&mut raw)
            .map_err(|_| Refusal::Overloaded)?;
        let id: Box<str> = raw.iter().map(|b| format!("{b:02x}")).collect();
        let (events, receiver) = mpsc::channel(QUEUED_EVENTS);
        let session = Arc::new(Session {
            id: id.clone(),
            entry_point: entry_point.clone(),
            owner: owner.clone(),
            events,
            upstream: Arc::default(),
            template: Mutex::default(),
            exchanges: Arc::new(Semaphore::new(EXCHANGES_PER_SESSION)),
            tasks: Mutex::new(Some(JoinSet::new())),
            last_active: Mutex::new(Instant::now()),
        });
        {
            let mut registry = self.registry();
            let refused = if registry.sessions.len() >= limits.max_sessions {
                Some((
                    "sidecar_limit",
                    Refusal::LegacySidecarLimit {
                        max: limits.max_sessions,
                    },
                ))
            } else if registry.per_owner.get(&owner).copied().unwrap_or(0)
                >= limits.max_sessions_per_caller
            {
                Some((
                    "caller_limit",
                    Refusal::LegacyCallerLimit {
                        max: limits.max_sessions_per_caller,
                    },
                ))
            } else {
                None
            };
            if let Some((reason, refusal)) = refused {
                self.refused
                    .get_or_create(&ReasonLabels {
                        entry_point: entry_point.clone(),
                        reason,
                    })
                    .inc();
                return Err(refusal);
            }
            *registry.per_owner.entry(owner).or_default() += 1;
            registry.sessions.insert(id.clone(), session.clone());
        }
        self.gauge(entry_point).inc();
        tracing::debug!(entry_point = &**entry_point, "legacy session opened");
        let endpoint = format!("{prefix}/messages/?session_id={id}");
        let stream = LegacyStream::new(
            self.clone(),
            session,
            receiver,
            &endpoint,
            keep_alive,
            limits.idle_timeout.get(),
        );
        let mut response = Response::new(ResponseBody::boxed(stream));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(response)
    }

    /// The session `id`, if `owner` holds it on `entry_point`; anything else is answered
    /// alike, so a caller cannot tell another's session from none.
    pub fn find(
        &self,
        id: Option<&str>,
        entry_point: &str,
        owner: &Owner,
    ) -> Result<Arc<Session>, Refusal> {
        let id = id.ok_or(Refusal::InvalidRequest(
            "a legacy message needs the session_id its endpoint event named",
        ))?;
        self.registry()
            .sessions
            .get(id)
            .filter(|s| &*s.entry_point == entry_point && &s.owner == owner)
            .cloned()
            .ok_or(Refusal::LegacySessionUnknown)
    }

    /// Ends `session` (its stream closed): its exchanges are dropped and the upstream session,
    /// if there is one, is DELETEd.
    pub(super) fn end(&self, session: &Session) {
        {
            let mut registry = self.registry();
            if registry.sessions.remove(&session.id).is_none() {
                return;
            }
            if let MapEntry::Occupied(mut count) = registry.per_owner.entry(session.owner.clone()) {
                *count.get_mut() -= 1;
                if *count.get() == 0 {
                    count.remove();
                }
            }
        }
        self.gauge(&session.entry_point).dec();
        tracing::debug!(entry_point = &*session.entry_point, "legacy session ended");
        drop(session.lock_tasks().take());
        let template = session.template().take();
        let (Some(template), Ok(runtime)) = (template, tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let upstream = session.upstream.clone();
        runtime.spawn(async move {
            let id = upstream.read().await.id.clone();
            if let Some(id) = id {
                template.delete(id).await;
            }
        });
    }

    fn gauge(&self, entry_point: &Arc<str>) -> Gauge {
        self.open
            .get_or_create(&EntryLabels {
                entry_point: entry_point.clone(),
            })
            .clone()
    }
}

// === impl Session ===

impl Session {
    fn lock_tasks(&self) -> MutexGuard<'_, Option<JoinSet<()>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn template(&self) -> MutexGuard<'_, Option<Template>> {
        self.template.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the session active now (idle time counts from the last message either way).
    pub fn touch(&self) {
        *self
            .last_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// When the session was last active.
    pub(super) fn last_active(&self) -> Instant {
        *self
            .last_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A place among the session's exchanges in flight.
    pub fn exchange_permit(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.exchanges
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Overloaded)
    }

    /// The message's turn: waits while an `initialize` is being answered.
    pub async fn turn(&self, initialize: bool) -> Turn {
        if initialize {
            let opening = self.upstream.clone().write_owned().await;
            Turn {
                upstream_session: opening.id.clone(),
                opening: Some(opening),
            }
        } else {
            Turn {
                upstream_session: self.upstream.read().await.id.clone(),
                opening: None,
            }
        }
    }

    /// Keeps `request`'s head (not its body) for the sidecar's own requests in this session.
    pub fn remember(&self, request: &Request<Full<Bytes>>, upstream: &Arc<Upstream>) {
        let mut headers = request.headers().clone();
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::CONTENT_TYPE);
        headers.remove(&MCP_SESSION_ID);
        *self.template() = Some(Template {
            upstream: upstream.clone(),
            uri: request.uri().clone(),
            headers,
        });
    }

    /// Puts `refusal` of the message with `reply_id` on the stream (a notification's refusal
    /// has no one to answer).
    pub fn refuse(self: &Arc<Self>, reply_id: Option<&RawValue>, refusal: &Refusal) {
        let Some(id) = reply_id else { return };
        let event = relay::error_event(refusal, id);
        let events = self.events.clone();
        self.spawn(async move {
            let _ = events.send(event).await;
        });
    }

    /// Sends `exchange` on in the background: its answer's messages go on the stream.
    pub fn relay<F>(self: &Arc<Self>, exchange: Exchange<F>)
    where
        F: Future<Output = Result<Response<ResponseBody>, Refusal>> + Send + 'static,
    {
        let session = self.clone();
        self.spawn(async move {
            let Exchange {
                turn,
                permit,
                reply_id,
                then_listen,
                response,
            } = exchange;
            let result = response.await;
            if let Some(mut opening) = turn.opening {
                // The upstream's id for the session, or none (a stateless upstream).
                opening.id = result
                    .as_ref()
                    .ok()
                    .filter(|r| r.status().is_success())
                    .and_then(|r| r.headers().get(&MCP_SESSION_ID).cloned());
            }
            let accepted = match result {
                Ok(response) => {
                    let success = response.status().is_success();
                    relay::relay(response, reply_id.as_deref(), &session.events).await;
                    success
                }
                Err(refusal) => {
                    if let Some(id) = &reply_id {
                        let _ = session.events.send(relay::error_event(&refusal, id)).await;
                    }
                    false
                }
            };
            drop(permit);
            if let (true, Some(filter)) = (accepted, then_listen) {
                session.listen(filter).await;
            }
        });
    }

    /// Relays the upstream's own event stream (what the server sends outside any request)
    /// until it ends; only where the upstream keeps a session and offers one.
    async fn listen(&self, filter: Option<ListFilter>) {
        let id = self.upstream.read().await.id.clone();
        let template = self.template().clone();
        let (Some(id), Some(template)) = (id, template) else {
            return;
        };
        let mut request = template.request(Method::GET, id);
        request.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let Ok(response) = template.upstream.send(request).await else {
            return;
        };
        if !response.status().is_success() || !crate::sse::is_event_stream(response.headers()) {
            // 405: the upstream offers no such stream.
            return;
        }
        let response = response.map(ResponseBody::upstream);
        let response = match filter {
            Some(filter) => match filter.apply(response).await {
                Ok(filtered) => filtered,
                Err(_) => return,
            },
            None => response,
        };
        relay::relay(response, None, &self.events).await;
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(tasks) = self.lock_tasks().as_mut() {
            // Reap what finished, so a long session does not keep a record of every message.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(task);
        }
    }
}

// === impl Template ===

impl Template {
    fn request(&self, method: Method, session: HeaderValue) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = method;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
            .headers_mut()
            .insert(MCP_SESSION_ID.clone(), session);
        request
    }

    /// Ends the upstream session `session`.
    async fn delete(&self, session: HeaderValue) {
        let request = self.request(Method::DELETE, session);
        match tokio::time::timeout(DELETE_TIMEOUT, self.upstream.send(request)).await {
            Ok(Ok(response)) => {
                tracing::debug!(
                    status = response.status().as_u16(),
                    "ended a legacy session's upstream session"
                );
            }
            Ok(Err(failure)) => {
                tracing::debug!("could not end a legacy session's upstream session: {failure}");
            }
            Err(_) => tracing::debug!("the upstream did not answer a legacy session's DELETE"),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;
    use prometheus_client::registry::Registry as Metrics_;

    use super::*;

    fn sessions() -> (Arc<Sessions>, Metrics) {
        let metrics = Metrics::register(&mut Metrics_::default());
        (Arc::new(Sessions::new(&metrics)), metrics)
    }

    fn limits(max_sessions: usize, per_caller: usize) -> LegacySse {
        LegacySse {
            max_sessions,
            max_sessions_per_caller: per_caller,
            ..LegacySse::default()
        }
    }

    fn alice() -> Owner {
        Owner::Identity("alice".into())
    }

    fn bob() -> Owner {
        Owner::Identity("bob".into())
    }

    /// Opens a session and reads its endpoint event: the session id.
    async fn open(
        sessions: &Arc<Sessions>,
        limits: &LegacySse,
        owner: Owner,
    ) -> Result<(String, std::pin::Pin<Box<ResponseBody>>), Refusal> {
        let entry_point: Arc<str> = "main".into();
        let response = sessions.open(limits, None, &entry_point, owner, "/ai")?;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut stream = Box::pin(response.into_body());
        let frame = stream.frame().await.unwrap().unwrap();
        let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
        let id = text
            .strip_prefix("event: endpoint\ndata: /ai/messages/?session_id=")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("endpoint event: {text:?}"))
            .to_owned();
        Ok((id, stream))
    }

    fn open_gauge(metrics: &Metrics) -> i64 {
        metrics
            .legacy_sessions
            .get_or_create(&EntryLabels {
                entry_point: "main".into(),
            })
            .get()
    }

    #[tokio::test]
    async fn sessions_belong_to_their_owner_and_entry_point_and_end_with_their_stream() {
        let (sessions, metrics) = sessions();
        let limits = limits(10, 10);
        let (id, stream) = open(&sessions, &limits, alice()).await.unwrap();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let (other, _second) = open(&sessions, &limits, alice()).await.unwrap();
        assert_ne!(id, other, "every session has its own id");
        assert_eq!(open_gauge(&metrics), 2);

        assert!(sessions.find(Some(&id), "main", &alice()).is_ok());
        // Another caller, another entry point, no id, an unknown id: the same answer for the
        // first two as for an id that never existed.
        for refused in [
            sessions.find(Some(&id), "main", &bob()),
            sessions.find(Some(&id), "route", &alice()),
            sessions.find(Some("00112233445566778899aabbccddeeff"), "main", &alice()),
        ] {
            assert!(matches!(refused, Err(Refusal::LegacySessionUnknown)));
        }
        assert!(matches!(
            sessions.find(None, "main", &alice()),
            Err(Refusal::InvalidRequest(_))
        ));

        drop(stream);
        assert!(matches!(
            sessions.find(Some(&id), "main", &alice()),
            Err(Refusal::LegacySessionUnknown)
        ));
        assert_eq!(open_gauge(&metrics), 1);
    }

    #[tokio::test]
    async fn sessions_are_bounded_per_caller_and_in_all() {
        let (sessions, metrics) = sessions();
        let limits = limits(3, 2);
        let (_a1, _s1) = open(&sessions, &limits, alice()).await.unwrap();
        let (_a2, s2) = open(&sessions, &limits, alice()).await.unwrap();
        let refused = open(&sessions, &limits, alice()).await.err().unwrap();
        assert!(matches!(refused, Refusal::LegacyCallerLimit { max: 2 }));
        assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
        // Another caller still gets one, up to the sidecar's limit.
        let (_b1, _s3) = open(&sessions, &limits, bob()).await.unwrap();
        let refused = open(&sessions, &limits, bob()).await.err().unwrap();
        assert!(matches!(refused, Refusal::LegacySidecarLimit { max: 3 }));
        assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let refusals = |reason| {
            metrics
                .legacy_sessions_refused
                .get_or_create(&ReasonLabels {
                    entry_point: "main".into(),
                    reason,
                })
                .get()
        };
        assert_eq!(
            (refusals("caller_limit"), refusals("sidecar_limit")),
            (1, 1)
        );
        // A closed stream gives its place back.
        drop(s2);
        assert!(open(&sessions, &limits, alice()).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_ends_and_activity_keeps_it_open() {
        let (sessions, metrics) = sessions();
        let limits = LegacySse {
            idle_timeout: sluice_proxy_config::Duration::from_secs(60),
            ..LegacySse::default()
        };
        let (id, mut stream) = open(&sessions, &limits, alice()).await.unwrap();
        tokio::time::advance(std::time::Duration::from_secs(45)).await;
        sessions.find(Some(&id), "main", &alice()).unwrap().touch();
        // 45 s after the touch: still open (nothing to read yet).
        let read = tokio::time::timeout(std::time::Duration::from_secs(45), stream.frame()).await;
        assert!(read.is_err(), "the session ended early: {read:?}");
        // Past 60 s of silence the stream ends.
        let end = stream.frame().await;
        assert!(end.is_none(), "{end:?}");
        drop(stream);
        assert_eq!(open_gauge(&metrics), 0);
    }
}
