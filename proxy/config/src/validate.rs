//! Checks on a parsed config that the types alone cannot express.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use crate::{
    AuditLog, AuditSink, Auth, EntryPoint, NameFilter, Pattern, ProxyConfig, RateLimitScope,
    ToolPolicy, Tracing, UpstreamCheck,
};

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is empty.
    #[error("the config is empty")]
    Empty,
    /// The file is larger than any ConfigMap can be.
    #[error("the config is {size} bytes; at most {max} are accepted")]
    TooLarge { size: usize, max: usize },
    /// The file could not be read.
    #[error("cannot read config file {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    /// The text is not a config (syntax, types, unknown or missing fields).
    #[error("cannot parse the config: {0}")]
    Parse(String),
    /// The config could not be written out.
    #[error("cannot serialise the config: {0}")]
    Serialize(String),
    /// The config parsed but breaks rules; every problem is listed.
    #[error("invalid config: {}", Problems(.0))]
    Invalid(Vec<Problem>),
}

/// One problem, at a path such as `entryPoints[1].rateLimits[0].period`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the config.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Collector(Vec<Problem>);

impl Collector {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub(crate) fn validate(config: &ProxyConfig) -> Result<(), ConfigError> {
    let mut c = Collector::default();
    check_globals(config, &mut c);
    if config.entry_points.is_empty() {
        c.push("entryPoints", "at least one entry point is needed");
    }
    let mut names = HashSet::new();
    let mut ports = HashSet::new();
    for (i, ep) in config.entry_points.iter().enumerate() {
        let at = format!("entryPoints[{i}]");
        if !names.insert(ep.name.as_str()) {
            c.push(
                format!("{at}.name"),
                format!("duplicate entry point name {:?}", ep.name),
            );
        }
        let port = ep.listen.port();
        if port != 0 && !ports.insert(port) {
            c.push(
                format!("{at}.listen"),
                format!("port {port} is used by another entry point"),
            );
        }
        if port != 0 && port == config.admin.listen.port() {
            c.push(
                format!("{at}.listen"),
                format!("port {port} is the admin port"),
            );
        }
        check_entry_point(config, ep, &at, &mut c);
    }
    if c.0.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(c.0))
    }
}

/// `/` or `/seg[/seg...]`, each segment of URL path characters (RFC 3986 `pchar`), none `.`
/// or `..`.
fn is_plain_path(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/')
            && path[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%".contains(&b))
            }))
}

