//! One check: an MCP conversation with the upstream, over a connection of the check's own (not
//! the request pool, whose healthy connections would hide a listener that stopped answering),
//! without credentials, bounded in time as a whole.
//!
//! `initialize` first; its JSON-RPC result means the upstream answers. With an
//! `Mcp-Session-Id` (a stateful upstream) the check then sends `notifications/initialized`,
//! lists the tools in that session and DELETEs it, so it leaves no session behind; stateless,
//! it lists them on their own. A failing `tools/list` leaves the tools unknown, not the
//! upstream unanswering: `initialize` answered.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Conduit's MCP endpoint.
/// The revision the check asks for: the newest with `initialize` (Conduit's SDK speaks it; an
/// upstream that does not answers with its own).
const PROTOCOL_VERSION: &str = "2025-11-25";
/// Largest answer read, in bytes (Conduit's `tools/list` is about 48 KB).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Most `tools/list` pages followed.
const MAX_TOOL_PAGES: u32 = 20;
/// Longest text kept of what the upstream names (server name, version, error messages).
const MAX_TEXT_CHARS: usize = 256;
/// Time given to end a session the conversation left open (it stopped short or ran out of
/// time), beyond the check's own timeout.
const SESSION_END_GRACE: Duration = Duration::from_secs(1);

/// How the check's requests introduce themselves, so the upstream's logs (and test doubles)
/// can tell them from callers'.
pub const USER_AGENT: &str = concat!("sluice-upstream-check/", env!("CARGO_PKG_VERSION"));

static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
static MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Where the upstream's MCP endpoint is.
#[derive(Clone, Debug)]
pub struct Target {
    host: String,
    port: u16,
    /// `host:port`, the Host header.
    authority: HeaderValue,
    /// The MCP endpoint's path (`upstream.mcpPath`).
    path: String,
}

impl Target {
    /// The endpoint `path` of the upstream at `url` (`http://host:port`).
    pub fn new(url: &str, path: &str) -> Result<Self, String> {
        let bad = || format!("upstream.url {url:?} is not an http://host:port URL");
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        let authority = uri.authority().ok_or_else(bad)?;
        // An IPv6 literal comes bracketed; connecting wants the address alone.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Self {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?,
            path: path.to_owned(),
        })
    }
}

/// What an answering upstream told the check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// The revision `initialize` settled on.
    pub protocol_version: Option<String>,
    pub server: Option<ServerInfo>,
    /// Tools `tools/list` named; `None` when it did not say.
    pub tools: Option<u64>,
    /// The endpoint answered with an OAuth challenge, so it tells nothing more.
    pub behind_oauth: bool,
}

/// The server's `serverInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
}

/// Why a check got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Miss {
    pub kind: MissKind,
    /// What happened, for `/readyz` and `/upstream`.
    pub reason: String,
}

/// A miss's class, the `kind` label of `sluice_upstream_check_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissKind {
    /// No connection (refused, unreachable).
    Connect,
    /// The connection broke before the answer was complete.
    Closed,
    /// The check ran out of time before `initialize` was answered.
    Timeout,
    /// An HTTP status other than 200 (and other than an OAuth challenge).
    Status,
    /// An answer that is not a JSON-RPC response to the request.
    Malformed,
    /// A JSON-RPC error.
    Error,
}

impl MissKind {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            MissKind::Connect => "connect",
            MissKind::Closed => "closed",
            MissKind::Timeout => "timeout",
            MissKind::Status => "status",
            MissKind::Malformed => "malformed",
            MissKind::Error => "error",
        }
    }
}

