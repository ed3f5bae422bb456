//! Leader election on a `coordination.k8s.io` Lease, so several replicas can run and only one
//! reconciles. Built on `kube-lease-manager`: the holder renews the Lease before it expires;
//! the others take it over once it has expired or been released.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::{Error, Result};

/// Where and how the Lease is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderOptions {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This instance's identity in the Lease (`holderIdentity`); unique per replica.
    pub identity: String,
    /// How long a Lease holds without renewal: how long a crashed leader blocks the others.
    pub duration: Duration,
    /// How long before expiry the holder renews.
    pub grace: Duration,
}

impl LeaderOptions {
    /// Checks what the lease manager would otherwise panic on: whole seconds, a grace period
    /// shorter than the lease.
    pub fn validate(&self) -> Result<(u64, u64)> {
        let duration = self.duration.as_secs();
        let grace = self.grace.as_secs();
        if grace == 0 || duration <= grace {
            return Err(Error::Option {
                option: "--lease-duration",
                message: format!(
                    "the lease ({duration}s) must be longer than its renewal grace ({grace}s), which must be at least 1s"
                ),
            });
        }
        Ok((duration, grace))
    }
}

/// Runs `lead` whenever this instance holds the Lease, until `shutdown` turns true.
///
/// `lead` gets a stop signal and must return soon after it turns true: that happens when the
/// Lease is lost (another instance may already be reconciling) or at shutdown. After a loss,
/// this instance waits to lead again. At shutdown the Lease is released, so a standby takes
/// over at once instead of after the lease duration.
pub async fn run_elected<F, Fut>(
    client: Client,
    options: &LeaderOptions,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
    mut lead: F,
) -> Result<()>
where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let (duration, grace) = options.validate()?;
    let lease = format!("{}/{}", options.namespace, options.lease_name);
    let failed = |error| Error::LeaderElection {
        lease: lease.clone(),
        error: Box::new(error),
    };
    let manager = LeaseManagerBuilder::new(client, &options.lease_name)
        .with_namespace(&options.namespace)
        .with_create_mode(LeaseCreateMode::AutoCreate)
        .with_identity(&options.identity)
        .with_duration(duration)
        .with_grace(grace)
        .build()
        .await
        .map_err(failed)?;
    let (mut leading, task) = manager.watch().await;
    tracing::info!(%lease, identity = %options.identity, "waiting to lead");
    let outcome = loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break Ok(()),
            changed = leading.wait_for(|leading| *leading) => {
                if changed.is_err() {
                    break Err(Error::Option {
                        option: "--leader-election",
                        message: format!("the lease manager of {lease} stopped"),
                    });
                }
            }
        }
        tracing::info!(%lease, identity = %options.identity, "leading");
        metrics.set_leader(true);
        let (stop, stopped) = watch::channel(false);
        let work = lead(stopped);
        tokio::pin!(work);
        let ended = tokio::select! {
            result = &mut work => Some(result),
            _ = leading.wait_for(|leading| !*leading) => {
                tracing::warn!(%lease, "lost the lease; stopping the controllers");
                None
            }
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        metrics.set_leader(false);
        let result = match ended {
            Some(result) => result,
            None => {
                let _ = stop.send(true);
                work.await
            }
        };
        if let Err(error) = result {
            break Err(error);
        }
        if *shutdown.borrow() {
            break Ok(());
        }
    };
    // Dropping the receiver makes the lease manager release the Lease and end.
    drop(leading);
    match task.await {
        Ok(Ok(_)) => tracing::info!(%lease, "released the lease"),
        Ok(Err(error)) => tracing::warn!(%lease, %error, "could not release the lease"),
        Err(error) => tracing::warn!(%lease, %error, "the lease manager failed"),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(duration: u64, grace: u64) -> LeaderOptions {
        LeaderOptions {
            lease_name: "sluice-operator".into(),
            namespace: "sluice-system".into(),
            identity: "a".into(),
            duration: Duration::from_secs(duration),
            grace: Duration::from_secs(grace),
        }
    }

    #[test]
    fn grace_must_be_shorter_than_the_lease_and_not_zero() {
        assert_eq!(options(15, 5).validate().unwrap(), (15, 5));
        assert!(options(5, 5).validate().is_err());
        assert!(options(5, 0).validate().is_err());
        assert!(options(0, 0).validate().is_err());
    }
}