fn check_globals(config: &ProxyConfig, c: &mut Collector) {
    match url::Url::parse(&config.upstream.url) {
        Ok(u) if u.scheme() == "http" && u.host().is_some() && u.path() == "/" => {}
        Ok(_) => c.push("upstream.url", "must be http://host:port without a path"),
        Err(e) => c.push("upstream.url", format!("not a URL: {e}")),
    }
    if !is_plain_path(&config.upstream.mcp_path) {
        c.push(
            "upstream.mcpPath",
            "must be an absolute path without a query, a fragment or empty segments, e.g. /mcp",
        );
    }
    check_upstream_check(&config.upstream.check, c);
    check_audit_log(&config.log.audit, c);
    if let Some(tracing) = &config.tracing {
        check_tracing(tracing, c);
    }
    let t = &config.timeouts;
    for (name, d) in [
        ("timeouts.headerRead", t.header_read),
        ("timeouts.bodyRead", t.body_read),
        ("timeouts.upstreamConnect", t.upstream_connect),
        ("timeouts.upstreamFirstByte", t.upstream_first_byte),
        ("timeouts.idle", t.idle),
    ] {
        if d.get().is_zero() {
            c.push(name, "must be longer than zero");
        }
    }
    if config
        .streaming
        .keep_alive
        .is_some_and(|d| d.get().is_zero())
    {
        c.push(
            "streaming.keepAlive",
            "must be longer than zero (omit it to disable)",
        );
    }
    if config.limits.max_header_bytes < 1024 {
        c.push("limits.maxHeaderBytes", "must be at least 1024");
    }
    if config.limits.max_headers < 8 {
        c.push("limits.maxHeaders", "must be at least 8");
    }
    if config.limits.max_body_bytes == 0 {
        c.push("limits.maxBodyBytes", "must be at least 1");
    }
    if config.limits.max_concurrent_streams == 0 {
        c.push("limits.maxConcurrentStreams", "must be at least 1");
    }
    let limits = &config.limits;
    for (field, value) in [
        ("maxConnections", limits.max_connections),
        ("maxConnectionsPerPeer", limits.max_connections_per_peer),
    ] {
        if value == 0 {
            c.push(format!("limits.{field}"), "must be at least 1");
        }
    }
    let lookups = &limits.identity_lookups;
    for (field, value) in [
        ("concurrent", lookups.concurrent),
        ("perSecond", lookups.per_second),
        ("burst", lookups.burst),
    ] {
        if value == 0 {
            c.push(
                format!("limits.identityLookups.{field}"),
                "must be at least 1",
            );
        }
    }
    if config.limits.max_in_flight == 0 {
        c.push("limits.maxInFlight", "must be at least 1");
    }
    let legacy = &config.legacy_sse;
    for (field, value) in [
        ("maxSessions", legacy.max_sessions),
        ("maxSessionsPerCaller", legacy.max_sessions_per_caller),
    ] {
        if value == 0 {
            c.push(
                format!("legacySse.{field}"),
                "must be at least 1 (set enabled: false to turn the transport off)",
            );
        }
    }
    if legacy.idle_timeout.get().is_zero() {
        c.push("legacySse.idleTimeout", "must be longer than zero");
    }
    if let Some(p) = &config.phabricator {
        match url::Url::parse(&p.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.path().ends_with("/api/") => {}
            Ok(_) => c.push("phabricator.url", "must be an http(s) URL ending in /api/"),
            Err(e) => c.push("phabricator.url", format!("not a URL: {e}")),
        }
    }
    if let Some(r) = &config.redis {
        let host_port_message = "must be host:port (for TLS set redis.tls, not a rediss:// URL)";
        match (&r.address, &r.sentinel) {
            (Some(_), Some(_)) => c.push(
                "redis.sentinel",
                "give either redis.address or redis.sentinel, not both",
            ),
            (None, None) => c.push("redis.address", "needs redis.address or redis.sentinel"),
            _ => {}
        }
        if let Some(address) = &r.address
            && (address.contains("://") || !is_host_port(address))
        {
            c.push("redis.address", host_port_message);
        }
        if let Some(sentinel) = &r.sentinel {
            if sentinel.master_name.is_empty() {
                c.push("redis.sentinel.masterName", "must not be empty");
            }
            if sentinel.addresses.is_empty() {
                c.push("redis.sentinel.addresses", "needs at least one sentinel");
            }
            for (i, address) in sentinel.addresses.iter().enumerate() {
                if address.contains("://") || !is_host_port(address) {
                    c.push(format!("redis.sentinel.addresses[{i}]"), host_port_message);
                }
            }
        }
        if r.username_file.is_some() && r.password_file.is_none() {
            c.push(
                "redis.usernameFile",
                "needs redis.passwordFile (an ACL user authenticates with both)",
            );
        }
        if r.tls
            .as_ref()
            .and_then(|t| t.ca_file.as_ref())
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            c.push("redis.tls.caFile", "must not be empty");
        }
    }
}

/// The shortest `upstream.check.interval`: the check must not become load on the upstream.
const MIN_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

fn check_upstream_check(check: &UpstreamCheck, c: &mut Collector) {
    if check.interval.get() < MIN_CHECK_INTERVAL {
        c.push("upstream.check.interval", "must be at least 100ms");
    }
    if check.timeout.get().is_zero() {
        c.push("upstream.check.timeout", "must be longer than zero");
    } else if check.timeout >= check.interval {
        c.push(
            "upstream.check.timeout",
            format!(
                "must be shorter than upstream.check.interval ({})",
                check.interval
            ),
        );
    }
    if check.failure_threshold == 0 {
        c.push("upstream.check.failureThreshold", "must be at least 1");
    }
}