impl Miss {
    fn new(kind: MissKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// Runs one check of `target` within `timeout`.
pub async fn ask(target: Target, timeout: Duration) -> Result<Findings, Miss> {
    let mut talk = Conversation::new(target);
    let outcome = match tokio::time::timeout(timeout, talk.run()).await {
        Ok(outcome) => outcome,
        Err(_) => {
            // The connection may be stuck mid-answer: nothing more goes over it.
            talk.connection = None;
            talk.out_of_time(timeout)
        }
    };
    if talk.session.is_some() {
        // No check leaves a session behind, even one that stopped short.
        let _ = tokio::time::timeout(SESSION_END_GRACE, talk.end_session()).await;
    }
    outcome
}

/// The requests of one check and what they learned so far.
struct Conversation {
    target: Target,
    connection: Option<Connection>,
    /// What the conversation waits for now, for a timeout's reason.
    waiting_for: &'static str,
    /// What `initialize` told, once it answered.
    answered: Option<Findings>,
    /// The session the upstream opened, until it is ended.
    session: Option<HeaderValue>,
    /// The negotiated revision, sent on every request after `initialize`.
    version: Option<HeaderValue>,
    next_id: u64,
}

impl Conversation {
    fn new(target: Target) -> Self {
        Self {
            target,
            connection: None,
            waiting_for: "a connection",
            answered: None,
            session: None,
            version: None,
            next_id: 1,
        }
    }

    async fn run(&mut self) -> Result<Findings, Miss> {
        let mut findings = self.initialize().await?;
        self.answered = Some(findings.clone());
        if findings.behind_oauth {
            return Ok(findings);
        }
        if self.session.is_some() {
            self.notify_initialized().await;
        }
        findings.tools = match self.count_tools().await {
            Ok(tools) => Some(tools),
            Err(miss) => {
                tracing::debug!(reason = %miss.reason, "the upstream answered initialize but not tools/list");
                None
            }
        };
        self.answered = Some(findings.clone());
        if self.session.is_some() {
            self.end_session().await;
        }
        Ok(findings)
    }

    /// The outcome when time ran out: answered if `initialize` was (only the tools are then
    /// unknown), else a timeout.
    fn out_of_time(&mut self, timeout: Duration) -> Result<Findings, Miss> {
        match self.answered.take() {
            Some(findings) => Ok(findings),
            None => Err(Miss::new(
                MissKind::Timeout,
                format!(
                    "timed out after {} waiting for {}",
                    sluice_proxy_config::Duration::from(timeout),
                    self.waiting_for
                ),
            )),
        }
    }

    async fn initialize(&mut self) -> Result<Findings, Miss> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "sluice-proxy", "version": env!("CARGO_PKG_VERSION")},
        });
        let (id, response) = self.post("initialize", params).await?;
        if response.status() == StatusCode::UNAUTHORIZED && has_bearer_challenge(&response) {
            // Conduit in OAuth mode: FastMCP's auth middleware refuses every MCP request
            // without a bearer with this challenge, before any MCP is read. The check carries
            // no credentials (it has none to carry), so the challenge is the endpoint's own
            // answer: it is up, behind OAuth, and tells nothing more.
            return Ok(Findings {
                behind_oauth: true,
                ..Findings::default()
            });
        }
        // Kept before the body is read, so a session is ended even if its answer is broken.
        self.session = response.headers().get(&MCP_SESSION_ID).cloned();
        let result = self.result_of(response, id, "initialize").await?;
        if !result.is_object() {
            return Err(Miss::new(
                MissKind::Malformed,
                "the initialize result is not an object",
            ));
        }
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(bounded);
        let protocol_version = text(&result, "protocolVersion");
        self.version = protocol_version
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok());
        let server = result.get("serverInfo").and_then(|info| {
            Some(ServerInfo {
                name: text(info, "name")?,
                version: text(info, "version").unwrap_or_default(),
            })
        });
        Ok(Findings {
            protocol_version,
            server,
            tools: None,
            behind_oauth: false,
        })
    }

    /// `notifications/initialized`; the session goes on whatever the answer (a refusal shows
    /// in `tools/list`).
    async fn notify_initialized(&mut self) {
        let message = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.waiting_for = "the answer to notifications/initialized";
        if let Ok(response) = self.send(Method::POST, Some(&message)).await {
            drain(response).await;
        }
    }

    /// The tools of every page of `tools/list`.
    async fn count_tools(&mut self) -> Result<u64, Miss> {
        let mut count = 0u64;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_TOOL_PAGES {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let (id, response) = self.post("tools/list", params).await?;
            let result = self.result_of(response, id, "tools/list").await?;
            let tools = result
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    Miss::new(MissKind::Malformed, "the tools/list result has no tools")
                })?;
            count = count.saturating_add(u64::try_from(tools.len()).unwrap_or(u64::MAX));
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(count),
            }
        }
        Err(Miss::new(
            MissKind::Malformed,
            format!("tools/list has more than {MAX_TOOL_PAGES} pages"),
        ))
    }

    /// Ends the session (DELETE); it counts as ended once the upstream answered anything.
    async fn end_session(&mut self) {
        self.waiting_for = "the answer to DELETE";
        if let Ok(response) = self.send(Method::DELETE, None).await {
            self.session = None;
            drain(response).await;
        }
    }

    /// POSTs request `method` with `params`; returns its id and the response head.
    async fn post(
        &mut self,
        method: &'static str,
        params: Value,
    ) -> Result<(u64, Response<Incoming>), Miss> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.waiting_for = match method {
            "initialize" => "the answer to initialize",
            _ => "the answer to tools/list",
        };
        let response = self.send(Method::POST, Some(&message)).await?;
        Ok((id, response))
    }

    /// The `result` of the JSON-RPC response with `id` in `response` (a JSON body, or an
    /// event of a stream, read only until that event).
    async fn result_of(
        &mut self,
        response: Response<Incoming>,
        id: u64,
        method: &str,
    ) -> Result<Value, Miss> {
        let status = response.status();
        if status != StatusCode::OK {
            drain(response).await;
            return Err(Miss::new(
                MissKind::Status,
                format!("{method} answered HTTP {status}"),
            ));
        }
        let event_stream = crate::sse::is_event_stream(response.headers());
        let mut body = response.into_body();
        let mut buffer = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Miss::new(
                    MissKind::Closed,
                    format!("the answer to {method} broke off: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            if buffer.len() > MAX_ANSWER_BYTES {
                return Err(Miss::new(
                    MissKind::Malformed,
                    format!("the answer to {method} is larger than {MAX_ANSWER_BYTES} bytes"),
                ));
            }
            // A stream may stay open after the answer: look at each completed event.
            if event_stream
                && (buffer.ends_with(b"\n\n") || buffer.ends_with(b"\r\n\r\n"))
                && let Some(reply) = find_reply(&buffer, id, true, method)
            {
                return reply;
            }
        }
        find_reply(&buffer, id, event_stream, method).unwrap_or_else(|| {
            Err(Miss::new(
                MissKind::Malformed,
                format!("the answer to {method} holds no JSON-RPC response to it"),
            ))
        })
    }

    /// Sends a request to the MCP endpoint over the check's connection, opened (again) when
    /// there is none or the upstream closed it.
    async fn send(
        &mut self,
        method: Method,
        message: Option<&Value>,
    ) -> Result<Response<Incoming>, Miss> {
        let request = self.request(method, message)?;
        let waiting_for = self.waiting_for;
        let sender = self.sender().await?;
        sender.send_request(request).await.map_err(|e| {
            let kind = if e.is_parse() {
                MissKind::Malformed
            } else {
                MissKind::Closed
            };
            Miss::new(kind, format!("{waiting_for}: {e}"))
        })
    }

    fn request(
        &self,
        method: Method,
        message: Option<&Value>,
    ) -> Result<Request<Full<Bytes>>, Miss> {
        let mut builder = Request::builder()
            .method(method)
            .uri(self.target.path.as_str())
            .header(header::HOST, self.target.authority.clone())
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(version) = &self.version {
            builder = builder.header(&MCP_PROTOCOL_VERSION, version.clone());
        }
        if let Some(session) = &self.session {
            builder = builder.header(&MCP_SESSION_ID, session.clone());
        }
        let body = match message {
            Some(m) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(m.to_string())
            }
            None => Bytes::new(),
        };
        builder.body(Full::new(body)).map_err(|e| {
            Miss::new(
                MissKind::Malformed,
                format!("cannot build the check's request: {e}"),
            )
        })
    }

    /// The connection, ready for a request.
    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, Miss> {
        let waiting_for = self.waiting_for;
        let mut connection = match self.connection.take() {
            Some(c) if !c.sender.is_closed() => c,
            _ => self.connect().await?,
        };
        if connection.sender.ready().await.is_err() {
            // Closed between two requests (an idle timeout): once more on a new one.
            connection = self.connect().await?;
            connection.sender.ready().await.map_err(|e| {
                Miss::new(
                    MissKind::Closed,
                    format!("the upstream closed a new connection: {e}"),
                )
            })?;
        }
        self.waiting_for = waiting_for;
        Ok(&mut self.connection.insert(connection).sender)
    }

    async fn connect(&mut self) -> Result<Connection, Miss> {
        self.waiting_for = "a connection";
        let target = &self.target;
        let cannot = |e: &dyn std::fmt::Display| {
            Miss::new(
                MissKind::Connect,
                format!("cannot connect to {}:{}: {e}", target.host, target.port),
            )
        };
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| cannot(&e))?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| cannot(&e))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, driver })
    }
}

