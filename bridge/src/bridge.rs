//! The sessions of one bridge, one stdio process each, and their supervision: a process that
//! exits unasked is started again for its session after the pod-wide backoff, with the
//! caller's `initialize` replayed into it, so the session goes on (with the server's state
//! lost, as after any restart). Sessions end at DELETE, when idle, or at shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand::RngExt;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::jsonrpc::Message;
use crate::process::{Ended, Program, Running};
use crate::session::{Phase, Session, Waiter};

/// How long a restarted process gets to answer the replayed `initialize`.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);
/// A session whose process crashes this many times in a row without answering is ended.
const MAX_RESTARTS_IN_A_ROW: u32 = 5;
/// A restarted process that ran this long counts as recovered.
const RECOVERED_AFTER: Duration = Duration::from_secs(60);

/// The limits a bridge runs with.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_processes: usize,
    pub idle_timeout: Duration,
    /// Events that may wait unread on one caller's stream.
    pub stream_buffer: usize,
    pub restart_backoff: Duration,
    pub max_restart_backoff: Duration,
}

/// Why a new session was refused.
#[derive(Debug)]
pub enum Refused {
    /// As many processes run as `--max-processes` allows.
    Full(usize),
    /// A process crashed lately; none starts for this long.
    BackingOff(Duration),
    /// The command could not be started.
    Start(std::io::Error),
    ShuttingDown,
}

#[derive(Debug)]
pub struct Bridge {
    program: Program,
    pub limits: Limits,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// The process of sessionless requests, once one came.
    sessionless: Mutex<Option<Arc<Session>>>,
    /// Aliases of sessionless requests' ids: `sluice-bridge-<n>`.
    next_alias: std::sync::atomic::AtomicU64,
    backoff: Mutex<Backoff>,
    shutting_down: std::sync::atomic::AtomicBool,
    /// Supervisors running, i.e. processes not yet reaped: shutdown waits for none.
    supervisors: watch::Sender<usize>,
}

impl Bridge {
    pub fn new(program: Program, limits: Limits) -> Arc<Self> {
        let backoff = Backoff::new(limits.restart_backoff, limits.max_restart_backoff);
        Arc::new(Self {
            program,
            limits,
            sessions: Mutex::new(HashMap::new()),
            sessionless: Mutex::new(None),
            next_alias: std::sync::atomic::AtomicU64::new(0),
            backoff: Mutex::new(backoff),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            supervisors: watch::Sender::new(0),
        })
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn backoff(&self) -> MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn max_message_bytes(&self) -> usize {
        self.program.max_message_bytes
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions().get(id).cloned()
    }

    /// Starts a process for a new session and sends it the caller's `initialize`, whose
    /// response goes to `caller`.
    pub async fn open(
        self: &Arc<Self>,
        initialize: &Message,
        caller: mpsc::Sender<Bytes>,
    ) -> Result<Arc<Session>, Refused> {
        self.may_start(self.running_sessionless().is_some())?;
        let session = Arc::new(Session::new(new_session_id()));
        let running = self.start(&session)?;
        self.sessions()
            .insert(session.id.clone(), Arc::clone(&session));
        session.attach(running.stdin());
        self.supervise(&session, running);
        // Once taken, a process that dies fails the initialize in its supervisor, like any
        // waiting request; one already gone cannot take it, and the caller hears so here.
        match session.send_initialize(initialize, caller).await {
            Ok(()) => Ok(session),
            Err(_) => Err(Refused::Start(std::io::Error::other(
                "the process exited before it could read the initialize",
            ))),
        }
    }

    /// The shared process of sessionless requests, started if none runs.
    pub fn sessionless(self: &Arc<Self>) -> Result<Arc<Session>, Refused> {
        let mut shared = self
            .sessionless
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(session) = shared.as_ref().filter(|s| s.phase() != Phase::Ended) {
            return Ok(Arc::clone(session));
        }
        // Held while it starts, so two first requests start one process.
        self.may_start(false)?;
        let session = Arc::new(Session::new_shared());
        let running = self.start(&session)?;
        session.attach(running.stdin());
        self.supervise(&session, running);
        *shared = Some(Arc::clone(&session));
        Ok(session)
    }

    /// The shared process of sessionless requests, if one runs.
    pub fn running_sessionless(&self) -> Option<Arc<Session>> {
        self.sessionless
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|s| s.phase() != Phase::Ended)
    }

