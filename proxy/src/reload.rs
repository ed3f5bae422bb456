//! Hot reload of the config file and certificates.
//!
//! Kubernetes updates a mounted ConfigMap by swapping a `..data` symlink, which file watchers
//! on the file itself miss; so the file is re-read on an interval and its content compared. A
//! changed file is parsed and validated, then swapped in atomically: new requests get the new
//! entry points while requests in flight keep theirs. A bad file changes nothing but the
//! status: it is logged once, counted, and shown on `/readyz`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_proxy_config::{ConfigError, ProxyConfig};

use crate::Error;
use crate::forward::Upstream;
use crate::listener::{Desired, Listeners};
use crate::logging::LogLevelControl;
use crate::metrics::{ResultLabels, TlsLabels};
use crate::state::{Entry, Snapshot, State};
use crate::tls::{self, Loaded, TlsCache};

/// Watches the config file and applies its changes.
pub struct Reloader {
    path: PathBuf,
    state: Arc<State>,
    listeners: Arc<Listeners>,
    tls: TlsCache,
    log_level: Option<LogLevelControl>,
    /// Content hash of the file last looked at (applied or rejected).
    seen: u64,
}

impl Reloader {
    /// Loads the config at `path` and opens its listeners; any failure is fatal at start.
    pub fn start(
        path: PathBuf,
        listeners: Arc<Listeners>,
        log_level: Option<LogLevelControl>,
    ) -> Result<(Self, Arc<State>), Error> {
        let (config, seen) = read(&path)?;
        let config = Arc::new(config);
        let upstream = Arc::new(Upstream::new(&config)?);
        let state = Arc::new(State::new(Arc::new(Snapshot::new(
            config.clone(),
            upstream,
        ))));
        let mut reloader = Self {
            path,
            state: state.clone(),
            listeners,
            tls: TlsCache::default(),
            log_level,
            seen,
        };
        let errors = reloader.apply(config, true)?;
        if let Some(first) = errors.into_iter().next() {
            return Err(Error::Listen(first));
        }
        Ok((reloader, state))
    }

