//! One MCP session: its process's stdin, the requests waiting for responses, and where the
//! server's own messages go.
//!
//! stdio has one stream each way and nothing that says which HTTP request a server message
//! belongs to, so the bridge pairs them as a stdio client would: a response goes to the POST
//! that carried its request (by id); a progress notification to the request with its progress
//! token; any other request or notification of the server's (sampling, elicitation, logging)
//! to the newest request still waiting, since servers send those while they handle a call; with
//! none waiting, to the GET stream; with no GET stream, nowhere (logged).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::jsonrpc::{self, Kind, Message};
use crate::sse;

/// Where a request's response goes.
#[derive(Debug)]
pub enum Waiter {
    /// The caller's POST stream, which ends after the response.
    Caller(mpsc::Sender<Bytes>),
    /// The bridge itself: the `initialize` it replays into a restarted process.
    Replay(oneshot::Sender<Message>),
}

#[derive(Debug)]
struct Waiting {
    waiter: Waiter,
    /// Order of arrival, to find the newest request.
    sequence: u64,
    progress_token: Option<String>,
    /// The caller's own id and progress token, where the bridge sent the request under an
    /// alias (the shared process of sessionless requests, where callers' ids may collide).
    aliased: Option<Originals>,
}

#[derive(Debug)]
struct Originals {
    id: Value,
    progress_token: Option<Value>,
}

/// What the session's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running and taking messages.
    Running,
    /// Exited unasked; the bridge starts it again after the backoff.
    Restarting,
    /// Ended (DELETE, idle, shutdown, or a crash it was not restarted from).
    Ended,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Lines to the process's stdin; `None` while no process runs.
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    waiting: HashMap<String, Waiting>,
    next_sequence: u64,
    /// The GET stream, if the caller holds one open.
    listener: Option<mpsc::Sender<Bytes>>,
    /// The caller's `initialize`, kept to replay into a restarted process once it succeeded.
    initialize: Option<Map<String, Value>>,
    initialize_id: Option<String>,
    initialized: bool,
    /// Whether the caller sent `notifications/initialized` (replayed after `initialize`).
    initialized_notified: bool,
    last_activity: Instant,
}

/// Why a message for the process was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTaken {
    /// No process runs (it is restarting, or the session ended).
    NoProcess(Phase),
    /// A request with this id is already waiting.
    DuplicateId,
}

#[derive(Debug)]
pub struct Session {
    pub id: String,
    /// The one process of sessionless requests (MCP's stateless revisions), shared by every
    /// caller: restarted without a handshake to replay, its requests sent under aliases.
    pub shared: bool,
    /// A short form of the id for log lines.
    pub tag: String,
    state: Mutex<State>,
    /// Set when the session is asked to end; the process's supervisor watches it.
    stop: watch::Sender<bool>,
}

impl Session {
    pub fn new(id: String) -> Self {
        Self::with(id, false)
    }

    /// The process of sessionless requests.
    pub fn new_shared() -> Self {
        Self::with("sessionless".into(), true)
    }

