//! sluice-proxy: an MCP-aware reverse proxy in front of one upstream MCP server.
//!
//! A request's way through the proxy is the `stack` module; everything else serves it:
//! listeners and connections, the upstream pool, inspection, hot reload, metrics and shutdown;
//! beside it, in the background, the upstream check readiness follows.

mod access;
mod activity;
mod admin;
mod audit;
mod audit_events;
mod auth;
mod body;
mod client_address;
mod conn;
mod connections;
mod cors;
mod credentials;
mod discovery;
mod errors;
mod forward;
mod headers;
mod host;
mod in_flight;
mod inspect;
mod legacy;
mod limits;
mod listener;
mod log_format;
mod log_writer;
mod logging;
mod mcp_headers;
mod methods;
mod metrics;
mod origin;
mod policy;
mod prefix;
mod ratelimit;
mod reload;
mod request;
mod request_id;
mod shutdown;
mod sse;
mod stack;
mod state;
mod tls;
mod trace;
mod upstream_check;

pub use logging::init as init_logging;

/// What the fuzz targets (`fuzz/`) drive directly: the parsers and compilers of caller input
/// and config. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::discovery::Site;
    pub use crate::discovery::paths::{Route, Served, unambiguous};
    pub use crate::inspect::inspect;
    pub use crate::mcp_headers::check as check_mcp_headers;
    pub use crate::origin::Origins;
    pub use crate::policy::Policy;
    pub use crate::prefix::Prefix;
    pub use crate::request::Message;
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_proxy_config::ConfigError;

use crate::listener::Listeners;
use crate::reload::Reloader;
use crate::state::State;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is missing, unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `upstream.url` cannot be used.
    #[error(transparent)]
    Upstream(#[from] forward::BadUpstream),
    /// An entry point's certificate or key does not load.
    #[error("entry point {entry_point}: {error}")]
    Tls {
        entry_point: String,
        error: tls::TlsError,
    },
    /// A listener could not be opened.
    #[error("{0}")]
    Listen(String),
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to run the proxy.
#[derive(Clone, Debug)]
pub struct Options {
    /// The config file, re-read for changes.
    pub config_path: PathBuf,
    /// How often the config and certificate files are checked.
    pub reload_interval: Duration,
    /// Applies `log.level` changes on reload (see [`logging::init`]).
    pub log_level: Option<logging::LogLevelControl>,
}

/// A running proxy.
pub struct Proxy {
    state: Arc<State>,
    listeners: Arc<Listeners>,
    reload: tokio::task::JoinHandle<()>,
    upstream_check: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Loads the config, opens every listener and starts watching the config file. Must run
    /// inside a Tokio runtime.
    pub async fn start(options: Options) -> Result<Self> {
        let listeners = Arc::new(Listeners::default());
        let (reloader, state) =
            Reloader::start(options.config_path, listeners.clone(), options.log_level)?;
        let reload = tokio::spawn(reloader.run(options.reload_interval));
        let current = state.clone();
        let upstream_check = tokio::spawn(upstream_check::run(
            state.upstream_check.clone(),
            move || current.snapshot.load().config.clone(),
        ));
        Ok(Self {
            state,
            listeners,
            reload,
            upstream_check,
        })
    }

    /// The bound address of an entry point's listener (useful with port 0).
    pub fn entry_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.entry_addr(name)
    }

    /// The bound address of the admin listener.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.listeners.admin_addr()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully; a second signal cuts the
    /// grace short.
    pub async fn run(self) -> std::io::Result<()> {
        shutdown::signal().await?;
        tokio::select! {
            () = self.shutdown() => {}
            second = shutdown::signal() => {
                second?;
                tracing::warn!("second signal: exiting without waiting for requests in flight");
            }
        }
        Ok(())
    }

    /// Shuts down gracefully with the current config's drain delay and grace period.
    pub async fn shutdown(self) {
        self.reload.abort();
        let timing = self.state.snapshot.load().config.shutdown.clone();
        // The upstream check goes on while draining: Conduit's liveness probe asks it.
        shutdown::drain(&self.state, &timing).await;
        self.upstream_check.abort();
        // The spans of the last requests, sent while the pod's grace period lasts.
        if let Some(tracer) = &self.state.tracer {
            tracer.flush(Duration::from_secs(2)).await;
        }
    }
}
