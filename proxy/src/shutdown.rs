//! Graceful shutdown: fail readiness, keep serving while endpoints drain, stop accepting, let
//! requests and streams in flight finish up to the grace period.

use std::sync::atomic::Ordering;

use sluice_proxy_config::Shutdown;

use crate::state::State;

/// Waits for SIGTERM (what Kubernetes sends) or SIGINT.
pub async fn signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => { r?; tracing::info!("SIGINT received") }
    }
    Ok(())
}

/// Runs the shutdown sequence; returns when every connection is done or the grace period is up.
pub async fn drain(state: &State, timing: &Shutdown) {
    state.draining.store(true, Ordering::Relaxed);
    tracing::info!(drain_delay = %timing.drain_delay, "readiness failing; still serving while endpoints drain");
    tokio::time::sleep(timing.drain_delay.get()).await;
    tracing::info!(grace_period = %timing.grace_period, "no longer accepting; finishing requests in flight");
    state.shutdown.send_replace(true);
    // Every accept loop and open connection holds a receiver and drops it when done.
    if tokio::time::timeout(timing.grace_period.get(), state.shutdown.closed())
        .await
        .is_err()
    {
        let left = state.shutdown.receiver_count();
        tracing::warn!(
            connections = left,
            "grace period over; cutting what is left"
        );
    }
}
