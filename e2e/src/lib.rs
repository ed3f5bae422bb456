//! The end-to-end harness: Sluice's binaries as real processes, next to real peers.
//!
//! Tests in `e2e/tests/` and programs in `e2e/src/bin/` use it to
//! - find the workspace and build/locate its binaries ([`binaries`]),
//! - start processes that are killed when the test ends and whose logs are shown when it fails
//!   ([`process::Process`]), and run short commands with a deadline ([`process::run`]),
//! - pick free loopback ports and wait for them ([`ports`], [`wait`]),
//! - talk HTTP ([`http`]) and read event streams ([`sse`]), legacy HTTP+SSE sessions included
//!   ([`legacy_sse`]),
//! - reach the peers that `scripts/setup.sh` installs ([`peers`]): the Python venvs, Node 22, the
//!   npm packages, Redis ([`redis`]), server-everything ([`everything`]), Prometheus and promtool
//!   ([`prometheus`]),
//! - validate Kubernetes objects against the 1.30 and 1.37 schemas ([`kubernetes`]) and render
//!   examples with `sluice-operator render` ([`render`]); run the operator against the in-memory
//!   API server as a process ([`memory_apiserver`]),
//! - render, lint and inspect the Helm chart with the Helm SDK ([`helm`]),
//! - start `sluice-proxy` as a permissive sidecar with every policy on ([`sidecar`]) and run the
//!   official MCP conformance suite against a server ([`conformance`]),
//! - run `sluice-proxy` with a config of the test's ([`proxy_process`]) in front of an
//!   in-process upstream the test controls and can kill ([`upstream`]; its accept loop,
//!   [`http_server`], is also bench-proxy's canned upstream's), and read what a process uses
//!   from `/proc` ([`procstat`]).
//!
//! A missing peer is an error that says to run `make setup`, never a skipped test: CI installs
//! every peer, so a test that cannot find one must fail. Everything is bounded in time and bound
//! to loopback.
//!
//! Errors are `anyhow` errors: the harness's callers are tests, which only ever show an error,
//! never match on it; each one says what failed and with which input.

pub mod binaries;
pub mod bridge;
pub mod conformance;
pub mod everything;
pub mod helm;
pub mod http;
pub mod http_server;
pub mod kubernetes;
pub mod legacy_sse;
pub mod memory_apiserver;
pub mod peers;
pub mod ports;
pub mod process;
pub mod procstat;
pub mod prometheus;
pub mod proxy_process;
pub mod redis;
pub mod render;
pub mod sidecar;
pub mod sse;
pub mod upstream;
pub mod wait;
pub mod workspace;

pub use binaries::{cargo_bin, sluice_operator, sluice_proxy};
pub use bridge::{Bridge, sluice_bridge};
pub use everything::ServerEverything;
pub use kubernetes::{KUBERNETES_VERSIONS, ValidationReport};
pub use ports::free_port;
pub use process::{Process, run};
pub use redis::Redis;
pub use sidecar::Sidecar;
pub use workspace::{e2e_dir, workspace_root};

/// The harness's result type.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
