//! Global rate limits against a real `redis-server` (Debian's, built with TLS; installed by
//! scripts/setup.sh) serving TLS with a CA made here and an ACL user, the `default` user off:
//! the limit counts through TLS and `AUTH username password`; a wrong password is counted and
//! logged without the password, and the fail mode applies; a server certificate from another
//! CA is refused.
//!
//! Without `redis-server` these tests fail (they never skip): CI installs it.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use support::*;

const USER: &str = "sluice-rl";
const PASSWORD: &str = "Tls-Acl-pw-7c1e9";
const WRONG: &str = "not-the-pw-4b2d8";

/// A CA made for one test: its PEM, and an issuer for server certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for 127.0.0.1 (an IP address SAN): its PEM and its key's PEM.
    fn server_cert(&self) -> (String, String) {
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A `redis-server` serving TLS on `tls_port` (and plain TCP on `port` for the test's own
/// checks), with ACL user `USER` and the `default` user off; killed (by PID) when dropped.
struct TlsRedis {
    child: Child,
    tls_port: u16,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start(ca: &Ca) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.server_cert();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let cert = write("server.crt", &cert);
        let key = write("server.key", &key);
        let ca_file = write("ca.crt", &ca.pem);
        let tls_port = free_port();
        let port = free_port();
        let conf = write(
            "redis.conf",
            &format!(
                "bind 127.0.0.1\nport {port}\ntls-port {tls_port}\n\
                 tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n\
                 save \"\"\nappendonly no\ndaemonize no\n\
                 user default off\nuser {USER} on >{PASSWORD} ~* +@all\n",
                cert.display(),
                key.display(),
                ca_file.display()
            ),
        );
        let child = Command::new("redis-server")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); it is installed by scripts/setup.sh (`make setup`) and these tests need it"
                )
            });
        let server = Self {
            child,
            tls_port,
            port,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while server.command(&["PING"]).as_deref() != Some("+PONG\r\n") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server (TLS on {tls_port}, plain on {port}) did not answer PING; is it built with TLS?"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server does not listen for TLS on {tls_port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// One command as `USER` over the plain port; the raw reply, or `None` when unreachable.
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = Vec::new();
        for command in [&["AUTH", USER, PASSWORD][..], args] {
            out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
            for a in command {
                out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        }
        tcp.write_all(&out).ok()?;
        let mut reply = vec![0; 4096];
        let mut got = 0;
        loop {
            let n = tcp.read(&mut reply[got..]).ok()?;
            if n == 0 {
                return None;
            }
            got += n;
            let text = String::from_utf8_lossy(&reply[..got]).into_owned();
            let Some(rest) = text.strip_prefix("+OK\r\n") else {
                if text.starts_with('-') && text.ends_with("\r\n") {
                    return Some(text);
                }
                continue;
            };
            if rest.ends_with("\r\n") {
                return Some(rest.to_owned());
            }
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files the proxy reads: the CA to trust and the ACL credentials.
struct Files {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    username: PathBuf,
    password: PathBuf,
}

fn files(ca_pem: &str, password: &str) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, ca_pem).unwrap();
    let username = dir.path().join("username");
    std::fs::write(&username, format!("{USER}\n")).unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    Files {
        _dir: dir,
        ca,
        username,
        password: password_file,
    }
}

/// The `redis:` block for TLS on `tls_port` with `files`.
fn redis_block(tls_port: u16, files: &Files, fail_mode: &str) -> String {
    format!(
        "redis:\n  address: 127.0.0.1:{tls_port}\n  tls:\n    caFile: {}\n  usernameFile: {}\n  passwordFile: {}\n  failMode: {fail_mode}\n  timeout: 1s\n",
        files.ca.display(),
        files.username.display(),
        files.password.display()
    )
}

const RULE: &str =
    "rateLimits:\n  - name: shared\n    requests: 2\n    period: 1h\n    scope: global\n";

fn call(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"pha_task_get","arguments":{}}})
        .to_string()
}

async fn rpc_at(url: &str, id: u64) -> Reply {
    send(post(url).body(body(&call(id))).unwrap()).await
}

async fn metric_at(admin: &str, prefix: &str) -> Option<f64> {
    get(&format!("{admin}/metrics"))
        .await
        .text()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn the_limit_counts_through_tls_and_an_acl_user() {
    let ca = Ca::new("sluice test redis CA");
    let redis = TlsRedis::start(&ca);
    // The default user is off: only the ACL user gets in.
    assert!(
        redis.command(&["ACL", "WHOAMI"]).unwrap().contains(USER),
        "the test's own connection is the ACL user"
    );
    let upstream = Upstream::ok().await;
    let f = files(&ca.pem, PASSWORD);
    let sluice = Sluice::start(&config(
        upstream.addr,
        &redis_block(redis.tls_port, &f, "closed"),
        RULE,
    ))
    .await;
    eventually("the proxy to connect to Redis over TLS", async || {
        sluice.metric("sluice_redis_connected").await == Some(1.0)
    })
    .await;
    let url = sluice.url("/mcp");
    assert_eq!(rpc_at(&url, 1).await.status, 200);
    assert_eq!(rpc_at(&url, 2).await.status, 200);
    let reply = rpc_at(&url, 3).await;
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("1800"));
    let keys = redis.command(&["KEYS", "*"]).unwrap();
    assert!(keys.contains("sluice:ratelimit:main:shared"), "{keys}");
    // The proxy's connection is a TLS one, as the ACL user.
    let clients = redis.command(&["CLIENT", "LIST"]).unwrap();
    assert!(
        clients.lines().any(|l| l.contains(&format!("user={USER}"))
            && l.contains(&format!("laddr=127.0.0.1:{}", redis.tls_port))),
        "{clients}"
    );
    let fallbacks = "sluice_rate_limit_fallbacks_total{entry_point=\"main\",rule=\"shared\",fail_mode=\"closed\"}";
    assert_eq!(sluice.metric(fallbacks).await, Some(0.0));
}