    fn with(id: String, shared: bool) -> Self {
        let tag = id.chars().take(11).collect();
        Self {
            id,
            shared,
            tag,
            state: Mutex::new(State {
                phase: Phase::Running,
                stdin: None,
                waiting: HashMap::new(),
                next_sequence: 0,
                listener: None,
                initialize: None,
                initialize_id: None,
                initialized: false,
                initialized_notified: false,
                last_activity: Instant::now(),
            }),
            stop: watch::Sender::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn phase(&self) -> Phase {
        self.state().phase
    }

    /// A receiver that sees the session asked to end.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Asks the session to end: its process is stopped and it takes no more messages.
    pub fn end(&self) {
        {
            let mut state = self.state();
            state.phase = Phase::Ended;
            state.stdin = None;
            state.listener = None;
            state.waiting.clear();
        }
        self.stop.send_replace(true);
    }

    pub fn touch(&self) {
        self.state().last_activity = Instant::now();
    }

    /// Whether the session has been idle (nothing waiting, no open GET stream, no message
    /// either way) since before `deadline`.
    pub fn idle_since_before(&self, deadline: Instant) -> bool {
        let state = self.state();
        state.last_activity < deadline
            && state.waiting.is_empty()
            && state.listener.as_ref().is_none_or(mpsc::Sender::is_closed)
    }

    /// A process started: messages go to `stdin` from now on.
    pub fn attach(&self, stdin: mpsc::Sender<Vec<u8>>) {
        let mut state = self.state();
        if state.phase != Phase::Ended {
            state.phase = Phase::Running;
            state.stdin = Some(stdin);
        }
    }

    /// The caller's `initialize`: remembered, and sent.
    pub async fn send_initialize(
        &self,
        message: &Message,
        caller: mpsc::Sender<Bytes>,
    ) -> Result<(), NotTaken> {
        if let Kind::Request { id, .. } = &message.kind {
            let mut state = self.state();
            state.initialize = Some(message.object.clone());
            state.initialize_id = Some(jsonrpc::id_key(id));
        }
        self.send_request(message, Waiter::Caller(caller)).await
    }

    /// Sends a request; its response will go to `waiter`.
    pub async fn send_request(&self, message: &Message, waiter: Waiter) -> Result<(), NotTaken> {
        let Kind::Request { id, .. } = &message.kind else {
            return self.send_other(message).await;
        };
        self.send_waiting(message, id, waiter, None).await
    }

    /// Sends a request under `alias` (as its id, and as its progress token if it has one); its
    /// response, and progress about it, go to `waiter` under the caller's own id and token.
    pub async fn send_request_as(
        &self,
        request: Message,
        alias: Value,
        waiter: Waiter,
    ) -> Result<(), NotTaken> {
        let Kind::Request { id, .. } = &request.kind else {
            return self.send_other(&request).await;
        };
        let originals = Originals {
            id: id.clone(),
            progress_token: request.progress_token().cloned(),
        };
        let aliased = request.with_ids(Some(&alias), Some(&alias));
        self.send_waiting(&aliased, &alias, waiter, Some(originals))
            .await
    }

    /// Registers `waiter` for the response to `request` (id `id`), then writes it to stdin.
    async fn send_waiting(
        &self,
        request: &Message,
        id: &Value,
        waiter: Waiter,
        aliased: Option<Originals>,
    ) -> Result<(), NotTaken> {
        let stdin = {
            let mut state = self.state();
            let stdin = state
                .stdin
                .clone()
                .ok_or(NotTaken::NoProcess(state.phase))?;
            state.wait_for(id, request, waiter, aliased)?;
            stdin
        };
        if stdin.send(request.to_line()).await.is_err() {
            // The process went between the two steps; its supervisor fails what is waiting.
            let mut state = self.state();
            state.waiting.remove(&jsonrpc::id_key(id));
            return Err(NotTaken::NoProcess(state.phase));
        }
        Ok(())
    }

    /// Makes the response to `request` (which the bridge writes itself, to a process not yet
    /// attached) go to `waiter`.
    pub fn expect_response(&self, request: &Message, waiter: Waiter) -> Result<(), NotTaken> {
        match &request.kind {
            Kind::Request { id, .. } => self.state().wait_for(id, request, waiter, None),
            _ => Ok(()),
        }
    }

    /// Sends a notification or a response (to a request of the server's).
    pub async fn send_other(&self, message: &Message) -> Result<(), NotTaken> {
        let stdin = {
            let mut state = self.state();
            if matches!(&message.kind, Kind::Notification { method } if method == "notifications/initialized")
            {
                state.initialized_notified = true;
            }
            state.last_activity = Instant::now();
            state
                .stdin
                .clone()
                .ok_or(NotTaken::NoProcess(state.phase))?
        };
        match stdin.send(message.to_line()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(NotTaken::NoProcess(self.phase())),
        }
    }

    /// Opens the GET stream; one the caller held before ends.
    pub fn listen(&self, sender: mpsc::Sender<Bytes>) {
        let mut state = self.state();
        state.listener = Some(sender);
        state.last_activity = Instant::now();
    }

    /// Delivers one message from the server's stdout. Waits while the caller's stream is full.
    pub async fn deliver(&self, message: Message) {
        enum To {
            Stream(mpsc::Sender<Bytes>, Message),
            Replay(oneshot::Sender<Message>, Message),
            Nowhere(Message),
        }
        let to = {
            let mut state = self.state();
            state.last_activity = Instant::now();
            match &message.kind {
                Kind::Response { id } => {
                    let key = jsonrpc::id_key(id);
                    if state.initialize_id.as_deref() == Some(key.as_str()) {
                        state.initialized = message.object.contains_key("result");
                        state.initialize_id = None;
                    }
                    match state.waiting.remove(&key) {
                        Some(Waiting {
                            waiter: Waiter::Caller(stream),
                            aliased,
                            ..
                        }) => To::Stream(
                            stream,
                            match aliased {
                                Some(originals) => message.with_ids(Some(&originals.id), None),
                                None => message,
                            },
                        ),
                        Some(Waiting {
                            waiter: Waiter::Replay(bridge),
                            ..
                        }) => To::Replay(bridge, message),
                        None => To::Nowhere(message),
                    }
                }
                Kind::Request { .. } | Kind::Notification { .. } => {
                    let token = message.progress_token().map(Value::to_string);
                    match state.stream_for(token.as_deref()) {
                        Some((stream, Some(original_token))) => {
                            To::Stream(stream, message.with_ids(None, Some(&original_token)))
                        }
                        Some((stream, None)) => To::Stream(stream, message),
                        None => To::Nowhere(message),
                    }
                }
            }
        };
        match to {
            To::Stream(stream, message) => {
                // A caller that has gone away loses the message; the server is not held up.
                let _ = stream.send(sse::event(&message.to_line())).await;
            }
            To::Replay(bridge, message) => {
                let _ = bridge.send(message);
            }
            To::Nowhere(message) => tracing::debug!(
                session = %self.tag,
                kind = ?message.kind,
                "a message of the server's had no caller to go to; dropped"
            ),
        }
    }

    /// The process exited: every request waiting gets `error` as its response. Returns whether
    /// a new process can take the session over (it had been initialized, or is the shared one).
    pub async fn process_exited(&self, error: &str) -> bool {
        let (waiting, initialized) = {
            let mut state = self.state();
            state.stdin = None;
            if state.phase != Phase::Ended {
                state.phase = Phase::Restarting;
            }
            (
                std::mem::take(&mut state.waiting),
                state.initialized || self.shared,
            )
        };
        for (key, waiting) in waiting {
            if let Waiter::Caller(stream) = waiting.waiter {
                let id: Option<Value> = serde_json::from_str(&key).ok();
                let response = jsonrpc::error(id.as_ref(), jsonrpc::INTERNAL_ERROR, error);
                let _ = stream.send(sse::event(&response)).await;
            }
        }
        initialized
    }

    /// What to replay into a new process: the caller's `initialize`, and whether
    /// `notifications/initialized` follows it.
    pub fn replay(&self) -> Option<(Map<String, Value>, bool)> {
        let state = self.state();
        state
            .initialize
            .clone()
            .map(|init| (init, state.initialized_notified))
    }
}

impl State {
    fn wait_for(
        &mut self,
        id: &Value,
        request: &Message,
        waiter: Waiter,
        aliased: Option<Originals>,
    ) -> Result<(), NotTaken> {
        let key = jsonrpc::id_key(id);
        if self.waiting.contains_key(&key) {
            return Err(NotTaken::DuplicateId);
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let progress_token = request.progress_token().map(Value::to_string);
        self.waiting.insert(
            key,
            Waiting {
                waiter,
                sequence,
                progress_token,
                aliased,
            },
        );
        self.last_activity = Instant::now();
        Ok(())
    }

    /// The stream a server request or notification goes to (see the module's docs), and the
    /// caller's own progress token where the message is progress about an aliased request.
    fn stream_for(
        &self,
        progress_token: Option<&str>,
    ) -> Option<(mpsc::Sender<Bytes>, Option<Value>)> {
        let callers = || {
            self.waiting.values().filter_map(|w| match &w.waiter {
                Waiter::Caller(stream) if !stream.is_closed() => Some((w, stream)),
                _ => None,
            })
        };
        if let Some(token) = progress_token
            && let Some((waiting, stream)) =
                callers().find(|(w, _)| w.progress_token.as_deref() == Some(token))
        {
            let original = waiting
                .aliased
                .as_ref()
                .and_then(|originals| originals.progress_token.clone());
            return Some((stream.clone(), original));
        }
        if let Some((_, stream)) = callers().max_by_key(|(w, _)| w.sequence) {
            return Some((stream.clone(), None));
        }
        self.listener
            .as_ref()
            .filter(|listener| !listener.is_closed())
            .map(|listener| (listener.clone(), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::EventStream;
    use http_body_util::BodyExt;

    fn message(text: &str) -> Message {
        Message::parse(text.as_bytes()).expect("a message")
    }

    async fn read_one(stream: &mut mpsc::Receiver<Vec<u8>>) -> String {
        String::from_utf8(stream.recv().await.expect("a line")).expect("utf-8")
    }

    #[tokio::test]
    async fn responses_go_to_their_request_and_server_messages_to_the_newest_or_the_listener() {
        let session = Session::new("s1".into());
        let (stdin, mut process) = mpsc::channel(8);
        session.attach(stdin);

        let (first, first_body) = EventStream::channel(8);
        session
            .send_request(
                &message(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":"p1"}}}"#),
                Waiter::Caller(first),
            )
            .await
            .expect("taken");
        let (second, second_body) = EventStream::channel(8);
        session
            .send_request(
                &message(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call"}"#),
                Waiter::Caller(second),
            )
            .await
            .expect("taken");
        assert!(read_one(&mut process).await.contains(r#""id":1"#));
        assert!(read_one(&mut process).await.contains(r#""id":2"#));
        let (listener, listener_body) = EventStream::channel(8);
        session.listen(listener);

        // Progress for request 1 goes to request 1, though request 2 is newer.
        session
            .deliver(message(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p1","progress":1}}"#))
            .await;
        // A sampling request goes to the newest request waiting: 2.
        session
            .deliver(message(
                r#"{"jsonrpc":"2.0","id":"s","method":"sampling/createMessage"}"#,
            ))
            .await;
        session
            .deliver(message(r#"{"jsonrpc":"2.0","id":2,"result":{}}"#))
            .await;
        session
            .deliver(message(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#))
            .await;
        // With nothing waiting, a notification goes to the GET stream.
        session
            .deliver(message(
                r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            ))
            .await;
        session.end();

        let text = |body: Bytes| String::from_utf8(body.to_vec()).expect("utf-8");
        let first = text(first_body.collect().await.expect("ok").to_bytes());
        let second = text(second_body.collect().await.expect("ok").to_bytes());
        let listened = text(listener_body.collect().await.expect("ok").to_bytes());
        assert!(first.contains("notifications/progress"), "{first}");
        assert!(
            first.contains(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            "{first}"
        );
        assert!(!first.contains("sampling"), "{first}");
        assert!(second.contains("sampling/createMessage"), "{second}");
        assert!(
            second.contains(r#"{"jsonrpc":"2.0","id":2,"result":{}}"#),
            "{second}"
        );
        assert!(listened.contains("list_changed"), "{listened}");
        assert!(!listened.contains("result"), "{listened}");
    }

    #[tokio::test]
    async fn two_callers_with_the_same_ids_on_the_shared_process_never_meet() {
        let shared = Session::new_shared();
        let (stdin, mut process) = mpsc::channel(8);
        shared.attach(stdin);
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":1}}}"#;
        let (first, first_body) = EventStream::channel(8);
        let (second, second_body) = EventStream::channel(8);
        for (alias, caller) in [("b-1", first), ("b-2", second)] {
            shared
                .send_request_as(message(call), Value::from(alias), Waiter::Caller(caller))
                .await
                .expect("taken");
        }
        // The process sees two different ids and tokens.
        for alias in ["b-1", "b-2"] {
            let line: Value = serde_json::from_str(&read_one(&mut process).await).expect("JSON");
            assert_eq!(line["id"], alias);
            assert_eq!(line["params"]["_meta"]["progressToken"], alias);
        }
        // Progress and the response for the second come back to the second, under its own id.
        shared
            .deliver(message(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"b-2","progress":1}}"#))
            .await;
        shared
            .deliver(message(r#"{"jsonrpc":"2.0","id":"b-2","result":{"n":2}}"#))
            .await;
        shared
            .deliver(message(r#"{"jsonrpc":"2.0","id":"b-1","result":{"n":1}}"#))
            .await;
        shared.end();
        let events = |body: Bytes| -> Vec<Value> {
            String::from_utf8(body.to_vec())
                .expect("utf-8")
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).expect("JSON"))
                .collect()
        };
        let first = events(first_body.collect().await.expect("ok").to_bytes());
        let second = events(second_body.collect().await.expect("ok").to_bytes());
        assert_eq!(
            first,
            [serde_json::json!({"jsonrpc":"2.0","id":1,"result":{"n":1}})]
        );
        assert_eq!(
            second,
            [
                serde_json::json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}),
                serde_json::json!({"jsonrpc":"2.0","id":1,"result":{"n":2}}),
            ]
        );
    }

    #[tokio::test]
    async fn an_exited_process_fails_what_waits_and_takes_no_more() {
        let session = Session::new("s2".into());
        let (stdin, _process) = mpsc::channel(8);
        session.attach(stdin);
        let (caller, body) = EventStream::channel(8);
        session
            .send_initialize(
                &message(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#),
                caller,
            )
            .await
            .expect("taken");
        session
            .deliver(message(r#"{"jsonrpc":"2.0","id":0,"result":{}}"#))
            .await;
        let (caller, failed_body) = EventStream::channel(8);
        session
            .send_request(
                &message(r#"{"jsonrpc":"2.0","id":"x","method":"tools/call"}"#),
                Waiter::Caller(caller),
            )
            .await
            .expect("taken");
        assert!(session.process_exited("gone").await, "initialized");
        assert_eq!(session.phase(), Phase::Restarting);
        assert_eq!(
            session
                .send_other(&message(r#"{"jsonrpc":"2.0","method":"n"}"#))
                .await,
            Err(NotTaken::NoProcess(Phase::Restarting))
        );
        session.end();
        let failed = failed_body.collect().await.expect("ok").to_bytes();
        let failed = String::from_utf8_lossy(&failed);
        assert!(
            failed.contains(r#""id":"x""#) && failed.contains("gone") && failed.contains("-32603"),
            "{failed}"
        );
        drop(body);
        let (init, notified) = session.replay().expect("kept");
        assert_eq!(init.get("method"), Some(&Value::from("initialize")));
        assert!(!notified);
    }
}
