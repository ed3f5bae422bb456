//! McpServer + McpRoutes → the sidecar configuration (sluice-proxy-config).
//!
//! Pure: no cluster access. Every path the config names (Secret files, the CA bundle, the
//! ServiceAccount token) is recorded in [`SidecarFiles`], from which `render` mounts exactly
//! those files into the sidecar, so the config and the pod cannot disagree.

mod files;
mod policy;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sluice_crds::McpServer;
use sluice_crds::defaults::{ADMIN_PORT, BRIDGE_PORT, CONDUIT_PORT, SERVER_LISTENER_PORT};
use sluice_crds::policy::Policy;
use sluice_crds::server::{self, UpstreamAuthMode};
use sluice_crds::tls::EntryPointTls;
use sluice_proxy_config::{
    Admin, Duration, EntryPoint, LegacySse, Limits, Log, Otlp, PhabricatorApi, ProxyConfig, Redis,
    RedisSentinel, RedisTls, Shutdown, Streaming, Timeouts, Tls, Tracing, Upstream, UpstreamCheck,
};

pub use self::files::CONFIG_FILE;
pub(crate) use self::files::{
    CA_BUNDLES_DIR, CONFIG_DIR, CaSource, PHABRICATOR_CA_DIR, PHABRICATOR_CA_FILE,
    SERVICE_ACCOUNT_DIR, SecretFiles, SidecarFiles, secret_dir,
};
pub(crate) use self::policy::effective_mode;
use crate::key::ObjectKey;
use crate::render_error::RenderError;

/// Where an entry point sits: what translating its policy needs besides the policy itself.
#[derive(Clone, Debug)]
pub(crate) struct Site<'a> {
    /// The McpServer or McpRoute the policy comes from (named in errors).
    pub object: &'a ObjectKey,
    /// The entry point's name: the server's or the route's name.
    pub name: &'a str,
    /// Its sidecar listener port.
    pub port: u16,
    /// The path prefix callers use (`/` for the server's own entry point).
    pub path_prefix: &'a str,
    /// The public URL (origin + prefix), when the entry point has one.
    pub public_url: Option<&'a str>,
    /// The in-cluster base URL of its Service, `http://<service>.<namespace>.svc`: the
    /// default audience of ServiceAccount tokens.
    pub service_url: &'a str,
    /// HTTPS (and mutual TLS) served by the sidecar on this entry point.
    pub tls: Option<&'a EntryPointTls>,
}

/// The entry point of the server's own Service, on port 8080 at `/`.
pub(crate) fn server_site<'a>(
    object: &'a ObjectKey,
    service_url: &'a str,
    tls: Option<&'a EntryPointTls>,
) -> Site<'a> {
    Site {
        object,
        name: &object.name,
        port: SERVER_LISTENER_PORT,
        path_prefix: "/",
        public_url: None,
        service_url,
        tls,
    }
}

/// `[::]:port`: the sidecar listens on every address of both families (it falls back to
/// IPv4 where the pod has no IPv6), so IPv6-only and dual-stack clusters reach it too.
fn any_address(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))
}

/// One entry point of the sidecar config from a policy, and the files it refers to.
pub(crate) fn entry_point(
    server: &McpServer,
    site: &Site<'_>,
    policy: &Policy,
) -> Result<(EntryPoint, SidecarFiles), RenderError> {
    let mut files = SidecarFiles::default();
    let at = "spec.policy";
    let auth = policy::auth(server, site, &policy.authentication, &mut files)?;
    let discovery = policy::discovery(site, &policy.authentication);
    let upstream_token = policy
        .upstream_token
        .as_ref()
        .map(|token| policy::upstream_token(server, site, token, &mut files))
        .transpose()?;
    let max_body_bytes = u64::try_from(policy.max_body_bytes)
        .ok()
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| {
            invalid_policy(
                site.object,
                format!("{at}.maxBodyBytes"),
                "must be positive",
            )
        })?;
    let tls = site
        .tls
        .map(|tls| entry_point_tls(site.object, tls, &mut files))
        .transpose()?;
    let entry_point = EntryPoint {
        name: site.name.to_string(),
        listen: any_address(site.port),
        tls,
        path_prefix: site.path_prefix.to_string(),
        public_url: site.public_url.map(str::to_string),
        allowed_origins: policy.allowed_origins.clone(),
        max_body_bytes: Some(max_body_bytes),
        auth,
        upstream_token,
        tools: policy::tools(site.object, &policy.tools)?,
        rate_limits: policy::rate_limits(server, site.object, &policy.rate_limits)?,
        trusted_proxies: trusted_proxies(site.object, &policy.trusted_proxies)?,
        discovery,
        // Whether one route owns its host cannot be known from one server's render, so the
        // root fallback stays off; routes at `/` answer it anyway (see the sidecar's discovery).
        root_discovery: false,
    };
    Ok((entry_point, files))
}

