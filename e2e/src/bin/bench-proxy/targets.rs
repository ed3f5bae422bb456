//! The proxies under test, as processes on loopback: sluice-proxy with a one-entry-point
//! config, and nginx from Debian set up the way one would put it in front of an MCP server
//! (one worker, upstream keep-alive, no buffering), once with an access log like sluice's
//! and once without one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use sluice_e2e::{Process, free_port, peers};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A proxy process and where it listens.
pub struct Proxy {
    pub process: Process,
    pub port: u16,
    /// The admin port (sluice-proxy and hyper-floor).
    pub admin: Option<u16>,
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What sluice-proxy's exporter did: spans exported, dropped, export errors.
    pub fn trace_counts(&self) -> anyhow::Result<String> {
        let admin = self.admin.context("no admin port")?;
        let text = sluice_e2e::http::get(&format!("http://127.0.0.1:{admin}/metrics"), &[])?.body;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("sluice_trace_"))
            .collect::<Vec<_>>()
            .join(", "))
    }
}

/// The sidecar config: one entry point in front of `upstream`, defaults for everything else
/// (JSON access log to stdout, which the harness sends to a file), plus `extra_entry` lines
/// (indented for the entry point) for the policy variant.
pub fn sluice_config(upstream: SocketAddr, port: u16, admin: u16, extra_entry: &str) -> String {
    format!(
        "upstream:\n  url: http://{upstream}\nadmin:\n  listen: 127.0.0.1:{admin}\n\
         entryPoints:\n  - name: bench\n    listen: 127.0.0.1:{port}\n{extra_entry}"
    )
}

/// Starts `binary` in front of `upstream` with its config written into `dir`, and waits until
/// `/readyz` answers 200.
pub fn start_sluice(
    binary: &Path,
    dir: &Path,
    label: &str,
    upstream: SocketAddr,
    extra_entry: &str,
) -> anyhow::Result<Proxy> {
    let (port, admin) = (free_port()?, free_port()?);
    let path = dir.join(format!("{label}.yaml"));
    let config = sluice_config(upstream, port, admin, extra_entry);
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    let mut command = Command::new(binary);
    command.arg("--config").arg(&path);
    let mut process = Process::spawn(&format!("{label} :{port}"), command)?;
    process.wait_for_http_ok(&format!("http://127.0.0.1:{admin}/readyz"), START_TIMEOUT)?;
    Ok(Proxy {
        process,
        port,
        admin: Some(admin),
    })
}

/// Starts floor-proxy (a bare hyper proxy, src/bin/floor-proxy.rs) in front of `upstream`.
pub fn start_floor(binary: &Path, upstream: SocketAddr) -> anyhow::Result<Proxy> {
    let (port, admin) = (free_port()?, free_port()?);
    let mut command = Command::new(binary);
    command
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--upstream={upstream}"))
        .arg(format!("--admin=127.0.0.1:{admin}"));
    let mut process = Process::spawn(&format!("hyper-floor :{port}"), command)?;
    process.wait_for_http_ok(&format!("http://127.0.0.1:{admin}/"), START_TIMEOUT)?;
    Ok(Proxy {
        process,
        port,
        admin: Some(admin),
    })
}

/// How nginx logs requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NginxLog {
    /// One JSON line per request, as sluice-proxy writes (its fields that nginx knows), in
    /// nginx's fastest way: buffered, written every 64 KiB or second.
    Access,
    /// No access log.
    Off,
}

impl NginxLog {
    /// The target's name in the report.
    pub fn target(self) -> &'static str {
        match self {
            Self::Access => "nginx",
            Self::Off => "nginx-nolog",
        }
    }

    fn directives(self, prefix: &std::path::Display<'_>) -> String {
        match self {
            Self::Access => format!(
                r#"log_format sluice_like escape=json '{{"timestamp":"$time_iso8601","level":"INFO","entry_point":"bench","method":"$request_method","path":"$uri","status":$status,"latency_s":$request_time,"target":"access"}}';
    access_log {prefix}/access.log sluice_like buffer=64k flush=1s;"#
            ),
            Self::Off => "access_log off;".to_owned(),
        }
    }
}

/// nginx's config for a proxy on `port` in front of `upstream`, with everything it writes kept
/// under `prefix`.
pub fn nginx_config(prefix: &Path, upstream: SocketAddr, port: u16, log: NginxLog) -> String {
    let p = prefix.display();
    let access_log = log.directives(&p);
    format!(
        r#"# One process that is also the only worker: one PID to measure and to kill.
daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    {access_log}
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    # Callers' connections stay open as long as the load generator's (the default closes
    # one every 1000 requests).
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream canned {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://canned;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            # What sluice-proxy sends upstream too.
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
}}
"#
    )
}

/// Starts nginx with its config and files in `dir`.
pub fn start_nginx(dir: &Path, upstream: SocketAddr, log: NginxLog) -> anyhow::Result<Proxy> {
    let prefix: PathBuf = dir.join(log.target());
    std::fs::create_dir_all(&prefix)
        .with_context(|| format!("cannot create {}", prefix.display()))?;
    let port = free_port()?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, nginx_config(&prefix, upstream, port, log))
        .with_context(|| format!("cannot write {}", conf.display()))?;
    let mut command = Command::new(peers::nginx()?);
    command
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(prefix.join("error.log"));
    let mut process = Process::spawn(&format!("nginx :{port}"), command)?;
    process.wait_for_port(port, START_TIMEOUT)?;
    Ok(Proxy {
        process,
        port,
        admin: None,
    })
}
