//! The sluice-proxy configuration model: the one file the operator writes for the sidecar.
//!
//! The sidecar knows nothing of Kubernetes or CRDs; it reads this model, and the operator
//! translates McpServers and McpRoutes into it. Everything is serde with camelCase names and
//! unknown fields refused, so a typo fails loudly instead of silently dropping a policy.
//! [`ProxyConfig::from_yaml`] parses *and* validates; a config that fails is never used.

mod auth;
mod cidr;
mod duration;
mod entry_point;
mod pattern;
mod policy;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use auth::{
    ApiKeyAuth, Auth, JwtAlgorithm, JwtAuth, OAuthAuth, PhabricatorTokenAuth, ServiceAccountAuth,
    TokenReview, WhoamiCache,
};
pub use cidr::{IpNet, parse_cidr};
pub use duration::Duration;
pub use entry_point::{Discovery, EntryPoint, Tls, UpstreamToken};
pub use pattern::{Pattern, PatternError};
pub use policy::{NameFilter, RateLimit, RateLimitKey, RateLimitScope, ToolPolicy, ToolRule};
pub use validate::{ConfigError, Problem};

/// Largest config file accepted, in bytes. A ConfigMap holds at most 1 MiB.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// The whole sidecar configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// The MCP server the sidecar guards.
    #[serde(default)]
    pub upstream: Upstream,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`, `/upstream`, `/upstream/livez`,
    /// `/events`).
    #[serde(default)]
    pub admin: Admin,
    /// Size limits on what callers send.
    #[serde(default)]
    pub limits: Limits,
    /// Timeouts towards callers and the upstream.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Server-sent event streams.
    #[serde(default)]
    pub streaming: Streaming,
    /// The 2024-11-05 HTTP+SSE transport, which the sidecar serves itself for older clients.
    #[serde(default)]
    pub legacy_sse: LegacySse,
    /// Graceful shutdown on SIGTERM.
    #[serde(default)]
    pub shutdown: Shutdown,
    /// Logging.
    #[serde(default)]
    pub log: Log,
    /// Phabricator's Conduit API, for `user.whoami` (token verification, OAuth identities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phabricator: Option<PhabricatorApi>,
    /// Redis, for rate limits with `scope: global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,
    /// OpenTelemetry traces of requests, exported over OTLP; off unless present. Fixed at
    /// start: a reload that changes it takes effect when the sidecar restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    /// The entry points: one listener each, with its own policy.
    pub entry_points: Vec<EntryPoint>,
}

impl ProxyConfig {
    /// Parses a YAML (or JSON) document and validates it. The error lists every problem.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                size: text.len(),
                max: MAX_CONFIG_BYTES,
            });
        }
        if text.trim().is_empty() {
            return Err(ConfigError::Empty);
        }
        let config: ProxyConfig =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a config file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ConfigError::Parse("the file is not valid UTF-8".into()))?;
        Self::from_yaml(&text)
    }

    /// Serialises to YAML, the form the operator writes into the ConfigMap.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_saphyr::to_string(self).map_err(|e| ConfigError::Serialize(e.to_string()))
    }

    /// Checks everything the types alone cannot: uniqueness, ports, URLs, patterns.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// The JSON schema of the file (committed as `proxy/config/schema.json`).
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(ProxyConfig))
            .expect("a JSON schema always serialises")
    }

    /// The entry point named `name`.
    pub fn entry_point(&self, name: &str) -> Option<&EntryPoint> {
        self.entry_points.iter().find(|e| e.name == name)
    }
}

