//! Connection admission: at most `limits.maxConnections` caller connections at once over every
//! entry point (lowered to what the process's file-descriptor limit allows), and at most
//! `limits.maxConnectionsPerPeer` from one address, so one client cannot take them all. When
//! every place is taken, the connection that has been quiet longest among those of the address
//! holding the most gives its place up (it is closed gracefully: it carries no request), so
//! callers holding idle connections from many addresses cannot lock a new caller out. A
//! connection over the per-address limit, or arriving when no connection is quiet, is answered
//! 503 (plain HTTP; a TLS listener just closes it) and closed at once, before anything else is
//! read. The admin listener is not counted: probes must get through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::activity::Activity;

/// Descriptors kept for everything that is not a caller connection (listeners, config and
/// Secret files, the log, Redis and identity providers).
const RESERVED_DESCRIPTORS: u64 = 64;

/// What a caller over a limit reads before its connection closes.
pub const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 98\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":\"too many connections; retry later\"}}\n";

/// The open caller connections.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    /// Every connection holding a place, for choosing one to give its place up.
    held: Mutex<HashMap<u64, Held>>,
    next_id: AtomicU64,
    /// The most the descriptor limit allows, if it is known.
    descriptor_cap: Option<usize>,
    gauge: Gauge,
}

#[derive(Debug)]
struct Held {
    peer: IpAddr,
    activity: Arc<Activity>,
    evict: watch::Sender<bool>,
}

/// Why a connection was refused; also the `reason` label of
/// `sluice_connections_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// Every connection the process may hold is taken.
    Total,
    /// The caller's address holds its share.
    Peer,
}

impl Over {
    pub fn label(self) -> &'static str {
        match self {
            Over::Total => "total",
            Over::Peer => "per_peer",
        }
    }
}

/// A connection's place; given back when dropped.
#[derive(Debug)]
pub struct Place {
    connections: Arc<Connections>,
    peer: IpAddr,
    id: u64,
    /// Turns true when the connection must give its place up.
    pub evicted: watch::Receiver<bool>,
}

impl Connections {
    /// Connections counted in `gauge`, capped by the descriptor limit `nofile` (the soft
    /// `RLIMIT_NOFILE`) when it is known: each connection may take two descriptors, the
    /// caller's and one to the upstream.
    pub fn new(gauge: Gauge, nofile: Option<u64>) -> Self {
        let descriptor_cap = nofile.map(|n| {
            usize::try_from(n.saturating_sub(RESERVED_DESCRIPTORS) / 2)
                .unwrap_or(usize::MAX)
                .max(1)
        });
        Self {
            open: AtomicUsize::new(0),
            per_peer: Mutex::default(),
            held: Mutex::default(),
            next_id: AtomicU64::new(0),
            descriptor_cap,
            gauge,
        }
    }

    /// The most connections the process takes: `configured`, or fewer if descriptors run out
    /// first.
    pub fn max(&self, configured: usize) -> usize {
        self.descriptor_cap
            .map_or(configured, |cap| cap.min(configured))
    }

    /// A place for a connection from `peer` whose activity is `activity`, under `max` in all
    /// and `max_per_peer` from one address; at `max`, a quiet connection gives its place up.
    pub fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        activity: &Arc<Activity>,
        max: usize,
        max_per_peer: usize,
    ) -> Result<Place, Over> {
        let peer = canonical(peer);
        let max = self.max(max);
        {
            let mut per_peer = self.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
            let held = per_peer.entry(peer).or_insert(0);
            if *held >= max_per_peer {
                return Err(Over::Peer);
            }
            if self.open.load(Ordering::Acquire) >= max && !self.evict_one(&per_peer) {
                return Err(Over::Total);
            }
            *per_peer.entry(peer).or_insert(0) += 1;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        self.gauge.inc();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (evict, evicted) = watch::channel(false);
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                Held {
                    peer,
                    activity: activity.clone(),
                    evict,
                },
            );
        Ok(Place {
            connections: self.clone(),
            peer,
            id,
            evicted,
        })
    }

    /// Asks the quiet connection of the address holding the most connections that has been
    /// quiet longest to give its place up; `false` when every connection carries a request.
    /// The place counts as free at once: the connection closes as soon as it sees the request.
    fn evict_one(&self, per_peer: &HashMap<IpAddr, usize>) -> bool {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let victim = held
            .iter()
            .filter(|(_, h)| !*h.evict.borrow())
            .filter_map(|(id, h)| Some((*id, h.activity.quiet_since()?, h.peer)))
            .min_by_key(|(_, quiet, peer)| {
                (
                    std::cmp::Reverse(per_peer.get(peer).copied().unwrap_or(0)),
                    *quiet,
                )
            });
        let Some((id, _, _)) = victim else {
            return false;
        };
        if let Some(h) = held.get_mut(&id) {
            h.evict.send_replace(true);
        }
        // Counted out now, so the new connection's place is not taken twice.
        self.open.fetch_sub(1, Ordering::AcqRel);
        true
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let c = &self.connections;
        let mut per_peer = c.per_peer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = per_peer.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                per_peer.remove(&self.peer);
            }
        }
        let held = c
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        drop(per_peer);
        // An evicted connection was counted out when it was asked to go.
        if !held.is_some_and(|h| *h.evict.borrow()) {
            c.open.fetch_sub(1, Ordering::AcqRel);
        }
        c.gauge.dec();
    }
}

