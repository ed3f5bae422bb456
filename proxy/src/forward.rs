//! Forwarding to the upstream over pooled HTTP/1.1 connections, and turning its answer into
//! the caller's: hop-by-hop headers dropped, redirects and cookies put back under the prefix,
//! event streams passed through unbuffered with keep-alives.
//!
//! Dropping the future (the caller went away) drops the upstream request and its connection:
//! the upstream sees the cancellation as a closed connection.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sluice_proxy_config::{DEFAULT_MCP_PATH, ProxyConfig};

use crate::body::ResponseBody;
use crate::errors::UpstreamFailure;
use crate::headers::{self, Forwarded};
use crate::metrics::GaugeGuard;
use crate::prefix::Prefix;
use crate::sse::{self, KeepAlive};

static X_ACCEL_BUFFERING: header::HeaderName = header::HeaderName::from_static("x-accel-buffering");

/// The upstream and its connection pool.
#[derive(Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    scheme: Scheme,
    authority: Authority,
    /// `authority` as a Host header.
    host: HeaderValue,
    /// `upstream.mcpPath` where it is not `/mcp`: callers' `/mcp` goes there.
    mcp_path: Option<Bytes>,
    first_byte: Duration,
    /// What the pool was built from; a reload keeps the pool when these stay the same.
    settings: (sluice_proxy_config::Upstream, Duration),
}

/// Why an upstream could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("upstream.url {url:?} is not an http://host:port URL")]
pub struct BadUpstream {
    url: String,
}

impl Upstream {
    /// A pool for `config.upstream`.
    pub fn new(config: &ProxyConfig) -> Result<Self, BadUpstream> {
        let bad = || BadUpstream {
            url: config.upstream.url.clone(),
        };
        let uri: Uri = config.upstream.url.parse().map_err(|_| bad())?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(bad());
        };
        let connect_timeout = config.timeouts.upstream_connect.get();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.upstream.pool_max_idle)
            .pool_idle_timeout(config.upstream.pool_idle_timeout.get())
            .pool_timer(TokioTimer::new())
            .build(connector);
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
        Ok(Self {
            client,
            scheme,
            authority,
            host,
            mcp_path: (config.upstream.mcp_path != DEFAULT_MCP_PATH)
                .then(|| Bytes::from(config.upstream.mcp_path.clone())),
            first_byte: config.timeouts.upstream_first_byte.get(),
            settings: (pool_settings(&config.upstream), connect_timeout),
        })
    }

    /// Whether `config` would build this same upstream (so its pool can be kept).
    pub fn serves(&self, config: &ProxyConfig) -> bool {
        self.settings.0 == pool_settings(&config.upstream)
            && self.settings.1 == config.timeouts.upstream_connect.get()
            && self.first_byte == config.timeouts.upstream_first_byte.get()
    }

    /// `host:port` of the upstream.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// Sends `req`; resolves at the response head.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamFailure> {
        match tokio::time::timeout(self.first_byte, self.client.request(req)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(UpstreamFailure::FirstByteTimeout),
        }
    }

    fn uri(&self, path: PathAndQuery) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(match &self.mcp_path {
            Some(mcp_path) if path.path() == DEFAULT_MCP_PATH => moved(mcp_path, &path),
            _ => path,
        });
        Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
    }
}

/// `path` with its path replaced by `to` (its query kept).
fn moved(to: &Bytes, path: &PathAndQuery) -> PathAndQuery {
    let moved = match path.query() {
        None => to.clone(),
        Some(query) => Bytes::from(format!("{}?{query}", String::from_utf8_lossy(to))),
    };
    PathAndQuery::from_maybe_shared(moved).unwrap_or_else(|_| path.clone())
}

/// What of `upstream` the pool depends on: all but the background check's settings (a change
/// of those keeps the pool).
fn pool_settings(upstream: &sluice_proxy_config::Upstream) -> sluice_proxy_config::Upstream {
    sluice_proxy_config::Upstream {
        check: sluice_proxy_config::UpstreamCheck::default(),
        ..upstream.clone()
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamFailure {
    let mut source = e.source();
    let mut hyper_error = None;
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return UpstreamFailure::ConnectRefused,
                io::ErrorKind::TimedOut if e.is_connect() => {
                    return UpstreamFailure::ConnectTimeout;
                }
                _ => {}
            }
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            hyper_error = Some(h);
        }
        source = err.source();
    }
    match hyper_error {
        _ if e.is_connect() => UpstreamFailure::Connect,
        Some(h) if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() => {
            UpstreamFailure::Protocol
        }
        _ => UpstreamFailure::Reset,
    }
}

