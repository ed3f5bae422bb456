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
//!
//! With `redis.sentinel`, every (re)connect first asks the sentinels where the master is
//! (sentinel.rs); a failover shows as a dropped connection (the old master gone, or answering
//! `READONLY` once demoted) followed by a connect to the new address, counted and logged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError, Script,
    TlsCertificates,
};
use sluice_proxy_config::{FailMode, Redis};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::local::Gcra;
use super::sentinel;
use crate::metrics::{Metrics, RedisErrorLabels, RedisMasterLabels};

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
    /// With `redis.sentinel`: the master last named, and its metrics.
    master: Mutex<Option<String>>,
    master_gauge: Family<RedisMasterLabels, Gauge>,
    master_changes: Counter,
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
            master: Mutex::new(None),
            master_gauge: metrics.redis_master.clone(),
            master_changes: metrics.redis_master_changes.clone(),
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

    /// Opens a connection (to the master the sentinels name, with `redis.sentinel`) and checks
    /// it answers.
    async fn connect(&self) -> Result<MultiplexedConnection, (&'static str, String)> {
        let timeout = self.config.timeout.get();
        let (settings, certificates) = self.secrets().await?;
        let address = match (&self.config.address, &self.config.sentinel) {
            (Some(address), _) => address.clone(),
            (None, Some(_)) => {
                let address = self.ask_sentinels(&settings, &certificates).await?;
                self.found_master(&address);
                address
            }
            (None, None) => return Err(("connect", "no redis.address".to_owned())),
        };
        let scheme = if certificates.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let info = format!("{scheme}://{address}")
            .into_connection_info()
            .map_err(|e| ("connect", format!("bad address {address:?}: {e}")))?
            .set_redis_settings(settings);
        let client = match certificates {
            None => redis::Client::open(info),
            Some(certificates) => redis::Client::build_with_tls(info, certificates),
        }
        .map_err(|e| ("connect", e.to_string()))?;
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

    /// The credentials (re-read from their files) and the TLS trust to connect with.
    async fn secrets(
        &self,
    ) -> Result<(RedisConnectionInfo, Option<TlsCertificates>), (&'static str, String)> {
        let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(path) = &self.config.username_file {
            let username = read_secret(path, "username_file", "redis.usernameFile").await?;
            settings = settings.set_username(username);
        }
        if let Some(path) = &self.config.password_file {
            let password = read_secret(path, "password_file", "redis.passwordFile").await?;
            settings = settings.set_password(password);
        }
        let certificates = match &self.config.tls {
            None => None,
            Some(tls) => Some(TlsCertificates {
                client_tls: None,
                root_cert: match &tls.ca_file {
                    None => None,
                    Some(path) => Some(tokio::fs::read(path).await.map_err(|e| {
                        (
                            "tls",
                            format!("cannot read redis.tls.caFile {}: {e}", path.display()),
                        )
                    })?),
                },
            }),
        };
        Ok((settings, certificates))
    }

    /// The master's `host:port` as `redis.sentinel` names it now.
    async fn ask_sentinels(
        &self,
        settings: &RedisConnectionInfo,
        certificates: &Option<TlsCertificates>,
    ) -> Result<String, (&'static str, String)> {
        let Some(config) = &self.config.sentinel else {
            return Err(("sentinel", "no redis.sentinel".to_owned()));
        };
        let password = match &config.password_file {
            None => None,
            Some(path) => {
                Some(read_secret(path, "password_file", "redis.sentinel.passwordFile").await?)
            }
        };
        let timeout = self.config.timeout.get();
        let lookup = sentinel::find_master(config, settings, password, certificates.clone());
        let (host, port) = tokio::time::timeout(timeout.saturating_mul(2), lookup)
            .await
            .map_err(|_| ("sentinel", format!("no master named within {timeout:?}")))??;
        Ok(sentinel::host_port(&host, port))
    }

    /// With `redis.sentinel`: drops a connection that still works when the sentinels name
    /// another master. After a switchover the old master keeps serving (as a master) until the
    /// sentinels reconfigure it, which can take seconds; writes it takes meanwhile are lost.
    async fn check_master(&self, conn: &Arc<MultiplexedConnection>) {
        if self.config.sentinel.is_none() {
            return;
        }
        let named = match self.secrets().await {
            Ok((settings, certificates)) => self.ask_sentinels(&settings, &certificates).await,
            Err(e) => Err(e),
        };
        let address = match named {
            Ok(address) => address,
            Err((kind, error)) => {
                // The master still answers: counted, not an outage.
                self.errors.get_or_create(&RedisErrorLabels { kind }).inc();
                tracing::debug!(kind, error, "cannot ask the Redis sentinels");
                return;
            }
        };
        let current = self
            .master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if current.as_deref() != Some(address.as_str()) {
            tracing::info!(
                previous = current.as_deref().unwrap_or(""),
                address,
                "the Redis sentinels name another master: reconnecting"
            );
            self.drop_connection(conn);
        }
    }

    /// Records the master the sentinels named; a new address is a failover, logged and counted.
    fn found_master(&self, address: &str) {
        let mut master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        if master.as_deref() == Some(address) {
            return;
        }
        if let Some(previous) = master.as_deref() {
            self.master_gauge
                .get_or_create(&RedisMasterLabels {
                    address: previous.to_owned(),
                })
                .set(0);
            self.master_changes.inc();
            tracing::warn!(
                reason = "RedisMasterChanged",
                previous,
                address,
                "Redis Sentinel names a new master for global rate limits"
            );
        }
        self.master_gauge
            .get_or_create(&RedisMasterLabels {
                address: address.to_owned(),
            })
            .set(1);
        *master = Some(address.to_owned());
    }

    /// What the logs call this Redis: its address, or the sentinels' master name.
    fn name(&self) -> String {
        match (&self.config.address, &self.config.sentinel) {
            (Some(address), _) => address.clone(),
            (None, Some(s)) => {
                let master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
                match master.as_deref() {
                    Some(at) => format!("sentinel master {} at {at}", s.master_name),
                    None => format!("sentinel master {}", s.master_name),
                }
            }
            (None, None) => String::new(),
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
            address = %self.name(),
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
                address = %self.name(),
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
                    g.check_master(&conn).await;
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
    } else if e.code() == Some("READONLY") {
        // A master demoted by a failover: the connection is dropped and the sentinels asked.
        "readonly"
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
pub(super) fn is_tls(e: &RedisError) -> bool {
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
