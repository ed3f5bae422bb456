//! Global budgets in Redis, shared by every replica: one atomic Lua script implementing the
//! same GCRA as governor (one round trip per check; Redis's clock, so replicas' clocks do not
//! matter), over one multiplexed connection that a background task opens and reopens.
//!
//! The request path never waits for a connection: while there is none (Redis down, refusing
//! the password, hung) a check fails at once and the rule's fail mode decides. A check that
//! fails or exceeds `redis.timeout` drops the connection and wakes the task, which reconnects
//! with backoff, re-reading the username, password and CA files each time (TLS with rustls
//! when `redis.tls` is set; the files' contents are never logged); an idle connection is PINGed every
//! 5 s, so an outage shows without traffic. Failures are counted by kind; the error log says
//! when Redis becomes unreachable, at most every 30 s while it stays so, and when it is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ErrorKind, IntoConnectionInfo, RedisError, Script, TlsCertificates,
};
use sluice_proxy_config::{FailMode, Redis};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::local::Gcra;
use crate::metrics::{Metrics, RedisErrorLabels};

/// GCRA, as governor computes it, in microseconds of Redis's clock. `KEYS[1]`: the budget;
/// `ARGV[1]`: the emission interval; `ARGV[2]`: the burst tolerance (interval × (burst − 1)).
/// Returns {1, 0} when admitted, {0, µs to wait} when not. The key expires when its budget is
/// full again.
const GCRA_SCRIPT: &str = r"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local earliest = tat - tau
if now < earliest then
  return {0, earliest - now}
end
local next_tat = math.max(tat, now) + t
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return {1, 0}
";

/// How often an outage is logged again while it lasts.
const LOG_EVERY: Duration = Duration::from_secs(30);
/// How often an open connection is checked while no request uses it.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What Redis said about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Admit,
    /// Over the limit: admitted again after this long.
    Wait(Duration),
}

/// Redis could not be asked; the fail mode decides.
#[derive(Debug)]
pub struct Unavailable;

/// The Redis of `redis:` in the config.
#[derive(Debug)]
pub struct Global {
    config: Redis,
    conn: ArcSwapOption<MultiplexedConnection>,
    wake: mpsc::Sender<()>,
    script: Script,
    errors: Family<RedisErrorLabels, Counter>,
    connected: Gauge,
    down: AtomicBool,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    down_since: Option<Instant>,
    last_log: Option<Instant>,
}

impl Global {
    /// A client for `config`; connects in the background (in the current Tokio runtime).
    pub fn start(config: &Redis, metrics: &Metrics) -> Arc<Self> {
        if config.tls.is_some() {
            // The redis crate builds its rustls config with the process's default provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let (wake, woken) = mpsc::channel(1);
        let global = Arc::new(Self {
            config: config.clone(),
            conn: ArcSwapOption::empty(),
            wake,
            script: Script::new(GCRA_SCRIPT),
            errors: metrics.redis_errors.clone(),
            connected: metrics.redis_connected.clone(),
            down: AtomicBool::new(false),
            health: Mutex::default(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(upkeep(Arc::downgrade(&global), woken));
        }
        global
    }

    /// The settings it was built from.
    pub fn config(&self) -> &Redis {
        &self.config
    }

    /// What `redis.failMode` says to do without Redis.
    pub fn fail_mode(&self) -> FailMode {
        self.config.fail_mode
    }

    /// Takes one request from the budget at `key` (prefixed with `redis.keyPrefix` here).
    pub async fn check(&self, key: &str, gcra: Gcra) -> Result<Answer, Unavailable> {
        let Some(conn) = self.conn.load_full() else {
            return Err(Unavailable);
        };
        let mut connection = MultiplexedConnection::clone(&conn);
        let t = u64::try_from(gcra.emission.as_micros().max(1)).unwrap_or(u64::MAX);
        let tau = t.saturating_mul(u64::from(gcra.burst.get() - 1));
        let mut invocation = self.script.key(format!("{}{key}", self.config.key_prefix));
        invocation.arg(t).arg(tau);
        let call = invocation.invoke_async::<(i64, i64)>(&mut connection);
        match tokio::time::timeout(self.config.timeout.get(), call).await {
            Ok(Ok((admitted, wait))) => {
                self.up();
                Ok(if admitted == 1 {
                    Answer::Admit
                } else {
                    Answer::Wait(Duration::from_micros(u64::try_from(wait).unwrap_or(0)))
                })
            }
            Ok(Err(e)) => {
                let kind = classify(&e);
                self.failed(kind, &e.to_string());
                if kind != "response" {
                    self.drop_connection(&conn);
                }
                Err(Unavailable)
            }
            Err(_) => {
                self.failed(
                    "timeout",
                    &format!("no answer within {}", self.config.timeout),
                );
                self.drop_connection(&conn);
                Err(Unavailable)
            }
        }
    }

    fn drop_connection(&self, broken: &Arc<MultiplexedConnection>) {
        let previous = self
            .conn
            .compare_and_swap(broken, None::<Arc<MultiplexedConnection>>);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, broken)) {
            self.connected.set(0);
        }
        let _ = self.wake.try_send(());
    }

    /// Opens a connection and checks it answers.
    async fn connect(&self) -> Result<MultiplexedConnection, (&'static str, String)> {
        let address = &self.config.address;
        let scheme = if self.config.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let info = format!("{scheme}://{address}")
            .into_connection_info()
            .map_err(|e| ("connect", format!("bad address {address:?}: {e}")))?;
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(path) = &self.config.username_file {
            let username = read_secret(path, "username_file", "redis.usernameFile").await?;
            settings = settings.set_username(username);
        }
        if let Some(path) = &self.config.password_file {
            let password = read_secret(path, "password_file", "redis.passwordFile").await?;
            settings = settings.set_password(password);
        }
        let info = info.set_redis_settings(settings);
        let client = match &self.config.tls {
            None => redis::Client::open(info),
            Some(tls) => {
                let root_cert = match &tls.ca_file {
                    None => None,
                    Some(path) => Some(tokio::fs::read(path).await.map_err(|e| {
                        (
                            "tls",
                            format!("cannot read redis.tls.caFile {}: {e}", path.display()),
                        )
                    })?),
                };
                let certificates = TlsCertificates {
                    client_tls: None,
                    root_cert,
                };
                redis::Client::build_with_tls(info, certificates)
            }
        }
        .map_err(|e| ("connect", e.to_string()))?;
        let timeout = self.config.timeout.get();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let connect = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            // A hung Redis accepts connections; only an answer proves it is there.
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            Ok::<_, RedisError>(conn)
        };
        match tokio::time::timeout(timeout.saturating_mul(2), connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err((classify_connect(&e), e.to_string())),
            Err(_) => Err(("timeout", format!("no connection within {timeout:?}"))),
        }
    }