/// Runs the binary with a wrong password and `fail_mode`: what one request got, and every
/// line it logged.
async fn wrong_password(redis: &TlsRedis, ca: &Ca, fail_mode: &str) -> (u16, String) {
    let upstream = Upstream::ok().await;
    let f = files(&ca.pem, WRONG);
    let (admin, entry) = (free_port(), free_port());
    let yaml = format!(
        "upstream:\n  url: http://{}\nadmin:\n  listen: 127.0.0.1:{admin}\n{}entryPoints:\n  - name: main\n    listen: 127.0.0.1:{entry}\n    auth:\n      mode: none\n{}",
        upstream.addr,
        redis_block(redis.tls_port, &f, fail_mode),
        RULE.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, yaml).unwrap();
    let admin_url = format!("http://127.0.0.1:{admin}");
    let (status, stdout, stderr) = run_binary(&config_path, &[admin, entry], async || {
        eventually("the wrong password to be counted", async || {
            metric_at(&admin_url, "sluice_redis_errors_total{kind=\"auth\"}")
                .await
                .is_some_and(|n| n >= 1.0)
        })
        .await;
        assert_eq!(
            metric_at(&admin_url, "sluice_redis_connected").await,
            Some(0.0)
        );
        rpc_at(&format!("http://127.0.0.1:{entry}/mcp"), 1)
            .await
            .status
    })
    .await;
    (status.as_u16(), format!("{stdout}{stderr}"))
}

fn assert_no_password(logs: &str) {
    for line in logs.lines() {
        assert!(
            !line.contains(WRONG) && !line.contains(PASSWORD),
            "a password reached the log: {line}"
        );
    }
}

#[tokio::test]
async fn a_wrong_password_fails_open_or_closed_and_is_never_logged() {
    let ca = Ca::new("sluice test redis CA");
    let redis = TlsRedis::start(&ca);

    let (status, logs) = wrong_password(&redis, &ca, "open").await;
    assert_eq!(status, 200, "open lets the request through");
    assert_no_password(&logs);
    let refusal = logs
        .lines()
        .find(|l| l.contains("RedisUnavailable"))
        .unwrap_or_else(|| panic!("the refusal is logged:\n{logs}"));
    assert!(refusal.contains("auth"), "{refusal}");

    let (status, logs) = wrong_password(&redis, &ca, "closed").await;
    assert_eq!(status, 503, "closed refuses the request");
    assert_no_password(&logs);
    assert!(logs.contains("RedisUnavailable"), "{logs}");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let ca = Ca::new("sluice test redis CA");
    let other = Ca::new("some other CA");
    let redis = TlsRedis::start(&ca);
    let upstream = Upstream::ok().await;
    let f = files(&other.pem, PASSWORD);
    let sluice = Sluice::start(&config(
        upstream.addr,
        &redis_block(redis.tls_port, &f, "closed"),
        RULE,
    ))
    .await;
    eventually("the handshake failure to be counted", async || {
        sluice
            .metric("sluice_redis_errors_total{kind=\"tls\"}")
            .await
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(sluice.metric("sluice_redis_connected").await, Some(0.0));
    let reply = rpc_at(&sluice.url("/mcp"), 1).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    // Nothing authenticated: the password was never sent to the impostor.
    let clients = redis.command(&["CLIENT", "LIST"]).unwrap();
    assert!(
        !clients.contains(&format!("laddr=127.0.0.1:{}", redis.tls_port)),
        "{clients}"
    );
}

/// The trust file must exist for the proxy to connect: a missing one is counted, not fatal.
#[tokio::test]
async fn a_missing_ca_file_is_counted() {
    let upstream = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let missing: &Path = &dir.path().join("absent.crt");
    let sluice = Sluice::start(&config(
        upstream.addr,
        &format!(
            "redis:\n  address: 127.0.0.1:{}\n  tls:\n    caFile: {}\n  failMode: closed\n",
            free_port(),
            missing.display()
        ),
        RULE,
    ))
    .await;
    eventually("the unreadable CA file to be counted", async || {
        sluice
            .metric("sluice_redis_errors_total{kind=\"tls\"}")
            .await
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(rpc_at(&sluice.url("/mcp"), 1).await.status, 503);
}