/// The caller's `Host` (HTTP/1.1) or `:authority` (h2).
pub fn caller_host(headers: &http::HeaderMap, uri: &Uri) -> Option<HeaderValue> {
    match headers.get(header::HOST) {
        Some(h) => Some(h.clone()),
        None => uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    }
}

/// How an entry point forwards: to which upstream, how it presents the caller, and how it puts
/// the upstream's answer back under its prefix and public URL.
#[derive(Debug)]
pub struct Forwarding {
    pub upstream: Arc<Upstream>,
    pub prefix: Prefix,
    /// `X-Forwarded-Proto`: the public URL's scheme, else the listener's.
    pub proto: HeaderValue,
    /// `X-Forwarded-Host`: the public URL's host, else the caller's `Host`.
    pub public_host: Option<HeaderValue>,
    /// `scheme://host[:port]` of the public URL, for rebasing upstream redirects.
    pub public_base: Option<Box<str>>,
    /// `streaming.keepAlive`.
    pub keep_alive: Option<Duration>,
    /// The entry point's open streams.
    pub streams: Gauge,
    /// `sluice_upstream_errors_total{kind="body"}` of the entry point.
    pub broken_bodies: Counter,
}

impl Forwarding {
    /// The upstream request for a caller's request whose body has been read.
    pub fn request(
        &self,
        mut parts: Parts,
        body: Bytes,
        path: PathAndQuery,
        host: Option<&HeaderValue>,
        peer_ip: &HeaderValue,
    ) -> Request<Full<Bytes>> {
        let from_h2 = parts.version == Version::HTTP_2;
        headers::prepare_request(&mut parts.headers);
        if from_h2 {
            headers::join_cookies(&mut parts.headers);
        }
        // The upstream's own name, as nginx sends by default: the upstream listens on loopback, and
        // MCP SDKs there accept only loopback Hosts (their DNS-rebinding guard, on by default for
        // 127.0.0.1 since mcp 1.23). The caller's host travels in X-Forwarded-Host, and redirects
        // built from this Host are rebased in `response`.
        parts
            .headers
            .insert(header::HOST, self.upstream.host.clone());
        let fwd_host = self.public_host.clone().or_else(|| host.cloned());
        headers::set_forwarded(
            &mut parts.headers,
            Forwarded {
                peer_ip,
                proto: &self.proto,
                host: fwd_host,
            },
        );
        parts.uri = self.upstream.uri(path);
        parts.version = Version::HTTP_11;
        parts.extensions.clear();
        Request::from_parts(parts, Full::new(body))
    }

    /// The caller's response for the upstream's.
    pub fn response(
        &self,
        upstream: Response<Incoming>,
        host: Option<&HeaderValue>,
    ) -> Response<ResponseBody> {
        let (mut parts, body) = upstream.into_parts();
        headers::prepare_response(&mut parts.headers);
        if parts.headers.contains_key(header::LOCATION) {
            self.rewrite_location(&mut parts.headers, host);
        }
        if parts.headers.contains_key(header::SET_COOKIE) {
            let cookies: Vec<HeaderValue> = parts
                .headers
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|v| {
                    self.prefix
                        .rewrite_set_cookie(v)
                        .unwrap_or_else(|| v.clone())
                })
                .collect();
            parts.headers.remove(header::SET_COOKIE);
            for c in cookies {
                parts.headers.append(header::SET_COOKIE, c);
            }
        }
        parts.extensions.clear();
        let mut body = if sse::is_event_stream(&parts.headers) {
            // Tell buffering proxies in front (nginx ingress) to pass events through at once.
            parts
                .headers
                .entry(&X_ACCEL_BUFFERING)
                .or_insert(HeaderValue::from_static("no"));
            let mut body = match self.keep_alive {
                Some(every) => ResponseBody::stream(KeepAlive::new(body, every)),
                None => ResponseBody::upstream(body),
            };
            body.guards_mut().stream = Some(GaugeGuard::new(&self.streams));
            body
        } else {
            ResponseBody::upstream(body)
        };
        body.guards_mut().broken = Some(self.broken_bodies.clone());
        Response::from_parts(parts, body)
    }

    fn rewrite_location(&self, headers: &mut http::HeaderMap, host: Option<&HeaderValue>) {
        let caller_host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
        let base = match &self.public_base {
            Some(b) => b.to_string(),
            None => format!("{}://{caller_host}", self.proto.to_str().unwrap_or("http")),
        };
        let public_host = self
            .public_host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let local = [caller_host, self.upstream.authority(), public_host];
        let local: Vec<&str> = local.into_iter().filter(|l| !l.is_empty()).collect();
        if let Some(value) = headers.get(header::LOCATION)
            && let Some(rewritten) = self.prefix.rewrite_location(value, &base, &local)
        {
            headers.insert(header::LOCATION, rewritten);
        }
    }
}
