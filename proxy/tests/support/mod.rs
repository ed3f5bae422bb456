//! Test fixtures: an in-process upstream, the proxy with a config written to a temp dir, and
//! clients (pooled HTTP/1.1, h2c, raw TCP). Every wait is bounded.
#![allow(dead_code, reason = "each test crate uses a different part")]
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

// Fake identity peers and helpers for the authentication tests (auth*.rs).
pub mod auth;
pub mod conduit;
pub mod issuer;
pub mod phabricator;
pub mod redis;
pub mod secret_dir;
pub mod serve;
pub mod token_review;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_proxy::{Options, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The longest any single wait in a test may take.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `check` until it holds (bounded).
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
}

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed_unsync()
}

// === Upstream ===

/// A request as the upstream saw it.
#[derive(Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An in-process HTTP/1.1 upstream that records what it receives.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

type Handler = Arc<
    dyn Fn(&Seen) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

impl Upstream {
    /// An upstream answering each request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(&Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |s| Box::pin(handler(s)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (handler, tx) = (handler.clone(), tx.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (handler, tx) = (handler.clone(), tx.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                            };
                            if let Some(answer) = upstream_check_answer(&seen) {
                                return Ok::<_, Infallible>(answer);
                            }
                            let response = handler(&seen).await;
                            let _ = tx.send(seen);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    /// An upstream answering every request with 200 and a small JSON body.
    pub async fn ok() -> Self {
        Self::start(|_| async { json(StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#) })
            .await
    }

    /// An upstream answering each request with an event stream the test writes into (its head
    /// at once, as Conduit's answers come): each request's stream sender, in order.
    pub async fn streaming() -> (
        Self,
        mpsc::UnboundedReceiver<http_body_util::channel::Sender<Bytes>>,
    ) {
        let (tx, senders) = mpsc::unbounded_channel();
        let upstream = Self::start(move |_| {
            let tx = tx.clone();
            async move {
                let (sender, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
                let _ = tx.send(sender);
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(body.boxed_unsync())
                    .unwrap()
            }
        })
        .await;
        (upstream, senders)
    }

    /// The next request the upstream saw.
    pub async fn next(&mut self) -> Seen {
        within("the upstream to see a request", self.seen.recv())
            .await
            .expect("upstream gone")
    }

    /// The next request the upstream saw, if one is already there (without waiting).
    pub fn try_next(&mut self) -> Option<Seen> {
        self.seen.try_recv().ok()
    }

    /// Whether the upstream saw a request (without waiting).
    pub fn saw_any(&mut self) -> bool {
        self.seen.try_recv().is_ok()
    }
}

/// How the sidecar's background upstream check introduces itself.
pub const UPSTREAM_CHECK_AGENT: &str = "sluice-upstream-check/";

/// Whether `headers` are those of the sidecar's own upstream check.
pub fn is_upstream_check(headers: &HeaderMap) -> bool {
    headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(UPSTREAM_CHECK_AGENT))
}

/// The answer to the sidecar's upstream check, as a stateless MCP server gives it (any
/// request: a result holding both an `initialize` and a `tools/list` answer). The check never
/// reaches a test's handler nor shows in what the upstream saw: the tests here are about
/// callers' requests (the check's own tests are in `upstream_check` and the e2e tests).
fn upstream_check_answer(seen: &Seen) -> Option<Response<Body>> {
    if !is_upstream_check(&seen.headers) {
        return None;
    }
    let id = serde_json::from_slice::<serde_json::Value>(&seen.body)
        .map(|v| v["id"].clone())
        .unwrap_or_default();
    let reply = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "test-upstream", "version": "0"},
            "tools": [],
        },
    });
    Some(
        Response::builder()
            .header("content-type", "application/json")
            .body(full(reply.to_string()))
            .unwrap(),
    )
}

pub fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap()
}

/// Signals when dropped: proves a handler's future was cancelled.
pub struct DropSignal(pub Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

// === The proxy ===

/// A config with one entry point `main` in front of `upstream`; `entry` lines are added to the
/// entry point (indented by 4), `top` lines at the top level.
pub fn config(upstream: SocketAddr, top: &str, entry: &str) -> String {
    let entry: String = entry.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "upstream:\n  url: http://{upstream}\nadmin:\n  listen: 127.0.0.1:0\n{top}\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:0\n    auth:\n      mode: none\n{entry}"
    )
}

