//! Listening sockets shared by the sidecar and the operator.
//!
//! Both render or default to the IPv6 wildcard (`[::]:port`) so that one listener serves
//! IPv4-only, dual-stack and IPv6-only pods; [`bind`] makes that hold whatever the node's
//! `net.ipv6.bindv6only` says, and falls back to `0.0.0.0` where the pod has no IPv6 at all.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// Binds `addr` as a non-blocking listener (ready for `tokio::net::TcpListener::from_std`).
/// The IPv6 wildcard takes IPv4 connections too (as `::ffff:a.b.c.d` peers); any other
/// address is bound as given.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = match addr {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => match bind_dual_stack(addr) {
            Err(e) if is_no_ipv6(&e) => {
                let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, v6.port()));
                tracing::warn!(%addr, fallback = %v4, error = %e, "IPv6 is not available in this pod; listening on IPv4 only");
                TcpListener::bind(v4)?
            }
            bound => bound?,
        },
        _ => TcpListener::bind(addr)?,
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A listener on the IPv6 wildcard that accepts IPv4 as well.
fn bind_dual_stack(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    // As std's TcpListener::bind does: a restarted process rebinds while old connections linger.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The kernel has no IPv6 (module absent, or disabled for the pod's network namespace).
fn is_no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::{Read as _, Write as _};
    use std::net::{Ipv6Addr, TcpStream};

    use super::*;

    /// Accepts one connection on `listener` and reports the peer's address family back.
    fn connect_and_accept(listener: &TcpListener, to: SocketAddr) -> SocketAddr {
        let mut client = TcpStream::connect(to).unwrap();
        client.write_all(b"x").unwrap();
        listener.set_nonblocking(false).unwrap();
        let (mut accepted, peer) = listener.accept().unwrap();
        let mut byte = [0u8; 1];
        accepted.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        peer
    }

    #[test]
    fn the_ipv6_wildcard_takes_both_families() {
        let listener = bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).unwrap();
        let port = listener.local_addr().unwrap().port();
        // Where the test machine has no IPv6, bind fell back to IPv4; every CI machine here has ::1.
        assert!(listener.local_addr().unwrap().is_ipv6(), "bound IPv4 only");
        let v6 = connect_and_accept(&listener, SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
        assert_eq!(v6.ip(), Ipv6Addr::LOCALHOST);
        let v4 = connect_and_accept(&listener, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        assert_eq!(
            v4.ip(),
            Ipv4Addr::LOCALHOST.to_ipv6_mapped(),
            "an IPv4 caller arrives as an IPv4-mapped peer"
        );
    }

    #[test]
    fn any_other_address_is_bound_as_given() {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).is_err());
        connect_and_accept(&listener, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
}
