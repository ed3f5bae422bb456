//! Where the Redis master is, by asking Redis Sentinel (the redis crate's sentinel client: it
//! asks the sentinels in order and checks with `ROLE` that the node it names is a master).

use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, RedisConnectionInfo, TlsCertificates, TlsMode};
use sluice_proxy_config::RedisSentinel;

/// A failed lookup: the metric kind (`sentinel`, or `tls` for a refused handshake) and why.
pub type LookupError = (&'static str, String);

/// The master's `host:port` as the sentinels announce it.
///
/// `node` carries the credentials for the master (the `ROLE` check logs in);
/// `sentinel_password` is the sentinels' own. With `certificates`, sentinels and master are
/// reached over TLS trusting them.
pub async fn find_master(
    config: &RedisSentinel,
    node: &RedisConnectionInfo,
    sentinel_password: Option<String>,
    certificates: Option<TlsCertificates>,
) -> Result<(String, u16), LookupError> {
    let tls = certificates.is_some();
    let sentinels = config
        .addresses
        .iter()
        .map(|address| sentinel_addr(address, tls))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder =
        SentinelClientBuilder::new(sentinels, &config.master_name, SentinelServerType::Master)
            .map_err(|e| ("sentinel", e.to_string()))?;
    if let Some(username) = node.username() {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = node.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    if let Some(password) = sentinel_password {
        builder = builder.set_client_to_sentinel_password(password);
    }
    if let Some(certificates) = certificates {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_redis_certificates(certificates.clone())
            .set_client_to_sentinel_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_certificates(certificates);
    }
    let mut client = builder.build().map_err(|e| ("sentinel", e.to_string()))?;
    let master = client.async_get_client().await.map_err(|e| {
        let kind = if super::global::is_tls(&e) {
            "tls"
        } else {
            "sentinel"
        };
        let name = &config.master_name;
        (kind, format!("no master {name:?} from the sentinels: {e}"))
    })?;
    match master.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Ok((host.clone(), *port))
        }
        other => Err((
            "sentinel",
            format!("the sentinels name {other}, not a TCP address"),
        )),
    }
}

/// A sentinel's address (validated `host:port`; IPv6 hosts in brackets).
fn sentinel_addr(address: &str, tls: bool) -> Result<ConnectionAddr, LookupError> {
    let bad = || ("sentinel", format!("bad sentinel address {address:?}"));
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(if tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    })
}

/// `host:port` for a URL, with an IPv6 host in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(host_port("10.0.0.7", 6379), "10.0.0.7:6379");
        assert_eq!(host_port("fd00::7", 6379), "[fd00::7]:6379");
        assert!(matches!(
            sentinel_addr("[::1]:26379", false),
            Ok(ConnectionAddr::Tcp(h, 26379)) if h == "::1"
        ));
        assert!(matches!(
            sentinel_addr("s.example:26379", true),
            Ok(ConnectionAddr::TcpTls { host, port: 26379, insecure: false, .. }) if host == "s.example"
        ));
        assert!(sentinel_addr("no-port", false).is_err());
    }
}