/// `spec.tls`: the `kubernetes.io/tls` Secret mounted whole into the sidecar (no subPath and
/// no items, so the kubelet's updates of a renewed certificate reach the pod), and the client
/// CA bundle beside the other CA bundles.
fn entry_point_tls(
    object: &ObjectKey,
    tls: &EntryPointTls,
    files: &mut SidecarFiles,
) -> Result<Tls, RenderError> {
    let dir = files.whole_secret(&tls.secret_name);
    let client_ca_file = match &tls.client_ca {
        None => None,
        Some(bundle) => {
            let source = CaSource::of(bundle).ok_or_else(|| RenderError::InvalidSpec {
                object: object.clone(),
                field: "spec.tls.clientCa".into(),
                message: "clientCa needs exactly one of configMapKeyRef or secretKeyRef".into(),
            })?;
            Some(files.ca_bundle(source))
        }
    };
    Ok(Tls {
        cert_file: dir.join("tls.crt"),
        key_file: dir.join("tls.key"),
        client_ca_file,
    })
}

/// The whole sidecar config of `server` around its entry points (the server's own first).
/// The result passes [`ProxyConfig::validate`]; `files` gains what the globals refer to.
pub(crate) fn proxy_config(
    server: &McpServer,
    key: &ObjectKey,
    entry_points: Vec<EntryPoint>,
    files: &mut SidecarFiles,
) -> Result<ProxyConfig, RenderError> {
    let spec = &server.spec;
    let phabricator = spec.phabricator.as_ref().map(|p| {
        let mut api = PhabricatorApi::new(phabricator_api_url(&p.url));
        api.insecure_skip_verify = p.insecure_skip_verify;
        if p.ca_bundle.is_some() {
            api.ca_file = Some(files.phabricator_ca());
        }
        api
    });
    let redis = spec
        .redis
        .as_ref()
        .map(|r| redis(key, r, files))
        .transpose()?;
    let config = ProxyConfig {
        upstream: Upstream {
            url: format!("http://127.0.0.1:{}", upstream_port(key, spec)?),
            mcp_path: spec
                .container
                .as_ref()
                .and_then(|c| c.path.clone())
                .unwrap_or_else(|| sluice_proxy_config::DEFAULT_MCP_PATH.into()),
            sessions: match spec.sessions {
                server::Sessions::Stateless => sluice_proxy_config::Sessions::Stateless,
                server::Sessions::Stateful => sluice_proxy_config::Sessions::Stateful,
            },
            check: upstream_check(key, &spec.proxy.upstream_check)?,
            ..Upstream::default()
        },
        admin: Admin {
            listen: any_address(ADMIN_PORT),
            audit_events: spec.proxy.audit_events,
        },
        limits: Limits::default(),
        timeouts: Timeouts::default(),
        streaming: Streaming::default(),
        legacy_sse: legacy_sse(key, &spec.proxy.legacy_sse)?,
        shutdown: Shutdown::default(),
        log: log(&spec.proxy),
        phabricator,
        redis,
        tracing: spec
            .proxy
            .tracing
            .as_ref()
            .map(|t| tracing(key, t, files))
            .transpose()?,
        entry_points,
    };
    config
        .validate()
        .map_err(|source| RenderError::InvalidProxyConfig {
            server: key.clone(),
            source,
        })?;
    Ok(config)
}

