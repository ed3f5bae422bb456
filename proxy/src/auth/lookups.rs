//! The bound on an entry point's calls to identity providers (Phabricator's `user.whoami`, the
//! API server's TokenReview, Conduit's `pha_user_whoami`). Every credential the sidecar does not
//! know yet costs one call, so without a bound a stream of invented tokens turns the sidecar
//! into an amplifier against the provider. A call needs a place among `concurrent` and one of
//! `perSecond` (bursts of `burst`); without one the caller is refused at once (503 with
//! `Retry-After`), counted as `throttled`. Known credentials cost nothing.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sluice_proxy_config::IdentityLookups;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bound of one entry point.
#[derive(Debug)]
pub struct Lookups {
    places: Arc<Semaphore>,
    rate: DefaultDirectRateLimiter,
}

/// A call may go ahead while this is held.
#[derive(Debug)]
pub struct Admitted(#[allow(dead_code, reason = "held, not read")] OwnedSemaphorePermit);

/// The bound is reached: the caller is refused for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many credentials are being verified right now; retry later")]
pub struct Throttled;

impl Lookups {
    pub fn new(settings: &IdentityLookups) -> Self {
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota =
            Quota::per_second(nonzero(settings.per_second)).allow_burst(nonzero(settings.burst));
        Self {
            places: Arc::new(Semaphore::new(settings.concurrent.max(1) as usize)),
            rate: RateLimiter::direct(quota),
        }
    }

    /// A place for one call, or [`Throttled`].
    pub fn admit(&self) -> Result<Admitted, Throttled> {
        let place = self
            .places
            .clone()
            .try_acquire_owned()
            .map_err(|_| Throttled)?;
        self.rate.check().map_err(|_| Throttled)?;
        Ok(Admitted(place))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_bounded_at_once_and_per_second() {
        let lookups = Lookups::new(&IdentityLookups {
            concurrent: 2,
            per_second: 1,
            burst: 3,
        });
        let a = lookups.admit().unwrap();
        let b = lookups.admit().unwrap();
        assert_eq!(lookups.admit().unwrap_err(), Throttled, "two at once");
        drop(a);
        drop(b);
        assert!(lookups.admit().is_ok(), "the third of the burst");
        assert_eq!(
            lookups.admit().unwrap_err(),
            Throttled,
            "the burst is spent"
        );
    }
}
