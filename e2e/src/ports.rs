//! Free loopback ports for the processes a test starts.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, bail};

use crate::Result;

/// Ports this test process has handed out already: the OS may offer a port again as soon as the
/// probing socket closes, and two tests of one binary must not get the same one.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 that is free right now and was not handed out before in this process.
///
/// The port is released before it is returned (the child binds it), so another program could
/// take it in between; the ephemeral range is large and the window short.
pub fn free_port() -> Result<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("failed to bind a probe socket on 127.0.0.1")?;
        let port = listener
            .local_addr()
            .context("failed to read the probe socket's address")?
            .port();
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    bail!("the OS kept offering loopback ports this test process has already used")
}

/// `count` distinct free loopback ports.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    (0..count).map(|_| free_port()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports(20).unwrap();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        let port = ports.first().copied().unwrap();
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }
}
