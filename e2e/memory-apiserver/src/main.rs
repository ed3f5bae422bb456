//! `sluice-memory-apiserver`: the in-memory API server as a process of its own, for black-box
//! tests that run the `sluice-operator` binary against it (a kubeconfig naming the printed URL).
//! Binds a free port on 127.0.0.1, prints `listening on http://127.0.0.1:<port>` and serves
//! until it is killed. Its state starts empty: install CRDs through the API, as `kubectl apply`
//! would.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = sluice_memory_apiserver::MemoryApiServer::start().await;
    println!("listening on {}", server.url());
    // The server runs on this runtime until the process is killed.
    std::future::pending::<()>().await;
}