/// The upstream MCP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upstream {
    /// Base URL of the upstream (plain http on loopback).
    #[serde(default = "default_upstream_url")]
    pub url: String,
    /// The upstream's MCP endpoint: where callers' `/mcp` (below an entry point's prefix) is
    /// forwarded, and what the sidecar's own check asks. Conduit and most servers serve
    /// `/mcp`; a server that serves elsewhere (e.g. `/`, `/api/mcp`) names it here.
    #[serde(default = "default_mcp_path")]
    pub mcp_path: String,
    /// Idle pooled connections kept to the upstream.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// How long an idle pooled connection is kept.
    #[serde(default = "default_pool_idle_timeout")]
    pub pool_idle_timeout: Duration,
    /// Whether the upstream keeps MCP sessions (`Mcp-Session-Id`): what the sidecar's own
    /// questions to it must do (it asks Conduit who an OAuth bearer belongs to).
    #[serde(default)]
    pub sessions: Sessions,
    /// The sidecar's own check that the upstream answers MCP, which `/readyz`,
    /// `/upstream/livez` and `/upstream` report.
    #[serde(default)]
    pub check: UpstreamCheck,
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            url: default_upstream_url(),
            mcp_path: default_mcp_path(),
            pool_max_idle: default_pool_max_idle(),
            pool_idle_timeout: default_pool_idle_timeout(),
            sessions: Sessions::default(),
            check: UpstreamCheck::default(),
        }
    }
}

/// How the sidecar checks that the upstream answers MCP: an `initialize` (and `tools/list`)
/// over a connection of its own, without credentials, on an interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamCheck {
    /// Time from the end of one check to the start of the next (at least 100ms). Until the
    /// upstream first answers, checks come every second at most, so a pod turns ready soon
    /// after the upstream starts.
    #[serde(default = "default_check_interval")]
    pub interval: Duration,
    /// Time one check may take in all: connecting, every request and every answer. Shorter
    /// than `interval`.
    #[serde(default = "default_check_timeout")]
    pub timeout: Duration,
    /// Checks in a row that must miss before an upstream that answered counts as not
    /// answering (`/readyz` and `/upstream/livez` fail); at least 1.
    #[serde(default = "default_check_failure_threshold")]
    pub failure_threshold: u32,
}

impl Default for UpstreamCheck {
    fn default() -> Self {
        Self {
            interval: default_check_interval(),
            timeout: default_check_timeout(),
            failure_threshold: default_check_failure_threshold(),
        }
    }
}

fn default_check_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_check_failure_threshold() -> u32 {
    3
}

/// The upstream's MCP session handling (Conduit's `--stateless` / `--no-stateless`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Sessions {
    /// Every request stands alone: no `initialize` needed first.
    #[default]
    Stateless,
    /// Requests after `initialize` carry its `Mcp-Session-Id`.
    Stateful,
}

fn default_upstream_url() -> String {
    "http://127.0.0.1:8000".into()
}

/// Where MCP servers serve by convention, and what callers of the sidecar ask for.
pub const DEFAULT_MCP_PATH: &str = "/mcp";

fn default_mcp_path() -> String {
    DEFAULT_MCP_PATH.into()
}

fn default_pool_max_idle() -> usize {
    64
}

fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(90)
}

/// The admin listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Admin {
    /// Address of `/healthz`, `/readyz`, `/metrics`, `/upstream`, `/upstream/livez` and
    /// `/events`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// Serve the audit events live on `/events`. Off by default: they name callers and their
    /// addresses, and whoever reaches the admin port could read them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit_events: bool,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            audit_events: false,
        }
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9090))
}

/// Size limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Largest request head (request line and headers), in bytes; over it: 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most request headers; over it: 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Default largest request body, in bytes, for entry points that set none; over it: 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Most concurrent HTTP/2 streams per connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Most requests in flight over all entry points (SSE streams included); over it: 503.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most caller connections open at once over all entry points; a connection over it gets
    /// 503 and is closed. Each costs up to two file descriptors (the caller's and one to the
    /// upstream): the sidecar lowers this to what its descriptor limit allows, and says so.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most connections open at once from one caller address, so that one client cannot take
    /// them all. Behind an Ingress controller every caller comes from its pods: keep this
    /// above the controller's upstream keep-alive pool.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// Calls to identity providers per entry point (Phabricator's `user.whoami`, TokenReview,
    /// Conduit's `pha_user_whoami`): every credential not yet known costs one, so a stream of
    /// invented tokens would otherwise turn the sidecar into an amplifier.
    #[serde(default)]
    pub identity_lookups: IdentityLookups,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_body_bytes: default_max_body_bytes(),
            max_concurrent_streams: default_max_concurrent_streams(),
            max_in_flight: default_max_in_flight(),
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_connections_per_peer(),
            identity_lookups: IdentityLookups::default(),
        }
    }
}