    /// A fresh alias for a sessionless request's id.
    pub fn alias(&self) -> Value {
        let n = self
            .next_alias
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Value::from(format!("sluice-bridge-{n}"))
    }

    /// Whether one more process may start now, with the shared one running or not.
    fn may_start(&self, shared_running: bool) -> Result<(), Refused> {
        if self
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(Refused::ShuttingDown);
        }
        if let Some(left) = self.backoff().remaining(Instant::now()) {
            return Err(Refused::BackingOff(left));
        }
        let running = self.sessions().len() + usize::from(shared_running);
        if running >= self.limits.max_processes {
            return Err(Refused::Full(running));
        }
        Ok(())
    }

    /// Starts a process for `session`; a failure to start counts as a crash.
    fn start(&self, session: &Arc<Session>) -> Result<Running, Refused> {
        Running::start(&self.program, session).map_err(|e| {
            self.backoff().crashed(Instant::now());
            tracing::error!(command = %self.program.command, error = %e, "cannot start the MCP server");
            Refused::Start(e)
        })
    }

    /// Ends a session (DELETE): its process is stopped.
    pub fn close(&self, id: &str) -> bool {
        let session = self.sessions().remove(id);
        session.inspect(|s| s.end()).is_some()
    }

    /// Ends sessions idle for longer than the idle timeout; runs until the process ends.
    pub async fn reap_idle(self: Arc<Self>) {
        let period =
            (self.limits.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            let Some(deadline) = Instant::now().checked_sub(self.limits.idle_timeout) else {
                continue;
            };
            let idle: Vec<Arc<Session>> = {
                let mut sessions = self.sessions();
                let ids: Vec<String> = sessions
                    .values()
                    .filter(|s| s.idle_since_before(deadline))
                    .map(|s| s.id.clone())
                    .collect();
                ids.iter().filter_map(|id| sessions.remove(id)).collect()
            };
            let shared_idle = self
                .running_sessionless()
                .filter(|s| s.idle_since_before(deadline));
            for session in idle.into_iter().chain(shared_idle) {
                tracing::info!(session = %session.tag, "ended an idle session");
                session.end();
            }
        }
    }

    /// Runs `session`'s process under [`supervise`], counted until it ends.
    fn supervise(self: &Arc<Self>, session: &Arc<Session>, running: Running) {
        self.supervisors.send_modify(|n| *n += 1);
        let (bridge, session) = (Arc::clone(self), Arc::clone(session));
        tokio::spawn(async move {
            supervise(Arc::clone(&bridge), session, running).await;
            bridge.supervisors.send_modify(|n| *n -= 1);
        });
    }

    /// Waits until every process has exited or been killed (after [`Bridge::shut_down`]).
    pub async fn processes_ended(&self) {
        let mut supervisors = self.supervisors.subscribe();
        let _ = supervisors.wait_for(|n| *n == 0).await;
    }

    /// Ends every session and takes no new one (SIGTERM).
    pub fn shut_down(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut sessions: Vec<Arc<Session>> = self.sessions().drain().map(|(_, s)| s).collect();
        sessions.extend(self.running_sessionless());
        for session in sessions {
            session.end();
        }
    }

    /// Processes running or restarting.
    pub fn live_sessions(&self) -> usize {
        self.sessions().len()
    }
}

