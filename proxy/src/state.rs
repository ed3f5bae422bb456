//! What the proxy knows: process-wide state, and per config generation a snapshot and one
//! compiled entry point per listener. A request holds the `Arc<Entry>` it started with, so a
//! reload never changes the rules under a request in flight.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_proxy_config::{EntryPoint, ProxyConfig};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::conn::Timers;
use crate::discovery::Discovery;
use crate::forward::{Forwarding, Upstream};
use crate::in_flight::InFlight;
use crate::metrics::{EntryLabels, Metrics, UpstreamErrorLabels};
use crate::origin::Origins;
use crate::policy::Policy;
use crate::prefix::Prefix;
use crate::upstream_check::UpstreamCheck;

/// Process-wide state.
#[derive(Debug)]
pub struct State {
    pub registry: Registry,
    pub metrics: Metrics,
    pub in_flight: Arc<InFlight>,
    /// The caller connections open, bounded in all and per address.
    pub connections: Arc<crate::connections::Connections>,
    /// The config generation new connections and the admin listener use.
    pub snapshot: ArcSwap<Snapshot>,
    /// Set on SIGTERM: `/readyz` fails from then on.
    pub draining: AtomicBool,
    /// Turns true when listeners must stop accepting and connections close gracefully; its
    /// receivers are the accept loops and connections still open.
    pub shutdown: watch::Sender<bool>,
    /// What `/readyz` reports besides the upstream.
    pub status: Mutex<Status>,
    /// Whether the upstream answers MCP, as the background check last found.
    pub upstream_check: Arc<UpstreamCheck>,
    /// Authentication caches, clients and Secrets kept across config generations.
    pub auth: crate::auth::Store,
    /// Rate-limit budgets and the Redis client, kept across config generations.
    pub rate_limits: crate::ratelimit::Kept,
    /// Sessions of the legacy HTTP+SSE transport, kept across config generations.
    pub legacy: Arc<crate::legacy::Sessions>,
    /// The readers of the admin listener's `/events`, kept across config generations.
    pub audit_events: crate::audit_events::AuditEvents,
    /// Where requests without a well-formed id of their own get one.
    pub request_ids: crate::request_id::RequestIds,
    /// Makes request spans and exports them (config `tracing`, fixed at start).
    pub tracer: Option<sluice_otlp::Tracer>,
}

/// Problems that do not take the pod out of service but must be visible.
#[derive(Debug, Default)]
pub struct Status {
    /// Why the config file on disk is not in use (the last good one is).
    pub config_rejected: Option<String>,
    /// Listeners that could not be opened.
    pub listen_errors: Vec<String>,
    /// Certificates that do not load (the last good ones are in use).
    pub tls_errors: Vec<String>,
}

impl State {
    /// State for a first, valid config.
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let nofile = crate::connections::descriptor_limit();
        let connections =
            crate::connections::Connections::new(metrics.open_connections.clone(), nofile);
        let configured = snapshot.config.limits.max_connections;
        if connections.max(configured) < configured {
            tracing::warn!(
                descriptors = nofile,
                max_connections = connections.max(configured),
                configured,
                "the file-descriptor limit allows fewer connections than limits.maxConnections (two descriptors each): raise the limit or lower the setting"
            );
        }
        let upstream = &snapshot.config.upstream;
        let upstream_check = Arc::new(UpstreamCheck::new(
            &metrics,
            &upstream.url,
            &upstream.mcp_path,
        ));
        let legacy = Arc::new(crate::legacy::Sessions::new(&metrics));
        let audit_events =
            crate::audit_events::AuditEvents::new(metrics.audit_events_dropped.clone());
        let tracer = snapshot
            .config
            .tracing
            .as_ref()
            .and_then(|config| crate::trace::tracer(config, metrics.trace.clone()));
        Self {
            tracer,
            legacy,
            audit_events,
            request_ids: crate::request_id::RequestIds::default(),
            registry,
            metrics,
            in_flight: Arc::default(),
            connections: Arc::new(connections),
            snapshot: ArcSwap::new(snapshot),
            draining: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            status: Mutex::default(),
            upstream_check,
            auth: crate::auth::Store::default(),
            rate_limits: crate::ratelimit::Kept::default(),
        }
    }

    /// Locks the status; a panic elsewhere must not take readiness reporting down with it.
    pub fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One config generation.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<ProxyConfig>,
    pub upstream: Arc<Upstream>,
    /// Connection settings (limits, h2 streams) for connections accepted under this config.
    pub http: auto::Builder<TokioExecutor>,
    pub timers: Timers,
}

