//! What a caller connection is doing, shared by its reader, its requests and its timer: busy
//! with requests, quiet since when, owing a request head since when. conn.rs runs the timers
//! from it; connections.rs picks the quietest connection to give its place up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const NONE: u64 = u64::MAX;

/// What a connection is doing, shared by its reader, its requests and its timer.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    busy: AtomicUsize,
    /// Milliseconds since `epoch` when the connection last went quiet.
    idle_since: AtomicU64,
    /// When the first byte of a request head arrived (`NONE`: not reading a head).
    head_since: AtomicU64,
    /// Bytes arrived while busy: maybe the start of a pipelined request.
    read_while_busy: AtomicBool,
    /// h2 multiplexes and pings: once it has carried a request, only the idle timer applies.
    pub(crate) h2: AtomicBool,
    /// A request has begun on the connection.
    began: AtomicBool,
}

/// Marks a connection busy while a request is served (held by the response body).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Activity {
    /// A fresh connection: it owes a request head from now on.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            read_while_busy: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            began: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    pub(crate) fn on_read(&self) {
        if self.busy.load(Ordering::Relaxed) > 0 {
            self.read_while_busy.store(true, Ordering::Relaxed);
        } else if self.head_since.load(Ordering::Relaxed) == NONE {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// Since when the connection has carried no request (`None` while it carries one): since
    /// it was accepted, if it never has.
    pub fn quiet_since(&self) -> Option<Instant> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let quiet = self.idle_since.load(Ordering::Relaxed);
        Some(self.epoch + Duration::from_millis(quiet))
    }

    /// A request head has arrived: the connection is busy until the guard drops.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.began.store(true, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        self.read_while_busy.store(false, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// What the timer should do now.
    pub(crate) fn verdict(&self, header_read: Duration, idle: Duration) -> Verdict {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Verdict::Wait(idle);
        }
        let now = self.now();
        let mut wait = Duration::MAX;
        let head = self.head_since.load(Ordering::Relaxed);
        // An h2 connection owes its first request within the head time too (one that only
        // sent the preface would otherwise hold its place until the idle time); after that its
        // pings and window updates are no request heads.
        let head_timer = !self.h2.load(Ordering::Relaxed) || !self.began.load(Ordering::Relaxed);
        if head != NONE && head_timer {
            let waited = Duration::from_millis(now.saturating_sub(head));
            match header_read.checked_sub(waited) {
                Some(left) if !left.is_zero() => wait = left,
                _ => return Verdict::HeadTimeout,
            }
        }
        let quiet =
            Duration::from_millis(now.saturating_sub(self.idle_since.load(Ordering::Relaxed)));
        match idle.checked_sub(quiet) {
            Some(left) if !left.is_zero() => Verdict::Wait(wait.min(left)),
            _ => Verdict::Idle,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        if a.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            let now = a.now();
            a.idle_since.store(now, Ordering::Relaxed);
            if a.read_while_busy.swap(false, Ordering::Relaxed) {
                a.head_since.store(now, Ordering::Relaxed);
            }
        }
    }
}

pub(crate) enum Verdict {
    Wait(Duration),
    HeadTimeout,
    Idle,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(300);
    const SECOND: Duration = Duration::from_secs(1);

    fn waits(a: &Activity) -> Option<Duration> {
        match a.verdict(HEAD, IDLE) {
            Verdict::Wait(d) => Some(d),
            _ => None,
        }
    }

    fn head_timed_out(a: &Activity) -> bool {
        matches!(a.verdict(HEAD, IDLE), Verdict::HeadTimeout)
    }

    fn idle(a: &Activity) -> bool {
        matches!(a.verdict(HEAD, IDLE), Verdict::Idle)
    }

    // Paused time: tokio's clock moves only when the test advances it.

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_owes_a_head_within_the_head_time() {
        let a = Activity::new();
        tokio::time::advance(HEAD - SECOND).await;
        assert_eq!(waits(&a), Some(SECOND));
        tokio::time::advance(SECOND).await;
        assert!(head_timed_out(&a));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_owes_nothing_and_a_quiet_one_lasts_the_idle_time() {
        let a = Activity::new();
        let busy = a.begin();
        tokio::time::advance(IDLE * 2).await;
        assert_eq!(waits(&a), Some(IDLE), "a request in progress keeps it");
        assert_eq!(a.quiet_since(), None);
        drop(busy);
        let quiet = a.quiet_since().expect("quiet");
        // Between requests only the idle timer runs: past the head time, it is kept.
        tokio::time::advance(HEAD * 2).await;
        assert_eq!(waits(&a), Some(IDLE - HEAD * 2));
        tokio::time::advance(IDLE - HEAD * 2).await;
        assert!(idle(&a));
        assert_eq!(quiet.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_a_new_request_starts_the_head_timer() {
        let a = Activity::new();
        drop(a.begin());
        tokio::time::advance(IDLE / 2).await;
        a.on_read();
        assert_eq!(waits(&a), Some(HEAD));
        tokio::time::advance(HEAD).await;
        assert!(
            head_timed_out(&a),
            "a slow head is not saved by the idle time left"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_h2_connection_owes_its_first_request_in_time_then_only_the_idle_timer_runs() {
        let a = Activity::new();
        a.h2.store(true, Ordering::Relaxed);
        a.on_read(); // the preface and SETTINGS
        tokio::time::advance(HEAD).await;
        assert!(head_timed_out(&a));
        let a = Activity::new();
        a.h2.store(true, Ordering::Relaxed);
        a.on_read();
        drop(a.begin());
        a.on_read(); // a PING
        tokio::time::advance(HEAD).await;
        assert_eq!(waits(&a), Some(IDLE - HEAD));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_read_while_busy_start_the_head_timer_when_the_request_ends() {
        let a = Activity::new();
        let busy = a.begin();
        a.on_read(); // a pipelined request's first bytes
        tokio::time::advance(HEAD * 3).await;
        drop(busy);
        assert_eq!(waits(&a), Some(HEAD));
        tokio::time::advance(HEAD).await;
        assert!(head_timed_out(&a));
    }
}
