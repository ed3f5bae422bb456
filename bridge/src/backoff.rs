//! The pod-wide crash backoff, as the kubelet backs off a crashing container: each process that
//! exits unasked doubles the wait before the next start (from `initial` up to `max`), and a
//! crash long after the last one starts the count again. While the wait lasts the bridge starts
//! no process: a crashed session's restart waits for it, and new sessions are refused, so the
//! sidecar's MCP readiness check fails and the pod leaves the Service until the server answers
//! again.

use std::time::Duration;

use tokio::time::Instant;

/// After this long without a crash, the next one counts as the first.
const QUIET_RESETS: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    crashes_in_a_row: u32,
    last_crash: Option<Instant>,
    until: Option<Instant>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            crashes_in_a_row: 0,
            last_crash: None,
            until: None,
        }
    }

    /// Records a crash at `now`; returns how long starts now wait.
    pub fn crashed(&mut self, now: Instant) -> Duration {
        let quiet = self
            .last_crash
            .is_none_or(|last| now.saturating_duration_since(last) >= QUIET_RESETS);
        self.crashes_in_a_row = if quiet {
            1
        } else {
            self.crashes_in_a_row.saturating_add(1)
        };
        self.last_crash = Some(now);
        let doublings = self.crashes_in_a_row.saturating_sub(1).min(20);
        let wait = self.initial.saturating_mul(1 << doublings).min(self.max);
        self.until = Some(now + wait);
        wait
    }

    /// How long starts still wait at `now`; `None` once they may go.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until
            .map(|until| until.saturating_duration_since(now))
            .filter(|left| !left.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_max_and_reset_after_a_quiet_while() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(backoff.remaining(t0), None);
        assert_eq!(backoff.crashed(t0), Duration::from_secs(1));
        assert_eq!(
            backoff.remaining(t0 + Duration::from_millis(400)),
            Some(Duration::from_millis(600))
        );
        assert_eq!(backoff.remaining(t0 + Duration::from_secs(1)), None);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(backoff.crashed(t1), Duration::from_secs(2));
        assert_eq!(backoff.crashed(t1), Duration::from_secs(4));
        assert_eq!(backoff.crashed(t1), Duration::from_secs(5));
        let later = t1 + QUIET_RESETS;
        assert_eq!(backoff.crashed(later), Duration::from_secs(1));
    }
}
