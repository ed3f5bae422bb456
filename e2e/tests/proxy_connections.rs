//! Connection exhaustion against the sluice-proxy binary at a low descriptor limit (`ulimit -n
//! 256`): the proxy lowers its connection cap to what the limit allows and says so, callers
//! refused by authentication do not keep their connections, one address cannot hold more than
//! its share, and a legitimate caller from another address is served (and timed) while an
//! attacker holds every place from many addresses. Before these limits, idle connections after
//! a 401 ran the process out of descriptors, and then an authenticated request hung.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_e2e::http::{self, MCP_ACCEPT};
use sluice_e2e::upstream::TestUpstream;
use sluice_e2e::{Process, free_port, procstat, sluice_proxy};

const START: Duration = Duration::from_secs(60);
/// The descriptor limit the proxy runs under.
const NOFILE: u64 = 256;
/// What it may hold with that limit: two descriptors a connection, 64 kept back.
const MAX_CONNECTIONS: usize = (NOFILE as usize - 64) / 2;
const PER_PEER: usize = 40;
const KEY: &str = "the-callers-key-0123456789";

/// A connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: IpAddr = from.parse().unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp
}

/// Sends `request` on `tcp` and reads the answer's head.
fn ask(tcp: &mut TcpStream, request: &str) -> String {
    tcp.write_all(request.as_bytes()).unwrap();
    let mut buf = [0; 4096];
    let n = tcp.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Whether the proxy closed `tcp` (reads EOF within a few seconds).
fn closed(tcp: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).is_ok()
}

#[test]
fn a_legitimate_caller_is_served_while_an_attacker_holds_every_connection_it_may() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = TestUpstream::start().unwrap();
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("caller"), KEY).unwrap();
    let config = format!(
        "upstream:\n  url: {}\nadmin:\n  listen: 127.0.0.1:{admin}\nlimits:\n  maxConnections: 10000\n  maxConnectionsPerPeer: {PER_PEER}\ntimeouts:\n  headerRead: 30s\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:{port}\n    auth:\n      mode: apiKey\n      keysDir: {}\n",
        upstream.url(),
        keys.display()
    );
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!("ulimit -n {NOFILE} && exec \"$0\" --config \"$1\""))
        .arg(sluice_proxy().unwrap())
        .arg(&path);
    let mut proxy = Process::spawn("sluice-proxy (ulimit -n 256)", command).unwrap();
    proxy.wait_for_port(port, START).unwrap();
    proxy
        .wait_for_http_ok(&format!("http://127.0.0.1:{admin}/healthz"), START)
        .unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    // It noticed its limit and said so.
    proxy
        .wait_for_output("the file-descriptor limit allows fewer connections", START)
        .unwrap();

    // A caller refused by authentication does not keep its connection.
    let mut refused = connect_from("127.0.0.2", to);
    let head = ask(
        &mut refused,
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    );
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(
        closed(&mut refused),
        "the refused caller's connection stayed open"
    );

    // The attacker fills its share from each of its addresses until the proxy is full: idle
    // connections that send nothing (the head timer is 30 s here).
    let mut hoard = Vec::new();
    let mut turned_away = 0;
    'fill: for host in 2..=10 {
        for _ in 0..PER_PEER {
            if hoard.len() == MAX_CONNECTIONS {
                break 'fill;
            }
            hoard.push(connect_from(&format!("127.0.0.{host}"), to));
        }
        // One more from an address that holds its share: answered 503 and closed.
        let mut one_more = connect_from(&format!("127.0.0.{host}"), to);
        let mut answer = String::new();
        let _ = one_more.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        turned_away += 1;
    }
    let pid = proxy.pid();
    let fds = procstat::open_fds(pid).unwrap();
    println!(
        "attacker holds {} connections ({turned_away} turned away); the proxy has {fds} of {NOFILE} descriptors open",
        hoard.len()
    );
    assert!(fds < NOFILE as usize, "{fds} descriptors");

    // Every place is taken. The legitimate caller is served all the same: the quietest
    // connection of the address holding the most gives its place up.
    let started = Instant::now();
    let reply = http::post_raw(
        &format!("http://127.0.0.1:{port}/mcp"),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{}}}"#,
        &[("accept", MCP_ACCEPT), ("x-api-key", KEY)],
    )
    .unwrap();
    let took = started.elapsed();
    println!("the legitimate request took {took:?} while the attacker held its connections");
    assert_eq!(reply.status, 200, "{}", reply.body);

    drop(reply);
    let metrics = http::get(&format!("http://127.0.0.1:{admin}/metrics"), &[]).unwrap();
    assert!(
        metrics
            .body
            .contains("sluice_connections_refused_total{entry_point=\"main\",reason=\"per_peer\"}"),
        "{}",
        metrics.body
    );
    assert!(
        !proxy.stderr().contains("Too many open files")
            && !proxy.stdout().contains("Too many open files"),
        "the proxy ran out of descriptors"
    );
    drop(hoard);
}