    /// Checks an idle connection; a failed one is dropped.
    async fn ping(&self, conn: &Arc<MultiplexedConnection>) {
        let mut connection = MultiplexedConnection::clone(conn);
        let command = redis::cmd("PING");
        let ping = command.query_async::<()>(&mut connection);
        let failure = match tokio::time::timeout(self.config.timeout.get(), ping).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => (classify(&e), e.to_string()),
            Err(_) => (
                "timeout",
                format!("no answer to PING within {}", self.config.timeout),
            ),
        };
        self.failed(failure.0, &failure.1);
        self.drop_connection(conn);
    }

    fn failed(&self, kind: &'static str, error: &str) {
        self.errors.get_or_create(&RedisErrorLabels { kind }).inc();
        let now = Instant::now();
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        self.down.store(true, Ordering::Relaxed);
        let since = *health.down_since.get_or_insert(now);
        if health
            .last_log
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            return;
        }
        health.last_log = Some(now);
        let fail_mode = match self.config.fail_mode {
            FailMode::Open => "open: requests pass, counted per pod",
            FailMode::Closed => "closed: requests counted by global limits get 503",
        };
        tracing::error!(
            reason = "RedisUnavailable",
            address = %self.config.address,
            kind,
            error,
            down_for_s = now.duration_since(since).as_secs(),
            fail_mode,
            "Redis for global rate limits is unreachable"
        );
    }

    fn up(&self) {
        if !self.down.load(Ordering::Relaxed) {
            return;
        }
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        self.down.store(false, Ordering::Relaxed);
        if let Some(since) = health.down_since.take() {
            health.last_log = None;
            tracing::warn!(
                address = %self.config.address,
                down_for_s = since.elapsed().as_secs(),
                "Redis for global rate limits is reachable again"
            );
        }
    }
}

/// Keeps a connection open while the client lives.
async fn upkeep(global: Weak<Global>, mut woken: mpsc::Receiver<()>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(g) = global.upgrade() else {
            return;
        };
        if let Some(conn) = g.conn.load_full() {
            drop(g);
            match tokio::time::timeout(HEALTH_EVERY, woken.recv()).await {
                Ok(None) => return,
                Ok(Some(())) => {}
                Err(_) => {
                    let Some(g) = global.upgrade() else {
                        return;
                    };
                    g.ping(&conn).await;
                }
            }
            continue;
        }
        match g.connect().await {
            Ok(conn) => {
                g.conn.store(Some(Arc::new(conn)));
                g.connected.set(1);
                g.up();
                backoff = MIN_BACKOFF;
            }
            Err((kind, error)) => {
                g.failed(kind, &error);
                drop(g);
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The metric kind of a failed command.
fn classify(e: &RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if is_auth(e) {
        "auth"
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
        "io"
    } else {
        "response"
    }
}

/// The metric kind of a failed connection attempt.
fn classify_connect(e: &RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if is_auth(e) {
        "auth"
    } else if is_tls(e) {
        "tls"
    } else {
        "connect"
    }
}

/// The first line of a secret file, without its line end. The error names the file, never
/// its contents.
async fn read_secret(
    path: &std::path::Path,
    kind: &'static str,
    field: &str,
) -> Result<String, (&'static str, String)> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| (kind, format!("cannot read {field} {}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// A refused TLS handshake (an untrusted or misnamed certificate, a plain-text server): a
/// rustls error somewhere in the chain (the redis crate keeps its cause as an
/// `Arc<dyn Error>`, and an I/O error carries rustls's as its inner error).
fn is_tls(e: &RedisError) -> bool {
    fn rustls_in(c: &(dyn std::error::Error + 'static)) -> bool {
        if c.is::<rustls::Error>() {
            return true;
        }
        if let Some(shared) = c.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            return rustls_in(shared.as_ref());
        }
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| rustls_in(inner))
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if rustls_in(c) {
            return true;
        }
        cause = c.source();
    }
    false
}

fn is_auth(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}
