//! floor-proxy: the least a reverse proxy built on sluice-proxy's stack does, for bench-proxy's
//! `--floor` row. hyper 1's HTTP/1.1 server and hyper-util's pooled client on a current-thread
//! runtime (sluice-proxy's default) with sluice-proxy's allocator, and nothing else: no header
//! rules, no body inspection, no policy, no logs, no metrics. What sluice-proxy costs over it
//! is what its own work costs.
//!
//! It also answers every request on `--admin` with 200, as bench-proxy waits for readiness there.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use http::uri::{Authority, Scheme, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A bare hyper reverse proxy on loopback.
#[derive(Parser)]
struct Args {
    /// Where callers connect.
    #[arg(long)]
    listen: SocketAddr,
    /// Where requests go.
    #[arg(long)]
    upstream: SocketAddr,
    /// Where readiness is asked.
    #[arg(long)]
    admin: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the runtime")?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let admin = TcpListener::bind(args.admin).await?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = admin.accept().await {
            let ok = service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(String::from("ok")))
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), ok));
        }
    });
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    let authority = Authority::try_from(args.upstream.to_string())?;
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let (client, authority) = (client.clone(), authority.clone());
        let forward = service_fn(move |req: Request<Incoming>| {
            let (client, authority) = (client.clone(), authority.clone());
            async move {
                let (mut parts, body) = req.into_parts();
                let mut uri = http::uri::Parts::default();
                uri.scheme = Some(Scheme::HTTP);
                uri.authority = Some(authority);
                uri.path_and_query = parts.uri.path_and_query().cloned();
                parts.uri = Uri::from_parts(uri)?;
                let response = client.request(Request::from_parts(parts, body)).await?;
                Ok::<_, anyhow::Error>(response)
            }
        });
        tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(tcp), forward));
    }
}
