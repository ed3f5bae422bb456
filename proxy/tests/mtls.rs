//! Mutual TLS: entry points that require client certificates from a CA bundle, and auth mode
//! `clientCertificate`, which names callers by the certificate (first URI SAN, else subject
//! CN). The names flow into tool rules, per-identity rate limits and audit lines; refused
//! handshakes (by `openssl s_client` too) are counted by reason; renewed files are picked up
//! without a restart.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use support::secret_dir::SecretDir;
use support::*;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const SPIFFE: &str = "spiffe://cluster.local/ns/agents/sa/builder";
const CN_ONLY: &str = "ci-runner";

/// A certificate authority of the test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM, and the certificate's DER.
struct Leaf {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn issue(&self, edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// The sidecar's certificate, for 127.0.0.1.
    fn server(&self) -> Leaf {
        self.issue(|p| {
            p.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        })
    }

    /// A client certificate named by a URI SAN (a SPIFFE ID) and, to be ignored, a CN.
    fn spiffe_client(&self) -> Leaf {
        self.issue(|p| {
            p.distinguished_name
                .push(DnType::CommonName, "not-this-name");
            p.subject_alt_names = vec![SanType::URI(SPIFFE.try_into().unwrap())];
        })
    }

    /// A client certificate named by its subject CN alone.
    fn cn_client(&self, cn: &str) -> Leaf {
        self.issue(|p| p.distinguished_name.push(DnType::CommonName, cn))
    }
}

/// The Secret the sidecar mounts, as cert-manager writes it: the server certificate and key,
/// and the CA (here also the client CA).
fn secret(root: &Path, server: &Leaf, client_ca: &Ca) -> SecretDir {
    SecretDir::new(
        root,
        &[
            ("tls.crt", &server.cert),
            ("tls.key", &server.key),
            ("ca.crt", &client_ca.pem()),
        ],
    )
}

fn tls_entry(root: &Path) -> String {
    format!(
        "tls:\n  certFile: {0}/tls.crt\n  keyFile: {0}/tls.key\n  clientCaFile: {0}/ca.crt",
        root.display()
    )
}

/// A client trusting `roots`, presenting `leaf` (or no certificate).
fn client_config(
    roots: &[CertificateDer<'static>],
    leaf: Option<&Leaf>,
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store);
    let mut config = match leaf {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn handshake(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// One JSON-RPC request on a fresh mutual-TLS connection; an error if the connection failed
/// (with TLS 1.3 a refused client certificate shows on the first read, not in the handshake).
async fn rpc(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    message: &Value,
) -> Result<Reply, String> {
    let tls = handshake(addr, config).await.map_err(|e| e.to_string())?;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = post("/mcp")
        .header("host", "127.0.0.1")
        .body(body(&message.to_string()))
        .unwrap();
    let response = within("a response", h1.send_request(req))
        .await
        .map_err(|e| e.to_string())?;
    Ok(collect(response).await)
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

#[tokio::test]
async fn certificate_identities_meet_tool_rules_rate_limits_and_the_audit_trail() {
    let upstream = Upstream::ok().await;
    let ca = Ca::new("clients and server");
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let _secret = secret(&certs, &ca.server(), &ca);
    let (port, admin) = (free_port(), free_port());
    let entry: String = tls_entry(&certs)
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let yaml = format!(
        "upstream:\n  url: http://{}\nadmin:\n  listen: 127.0.0.1:{admin}\nshutdown:\n  drainDelay: 0s\n  gracePeriod: 5s\nlog:\n  format: json\nentryPoints:\n  - name: main\n    listen: 127.0.0.1:{port}\n{entry}    auth:\n      mode: clientCertificate\n    tools:\n      rules:\n        - identities: [\"{CN_ONLY}\"]\n          deny: [\"pha_task_*\"]\n    rateLimits:\n      - name: per-caller\n        by: [identity]\n        requests: 2\n        period: 1h\n",
        upstream.addr,
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let roots = [ca.der()];
    let spiffe = client_config(&roots, Some(&ca.spiffe_client()));
    let cn = client_config(&roots, Some(&ca.cn_client(CN_ONLY)));
    let nameless = client_config(
        &roots,
        Some(&ca.issue(|p| {
            p.distinguished_name
                .push(DnType::OrganizationName, "nobody in particular");
        })),
    );

    let (statuses, stdout, _) = run_binary(&path, &[port], async || {
        let mut statuses = Vec::new();
        for (who, config, tool) in [
            // The rule denies the CN caller pha_task_*; the SPIFFE caller may.
            ("spiffe", &spiffe, "pha_task_get"),
            ("cn", &cn, "pha_task_get"),
            // Two calls each pass the per-identity limit of 2; the third is refused, for each
            // caller on its own (a denied call is not counted).
            ("cn", &cn, "pha_user_whoami"),
            ("cn", &cn, "pha_user_whoami"),
            ("cn", &cn, "pha_user_whoami"),
            ("spiffe", &spiffe, "pha_user_whoami"),
            ("spiffe", &spiffe, "pha_user_whoami"),
        ] {
            let reply = rpc(addr, config, &call(1, tool)).await.unwrap();
            statuses.push((who, tool, reply.status.as_u16()));
        }
        let refused = rpc(addr, &nameless, &call(9, "pha_task_get"))
            .await
            .unwrap();
        (statuses, refused)
    })
    .await;
    let (statuses, refused) = statuses;
    assert_eq!(
        statuses,
        [
            ("spiffe", "pha_task_get", 200),
            ("cn", "pha_task_get", 403),
            ("cn", "pha_user_whoami", 200),
            ("cn", "pha_user_whoami", 200),
            ("cn", "pha_user_whoami", 429),
            ("spiffe", "pha_user_whoami", 200),
            ("spiffe", "pha_user_whoami", 429),
        ]
    );
    // A verified certificate naming nobody: a JSON-RPC 401 saying why (refused before its
    // body is read, so no id, and no audit line).
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.rpc_code(), -32600, "{}", refused.text());
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("the client certificate names no identity"),
        "{message}"
    );
    assert_eq!(
        refused.header("www-authenticate"),
        Some(r#"ClientCertificate realm="sluice", error="invalid_token""#)
    );

    let audit: Vec<(String, String, String)> = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .filter(|l| l["target"] == "audit")
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
            (s("identity"), s("tool"), s("decision"))
        })
        .collect();
    let line = |who: &str, tool: &str, decision: &str| {
        (who.to_owned(), tool.to_owned(), decision.to_owned())
    };
    assert_eq!(
        audit,
        [
            line(SPIFFE, "pha_task_get", "allowed"),
            line(CN_ONLY, "pha_task_get", "denied"),
            line(CN_ONLY, "pha_user_whoami", "allowed"),
            line(CN_ONLY, "pha_user_whoami", "allowed"),
            line(CN_ONLY, "pha_user_whoami", "rate_limited"),
            line(SPIFFE, "pha_user_whoami", "allowed"),
            line(SPIFFE, "pha_user_whoami", "rate_limited"),
        ]
    );
}

/// `openssl s_client` connecting with `args`; its output (the handshake's outcome is the
/// server's to count).
async fn s_client(addr: SocketAddr, args: &[&str]) -> String {
    let output = within(
        "openssl s_client",
        tokio::process::Command::new("openssl")
            .arg("s_client")
            .arg("-connect")
            .arg(addr.to_string())
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("openssl runs");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn refused_handshakes_are_counted_by_reason() {
    let upstream = Upstream::ok().await;
    let ca = Ca::new("the client CA");
    let stranger = Ca::new("another CA");
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let _secret = secret(&certs, &ca.server(), &ca);
    let sluice = Sluice::start(&config(upstream.addr, "", &tls_entry(&certs))).await;
    let files = dir.path();
    let ca_file = write(files, "server-ca.pem", &ca.pem());
    let client_pair = |name: &str, leaf: &Leaf| {
        [
            "-cert".to_owned(),
            write(files, &format!("{name}.crt"), &leaf.cert),
            "-key".to_owned(),
            write(files, &format!("{name}.key"), &leaf.key),
        ]
    };
    let good = client_pair("good", &ca.cn_client("good"));
    let foreign = client_pair("foreign", &stranger.cn_client("foreign"));
    let expired = client_pair(
        "expired",
        &ca.issue(|p| {
            p.distinguished_name.push(DnType::CommonName, "expired");
            p.not_before = date_time_ymd(2020, 1, 1);
            p.not_after = date_time_ymd(2021, 1, 1);
        }),
    );

    let metric = |reason: &str| {
        format!("sluice_tls_handshake_failures_total{{entry_point=\"main\",reason=\"{reason}\"}}")
    };
    let none: [String; 0] = [];
    for (row, (reason, pair)) in [
        ("no_certificate", &none[..]),
        ("unknown_ca", &foreign[..]),
        ("expired", &expired[..]),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(sluice.metric(&metric(reason)).await, None, "row {row}");
        let mut args = vec!["-CAfile", ca_file.as_str(), "-servername", "127.0.0.1"];
        args.extend(pair.iter().map(String::as_str));
        let out = s_client(sluice.addr(), &args).await;
        eventually(&format!("the {reason} refusal to be counted"), async || {
            sluice.metric(&metric(reason)).await == Some(1.0)
        })
        .await;
        // The server's certificate itself was fine: the refusal is the client's.
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{reason}: {out}"
        );
    }

    // A certificate from the client CA gets through, with openssl as with rustls.
    let mut args = vec!["-CAfile", ca_file.as_str(), "-servername", "127.0.0.1"];
    args.extend(good.iter().map(String::as_str));
    s_client(sluice.addr(), &args).await;
    let roots = [ca.der()];
    let reply = rpc(
        sluice.addr(),
        &client_config(&roots, Some(&ca.cn_client("good"))),
        &call(1, "pha_task_get"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    // No certificate over rustls: refused too (the second such refusal).
    assert!(
        rpc(
            sluice.addr(),
            &client_config(&roots, None),
            &call(1, "pha_task_get")
        )
        .await
        .is_err()
    );
    eventually("the second no_certificate refusal", async || {
        sluice.metric(&metric("no_certificate")).await == Some(2.0)
    })
    .await;
    for reason in ["unknown_ca", "expired"] {
        assert_eq!(sluice.metric(&metric(reason)).await, Some(1.0), "{reason}");
    }
}

#[tokio::test]
async fn renewed_certificates_and_client_ca_are_used_without_a_restart() {
    let upstream = Upstream::ok().await;
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let old_server = old_ca.server();
    let mut secret = secret(&certs, &old_server, &old_ca);
    let sluice = Sluice::start(&config(upstream.addr, "", &tls_entry(&certs))).await;
    // Trusting both CAs, the clients tell the server's certificates apart by what they see.
    let roots = [old_ca.der(), new_ca.der()];
    let old_client = client_config(&roots, Some(&old_ca.cn_client("old")));
    let new_client = client_config(&roots, Some(&new_ca.cn_client("new")));
    let served = async |config: &Arc<rustls::ClientConfig>| {
        let tls = handshake(sluice.addr(), config).await.ok()?;
        tls.get_ref().1.peer_certificates()?.first().cloned()
    };
    assert_eq!(served(&old_client).await.as_ref(), Some(&old_server.der));
    let reply = rpc(sluice.addr(), &old_client, &call(1, "pha_task_get")).await;
    assert_eq!(reply.unwrap().status, 200);
    assert!(
        rpc(sluice.addr(), &new_client, &call(1, "pha_task_get"))
            .await
            .is_err()
    );

    println!(
        "before renewal: served certificate from the old CA ({} bytes); old CA's client 200, new CA's client refused",
        old_server.der.len()
    );
    let started = tokio::time::Instant::now();

    // cert-manager renews the Secret with a new issuer; the kubelet swaps `..data`.
    let new_server = new_ca.server();
    secret.update(&[
        ("tls.crt", &new_server.cert),
        ("tls.key", &new_server.key),
        ("ca.crt", &new_ca.pem()),
    ]);
    eventually("the new server certificate", async || {
        served(&new_client).await.as_ref() == Some(&new_server.der)
    })
    .await;
    let reply = rpc(sluice.addr(), &new_client, &call(1, "pha_task_get")).await;
    assert_eq!(reply.unwrap().status, 200);
    // The old CA is no longer trusted for clients.
    assert!(
        rpc(sluice.addr(), &old_client, &call(1, "pha_task_get"))
            .await
            .is_err()
    );
    let applied = "sluice_tls_reloads_total{entry_point=\"main\",result=\"applied\"}";
    assert_eq!(sluice.metric(applied).await, Some(1.0));
    println!(
        "after the ..data swap: the same sidecar process served the new CA's certificate within {} ms; new CA's client 200, old CA's client refused; {applied} 1",
        started.elapsed().as_millis()
    );
}

#[tokio::test]
async fn a_changed_client_ca_alone_is_picked_up() {
    let upstream = Upstream::ok().await;
    let server_ca = Ca::new("server CA");
    let (old_ca, new_ca) = (Ca::new("old client CA"), Ca::new("new client CA"));
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let server = server_ca.server();
    let mut secret = secret(&certs, &server, &old_ca);
    let sluice = Sluice::start(&config(upstream.addr, "", &tls_entry(&certs))).await;
    let roots = [server_ca.der()];
    let old_client = client_config(&roots, Some(&old_ca.cn_client("old")));
    let new_client = client_config(&roots, Some(&new_ca.cn_client("new")));
    let ok = async |config| {
        rpc(sluice.addr(), config, &call(1, "pha_task_get"))
            .await
            .is_ok_and(|r| r.status == 200)
    };
    assert!(ok(&old_client).await);
    assert!(!ok(&new_client).await);

    // Only the bundle changes: the certificate and key are the same bytes.
    secret.update(&[
        ("tls.crt", &server.cert),
        ("tls.key", &server.key),
        ("ca.crt", &new_ca.pem()),
    ]);
    eventually("the new client CA", async || ok(&new_client).await).await;
    assert!(!ok(&old_client).await);
}