fn check_entry_point(config: &ProxyConfig, ep: &EntryPoint, at: &str, c: &mut Collector) {
    if !is_dns_label(&ep.name) {
        c.push(format!("{at}.name"), "must be a lower-case DNS label");
    }
    if !is_path_prefix(&ep.path_prefix) {
        c.push(
            format!("{at}.pathPrefix"),
            "must be / or /segment[/segment...]: no trailing slash, no . or .. segments, no percent-encoding",
        );
    }
    if let Some(public) = &ep.public_url {
        match url::Url::parse(public) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty() =>
            {
                let path = u.path();
                let expected = if ep.path_prefix == "/" {
                    "/"
                } else {
                    ep.path_prefix.as_str()
                };
                if path != expected {
                    c.push(
                        format!("{at}.publicUrl"),
                        format!("its path {path:?} must equal pathPrefix {expected:?}"),
                    );
                }
            }
            Ok(_) => c.push(
                format!("{at}.publicUrl"),
                "must be an http(s) URL without credentials, query or fragment",
            ),
            Err(e) => c.push(format!("{at}.publicUrl"), format!("not a URL: {e}")),
        }
    }
    for (j, origin) in ep.allowed_origins.iter().enumerate() {
        if !is_origin(origin) {
            c.push(
                format!("{at}.allowedOrigins[{j}]"),
                "must be scheme://host[:port]",
            );
        }
    }
    for (j, cidr) in ep.trusted_proxies.iter().enumerate() {
        if let Err(e) = crate::parse_cidr(cidr) {
            c.push(format!("{at}.trustedProxies[{j}]"), e);
        }
    }
    if ep.max_body_bytes == Some(0) {
        c.push(format!("{at}.maxBodyBytes"), "must be at least 1");
    }
    if let Some(tls) = &ep.tls {
        if tls.cert_file.as_os_str().is_empty() {
            c.push(format!("{at}.tls.certFile"), "must not be empty");
        }
        if tls.key_file.as_os_str().is_empty() {
            c.push(format!("{at}.tls.keyFile"), "must not be empty");
        }
        if tls
            .client_ca_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            c.push(format!("{at}.tls.clientCaFile"), "must not be empty");
        }
    }
    let client_ca = ep.tls.as_ref().and_then(|t| t.client_ca_file.as_ref());
    if matches!(ep.auth, Auth::ClientCertificate) && client_ca.is_none() {
        c.push(
            format!("{at}.tls.clientCaFile"),
            "auth mode clientCertificate needs a client CA: set tls.clientCaFile",
        );
    }
    check_auth(config, &ep.auth, &format!("{at}.auth"), c);
    check_root_discovery(ep, at, c);
    check_tools(&ep.tools, &format!("{at}.tools"), c);
    check_rate_limits(config, ep, at, c);
    if let Some(d) = &ep.discovery {
        if ep.public_url.is_none() {
            c.push(format!("{at}.discovery"), "needs publicUrl");
        }
        // In mode oauth the upstream is the authorization server and its documents are
        // served; a second, local document would contradict them.
        if !matches!(ep.auth, Auth::Jwt(_) | Auth::ServiceAccount(_)) {
            c.push(
                format!("{at}.discovery"),
                format!(
                    "is for auth modes jwt and serviceAccount, not {}",
                    ep.auth.mode_name()
                ),
            );
        }
        if d.authorization_servers.is_empty() {
            c.push(
                format!("{at}.discovery.authorizationServers"),
                "needs at least one",
            );
        }
        for (j, s) in d.authorization_servers.iter().enumerate() {
            if !is_http_url(s) {
                c.push(
                    format!("{at}.discovery.authorizationServers[{j}]"),
                    "must be an http(s) URL",
                );
            }
        }
    }
}

fn check_root_discovery(ep: &EntryPoint, at: &str, c: &mut Collector) {
    if !ep.root_discovery {
        return;
    }
    if ep.public_url.is_none() {
        c.push(format!("{at}.rootDiscovery"), "needs publicUrl");
    }
    if ep.discovery.is_none() && !matches!(ep.auth, Auth::OAuth(_)) {
        c.push(
            format!("{at}.rootDiscovery"),
            "needs auth mode oauth or discovery: there is no metadata to serve",
        );
    }
}

