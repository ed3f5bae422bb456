//! The accept loop of the harness's in-process HTTP/1.1 servers: the test upstream
//! ([`crate::upstream`]) and bench-proxy's canned upstream. Each connection gets `TCP_NODELAY`
//! and a task of its own running hyper's HTTP/1.1 server with the caller's `answer`; the loop
//! adds nothing per request, so a benchmark's upstream stays as cheap as hyper itself.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves every connection `listener` accepts with `answer`, until the runtime stops. A failed
/// accept (out of file descriptors, say) backs off 10 ms instead of spinning.
pub async fn serve<F, Fut, B>(listener: TcpListener, answer: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let answer = answer.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service_fn(answer))
                .await;
        });
    }
}
