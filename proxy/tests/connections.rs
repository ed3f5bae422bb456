//! Connections an attacker could hoard: a cap per caller address (over it: a 503 and a close)
//! and one in all, at which the quietest connection of the biggest holder gives its place up;
//! an h2 connection that sends only its preface gets the head timer too. A legitimate caller
//! from another address is served while one address holds its maximum, and while many
//! addresses hold every place.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// A connection to `to` from the loopback address `from` (any of 127.0.0.0/8 is ours).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// What the proxy writes before it closes `tcp` (bounded).
async fn read_until_closed(mut tcp: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = within(
        "the proxy to close the connection",
        tcp.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `tcp` is still open after a moment (nothing to read, no close).
async fn still_open(tcp: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut byte))
        .await
        .is_err()
}

#[tokio::test]
async fn connections_are_capped_per_address_and_in_all_and_a_caller_elsewhere_is_served() {
    let mut upstream = Upstream::ok().await;
    let top =
        "limits:\n  maxConnections: 6\n  maxConnectionsPerPeer: 3\ntimeouts:\n  headerRead: 30s";
    let sluice = Sluice::start(&config(upstream.addr, top, "")).await;
    let addr = sluice.addr();

    // One address holds its three: a fourth from it is turned away with a 503.
    let mut hoard = Vec::new();
    for _ in 0..3 {
        hoard.push(connect_from("127.0.0.2", addr).await);
    }
    let refused = read_until_closed(connect_from("127.0.0.2", addr).await).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.contains("too many connections"), "{refused}");
    for tcp in &mut hoard {
        assert!(still_open(tcp).await, "a held connection was closed");
    }

    // A caller from elsewhere is served meanwhile; how long it took is for the reader.
    let started = Instant::now();
    let reply = send(post(&sluice.url("/mcp")).body(body(TOOLS_CALL)).unwrap()).await;
    println!(
        "served in {:?} while one address held its maximum",
        started.elapsed()
    );
    assert_eq!(reply.status, 200);
    upstream.next().await;

    // Six in all: the client above is gone again, three more addresses fill the rest. A
    // seventh caller, from yet another address, still gets in: the quietest connection of the
    // address holding the most (127.0.0.2, idle since it connected) gives its place up.
    hoard.push(connect_from("127.0.0.3", addr).await);
    hoard.push(connect_from("127.0.0.4", addr).await);
    hoard.push(connect_from("127.0.0.5", addr).await);
    let mut newcomer = connect_from("127.0.0.6", addr).await;
    newcomer
        .write_all(b"GET /anything HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(newcomer)
            .await
            .starts_with("HTTP/1.1 200")
    );
    upstream.next().await;
    let mut evicted = 0;
    for tcp in &mut hoard[..3] {
        if !still_open(tcp).await {
            evicted += 1;
        }
    }
    assert_eq!(
        evicted, 1,
        "one of 127.0.0.2's idle connections gave its place up"
    );
    for tcp in &mut hoard[3..] {
        assert!(
            still_open(tcp).await,
            "a connection of a smaller holder was closed"
        );
    }
    assert_eq!(
        sluice
            .metric("sluice_connections_refused_total{entry_point=\"main\",reason=\"per_peer\"}")
            .await,
        Some(1.0)
    );

    // Places come back when connections close.
    drop(hoard);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sluice.metric("sluice_open_connections").await != Some(0.0) {
        assert!(Instant::now() < deadline, "places were not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = connect_from("127.0.0.2", addr).await;
    again
        .write_all(b"GET /anything HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_until_closed(again).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_h2_connection_that_sends_only_its_preface_is_closed_after_the_head_time() {
    let upstream = Upstream::ok().await;
    let top = "timeouts:\n  headerRead: 300ms\n  idle: 60s";
    let sluice = Sluice::start(&config(upstream.addr, top, "")).await;
    let mut tcp = TcpStream::connect(sluice.addr()).await.unwrap();
    // The client preface and an empty SETTINGS frame, then nothing.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // Closed by the head timer: `within` gives up long before the idle time of a minute.
    let mut sink = Vec::new();
    within(
        "the proxy to close the connection",
        tcp.read_to_end(&mut sink),
    )
    .await
    .unwrap();
}
