//! Bounded waiting: poll until something is ready or a deadline passes, never forever.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::Result;

/// One look at whether the awaited thing is ready.
#[derive(Debug)]
pub enum Probe<T> {
    /// Ready, with its value.
    Ready(T),
    /// Not yet, and why (shown if the wait times out).
    NotYet(String),
}

/// Polls `probe` (every 10 ms at first, backing off to 100 ms) until it is ready; fails when
/// `timeout` passes, or at once when `probe` returns an error. `what` names the wait in errors.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Probe<T>>,
) -> Result<T> {
    let started = Instant::now();
    let mut interval = Duration::from_millis(10);
    loop {
        let last = match probe()? {
            Probe::Ready(value) => return Ok(value),
            Probe::NotYet(reason) => reason,
        };
        if started.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for {what}; last attempt: {last}");
        }
        thread::sleep(interval.min(timeout.saturating_sub(started.elapsed())));
        interval = (interval * 2).min(Duration::from_millis(100));
    }
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    wait_until(&format!("127.0.0.1:{port} to accept"), timeout, || {
        Ok(tcp_probe(port))
    })
}

/// Waits until `GET url` answers 200.
pub fn wait_for_http_ok(url: &str, timeout: Duration) -> Result<()> {
    wait_until(&format!("{url} to answer 200"), timeout, || {
        Ok(http_ok_probe(url))
    })
}

pub(crate) fn tcp_probe(port: u16) -> Probe<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
        Ok(_) => Probe::Ready(()),
        Err(error) => Probe::NotYet(format!("connect: {error}")),
    }
}

pub(crate) fn http_ok_probe(url: &str) -> Probe<()> {
    let agent = crate::http::agent_with_timeout(Duration::from_secs(2));
    match agent.get(url).call() {
        Ok(response) if response.status() == 200 => Probe::Ready(()),
        Ok(response) => Probe::NotYet(format!("status {}", response.status())),
        Err(error) => Probe::NotYet(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_value_is_returned() {
        let mut calls = 0;
        let value = wait_until("the third call", Duration::from_secs(5), || {
            calls += 1;
            Ok(if calls == 3 {
                Probe::Ready(calls)
            } else {
                Probe::NotYet(format!("call {calls}"))
            })
        })
        .unwrap();
        assert_eq!(value, 3);
    }

    #[test]
    fn timeout_names_the_wait_and_the_last_reason() {
        let error = wait_until::<()>("godot", Duration::from_millis(50), || {
            Ok(Probe::NotYet("still waiting".to_owned()))
        })
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("godot") && message.contains("still waiting"),
            "{message}"
        );
    }

    #[test]
    fn probe_errors_stop_the_wait() {
        let error =
            wait_until::<()>("nothing", Duration::from_secs(60), || bail!("fatal")).unwrap_err();
        assert_eq!(error.to_string(), "fatal");
    }

    #[test]
    fn port_wait_sees_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        wait_for_port(port, Duration::from_secs(5)).unwrap();
        drop(listener);
        assert!(wait_for_port(port, Duration::from_millis(100)).is_err());
    }
}
