//! Listeners: one per entry point plus the admin one, opened and closed as the config changes,
//! and the accept loop that hands each connection to conn.rs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper::service::service_fn;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::activity::Activity;
use crate::admin;
use crate::conn::{self, Stop};
use crate::connections::{Over, Place};
use crate::metrics::ReasonLabels;
use crate::stack::{self, Conn};
use crate::state::{Entry, State};
use crate::tls;

/// What a listener is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// An entry point, by name and configured address.
    Entry(Arc<str>, SocketAddr),
    /// The admin listener.
    Admin(SocketAddr),
}

/// A listener the config wants.
pub enum Desired {
    Entry(Arc<Entry>, SocketAddr),
    Admin(SocketAddr),
}

struct Running {
    local: SocketAddr,
    entry: Option<Arc<ArcSwap<Entry>>>,
    /// Turned true when the config drops the listener: its accept loop and connections end.
    retire: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.retire.send_replace(true);
    }
}

/// The open listeners.
#[derive(Default)]
pub struct Listeners {
    running: Mutex<HashMap<Key, Running>>,
}

impl Listeners {
    /// Opens what `desired` adds, closes what it drops (its connections are asked to close
    /// gracefully), and points kept entry-point listeners at their new `Entry`. Returns the
    /// listeners that could not be opened; the reloader retries them on every check.
    pub fn reconcile(&self, state: &Arc<State>, desired: Vec<Desired>) -> Vec<String> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted: Vec<(Key, Desired)> = desired
            .into_iter()
            .map(|d| match &d {
                Desired::Entry(e, addr) => (Key::Entry(e.name.clone(), *addr), d),
                Desired::Admin(addr) => (Key::Admin(*addr), d),
            })
            .collect();
        // Close first. A port moving between entry points is free once the old accept loop
        // has seen its retirement, so its bind may need the next check.
        running.retain(|key, _| wanted.iter().any(|(k, _)| k == key));
        let mut errors = Vec::new();
        for (key, want) in wanted {
            if let (Some(run), Desired::Entry(entry, _)) = (running.get(&key), &want) {
                if let Some(slot) = &run.entry {
                    slot.store(entry.clone());
                }
                continue;
            }
            if running.contains_key(&key) {
                continue;
            }
            match open(state, want) {
                Ok(run) => {
                    running.insert(key, run);
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// The bound address of an entry point's listener.
    pub fn entry_addr(&self, name: &str) -> Option<SocketAddr> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running
            .iter()
            .find_map(|(k, r)| matches!(k, Key::Entry(n, _) if &**n == name).then_some(r.local))
    }

    /// The bound address of the admin listener.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running
            .iter()
            .find_map(|(k, r)| matches!(k, Key::Admin(_)).then_some(r.local))
    }
}

fn open(state: &Arc<State>, want: Desired) -> Result<Running, String> {
    let (addr, what) = match &want {
        Desired::Entry(e, addr) => (*addr, format!("entry point {}", e.name)),
        Desired::Admin(addr) => (*addr, "the admin listener".to_owned()),
    };
    let listener = bind(addr).map_err(|e| format!("cannot listen on {addr} for {what}: {e}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    let (retire, retired) = watch::channel(false);
    let entry = match want {
        Desired::Entry(entry, _) => {
            let slot = Arc::new(ArcSwap::new(entry));
            tokio::spawn(accept_entry(listener, slot.clone(), state.clone(), retired));
            Some(slot)
        }
        Desired::Admin(_) => {
            tokio::spawn(accept_admin(listener, state.clone(), retired));
            None
        }
    };
    tracing::info!(%local, "listening for {what}");
    Ok(Running {
        local,
        entry,
        retire,
    })
}

/// Binds `addr` (the IPv6 wildcard, what the operator renders, serves both families: see
/// [`sluice_net::bind`]).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(sluice_net::bind(addr)?)
}

/// Accepts until the listener is dropped from the config or shutdown begins.
async fn accept_entry(
    listener: TcpListener,
    entry: Arc<ArcSwap<Entry>>,
    state: Arc<State>,
    mut retired: watch::Receiver<bool>,
) {
    let mut shutdown = state.shutdown.subscribe();
    let mut failures = AcceptFailures::default();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    failures.note(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { retired.wait_for(|r| *r).await.is_ok() } => return,
            _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => return,
        };
        let current = entry.load();
        let limits = &current.snapshot.config.limits;
        let activity = Activity::new();
        let place = match state.connections.admit(
            peer.ip(),
            &activity,
            limits.max_connections,
            limits.max_connections_per_peer,
        ) {
            Ok(place) => place,
            Err(over) => {
                refuse(tcp, &current, &state, over);
                continue;
            }
        };
        drop(current);
        let stop = Stop {
            shutdown: Some(state.shutdown.subscribe()),
            retired: Some(retired.clone()),
            evicted: Some(place.evicted.clone()),
        };
        tokio::spawn(serve_entry(
            tcp,
            peer,
            entry.clone(),
            state.clone(),
            stop,
            (activity, place),
        ));
    }
}

/// Closes a connection over a limit: a plain HTTP caller first reads a 503 (whatever fits in
/// the socket buffer at once; nothing waits on a slow reader), a TLS one is just closed.
fn refuse(tcp: TcpStream, entry: &Entry, state: &State, over: Over) {
    if entry.tls.is_none() {
        let _ = tcp.try_write(crate::connections::REFUSAL);
    }
    state
        .metrics
        .connections_refused
        .get_or_create(&ReasonLabels {
            entry_point: entry.name.clone(),
            reason: over.label(),
        })
        .inc();
    tracing::debug!(entry_point = %entry.name, reason = over.label(), "connection refused");
}

/// Accept failures (out of descriptors, typically) logged at most once every
/// [`AcceptFailures::EVERY`] with how many came since: at the descriptor limit they come twenty
/// times a second.
#[derive(Default)]
struct AcceptFailures {
    logged: Option<Instant>,
    since: u64,
}

impl AcceptFailures {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&mut self, error: &std::io::Error) {
        self.since += 1;
        if self.logged.is_some_and(|at| at.elapsed() < Self::EVERY) {
            return;
        }
        tracing::warn!(error = %error, failures = self.since, "accepting connections fails");
        self.logged = Some(Instant::now());
        self.since = 0;
    }
}

