//! Requests in flight over all entry points (`limits.maxInFlight`): a place is taken when a
//! request arrives and given back when its response (stream included) is finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::GaugeGuard;

/// Requests in flight over all entry points.
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

/// A place among the requests in flight, held until the response is finished.
#[derive(Debug)]
pub struct Permit {
    count: Arc<InFlight>,
    _gauge: GaugeGuard,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.count.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a place among at most `max` requests in flight; `None` when they are all taken.
pub fn admit(count: &Arc<InFlight>, max: usize, gauge: &Gauge) -> Option<Permit> {
    if count.0.fetch_add(1, Ordering::Relaxed) >= max {
        count.0.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Permit {
        count: count.clone(),
        _gauge: GaugeGuard::new(gauge),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_stops_at_the_limit_and_permits_give_places_back() {
        let count = Arc::new(InFlight::default());
        let gauge = Gauge::default();
        let a = admit(&count, 2, &gauge).unwrap();
        let _b = admit(&count, 2, &gauge).unwrap();
        assert!(admit(&count, 2, &gauge).is_none());
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert!(admit(&count, 2, &gauge).is_some());
        assert_eq!(gauge.get(), 1);
    }
}