fn check_auth(config: &ProxyConfig, auth: &Auth, at: &str, c: &mut Collector) {
    match auth {
        Auth::PhabricatorToken(p) => {
            if p.verify.is_some() && config.phabricator.is_none() {
                c.push(
                    format!("{at}.verify"),
                    "verifying tokens needs the top-level phabricator",
                );
            }
        }
        Auth::OAuth(o) => {
            if o.identity_timeout.get().is_zero() {
                c.push(format!("{at}.identityTimeout"), "must be longer than zero");
            }
        }
        Auth::ApiKey(a) => {
            if a.keys_dir.as_os_str().is_empty() {
                c.push(format!("{at}.keysDir"), "must not be empty");
            }
        }
        Auth::ServiceAccount(sa) => {
            if sa.audience.trim().is_empty() {
                c.push(format!("{at}.audience"), "must not be empty");
            }
            if sa.allowed.is_empty() {
                c.push(format!("{at}.allowed"), "needs at least one namespace/name");
            }
            for (j, s) in sa.allowed.iter().enumerate() {
                let ok = s.split_once('/').is_some_and(|(ns, name)| {
                    is_dns_label(ns) && (name == "*" || is_dns_subdomain(name))
                });
                if !ok {
                    c.push(
                        format!("{at}.allowed[{j}]"),
                        "must be namespace/name or namespace/*",
                    );
                }
            }
            if !is_http_url(&sa.token_review.api_server) {
                c.push(
                    format!("{at}.tokenReview.apiServer"),
                    "must be an http(s) URL",
                );
            }
        }
        Auth::Jwt(j) => {
            if j.issuer.trim().is_empty() {
                c.push(format!("{at}.issuer"), "must not be empty");
            }
            if j.audiences.is_empty() {
                c.push(format!("{at}.audiences"), "needs at least one audience");
            }
            if j.algorithms.is_empty() {
                c.push(format!("{at}.algorithms"), "needs at least one algorithm");
            }
            if j.jwks_url.as_deref().is_some_and(|u| !is_http_url(u)) {
                c.push(format!("{at}.jwksUrl"), "must be an http(s) URL");
            }
            if j.jwks_url.is_none() && !is_http_url(&j.issuer) {
                c.push(
                    format!("{at}.jwksUrl"),
                    "needed when the issuer is not an http(s) URL",
                );
            }
            if j.identity_claim.is_empty() {
                c.push(format!("{at}.identityClaim"), "must not be empty");
            }
        }
        Auth::ClientCertificate | Auth::None => {}
    }
}

fn check_tools(tools: &ToolPolicy, at: &str, c: &mut Collector) {
    check_names(&tools.allow, &format!("{at}.allow"), c);
    check_names(&tools.deny, &format!("{at}.deny"), c);
    for (i, rule) in tools.rules.iter().enumerate() {
        let rat = format!("{at}.rules[{i}]");
        if rule.identities.is_empty() && rule.groups.is_empty() {
            c.push(&rat, "a rule needs identities or groups");
        }
        check_names(&rule.allow, &format!("{rat}.allow"), c);
        check_names(&rule.deny, &format!("{rat}.deny"), c);
    }
    if let Some(NameFilter { allow, deny }) = &tools.prompts {
        check_names(allow, &format!("{at}.prompts.allow"), c);
        check_names(deny, &format!("{at}.prompts.deny"), c);
    }
}

/// Tool and prompt patterns use the strict name alphabet.
fn check_names(patterns: &[Pattern], at: &str, c: &mut Collector) {
    for (i, p) in patterns.iter().enumerate() {
        if let Err(e) = Pattern::name(p.as_str()) {
            c.push(format!("{at}[{i}]"), e.to_string());
        }
    }
}

