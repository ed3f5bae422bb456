//! Admission and size limits: requests in flight, the request head's size, and bodies read
//! whole but bounded in size and time.
//!
//! Request bodies are read before anything goes upstream: POST bodies must be inspected whole,
//! and a caller trickling a body then ties up the proxy, not a Python worker upstream (as
//! nginx's request buffering does). Responses are never buffered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Request;
use http_body::Body as _;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use prometheus_client::metrics::gauge::Gauge;

use crate::errors::Refusal;
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

/// Takes a place among at most `max` requests in flight, or refuses with 503.
pub fn admit(count: &Arc<InFlight>, max: usize, gauge: &Gauge) -> Result<Permit, Refusal> {
    if count.0.fetch_add(1, Ordering::Relaxed) >= max {
        count.0.fetch_sub(1, Ordering::Relaxed);
        return Err(Refusal::Overloaded);
    }
    Ok(Permit {
        count: count.clone(),
        _gauge: GaugeGuard::new(gauge),
    })
}

/// Refuses a request whose line and headers take more than `max` bytes. hyper's read buffer
/// catches larger HTTP/1.1 heads earlier (and h2's header list limit larger h2 ones); this
/// makes the limit exact and the same for both.
pub fn check_head<B>(req: &Request<B>, max: usize) -> Result<(), Refusal> {
    let uri = req.uri();
    let mut size = req.method().as_str().len()
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len())
        + 12;
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len() + 4;
    }
    if size > max {
        Err(Refusal::HeadersTooLarge { max })
    } else {
        Ok(())
    }
}

/// Reads a request body of at most `limit` bytes within `timeout`. A declared length over the
/// limit is refused before a byte is read; chunked bodies are counted as they arrive.
pub async fn read_body(
    body: Incoming,
    limit: u64,
    timeout: sluice_proxy_config::Duration,
) -> Result<Bytes, Refusal> {
    if body.size_hint().lower() > limit {
        return Err(Refusal::BodyTooLarge { max: limit });
    }
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match tokio::time::timeout(timeout.get(), limited.collect()).await {
        // A single-chunk body comes out without a copy.
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Refusal::BodyTooLarge { max: limit })
        }
        Ok(Err(_)) => Err(Refusal::BodyRead),
        Err(_) => Err(Refusal::BodyTimeout(timeout)),
    }
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
        assert!(matches!(admit(&count, 2, &gauge), Err(Refusal::Overloaded)));
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert!(admit(&count, 2, &gauge).is_ok());
        assert_eq!(gauge.get(), 1);
    }

    #[test]
    fn head_size_counts_line_and_headers() {
        let req = Request::get("/mcp")
            .header("x-big", "a".repeat(2000))
            .body(())
            .unwrap();
        assert!(check_head(&req, 4096).is_ok());
        assert!(matches!(
            check_head(&req, 1024),
            Err(Refusal::HeadersTooLarge { max: 1024 })
        ));
    }
}