fn default_max_header_bytes() -> usize {
    16 * 1024
}

fn default_max_headers() -> usize {
    100
}

fn default_max_body_bytes() -> u64 {
    1024 * 1024
}

fn default_max_concurrent_streams() -> u32 {
    256
}

fn default_max_in_flight() -> usize {
    10_000
}

fn default_max_connections() -> usize {
    10_000
}

fn default_max_connections_per_peer() -> usize {
    2_000
}

/// The bound on an entry point's calls to identity providers. A caller refused by it gets 503
/// with `Retry-After` (counted as `throttled`); credentials already known cost nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityLookups {
    /// Calls at once.
    #[serde(default = "default_lookups_concurrent")]
    pub concurrent: u32,
    /// Calls per second, on average.
    #[serde(default = "default_lookups_per_second")]
    pub per_second: u32,
    /// Calls allowed at once after a quiet spell.
    #[serde(default = "default_lookups_burst")]
    pub burst: u32,
}

impl Default for IdentityLookups {
    fn default() -> Self {
        Self {
            concurrent: default_lookups_concurrent(),
            per_second: default_lookups_per_second(),
            burst: default_lookups_burst(),
        }
    }
}

fn default_lookups_concurrent() -> u32 {
    32
}

fn default_lookups_per_second() -> u32 {
    50
}

fn default_lookups_burst() -> u32 {
    100
}

/// Timeouts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Time a caller has to send a complete request head (slowloris protection).
    #[serde(default = "default_header_read")]
    pub header_read: Duration,
    /// Time a caller has to send a complete request body.
    #[serde(default = "default_body_read")]
    pub body_read: Duration,
    /// Time to open a connection to the upstream; over it: 503.
    #[serde(default = "default_upstream_connect")]
    pub upstream_connect: Duration,
    /// Time from sending a request to the upstream's response head; over it: 504.
    #[serde(default = "default_upstream_first_byte")]
    pub upstream_first_byte: Duration,
    /// Idle time after which a caller's keep-alive connection is closed.
    #[serde(default = "default_idle")]
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: default_header_read(),
            body_read: default_body_read(),
            upstream_connect: default_upstream_connect(),
            upstream_first_byte: default_upstream_first_byte(),
            idle: default_idle(),
        }
    }
}

fn default_header_read() -> Duration {
    Duration::from_secs(10)
}

fn default_body_read() -> Duration {
    Duration::from_secs(30)
}

fn default_upstream_connect() -> Duration {
    Duration::from_secs(2)
}

fn default_upstream_first_byte() -> Duration {
    Duration::from_secs(120)
}

fn default_idle() -> Duration {
    Duration::from_secs(300)
}

/// Server-sent event streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Streaming {
    /// Send a `:` comment line on an SSE stream after this much upstream silence, so idle
    /// streams survive load balancers. Absent: never.
    #[serde(
        default = "default_keep_alive",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_alive: Option<Duration>,
}

impl Default for Streaming {
    fn default() -> Self {
        Self {
            keep_alive: default_keep_alive(),
        }
    }
}

fn default_keep_alive() -> Option<Duration> {
    Some(Duration::from_secs(15))
}