/// A connection of the check's own; dropping it closes it.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Whether `response` challenges for a bearer token (`WWW-Authenticate: Bearer ...`).
fn has_bearer_challenge(response: &Response<Incoming>) -> bool {
    response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split_whitespace()
                .next()
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer"))
        })
}

/// Reads what is left of a body (bounded), so the connection can carry the next request.
async fn drain(response: Response<Incoming>) {
    let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await;
}

/// The outcome of the JSON-RPC response with `id` in `body`, if it holds one.
fn find_reply(
    body: &[u8],
    id: u64,
    event_stream: bool,
    method: &str,
) -> Option<Result<Value, Miss>> {
    let text = std::str::from_utf8(body).ok()?;
    let messages = if event_stream {
        crate::sse::event_data(text)
    } else {
        vec![text.to_owned()]
    };
    messages.iter().find_map(|message| {
        let Ok(Value::Object(mut reply)) = serde_json::from_str::<Value>(message) else {
            return None;
        };
        if reply.get("id") != Some(&Value::from(id)) {
            return None;
        }
        Some(match (reply.remove("result"), reply.remove("error")) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(Miss::new(
                MissKind::Error,
                format!(
                    "{method} answered JSON-RPC error {}: {}",
                    error
                        .get("code")
                        .and_then(Value::as_i64)
                        .unwrap_or_default(),
                    bounded(error.get("message").and_then(Value::as_str).unwrap_or("")),
                ),
            )),
            _ => Err(Miss::new(
                MissKind::Malformed,
                format!("the answer to {method} is neither a result nor an error"),
            )),
        })
    })
}

