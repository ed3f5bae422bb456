//! TLS entry points: h2 and HTTP/1.1 by ALPN, certificates reloaded when the files change.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;
use tokio_rustls::TlsConnector;

/// A fresh self-signed certificate for 127.0.0.1, written to `dir`; returns its DER.
fn write_cert(dir: &Path) -> CertificateDer<'static> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    write_atomically(&dir.join("tls.crt"), &ck.cert.pem());
    write_atomically(&dir.join("tls.key"), &ck.signing_key.serialize_pem());
    ck.cert.der().clone()
}

/// Connects with TLS trusting only `cert`, offering `alpn`.
async fn connect(
    addr: std::net::SocketAddr,
    cert: &CertificateDer<'static>,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

fn tls_entry(dir: &Path) -> String {
    format!(
        "tls:\n  certFile: {}\n  keyFile: {}",
        dir.join("tls.crt").display(),
        dir.join("tls.key").display()
    )
}

fn call() -> Request<Full<Bytes>> {
    post("/mcp")
        .header("host", "127.0.0.1")
        .body(body(TOOLS_CALL))
        .unwrap()
}

#[tokio::test]
async fn tls_serves_h2_and_http1_by_alpn() {
    let mut upstream = Upstream::ok().await;
    let certs = tempfile::tempdir().unwrap();
    let cert = write_cert(certs.path());
    let sluice = Sluice::start(&config(upstream.addr, "", &tls_entry(certs.path()))).await;

    let tls = within("TLS", connect(sluice.addr(), &cert, b"h2"))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = post("https://127.0.0.1/mcp")
        .body(body(TOOLS_CALL))
        .unwrap();
    let reply = collect(within("h2 over TLS", h2.send_request(req)).await.unwrap()).await;
    assert_eq!(
        (reply.status.as_u16(), reply.version),
        (200, http::Version::HTTP_2)
    );
    let seen = upstream.next().await;
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-host"], "127.0.0.1");

    let tls = within("TLS", connect(sluice.addr(), &cert, b"http/1.1"))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let reply = collect(
        within("HTTP/1.1 over TLS", h1.send_request(call()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    upstream.next().await;

    // Plain HTTP on a TLS port gets nowhere.
    assert!(
        !raw(sluice.addr(), b"GET /mcp HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn changed_certificates_are_picked_up_and_broken_ones_ignored() {
    let upstream = Upstream::ok().await;
    let certs = tempfile::tempdir().unwrap();
    let old = write_cert(certs.path());
    let sluice = Sluice::start(&config(upstream.addr, "", &tls_entry(certs.path()))).await;
    within("TLS", connect(sluice.addr(), &old, b"http/1.1"))
        .await
        .unwrap();

    let new = write_cert(certs.path());
    eventually("the new certificate", async || {
        connect(sluice.addr(), &new, b"http/1.1").await.is_ok()
    })
    .await;
    let applied = "sluice_tls_reloads_total{entry_point=\"main\",result=\"applied\"}";
    assert!(sluice.metric(applied).await >= Some(1.0));

    // A wrong file: the last good certificate stays in service. (The two files above are
    // replaced one after the other, so a mismatched pair may already have been rejected once.)
    let rejected = "sluice_tls_reloads_total{entry_point=\"main\",result=\"rejected\"}";
    let before = sluice.metric(rejected).await.unwrap_or(0.0);
    write_atomically(
        &certs.path().join("tls.key"),
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    );
    eventually("the rejection", async || {
        sluice.metric(rejected).await > Some(before)
    })
    .await;
    within("TLS", connect(sluice.addr(), &new, b"http/1.1"))
        .await
        .expect("the last good certificate");
    let ready = get(&sluice.admin("/readyz")).await;
    assert_eq!(ready.status, 200);
    assert!(
        ready.text().contains("certificate rejected"),
        "{}",
        ready.text()
    );
}