/// `spec.redis`: its Secrets and CA bundle are mounted into the sidecar only.
fn redis(
    key: &ObjectKey,
    r: &server::Redis,
    files: &mut SidecarFiles,
) -> Result<Redis, RenderError> {
    let mut redis = Redis {
        address: r.address.clone(),
        sentinel: r.sentinel.as_ref().map(|s| RedisSentinel {
            master_name: s.master_name.clone(),
            addresses: s.addresses.clone(),
            password_file: s.password_secret_ref.as_ref().map(|p| files.secret_key(p)),
        }),
        ..Redis::new("")
    };
    if let Some(tls) = &r.tls {
        let ca_file = match &tls.ca_bundle {
            None => None,
            Some(bundle) => {
                let source = CaSource::of(bundle).ok_or_else(|| RenderError::InvalidSpec {
                    object: key.clone(),
                    field: "spec.redis.tls.caBundle".into(),
                    message: "caBundle needs exactly one of configMapKeyRef or secretKeyRef".into(),
                })?;
                Some(files.ca_bundle(source))
            }
        };
        redis.tls = Some(RedisTls { ca_file });
    }
    redis.username_file = r.username_secret_ref.as_ref().map(|s| files.secret_key(s));
    redis.password_file = r.password_secret_ref.as_ref().map(|s| files.secret_key(s));
    redis.fail_mode = match r.fail_mode {
        server::FailMode::Open => sluice_proxy_config::FailMode::Open,
        server::FailMode::Closed => sluice_proxy_config::FailMode::Closed,
    };
    // Several servers may share one Redis: their budgets must not mix.
    redis.key_prefix = format!("sluice:{}:{}:", key.namespace, key.name);
    Ok(redis)
}

fn upstream_check(
    key: &ObjectKey,
    check: &server::UpstreamCheck,
) -> Result<UpstreamCheck, RenderError> {
    let duration = |field: &str, text: &str| {
        Duration::parse(text).map_err(|message| RenderError::InvalidSpec {
            object: key.clone(),
            field: format!("spec.proxy.upstreamCheck.{field}"),
            message,
        })
    };
    Ok(UpstreamCheck {
        interval: duration("interval", &check.interval)?,
        timeout: duration("timeout", &check.timeout)?,
        failure_threshold: check.failure_threshold,
    })
}

fn legacy_sse(key: &ObjectKey, legacy: &server::LegacySse) -> Result<LegacySse, RenderError> {
    let idle_timeout =
        Duration::parse(&legacy.idle_timeout).map_err(|message| RenderError::InvalidSpec {
            object: key.clone(),
            field: "spec.proxy.legacySse.idleTimeout".to_string(),
            message,
        })?;
    // A u32 always fits a usize where the sidecar runs; past it, the limit is none anyway.
    let count = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(LegacySse {
        enabled: legacy.enabled,
        max_sessions: count(legacy.max_sessions),
        max_sessions_per_caller: count(legacy.max_sessions_per_caller),
        idle_timeout,
    })
}

/// The sidecar's trace export. The resource attributes name the server's workload by the
/// semantic conventions (the pod's name comes from the environment, see `render`); the
/// user's own win.
fn tracing(
    key: &ObjectKey,
    spec: &server::Tracing,
    files: &mut SidecarFiles,
) -> Result<Tracing, RenderError> {
    let invalid = |field: &str, message: String| RenderError::InvalidSpec {
        object: key.clone(),
        field: format!("spec.proxy.tracing.{field}"),
        message,
    };
    let mut otlp = Otlp::new(otlp_traces_url(&spec.endpoint).map_err(|e| invalid("endpoint", e))?);
    otlp.headers_dir = spec
        .headers_secret_ref
        .as_ref()
        .map(|secret| files.whole_secret(&secret.name));
    if let Some(bundle) = &spec.ca_bundle {
        let source = CaSource::of(bundle).ok_or_else(|| {
            invalid(
                "caBundle",
                "caBundle needs exactly one of configMapKeyRef or secretKeyRef".into(),
            )
        })?;
        otlp.ca_file = Some(files.ca_bundle(source));
    }
    let sampling_ratio = spec
        .sampling_ratio
        .parse::<f64>()
        .ok()
        .filter(|ratio| (0.0..=1.0).contains(ratio))
        .ok_or_else(|| invalid("samplingRatio", "must be a number from 0 to 1".into()))?;
    let mut resource_attributes = BTreeMap::from([
        ("service.name".to_string(), "sluice-proxy".to_string()),
        ("k8s.namespace.name".to_string(), key.namespace.clone()),
        // The Deployment is named after the server.
        ("k8s.deployment.name".to_string(), key.name.clone()),
        ("sluice.mcp_server".to_string(), key.name.clone()),
    ]);
    resource_attributes.extend(spec.resource_attributes.clone());
    Ok(Tracing {
        otlp,
        sampling_ratio,
        resource_attributes,
    })
}