/// An IPv4 address however it arrived (a dual-stack socket shows it as `::ffff:a.b.c.d`), so
/// one client is one peer.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The soft `RLIMIT_NOFILE` of this process, read from `/proc/self/limits` (Linux); `None`
/// where that cannot be read or says `unlimited`.
pub fn descriptor_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_nofile(&limits)
}

fn parse_nofile(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A connection carrying a request: never asked to give its place up.
    fn busy() -> (Arc<Activity>, crate::activity::Busy) {
        let activity = Activity::new();
        let busy = activity.begin();
        (activity, busy)
    }

    #[test]
    fn places_are_bounded_in_all_and_per_address_and_given_back() {
        let c = Arc::new(Connections::new(Gauge::default(), None));
        let (a, _a_busy) = busy();
        let a1 = c.admit(ip("10.0.0.1"), &a, 3, 2).unwrap();
        let _a2 = c.admit(ip("::ffff:10.0.0.1"), &a, 3, 2).unwrap();
        assert_eq!(c.admit(ip("10.0.0.1"), &a, 3, 2).unwrap_err(), Over::Peer);
        let _b1 = c.admit(ip("10.0.0.2"), &a, 3, 2).unwrap();
        assert_eq!(c.admit(ip("10.0.0.3"), &a, 3, 2).unwrap_err(), Over::Total);
        drop(a1);
        let _a3 = c.admit(ip("10.0.0.1"), &a, 3, 2).unwrap();
        assert_eq!(c.gauge.get(), 3);
    }

    #[test]
    fn when_full_the_quietest_connection_of_the_biggest_holder_gives_way() {
        let c = Arc::new(Connections::new(Gauge::default(), None));
        let (carrying, _busy) = busy();
        let quiet = Activity::new();
        // 10.0.0.1 holds two quiet connections, 10.0.0.2 one quiet and 10.0.0.3 a busy one.
        let first = c.admit(ip("10.0.0.1"), &quiet, 4, 4).unwrap();
        let second = c.admit(ip("10.0.0.1"), &Activity::new(), 4, 4).unwrap();
        let other = c.admit(ip("10.0.0.2"), &Activity::new(), 4, 4).unwrap();
        let _working = c.admit(ip("10.0.0.3"), &carrying, 4, 4).unwrap();
        let newcomer = c.admit(ip("10.0.0.4"), &Activity::new(), 4, 4).unwrap();
        // The oldest quiet connection of the biggest holder was asked to go; nobody else.
        assert!(*first.evicted.borrow());
        assert!(!*second.evicted.borrow() && !*other.evicted.borrow());
        assert!(!*newcomer.evicted.borrow());
        // Its closing does not free a second place.
        drop(first);
        let _again = c.admit(ip("10.0.0.5"), &Activity::new(), 4, 4).unwrap();
        assert!(*second.evicted.borrow());
        // Only busy connections left to hold the places: refused.
        drop(second);
        let (b, _b) = busy();
        let full = Arc::new(Connections::new(Gauge::default(), None));
        let _x = full.admit(ip("10.0.0.1"), &b, 1, 1).unwrap();
        assert_eq!(
            full.admit(ip("10.0.0.2"), &b, 1, 1).unwrap_err(),
            Over::Total
        );
    }

    #[test]
    fn the_descriptor_limit_caps_the_configured_maximum() {
        let c = Connections::new(Gauge::default(), Some(1024));
        assert_eq!(c.max(10_000), 480);
        assert_eq!(c.max(100), 100);
        assert_eq!(Connections::new(Gauge::default(), None).max(10_000), 10_000);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(parse_nofile(limits), Some(1024));
        assert_eq!(
            parse_nofile(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
    }

    #[test]
    fn the_refusal_is_a_whole_http_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], -32600);
    }
}