/// A session's id: 128 random bits, hex.
fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a session's process, and starts it again each time it exits unasked, until the session
/// ends.
async fn supervise(bridge: Arc<Bridge>, session: Arc<Session>, first: Running) {
    let mut running = first;
    let mut restarts_in_a_row = 0u32;
    loop {
        let ended = running.wait(session.stop_signal()).await;
        let (status, lived) = match ended {
            Ended::Stopped => break,
            Ended::Exited { status, lived } => (status, lived),
        };
        if session.phase() == Phase::Ended {
            break;
        }
        if lived >= RECOVERED_AFTER {
            restarts_in_a_row = 0;
        }
        let wait = bridge.backoff().crashed(Instant::now());
        let resumable = session
            .process_exited(&format!(
                "the MCP server's process exited ({status}) before it answered; it is being restarted"
            ))
            .await;
        if !resumable || restarts_in_a_row >= MAX_RESTARTS_IN_A_ROW {
            tracing::warn!(
                session = %session.tag, %status, restarts_in_a_row,
                "the MCP server exited unasked; the session ends ({})",
                if resumable { "too many restarts in a row" } else { "it had not been initialized" }
            );
            break;
        }
        tracing::warn!(
            session = %session.tag, %status, backoff_ms = wait.as_millis() as u64,
            "the MCP server exited unasked; restarting it for its session after the backoff"
        );
        restarts_in_a_row += 1;
        match restart(&bridge, &session).await {
            Some(next) => running = next,
            None => break,
        }
    }
    bridge.sessions().remove(&session.id);
    session.end();
}

/// Waits out the backoff (or the session's end), starts a new process and replays the
/// session's `initialize` into it. `None` when the session ended meanwhile or the new process
/// cannot be started.
async fn restart(bridge: &Arc<Bridge>, session: &Arc<Session>) -> Option<Running> {
    let mut stop = session.stop_signal();
    loop {
        let left = bridge.backoff().remaining(Instant::now());
        let Some(left) = left else { break };
        tokio::select! {
            _ = tokio::time::sleep(left) => {}
            _ = stop.wait_for(|stop| *stop) => return None,
        }
    }
    let running = match Running::start(&bridge.program, session) {
        Ok(running) => running,
        Err(e) => {
            tracing::error!(session = %session.tag, error = %e, "cannot start the MCP server again; the session ends");
            bridge.backoff().crashed(Instant::now());
            return None;
        }
    };
    // Callers' messages wait (the session stays `Restarting`) until the new process has taken
    // the replayed handshake, so nothing reaches it before its `initialize`.
    if session.shared {
        session.attach(running.stdin());
        return Some(running);
    }
    let (initialize, notify) = session.replay()?;
    if replay_initialize(session, &running, initialize).await {
        if notify {
            let initialized = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
            let _ = running.stdin().send(initialized.to_vec()).await;
        }
        tracing::info!(session = %session.tag, "the MCP server was restarted and took the session's initialize again");
        session.attach(running.stdin());
    }
    // A process that did not answer is left to exit (and crash again) or to be ended.
    Some(running)
}

/// Sends the caller's `initialize` again, under an id of the bridge's own, and waits for the
/// answer (which no caller sees).
async fn replay_initialize(
    session: &Session,
    running: &Running,
    mut initialize: Map<String, Value>,
) -> bool {
    initialize.insert(
        "id".into(),
        Value::from("sluice-bridge-replayed-initialize"),
    );
    let Ok(message) = Message::parse(&serde_json::to_vec(&initialize).unwrap_or_default()) else {
        return false;
    };
    let (answer, answered) = oneshot::channel();
    if session
        .expect_response(&message, Waiter::Replay(answer))
        .is_err()
        || running.stdin().send(message.to_line()).await.is_err()
    {
        return false;
    }
    matches!(
        tokio::time::timeout(REPLAY_TIMEOUT, answered).await,
        Ok(Ok(response)) if response.object.contains_key("result")
    )
}