/// The OTLP/HTTP traces URL: `endpoint` as is, or with `/v1/traces` when it has no path (a
/// collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` would name it).
fn otlp_traces_url(endpoint: &str) -> Result<String, String> {
    let mut url = url::Url::parse(endpoint).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http(s) URL".into());
    }
    if url.path() == "/" {
        url.set_path("/v1/traces");
    }
    Ok(url.into())
}

/// Phabricator's Conduit API base as Conduit wants it: the URL with `/api/` appended unless
/// it already ends so (`https://phab.example.com` → `https://phab.example.com/api/`).
pub(crate) fn phabricator_api_url(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with("/api") {
        format!("{base}/")
    } else {
        format!("{base}/api/")
    }
}

/// The port the server listens on, on the pod's loopback: Conduit's, or `container.port`
/// (for a stdio server, the bridge's, by default [`BRIDGE_PORT`]).
pub(crate) fn upstream_port(
    key: &ObjectKey,
    spec: &server::McpServerSpec,
) -> Result<u16, RenderError> {
    let Some(container) = &spec.container else {
        return Ok(CONDUIT_PORT);
    };
    let invalid = |message: &str| RenderError::InvalidSpec {
        object: key.clone(),
        field: "spec.container.port".into(),
        message: message.into(),
    };
    match (container.port, &container.stdio) {
        (Some(port), _) => u16::try_from(port)
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| invalid("must be a port from 1 to 65535")),
        (None, Some(_)) => Ok(BRIDGE_PORT),
        (None, None) => Err(invalid(
            "is required without container.stdio: it is the port the server serves Streamable HTTP on",
        )),
    }
}

/// Whether the server's Conduit runs its OAuth proxy.
pub(crate) fn is_oauth(server: &McpServer) -> bool {
    server.spec.auth.mode == UpstreamAuthMode::OAuth
}

fn log(proxy: &server::ProxySpec) -> Log {
    use sluice_proxy_config::{LogFormat, LogLevel};
    Log {
        level: match proxy.log_level {
            server::LogLevel::Error => LogLevel::Error,
            server::LogLevel::Warn => LogLevel::Warn,
            server::LogLevel::Info => LogLevel::Info,
            server::LogLevel::Debug => LogLevel::Debug,
            server::LogLevel::Trace => LogLevel::Trace,
        },
        format: match proxy.log_format {
            server::LogFormat::Json => LogFormat::Json,
            server::LogFormat::Text => LogFormat::Text,
        },
        // On stdout: a file needs a volume and a reader in the pod, which the McpServer does
        // not offer.
        audit: sluice_proxy_config::AuditLog::default(),
    }
}

/// `trustedProxies` as the sidecar reads it. The schema admits only CIDRs; one the sidecar
/// would still refuse is named here rather than as a field of the sidecar's config.
fn trusted_proxies(object: &ObjectKey, cidrs: &[String]) -> Result<Vec<String>, RenderError> {
    for (i, cidr) in cidrs.iter().enumerate() {
        sluice_proxy_config::parse_cidr(cidr)
            .map_err(|e| invalid_policy(object, format!("spec.policy.trustedProxies[{i}]"), e))?;
    }
    Ok(cidrs.to_vec())
}

fn invalid_policy(object: &ObjectKey, field: String, message: impl Into<String>) -> RenderError {
    RenderError::InvalidPolicy {
        object: object.clone(),
        field,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_endpoints_without_a_path_get_the_traces_path() {
        for (given, want) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otlp.example.com/v1/traces",
                "https://otlp.example.com/v1/traces",
            ),
            (
                "https://otlp.example.com/otlp/v1/traces",
                "https://otlp.example.com/otlp/v1/traces",
            ),
        ] {
            assert_eq!(otlp_traces_url(given).as_deref(), Ok(want), "{given}");
        }
        assert!(otlp_traces_url("ftp://collector/v1/traces").is_err());
        assert!(otlp_traces_url("http://collector:99999/v1/traces").is_err());
    }

    #[test]
    fn phabricator_urls_end_in_api() {
        for (given, want) in [
            ("https://phab.example.com", "https://phab.example.com/api/"),
            ("https://phab.example.com/", "https://phab.example.com/api/"),
            (
                "https://phab.example.com/api",
                "https://phab.example.com/api/",
            ),
            (
                "https://phab.example.com/api/",
                "https://phab.example.com/api/",
            ),
            (
                "http://10.0.0.1:8080/phab",
                "http://10.0.0.1:8080/phab/api/",
            ),
        ] {
            assert_eq!(phabricator_api_url(given), want, "{given}");
        }
    }
}