/// `text`, cut to [`MAX_TEXT_CHARS`].
fn bounded(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use http::HeaderMap;
    use tokio::net::TcpListener;

    use super::*;

    /// A request as the test upstream saw it.
    #[derive(Clone, Debug)]
    struct Seen {
        method: Method,
        path: String,
        headers: HeaderMap,
        body: Value,
    }

    impl Seen {
        fn rpc(&self) -> &str {
            self.body["method"].as_str().unwrap_or("")
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).map(|v| v.to_str().unwrap())
        }
    }

    type Seens = Arc<Mutex<Vec<Seen>>>;

    /// An HTTP/1.1 upstream on loopback answering with `handler` (`None`: never), and what it
    /// saw.
    async fn upstream(
        handler: impl Fn(&Seen) -> Option<Response<Full<Bytes>>> + Send + Sync + 'static,
    ) -> (Target, Seens) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Seens::default();
        let handler = Arc::new(handler);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (handler, log) = (handler.clone(), log.clone());
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (handler, log) = (handler.clone(), log.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let seen = Seen {
                            method: parts.method,
                            path: parts.uri.path().to_owned(),
                            headers: parts.headers,
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        };
                        log.lock().unwrap().push(seen.clone());
                        match handler(&seen) {
                            Some(response) => Ok::<_, Infallible>(response),
                            None => std::future::pending().await,
                        }
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        (
            Target::new(&format!("http://{addr}"), "/mcp").unwrap(),
            seen,
        )
    }

    fn reply(seen: &Seen, result: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": seen.body["id"], "result": result})
    }

    fn json_answer(message: &Value) -> Option<Response<Full<Bytes>>> {
        Some(
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(message.to_string())))
                .unwrap(),
        )
    }

    /// An event stream as the Python SDK writes it: a priming event, then the answer.
    fn sse_answer(message: &Value, session: Option<&str>) -> Option<Response<Full<Bytes>>> {
        let mut builder = Response::builder().header("content-type", "text/event-stream");
        if let Some(id) = session {
            builder = builder.header("mcp-session-id", id);
        }
        let events = format!("id: 0\r\ndata: \r\n\r\nevent: message\r\ndata: {message}\r\n\r\n");
        Some(builder.body(Full::new(Bytes::from(events))).unwrap())
    }

    fn status(code: u16, headers: &[(&str, &str)]) -> Option<Response<Full<Bytes>>> {
        let mut builder = Response::builder().status(code);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Some(builder.body(Full::new(Bytes::from("{}"))).unwrap())
    }

    fn initialize_result(version: &str) -> Value {
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "conduit", "version": "1.2.3"},
        })
    }

    const PATIENCE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_stateless_upstream_is_asked_initialize_then_every_page_of_tools() {
        let (target, seen) = upstream(|s| match (s.rpc(), s.body["params"]["cursor"].as_str()) {
            ("initialize", _) => json_answer(&reply(s, initialize_result("2025-06-18"))),
            ("tools/list", None) => json_answer(&reply(
                s,
                json!({"tools": [{"name": "a"}, {"name": "b"}], "nextCursor": "page-2"}),
            )),
            ("tools/list", Some("page-2")) => {
                json_answer(&reply(s, json!({"tools": [{"name": "c"}]})))
            }
            _ => status(400, &[]),
        })
        .await;
        let findings = ask(target, PATIENCE).await.unwrap();
        assert_eq!(
            findings,
            Findings {
                protocol_version: Some("2025-06-18".into()),
                server: Some(ServerInfo {
                    name: "conduit".into(),
                    version: "1.2.3".into()
                }),
                tools: Some(3),
                behind_oauth: false,
            }
        );
        let seen = seen.lock().unwrap();
        let rpcs: Vec<_> = seen.iter().map(Seen::rpc).collect();
        assert_eq!(rpcs, ["initialize", "tools/list", "tools/list"]);
        for s in seen.iter() {
            assert_eq!(s.header("user-agent"), Some(USER_AGENT));
            assert_eq!(
                s.header("accept"),
                Some("application/json, text/event-stream")
            );
            assert!(s.header("authorization").is_none(), "{s:?}");
            assert!(s.header("mcp-session-id").is_none(), "{s:?}");
        }
        assert_eq!(seen[1].header("mcp-protocol-version"), Some("2025-06-18"));
    }

    #[tokio::test]
    async fn every_question_goes_to_the_configured_mcp_path() {
        let (target, seen) = upstream(|s| match (s.path.as_str(), s.rpc()) {
            ("/api/v1/mcp", "initialize") => {
                json_answer(&reply(s, initialize_result("2025-06-18")))
            }
            ("/api/v1/mcp", "tools/list") => json_answer(&reply(s, json!({"tools": []}))),
            _ => status(404, &[]),
        })
        .await;
        let target = Target {
            path: "/api/v1/mcp".into(),
            ..target
        };
        let findings = ask(target, PATIENCE).await.unwrap();
        assert_eq!(findings.protocol_version.as_deref(), Some("2025-06-18"));
        let paths: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect();
        assert_eq!(paths, ["/api/v1/mcp", "/api/v1/mcp"]);
    }

    #[tokio::test]
    async fn a_stateful_upstream_answering_streams_gets_its_session_ended() {
        let (target, seen) = upstream(|s| {
            let in_session = s.header("mcp-session-id") == Some("session-1");
            match (s.method.as_str(), s.rpc(), in_session) {
                ("POST", "initialize", false) => sse_answer(
                    &reply(s, initialize_result("2025-11-25")),
                    Some("session-1"),
                ),
                ("POST", "notifications/initialized", true) => status(202, &[]),
                ("POST", "tools/list", true) => {
                    sse_answer(&reply(s, json!({"tools": [{"name": "a"}]})), None)
                }
                ("DELETE", _, true) => status(200, &[]),
                _ => status(400, &[]),
            }
        })
        .await;
        let findings = ask(target, PATIENCE).await.unwrap();
        assert_eq!(findings.tools, Some(1));
        assert_eq!(findings.protocol_version.as_deref(), Some("2025-11-25"));
        let seen = seen.lock().unwrap();
        let steps: Vec<_> = seen.iter().map(|s| (s.method.as_str(), s.rpc())).collect();
        assert_eq!(
            steps,
            [
                ("POST", "initialize"),
                ("POST", "notifications/initialized"),
                ("POST", "tools/list"),
                ("DELETE", ""),
            ]
        );
        for s in &seen[1..] {
            assert_eq!(s.header("mcp-session-id"), Some("session-1"));
            assert_eq!(s.header("mcp-protocol-version"), Some("2025-11-25"));
        }
    }

    #[tokio::test]
    async fn an_oauth_challenge_is_an_answer_and_a_bare_401_is_not() {
        let challenge = r#"Bearer error="invalid_token", resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp""#;
        let (target, seen) =
            upstream(move |_| status(401, &[("www-authenticate", challenge)])).await;
        let findings = ask(target, PATIENCE).await.unwrap();
        assert_eq!(
            findings,
            Findings {
                behind_oauth: true,
                ..Findings::default()
            }
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "nothing more is asked");

        let (target, _) = upstream(|_| status(401, &[("www-authenticate", "Basic realm=x")])).await;
        let miss = ask(target, PATIENCE).await.unwrap_err();
        assert_eq!(miss.kind, MissKind::Status);
        assert_eq!(miss.reason, "initialize answered HTTP 401 Unauthorized");
    }

    #[tokio::test]
    async fn statuses_garbage_errors_and_refused_connections_are_misses_saying_what_failed() {
        let (target, _) = upstream(|_| status(503, &[])).await;
        let miss = ask(target, PATIENCE).await.unwrap_err();
        assert_eq!(
            (miss.kind, miss.reason.as_str()),
            (
                MissKind::Status,
                "initialize answered HTTP 503 Service Unavailable"
            )
        );

        let (target, _) = upstream(|_| {
            Some(
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Full::new(Bytes::from("data: <html>oops</html>\n\n")))
                    .unwrap(),
            )
        })
        .await;
        let miss = ask(target, PATIENCE).await.unwrap_err();
        assert_eq!(miss.kind, MissKind::Malformed, "{miss:?}");
        assert!(miss.reason.contains("no JSON-RPC response"), "{miss:?}");

        let (target, _) = upstream(|s| {
            json_answer(&json!({"jsonrpc": "2.0", "id": s.body["id"],
                                "error": {"code": -32602, "message": "Unsupported protocol version"}}))
        })
        .await;
        let miss = ask(target, PATIENCE).await.unwrap_err();
        assert_eq!(
            (miss.kind, miss.reason.as_str()),
            (
                MissKind::Error,
                "initialize answered JSON-RPC error -32602: Unsupported protocol version"
            )
        );

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let miss = ask(
            Target::new(&format!("http://{addr}"), "/mcp").unwrap(),
            PATIENCE,
        )
        .await
        .unwrap_err();
        assert_eq!(miss.kind, MissKind::Connect, "{miss:?}");
        assert!(
            miss.reason
                .starts_with(&format!("cannot connect to {addr}: ")),
            "{miss:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_tools_list_leaves_the_tools_unknown_not_the_answer() {
        let (target, _) = upstream(|s| match s.rpc() {
            "initialize" => json_answer(&reply(s, initialize_result("2025-06-18"))),
            _ => status(500, &[]),
        })
        .await;
        let findings = ask(target, PATIENCE).await.unwrap();
        assert_eq!(findings.tools, None);
        assert_eq!(findings.server.unwrap().name, "conduit");
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_never_answers_is_a_timeout_naming_the_wait() {
        let (target, seen) = upstream(|_| None).await;
        let miss = ask(target, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            (miss.kind, miss.reason.as_str()),
            (
                MissKind::Timeout,
                "timed out after 5s waiting for the answer to initialize"
            )
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_whose_tools_never_come_is_still_ended() {
        let (target, seen) = upstream(|s| match (s.method.as_str(), s.rpc()) {
            ("POST", "initialize") => sse_answer(
                &reply(s, initialize_result("2025-11-25")),
                Some("session-9"),
            ),
            ("POST", "notifications/initialized") => status(202, &[]),
            ("DELETE", _) => status(200, &[]),
            _ => None,
        })
        .await;
        let findings = ask(target, Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            findings.tools, None,
            "initialize answered: only the tools are unknown"
        );
        let seen = seen.lock().unwrap();
        let last = seen.last().unwrap();
        assert_eq!(last.method, Method::DELETE, "{seen:?}");
        assert_eq!(last.header("mcp-session-id"), Some("session-9"));
    }
}