async fn serve_entry(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Arc<ArcSwap<Entry>>,
    state: Arc<State>,
    stop: Stop,
    (activity, _place): (Arc<Activity>, Place),
) {
    let _ = tcp.set_nodelay(true);
    let entry = slot.load_full();
    let snapshot = entry.snapshot.clone();
    let timers = snapshot.timers;
    // The request path's service for this connection, once its client certificate is known.
    let service_for = |client_certificate| {
        let conn = Arc::new(Conn {
            peer,
            peer_ip: HeaderValue::from_str(&peer.ip().to_canonical().to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            activity: activity.clone(),
            client_certificate,
            entry: slot.clone(),
            state: state.clone(),
        });
        service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(stack::serve(req, &conn).await) }
        })
    };
    let Some(acceptor) = &entry.tls else {
        let service = service_for(None);
        conn::serve(tcp, &snapshot.http, service, activity, timers, stop).await;
        return;
    };
    let tls = match tokio::time::timeout(timers.header_read, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            return handshake_failed(&state, &entry.name, peer, tls::handshake_failure(&e), &e);
        }
        Err(_) => return handshake_failed(&state, &entry.name, peer, "timeout", &"timed out"),
    };
    // Verified by the acceptor against the client CA (tls.rs) before the handshake finished;
    // the leaf comes first.
    let client_certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.clone().into_owned());
    let service = service_for(client_certificate);
    conn::serve(tls, &snapshot.http, service, activity, timers, stop).await;
}

/// Counts a failed handshake. Logged at debug only: a scanner or a client with the wrong
/// certificate fails every attempt, and the counter is what an alert watches.
fn handshake_failed(
    state: &State,
    entry_point: &Arc<str>,
    peer: SocketAddr,
    reason: &'static str,
    error: &dyn std::fmt::Display,
) {
    state
        .metrics
        .tls_handshake_failures
        .get_or_create(&ReasonLabels {
            entry_point: entry_point.clone(),
            reason,
        })
        .inc();
    tracing::debug!(entry_point = %entry_point, %peer, reason, %error, "TLS handshake failed");
}

/// The admin connections' send buffer (Linux doubles it): a `/metrics` answer still goes in a
/// few round trips.
const ADMIN_SEND_BUFFER: usize = 64 * 1024;

/// Accepts admin connections until the admin listener is dropped from the config. It keeps
/// serving through shutdown, so probes see `/readyz` fail rather than a refused connection.
async fn accept_admin(
    listener: TcpListener,
    state: Arc<State>,
    mut retired: watch::Receiver<bool>,
) {
    let mut failures = AcceptFailures::default();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    failures.note(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { retired.wait_for(|r| *r).await.is_ok() } => return,
        };
        // Without a bound the kernel lets a reader of /events that stopped reading pin MiBs
        // of events (autotuned up to tcp_wmem's maximum); with one, past this and the
        // reader's queue, its events are dropped and counted (audit_events.rs).
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(ADMIN_SEND_BUFFER);
        let state = state.clone();
        tokio::spawn(async move {
            let snapshot = state.snapshot.load_full();
            let activity = Activity::new();
            let act = activity.clone();
            let service = service_fn(move |req| {
                let state = state.clone();
                let busy = act.begin();
                async move {
                    let mut response = admin::serve(req, &state).await;
                    response.body_mut().guards_mut().busy = Some(busy);
                    Ok::<_, Infallible>(response)
                }
            });
            conn::serve(
                tcp,
                &snapshot.http,
                service,
                activity,
                snapshot.timers,
                Stop::default(),
            )
            .await;
        });
    }
}