impl Snapshot {
    /// A generation for `config`, with `upstream` built for it (or kept from the last one).
    pub fn new(config: Arc<ProxyConfig>, upstream: Arc<Upstream>) -> Self {
        let limits = &config.limits;
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .keep_alive(true)
            .half_close(false)
            .max_headers(limits.max_headers)
            // hyper refuses heads over its buffer with 431 before we see them; it needs 8 KiB.
            .max_buf_size(limits.max_header_bytes.max(8192))
            .timer(TokioTimer::new())
            // conn.rs runs the head timer itself (see there why).
            .header_read_timeout(None);
        http.http2()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .timer(TokioTimer::new());
        let timers = Timers {
            header_read: config.timeouts.header_read.get(),
            idle: config.timeouts.idle.get(),
        };
        Self {
            config,
            upstream,
            http,
            timers,
        }
    }
}

/// An entry point compiled for the request path.
pub struct Entry {
    pub name: Arc<str>,
    pub origins: Origins,
    pub max_body: u64,
    pub tls: Option<TlsAcceptor>,
    pub in_flight: Gauge,
    /// Where requests go and how answers come back.
    pub forwarding: Forwarding,
    /// OAuth discovery documents and challenges.
    pub discovery: Discovery,
    /// Tool, resource and prompt policy.
    pub policy: Arc<Policy>,
    /// Rate limits.
    pub rate_limits: crate::ratelimit::RateLimits,
    /// How callers authenticate.
    pub auth: crate::auth::Authenticator,
    /// What the upstream gets in place of the caller's credentials.
    pub credentials: crate::credentials::UpstreamCredentials,
    /// Whose word on the caller's address is believed.
    pub trusted_proxies: crate::client_address::TrustedProxies,
    pub snapshot: Arc<Snapshot>,
}

impl Entry {
    /// Compiles `ep` for `snapshot`.
    pub fn new(
        ep: &EntryPoint,
        snapshot: Arc<Snapshot>,
        tls: Option<TlsAcceptor>,
        metrics: &Metrics,
        auth: &crate::auth::Store,
        rate_limits: &crate::ratelimit::Kept,
    ) -> Self {
        let public = ep
            .public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok());
        let scheme = match &public {
            Some(u) => u.scheme().to_owned(),
            None if tls.is_some() => "https".into(),
            None => "http".into(),
        };
        let public_authority = public
            .as_ref()
            .map(|u| u[url::Position::BeforeHost..url::Position::AfterPort].to_owned());
        let name: Arc<str> = Arc::from(ep.name.as_str());
        let labels = EntryLabels {
            entry_point: name.clone(),
        };
        let config = &snapshot.config;
        let forwarding = Forwarding {
            upstream: snapshot.upstream.clone(),
            prefix: Prefix::new(&ep.path_prefix),
            proto: if scheme == "https" {
                HeaderValue::from_static("https")
            } else {
                HeaderValue::from_static("http")
            },
            public_host: public_authority
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok()),
            public_base: public_authority.map(|a| format!("{scheme}://{a}").into()),
            keep_alive: config.streaming.keep_alive.map(|d| d.get()),
            streams: metrics.open_streams.get_or_create(&labels).clone(),
            broken_bodies: metrics
                .upstream_errors
                .get_or_create(&UpstreamErrorLabels {
                    entry_point: name.clone(),
                    kind: "body",
                })
                .clone(),
        };
        Self {
            origins: Origins::new(ep.public_url.as_deref(), &ep.allowed_origins),
            max_body: ep.max_body_bytes.unwrap_or(config.limits.max_body_bytes),
            tls,
            in_flight: metrics.in_flight.get_or_create(&labels).clone(),
            discovery: Discovery::new(
                ep,
                snapshot.upstream.clone(),
                config.timeouts.upstream_first_byte.get(),
            ),
            forwarding,
            policy: Arc::new(Policy::new(name.clone(), &ep.tools)),
            rate_limits: crate::ratelimit::RateLimits::new(ep, config, metrics, rate_limits),
            auth: crate::auth::Authenticator::new(ep, config, &name, metrics, auth),
            credentials: crate::credentials::UpstreamCredentials::new(ep, auth),
            trusted_proxies: crate::client_address::TrustedProxies::new(&ep.trusted_proxies),
            name,
            snapshot,
        }
    }
}