    /// Checks the files every `interval`, forever.
    pub async fn run(mut self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.tick();
        }
    }

    /// One look at the config file, the certificates and the Secrets authentication reads.
    pub fn tick(&mut self) {
        self.state.auth.refresh();
        let bytes = match read_capped(&self.path) {
            Ok(b) => b,
            Err(e) => {
                // Mid-swap or gone: keep serving; report once per distinct failure.
                self.reject(
                    tls::fingerprint(&[e.to_string().as_bytes()]),
                    &ConfigError::Read {
                        path: self.path.clone(),
                        message: e.to_string(),
                    },
                );
                return;
            }
        };
        let hash = tls::fingerprint(&[&bytes]);
        let current = self.state.snapshot.load().config.clone();
        if hash == self.seen {
            // Same config: only certificates may have changed.
            if let Err(e) = self.apply(current, false) {
                tracing::warn!(error = %e, "cannot apply changed certificates");
            }
            return;
        }
        let parsed = String::from_utf8(bytes)
            .map_err(|_| ConfigError::Parse("the file is not valid UTF-8".into()))
            .and_then(|text| ProxyConfig::from_yaml(&text));
        let config = match parsed {
            Ok(c) => c,
            Err(e) => return self.reject(hash, &e),
        };
        let level_changed = config.log.level != current.log.level;
        let audit_changed = config.log.audit != current.log.audit;
        match self.apply(Arc::new(config), false) {
            Ok(errors) => {
                self.seen = hash;
                if let (true, Some(control)) = (level_changed, &self.log_level) {
                    control.set(self.state.snapshot.load().config.log.level);
                }
                if audit_changed {
                    tracing::warn!(
                        "log.audit changed: audit events keep going where they went until the sidecar restarts"
                    );
                }
                let m = &self.state.metrics;
                m.config_reloads
                    .get_or_create(&ResultLabels { result: "applied" })
                    .inc();
                m.config_rejected.set(0);
                self.state.status().config_rejected = None;
                tracing::info!(path = %self.path.display(), listen_errors = errors.len(), "config reloaded");
            }
            Err(e) => self.reject(hash, &e),
        }
    }

    fn reject(&mut self, hash: u64, error: &dyn std::fmt::Display) {
        if hash == self.seen {
            return;
        }
        self.seen = hash;
        let m = &self.state.metrics;
        m.config_reloads
            .get_or_create(&ResultLabels { result: "rejected" })
            .inc();
        m.config_rejected.set(1);
        tracing::error!(path = %self.path.display(), error = %error, "config file rejected; the last good config stays in use");
        self.state.status().config_rejected = Some(error.to_string());
    }

    /// Builds a generation for `config` and makes it current. Certificates that fail to load
    /// keep their last good version; with none to keep, the config is refused.
    fn apply(&mut self, config: Arc<ProxyConfig>, initial: bool) -> Result<Vec<String>, Error> {
        let state = self.state.clone();
        let current = state.snapshot.load_full();
        let upstream = if current.upstream.serves(&config) {
            current.upstream.clone()
        } else {
            Arc::new(Upstream::new(&config)?)
        };
        let unchanged = !initial && Arc::ptr_eq(&current.config, &config);
        let mut tls_changed = false;
        let mut tls_errors = Vec::new();
        let mut acceptors = Vec::with_capacity(config.entry_points.len());
        for ep in &config.entry_points {
            let Some(paths) = &ep.tls else {
                acceptors.push(None);
                continue;
            };
            let name: Arc<str> = Arc::from(ep.name.as_str());
            let result = |r| TlsLabels {
                entry_point: name.clone(),
                result: r,
            };
            match self.tls.load(paths) {
                Loaded::Same(a) => acceptors.push(Some(a)),
                Loaded::Changed(a) => {
                    tls_changed = true;
                    if !initial {
                        state
                            .metrics
                            .tls_reloads
                            .get_or_create(&result("applied"))
                            .inc();
                        tracing::info!(entry_point = %ep.name, "certificate reloaded");
                    }
                    acceptors.push(Some(a));
                }
                Loaded::Broken { kept, error, new } => {
                    if new && !initial {
                        state
                            .metrics
                            .tls_reloads
                            .get_or_create(&result("rejected"))
                            .inc();
                        tracing::error!(entry_point = %ep.name, %error, "certificate rejected; the last good one stays in use");
                    }
                    let Some(kept) = kept else {
                        return Err(Error::Tls {
                            entry_point: ep.name.clone(),
                            error,
                        });
                    };
                    tls_errors.push(format!(
                        "entry point {}: certificate rejected: {error}",
                        ep.name
                    ));
                    acceptors.push(Some(kept));
                }
            }
        }
        let retry_listeners = {
            let mut status = state.status();
            status.tls_errors = tls_errors;
            !status.listen_errors.is_empty()
        };
        if unchanged && !tls_changed && !retry_listeners {
            return Ok(Vec::new());
        }
        let snapshot = Arc::new(Snapshot::new(config.clone(), upstream));
        let mut desired: Vec<Desired> = config
            .entry_points
            .iter()
            .zip(acceptors)
            .map(|(ep, tls)| {
                Desired::Entry(
                    Arc::new(Entry::new(
                        ep,
                        snapshot.clone(),
                        tls,
                        &state.metrics,
                        &state.auth,
                        &state.rate_limits,
                    )),
                    ep.listen,
                )
            })
            .collect();
        desired.push(Desired::Admin(config.admin.listen));
        state.snapshot.store(snapshot);
        let errors = self.listeners.reconcile(&state, desired);
        let mut status = state.status();
        for e in errors
            .iter()
            .filter(|e| !initial && !status.listen_errors.contains(e))
        {
            tracing::error!(error = %e, "listener not opened; retrying on every reload check");
        }
        status.listen_errors.clone_from(&errors);
        Ok(errors)
    }
}

fn read(path: &std::path::Path) -> Result<(ProxyConfig, u64), Error> {
    let bytes = read_capped(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let hash = tls::fingerprint(&[&bytes]);
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::Parse("the file is not valid UTF-8".into()))?;
    Ok((ProxyConfig::from_yaml(&text)?, hash))
}

/// Reads at most one byte more than any valid config holds, so a runaway file costs nothing
/// (the parser then refuses it as too large).
fn read_capped(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    let cap = sluice_proxy_config::MAX_CONFIG_BYTES as u64 + 1;
    std::fs::File::open(path)?
        .take(cap)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}