fn check_rate_limits(config: &ProxyConfig, ep: &EntryPoint, at: &str, c: &mut Collector) {
    let mut names = HashSet::new();
    for (i, rl) in ep.rate_limits.iter().enumerate() {
        let rat = format!("{at}.rateLimits[{i}]");
        if !is_dns_label(&rl.name) {
            c.push(format!("{rat}.name"), "must be a lower-case DNS label");
        }
        if !names.insert(rl.name.as_str()) {
            c.push(
                format!("{rat}.name"),
                format!("duplicate rate limit name {:?}", rl.name),
            );
        }
        if rl.requests == 0 {
            c.push(format!("{rat}.requests"), "must be at least 1");
        }
        if rl.period.get().is_zero() {
            c.push(format!("{rat}.period"), "must be longer than zero");
        }
        if rl.burst == Some(0) {
            c.push(format!("{rat}.burst"), "must be at least 1");
        }
        if rl.methods.is_empty() {
            c.push(format!("{rat}.methods"), "needs at least one method");
        }
        let mut keys = HashSet::new();
        if rl.by.iter().any(|k| !keys.insert(*k)) {
            c.push(format!("{rat}.by"), "keys must not repeat");
        }
        check_names(&rl.tools, &format!("{rat}.tools"), c);
        if rl.scope == RateLimitScope::Global && config.redis.is_none() {
            c.push(
                format!("{rat}.scope"),
                "scope global needs the top-level redis",
            );
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// `/` or `/seg[/seg...]` where no segment starts with `.` and only unreserved characters
/// appear: the same rule as the McpRoute API.
pub(crate) fn is_path_prefix(s: &str) -> bool {
    if s == "/" {
        return true;
    }
    let Some(rest) = s.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|seg| {
        !seg.is_empty()
            && !seg.starts_with('.')
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
    })
}

fn is_origin(s: &str) -> bool {
    match url::Url::parse(s) {
        Ok(u) => {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && !s.ends_with('/')
                && u.query().is_none()
                && u.username().is_empty()
        }
        Err(_) => false,
    }
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

fn check_audit_log(audit: &AuditLog, c: &mut Collector) {
    match (audit.sink, &audit.path) {
        (AuditSink::File, None) => c.push("log.audit.path", "sink: file needs a path"),
        (AuditSink::File, Some(path)) if !path.is_absolute() || path.file_name().is_none() => {
            c.push("log.audit.path", "must be an absolute path to a file")
        }
        (AuditSink::Stdout, Some(_)) => c.push("log.audit.path", "only for sink: file"),
        _ => {}
    }
}

fn check_tracing(tracing: &Tracing, c: &mut Collector) {
    if !(0.0..=1.0).contains(&tracing.sampling_ratio) {
        c.push("tracing.samplingRatio", "must be from 0 to 1");
    }
    let otlp = &tracing.otlp;
    match url::Url::parse(&otlp.endpoint) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => c.push("tracing.otlp.endpoint", "must be an http(s) URL"),
        Err(e) => c.push("tracing.otlp.endpoint", format!("not a URL: {e}")),
    }
    for (field, d) in [("timeout", otlp.timeout), ("batchDelay", otlp.batch_delay)] {
        if d.get().is_zero() {
            c.push(format!("tracing.otlp.{field}"), "must be longer than zero");
        }
    }
    if otlp.max_batch == 0 {
        c.push("tracing.otlp.maxBatch", "must be at least 1");
    }
    if otlp.max_queue < otlp.max_batch {
        c.push("tracing.otlp.maxQueue", "must be at least maxBatch");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefixes() {
        for ok in ["/", "/ai", "/ai/mcp-v2", "/a_b~c"] {
            assert!(is_path_prefix(ok), "{ok}");
        }
        for bad in [
            "",
            "ai",
            "/ai/",
            "//",
            "/..",
            "/a/../b",
            "/./a",
            "/a%2fb",
            "/a b",
            "/.well-known",
        ] {
            assert!(!is_path_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn mcp_paths() {
        for ok in ["/", "/mcp", "/api/v1/mcp", "/sse:x", "/a%20b"] {
            assert!(is_plain_path(ok), "{ok}");
        }
        for bad in [
            "", "mcp", "/mcp/", "//", "/a//b", "/mcp?x=1", "/mcp#f", "/a b", "/../x", "/./x",
        ] {
            assert!(!is_plain_path(bad), "{bad}");
        }
    }

    #[test]
    fn origins() {
        assert!(is_origin("https://claude.ai"));
        assert!(is_origin("http://localhost:6274"));
        assert!(!is_origin("https://claude.ai/"));
        assert!(!is_origin("https://claude.ai/x"));
        assert!(!is_origin("claude.ai"));
    }
}
