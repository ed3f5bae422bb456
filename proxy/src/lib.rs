//! sluice-proxy: an MCP-aware reverse proxy in front of one upstream MCP server.
//!
//! A request's way through the proxy is [`stack`]; everything else serves it: listeners and
//! connections, the upstream pool, inspection, hot reload, metrics and shutdown.

pub mod access;
pub mod activity;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod conn;
pub mod connections;
pub mod cors;
pub mod credentials;
pub mod discovery;
pub mod errors;
pub mod forward;
pub mod headers;
pub mod host;
pub mod in_flight;
pub mod inspect;
pub mod limits;
pub mod listener;
pub mod log_format;
pub mod log_writer;
pub mod logging;
pub mod mcp_headers;
pub mod methods;
pub mod metrics;
pub mod origin;
pub mod policy;
pub mod prefix;
pub mod ratelimit;
pub mod reload;
pub mod request;
pub mod shutdown;
pub mod sse;
pub mod stack;
pub mod state;
pub mod tls;

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
}

impl Proxy {
    /// Loads the config, opens every listener and starts watching the config file. Must run
    /// inside a Tokio runtime.
    pub async fn start(options: Options) -> Result<Self> {
        let listeners = Arc::new(Listeners::default());
        let (reloader, state) =
            Reloader::start(options.config_path, listeners.clone(), options.log_level)?;
        let reload = tokio::spawn(reloader.run(options.reload_interval));
        Ok(Self {
            state,
            listeners,
            reload,
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
        shutdown::drain(&self.state, &timing).await;
    }
}