/// The deprecated HTTP+SSE transport of MCP 2024-11-05, served by the sidecar itself on every
/// entry point: `GET <prefix>/sse` opens a session whose first event names
/// `<prefix>/messages/?session_id=…`, where the client POSTs its messages. Each message goes
/// through the entry point's policy like any other and on to the upstream's Streamable HTTP
/// endpoint; answers travel back on the session's event stream. Sessions belong to the caller
/// who opened them and live in this sidecar only (with several replicas, legacy clients need
/// session affinity).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacySse {
    /// Serve the legacy transport. Off: `/sse` and `/messages/` go to the upstream like any
    /// other path.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Legacy sessions open at once in this sidecar, all entry points together.
    #[serde(default = "default_legacy_max_sessions")]
    pub max_sessions: usize,
    /// Legacy sessions one caller (identity, else address) may hold open at once.
    #[serde(default = "default_legacy_max_sessions_per_caller")]
    pub max_sessions_per_caller: usize,
    /// A session with no message either way for this long is ended (keep-alives do not count).
    #[serde(default = "default_legacy_idle_timeout")]
    pub idle_timeout: Duration,
}

impl Default for LegacySse {
    fn default() -> Self {
        Self {
            enabled: true,
            max_sessions: default_legacy_max_sessions(),
            max_sessions_per_caller: default_legacy_max_sessions_per_caller(),
            idle_timeout: default_legacy_idle_timeout(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_legacy_max_sessions() -> usize {
    512
}

fn default_legacy_max_sessions_per_caller() -> usize {
    32
}

fn default_legacy_idle_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

/// Graceful shutdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Shutdown {
    /// After SIGTERM, keep serving (with `/readyz` failing) this long so endpoints drain.
    #[serde(default = "default_drain_delay")]
    pub drain_delay: Duration,
    /// Then stop accepting and give requests and streams in flight this long to finish.
    #[serde(default = "default_grace_period")]
    pub grace_period: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            drain_delay: default_drain_delay(),
            grace_period: default_grace_period(),
        }
    }
}

fn default_drain_delay() -> Duration {
    Duration::from_secs(5)
}

fn default_grace_period() -> Duration {
    Duration::from_secs(20)
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    #[serde(default)]
    pub level: LogLevel,
    /// `json` (one object per line) or `text`.
    #[serde(default)]
    pub format: LogFormat,
    /// Where the audit trail (one event per `tools/call`) is written. Fixed at start, as the
    /// format is: a reload that changes it takes effect when the sidecar restarts.
    #[serde(default, skip_serializing_if = "AuditLog::is_default")]
    pub audit: AuditLog,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            format: LogFormat::Json,
            audit: AuditLog::default(),
        }
    }
}

/// The audit trail's sink. Either way each event carries `"stream":"audit"`, and the admin
/// listener serves them live as well (`GET /events`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditLog {
    /// `stdout`: among the other log lines, at `log.level` (the default); `file`: JSON lines
    /// appended to `path`, whatever `log.level` and `log.format` say, and not on stdout.
    #[serde(default)]
    pub sink: AuditSink,
    /// The file of `sink: file`: an absolute path, on a volume the sidecar may write. It is
    /// created when missing, also after it was moved away (rotated) or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

impl AuditLog {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Where audit events are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuditSink {
    #[default]
    Stdout,
    File,
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The level's name as tracing filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Log encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// Phabricator's Conduit API, as the sidecar calls it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhabricatorApi {
    /// The API base, ending in `/api/` (e.g. `https://phabricator.example.com/api/`).
    pub url: String,
    /// A PEM bundle of CAs to trust besides the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification (mirrors the server's insecure switch).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Time allowed for one API call.
    #[serde(default = "default_phabricator_timeout")]
    pub timeout: Duration,
}

impl PhabricatorApi {
    /// The API at `url` (ending in `/api/`), with the system roots and the default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            insecure_skip_verify: false,
            timeout: default_phabricator_timeout(),
        }
    }
}