/// The proxy, running in this test's runtime with its config in a temp dir.
pub struct Sluice {
    pub proxy: Proxy,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Sluice {
    pub async fn start(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        Self::start_at(dir, config_path).await
    }

    /// The proxy reading an existing config file.
    pub async fn start_at(dir: tempfile::TempDir, config_path: PathBuf) -> Self {
        let options = Options {
            config_path: config_path.clone(),
            reload_interval: Duration::from_millis(50),
            log_level: None,
        };
        let proxy = Proxy::start(options)
            .await
            .unwrap_or_else(|e| panic!("proxy did not start: {e}"));
        let sluice = Self {
            proxy,
            dir,
            config_path,
        };
        // Readiness follows the background upstream check: a test starts once it has a
        // verdict (answering, or not) rather than racing the first check.
        eventually("the first upstream check", async || {
            get(&sluice.admin("/upstream")).await.json()["checkedAt"].is_string()
        })
        .await;
        sluice
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy
            .entry_addr("main")
            .expect("entry point main is listening")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    pub fn admin(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.proxy.admin_addr().expect("admin is listening")
        )
    }

    pub fn write_config(&self, yaml: &str) {
        write_atomically(&self.config_path, yaml);
    }

    /// The value of a metric line starting with `prefix` (labels included), if present.
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let text = get(&self.admin("/metrics")).await.text();
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

/// Replaces a file the way editors and kubelet do: write aside, rename over.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// === Clients ===

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The JSON-RPC error code of the body.
    pub fn rpc_code(&self) -> i64 {
        self.json()["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no JSON-RPC error: {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub async fn send_with(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Reply {
    let response = within("a response", client.request(req))
        .await
        .expect("request failed");
    collect(response).await
}

pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    send_with(&client(), req).await
}

pub async fn collect(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = within("a response body", body.collect())
        .await
        .expect("body failed")
        .to_bytes();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Reply {
    send(Request::get(url).body(Full::default()).unwrap()).await
}

/// A POST of a JSON-RPC body, with the headers an MCP client sends.
pub fn post(url: &str) -> http::request::Builder {
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

pub fn body(text: &str) -> Full<Bytes> {
    Full::new(Bytes::copy_from_slice(text.as_bytes()))
}

pub const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"pha_task_get","arguments":{"id":1}}}"#;

// === The binary ===

/// A raw upstream that answers the first request that is not the sidecar's upstream check
/// with an event-stream head and `event`, then dies before the stream's end (the check's
/// requests are left unanswered). Its address.
pub async fn breaking_off_upstream(event: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let mut tcp = loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if !String::from_utf8_lossy(&buf[..n]).contains(UPSTREAM_CHECK_AGENT) {
                break tcp;
            }
        };
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let chunk = format!("{head}{:x}\r\n{event}\r\n", event.len());
        tcp.write_all(chunk.as_bytes()).await.unwrap();
        // Gone before the terminating chunk.
    });
    addr
}

/// A free loopback port (closed again, for a process to bind), never one handed out before in
/// this test binary: the OS may offer a port again as soon as the probing socket closes.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// Runs the `sluice-proxy` binary on `config`: once `ports` accept connections, `drive`; then
/// SIGTERM, after which a graceful exit writes out every log line (they are written in
/// batches). What `drive` returned, and everything the binary wrote to stdout and to stderr.
pub async fn run_binary<T>(
    config: &Path,
    ports: &[u16],
    drive: impl AsyncFnOnce() -> T,
) -> (T, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read as it comes, so a chatty binary never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stdout = tokio::spawn(async move {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.unwrap();
        text
    });
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.unwrap();
        text
    });
    for port in ports {
        eventually("the proxy to listen", async || {
            TcpStream::connect(("127.0.0.1", *port)).await.is_ok()
        })
        .await;
    }
    let driven = drive().await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = within("the proxy to exit", child.wait()).await;
    let stdout = within("its stdout", stdout).await.unwrap();
    let stderr = within("its stderr", stderr).await.unwrap();
    (driven, stdout, stderr)
}

/// Sends raw bytes on a fresh connection and reads until the server closes it (bounded).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = within(
        "the server to close the connection",
        tcp.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}
