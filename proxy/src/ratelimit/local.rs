//! Per-pod budgets: governor's keyed GCRA limiter over the bounded store, with keys whose
//! budget is full again forgotten periodically.

use std::num::NonZeroU32;
use std::sync::Weak;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::{Quota, RateLimiter};

use super::Key;
use super::store::BoundedStore;

/// Most keys one rule keeps per pod (see [`BoundedStore`]).
pub const MAX_KEYS: usize = 65_536;

/// How often keys whose budget is full again are dropped.
pub const RETAIN_EVERY: Duration = Duration::from_secs(30);

/// GCRA parameters: one request every `emission` on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    pub emission: Duration,
    pub burst: NonZeroU32,
}

impl Gcra {
    /// `requests` per `period` with bursts of `burst` (absent: `requests`).
    pub fn new(requests: u32, period: Duration, burst: Option<u32>) -> Self {
        let requests = requests.max(1);
        Self {
            emission: (period / requests).max(Duration::from_nanos(1)),
            burst: NonZeroU32::new(burst.unwrap_or(requests)).unwrap_or(NonZeroU32::MIN),
        }
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.emission)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(self.burst)
    }
}

type Limiter<C> = RateLimiter<Key, BoundedStore<Key>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One rule's per-pod budgets.
#[derive(Debug)]
pub struct Local<C: Clock = MonotonicClock> {
    limiter: Limiter<C>,
}

impl Local<MonotonicClock> {
    pub fn new(gcra: Gcra) -> Self {
        Self::with_clock(gcra, MonotonicClock)
    }
}

impl<C: Clock> Local<C> {
    /// Budgets measured by `clock` (tests use governor's fake clock).
    pub fn with_clock(gcra: Gcra, clock: C) -> Self {
        Self {
            limiter: RateLimiter::new(gcra.quota(), BoundedStore::new(MAX_KEYS), clock),
        }
    }

    /// Takes one request from `key`'s budget, or says how long until one would be admitted.
    pub fn check(&self, key: &Key) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Forgets keys whose budget is full again.
    pub fn retain(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// Drops idle keys every [`RETAIN_EVERY`] until the limiter is gone.
pub async fn retain_periodically<C: Clock>(local: Weak<Local<C>>)
where
    C::Instant: Reference,
{
    let mut ticks = tokio::time::interval(RETAIN_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(local) = local.upgrade() else {
            return;
        };
        local.retain();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn key(identity: &str) -> Key {
        Key {
            identity: Some(Arc::from(identity)),
            ..Key::default()
        }
    }

    #[test]
    fn exact_counts_and_waits_with_a_fake_clock() {
        let clock = FakeRelativeClock::default();
        // 3 per minute: one every 20 s, bursts of 3.
        let local = Local::with_clock(Gcra::new(3, Duration::from_secs(60), None), clock.clone());
        let alice = key("alice");
        for _ in 0..3 {
            assert_eq!(local.check(&alice), Ok(()));
        }
        assert_eq!(local.check(&alice), Err(Duration::from_secs(20)));
        // Another key has its own budget.
        assert_eq!(local.check(&key("bob")), Ok(()));
        clock.advance(Duration::from_secs(15));
        assert_eq!(local.check(&alice), Err(Duration::from_secs(5)));
        clock.advance(Duration::from_secs(5));
        assert_eq!(local.check(&alice), Ok(()));
        assert_eq!(local.check(&alice), Err(Duration::from_secs(20)));
    }

    #[test]
    fn burst_is_separate_from_the_rate() {
        let clock = FakeRelativeClock::default();
        let local = Local::with_clock(
            Gcra::new(10, Duration::from_secs(10), Some(2)),
            clock.clone(),
        );
        let k = Key::default();
        assert_eq!(local.check(&k), Ok(()));
        assert_eq!(local.check(&k), Ok(()));
        assert_eq!(local.check(&k), Err(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(local.check(&k), Ok(()));
    }

    #[test]
    fn idle_keys_are_forgotten_and_the_store_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let local = Local::with_clock(Gcra::new(1, Duration::from_secs(1), None), clock.clone());
        for i in 0..2 * MAX_KEYS {
            let _ = local.check(&key(&i.to_string()));
        }
        assert!(local.len() <= MAX_KEYS, "{}", local.len());
        // Keys beyond the bound share their shard's overflow budget, long spent.
        let (a, b) = (key("overflow-a"), key("overflow-b"));
        assert!(local.check(&a).is_err());
        assert!(local.check(&b).is_err());
        clock.advance(Duration::from_secs(5));
        local.retain();
        assert!(local.is_empty());
        assert_eq!(local.check(&a), Ok(()));
    }
}
