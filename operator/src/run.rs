//! `sluice-operator run`: discovery, the admin endpoint, leader election and the controllers,
//! wired together; everything a test needs to run the operator in-process.

use std::sync::Arc;

use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Result;
use crate::admin::{self, AdminState};
use crate::controller::{self, Features, Options};
use crate::leader::{LeaderOptions, run_elected};
use crate::metrics::Metrics;

/// How to run the operator.
#[derive(Debug)]
pub struct RunOptions {
    /// The controllers' settings (`features` is filled in by discovery).
    pub controller: Options,
    /// Leader election; `None` runs the controllers at once (one replica only).
    pub leader: Option<LeaderOptions>,
    /// Where the admin endpoint listens; `None` runs without one.
    pub admin: Option<TcpListener>,
}

/// Runs the operator until `shutdown` turns true: asks discovery which optional kinds the
/// cluster serves, serves the admin endpoint, and runs the controllers while this instance
/// leads (or at once without election).
pub async fn run(
    client: Client,
    options: RunOptions,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let state = Arc::new(AdminState::new(metrics.clone()));
    let admin = options
        .admin
        .map(|listener| tokio::spawn(admin::serve(listener, state.clone(), shutdown.clone())));

    let mut controller_options = options.controller;
    controller_options.features = Features::discover(&client).await?;
    // Reached the API server: ready to lead or to stand by.
    state.set_ready(true);

    let outcome = match &options.leader {
        Some(leader) => {
            run_elected(client.clone(), leader, &metrics, shutdown.clone(), |stop| {
                controller::run(
                    client.clone(),
                    controller_options.clone(),
                    metrics.clone(),
                    stop,
                )
            })
            .await
        }
        None => {
            metrics.set_leader(true);
            let outcome = controller::run(
                client,
                controller_options,
                metrics.clone(),
                shutdown.clone(),
            )
            .await;
            metrics.set_leader(false);
            outcome
        }
    };
    state.set_ready(false);
    if let Some(admin) = admin {
        admin.abort();
    }
    outcome
}