fn default_phabricator_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Redis for global rate limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redis {
    /// `host:port` of a single Redis server. With `tls`, the host is the name the server's
    /// certificate must carry (a DNS name or an IP address SAN). Exactly one of `address` and
    /// `sentinel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Redis Sentinel: ask the sentinels where the master is, connect there, and ask again
    /// when the master fails over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<RedisSentinel>,
    /// TLS to Redis (`rediss://`): present means on. Without it the connection is plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTls>,
    /// A file holding the ACL username (Redis 6+ `AUTH username password`); needs
    /// `passwordFile`. Without it the password is for the `default` user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_file: Option<PathBuf>,
    /// A file holding the password. Re-read at every reconnect; never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// `open`: let requests through when Redis is down; `closed`: refuse them with 503.
    #[serde(default)]
    pub fail_mode: FailMode,
    /// Time allowed for one Redis round trip.
    #[serde(default = "default_redis_timeout")]
    pub timeout: Duration,
    /// Prefix of every key, so several servers can share one Redis.
    #[serde(default)]
    pub key_prefix: String,
}

impl Redis {
    /// Redis at `address` (`host:port`), without a password, failing open, default timeout,
    /// no key prefix.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: Some(address.into()),
            sentinel: None,
            tls: None,
            username_file: None,
            password_file: None,
            fail_mode: FailMode::default(),
            timeout: default_redis_timeout(),
            key_prefix: String::new(),
        }
    }
}

/// Redis Sentinel, for a master that fails over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisSentinel {
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> ...`).
    pub master_name: String,
    /// `host:port` of each sentinel, asked in this order. With `redis.tls` the sentinels are
    /// reached over TLS too, trusting the same CA, and the master's certificate must carry the
    /// address the sentinels announce (usually an IP address SAN).
    pub addresses: Vec<String>,
    /// A file holding the sentinels' own password (`requirepass` in sentinel.conf), if they
    /// have one. Re-read at every reconnect; never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// TLS to Redis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisTls {
    /// PEM CA certificates to trust for the server's certificate, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(250)
}

/// OpenTelemetry traces: one server span per request, exported in batches over OTLP/HTTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    /// Where spans are sent.
    pub otlp: Otlp,
    /// The share of traces the sidecar starts that are sampled, from 0 to 1. A caller's
    /// `traceparent` decides for its own trace (its sampled flag is followed).
    #[serde(default = "default_sampling_ratio")]
    pub sampling_ratio: f64,
    /// Resource attributes of every span (`service.name` defaults to `sluice-proxy`). The
    /// environment's `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` (e.g. the pod's name from
    /// the downward API) are added, and win.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub resource_attributes: std::collections::BTreeMap<String, String>,
}

fn default_sampling_ratio() -> f64 {
    1.0
}

/// An OTLP/HTTP (protobuf) endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Otlp {
    /// The traces URL, path included: `http://collector:4318/v1/traces`, or `https://`.
    pub endpoint: String,
    /// A directory (a mounted Secret) with one file per header sent with every export: the
    /// file name is the header's name, its content the value (e.g. `authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_dir: Option<PathBuf>,
    /// A PEM bundle of CAs to trust besides the system roots (`https://` endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Time allowed for one export; a collector that does not answer in it costs one batch.
    #[serde(default = "default_otlp_timeout")]
    pub timeout: Duration,
    /// Longest a finished span waits before its batch is sent.
    #[serde(default = "default_otlp_batch_delay")]
    pub batch_delay: Duration,
    /// Spans in one export at most.
    #[serde(default = "default_otlp_max_batch")]
    pub max_batch: usize,
    /// Spans waiting for export at most; beyond it new spans are dropped (and counted), never
    /// waited for.
    #[serde(default = "default_otlp_max_queue")]
    pub max_queue: usize,
}

impl Otlp {
    /// An endpoint with the default timeout and batching.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            headers_dir: None,
            ca_file: None,
            timeout: default_otlp_timeout(),
            batch_delay: default_otlp_batch_delay(),
            max_batch: default_otlp_max_batch(),
            max_queue: default_otlp_max_queue(),
        }
    }
}

fn default_otlp_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_otlp_batch_delay() -> Duration {
    Duration::from_secs(5)
}

fn default_otlp_max_batch() -> usize {
    512
}

fn default_otlp_max_queue() -> usize {
    2048
}

/// Behaviour when a dependency is down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailMode {
    #[default]
    Open,
    Closed,
}
