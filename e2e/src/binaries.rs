//! The workspace's binaries, built on demand by the cargo running the tests and located exactly.
//!
//! A test needs `sluice-operator` or `sluice-proxy` from another package, which Cargo does not
//! hand over (`CARGO_BIN_EXE_*` is per package). So the harness asks the `CARGO` that runs the
//! tests to build the binary, in the same target directory and profile as the test itself, and
//! takes the executable's path from Cargo's JSON messages. When the binary is up to date this is
//! a no-op costing a fraction of a second, and each binary is asked for once per test process.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::Result;
use crate::process::{self, tail};
use crate::workspace::workspace_root;

/// A cold build of the workspace on two cores takes minutes; this only stops a hung build.
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// Binaries located so far in this process, by (package, binary).
static BUILT: Mutex<BTreeMap<(String, String), PathBuf>> = Mutex::new(BTreeMap::new());

/// The `sluice-operator` binary.
pub fn sluice_operator() -> Result<PathBuf> {
    cargo_bin("sluice-operator", "sluice-operator")
}

/// The `sluice-proxy` binary.
pub fn sluice_proxy() -> Result<PathBuf> {
    cargo_bin("sluice-proxy", "sluice-proxy")
}

/// Builds binary `bin` of workspace package `package` (if it is not up to date) and returns its
/// path.
///
/// The build selects the whole workspace with dev-dependencies enabled (`--workspace
/// --examples`), which resolves features exactly as `cargo test --workspace` does: building the
/// binary for one package alone would resolve different features for shared dependencies and
/// compile them all again. The workspace has no Cargo examples, so `--examples` builds nothing
/// itself. `CARGO_TARGET_DIR` and the test's own profile (dev or release) are honoured.
pub fn cargo_bin(package: &str, bin: &str) -> Result<PathBuf> {
    // Held for the build, so parallel tests wait for one build instead of queueing several.
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (package.to_owned(), bin.to_owned());
    if let Some(path) = built.get(&key) {
        return Ok(path.clone());
    }
    let path = build(package, bin)?;
    built.insert(key, path.clone());
    Ok(path)
}

fn build(package: &str, bin: &str) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--workspace", "--examples", "--bin", bin])
        .arg("--message-format=json-render-diagnostics");
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(describes_the_running_package) {
            command.env_remove(&name);
        }
    }
    if let Some(build_dir) = BuildDir::of_current_exe() {
        command.arg("--target-dir").arg(&build_dir.target_dir);
        match build_dir.profile.as_str() {
            "debug" => {}
            "release" => {
                command.arg("--release");
            }
            other => {
                command.args(["--profile", other]);
            }
        }
    }
    let output = process::run(&mut command, BUILD_TIMEOUT)?;
    if !output.status.success() {
        bail!(
            "building {bin} ({package}) failed ({}): {command:?}\n{}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 80)
        );
    }
    let stdout = String::from_utf8(output.stdout).context("cargo's JSON output is not UTF-8")?;
    find_executable(&stdout, package, bin).with_context(|| format!("after {command:?}"))
}

/// Whether `name` is one of the variables `cargo test` and `cargo run` set for the program they
/// run, describing its package. They must not reach the nested cargo: a build script that tracks
/// one (ring's tracks `CARGO_MANIFEST_DIR`) would rerun and rebuild everything above it, and the
/// next outer build would rebuild it all back.
fn describes_the_running_package(name: &str) -> bool {
    matches!(
        name,
        "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "CARGO_RUSTC_CURRENT_DIR"
            | "OUT_DIR"
    ) || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
}

/// The target directory and profile directory the running executable was built into, when it
/// sits in Cargo's layout (`<target>/<profile>/deps/<test>` or `<target>/<profile>/<bin>`).
#[derive(Debug, PartialEq, Eq)]
struct BuildDir {
    target_dir: PathBuf,
    profile: String,
}

impl BuildDir {
    fn of_current_exe() -> Option<Self> {
        Self::of(&std::env::current_exe().ok()?)
    }

    fn of(exe: &Path) -> Option<Self> {
        let mut dir = exe.parent()?;
        if dir
            .file_name()
            .is_some_and(|name| name == "deps" || name == "examples")
        {
            dir = dir.parent()?;
        }
        let profile = dir.file_name()?.to_str()?.to_owned();
        let target_dir = dir.parent()?;
        // Cargo tags the root of every target directory; without the tag this is not Cargo's
        // layout (or it is `<target>/<triple>/<profile>`), and Cargo's own defaults apply.
        target_dir.join("CACHEDIR.TAG").is_file().then(|| Self {
            target_dir: target_dir.to_path_buf(),
            profile,
        })
    }
}

/// The executable of `package`'s binary `bin` among Cargo's JSON messages.
fn find_executable(messages: &str, package: &str, bin: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for line in messages.lines().filter(|line| line.starts_with('{')) {
        let message: Value =
            serde_json::from_str(line).with_context(|| format!("bad cargo message: {line}"))?;
        if message["reason"] != "compiler-artifact" || message["target"]["name"] != bin {
            continue;
        }
        let is_bin = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"));
        // Package ids look like `path+file:///…/operator#sluice-operator@0.1.0`.
        let of_package = message["package_id"].as_str().is_some_and(|id| {
            id.contains(&format!("#{package}@")) || id.contains(&format!("/{package}#"))
        });
        if let (true, true, Some(executable)) = (is_bin, of_package, message["executable"].as_str())
        {
            found.push(PathBuf::from(executable));
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("cargo built no binary {bin} of package {package}"),
        many => bail!("cargo built several binaries {bin} of package {package}: {many:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_dir_follows_cargo_layout() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::create_dir_all(target.join("release/deps")).unwrap();
        std::fs::write(
            target.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55",
        )
        .unwrap();
        let expected = BuildDir {
            target_dir: target.clone(),
            profile: "release".to_owned(),
        };
        assert_eq!(
            BuildDir::of(&target.join("release/deps/e2e-123")),
            Some(expected)
        );
        assert_eq!(
            BuildDir::of(&target.join("release/bench-proxy"))
                .unwrap()
                .profile,
            "release"
        );
        assert_eq!(BuildDir::of(&root.path().join("elsewhere/bin/tool")), None);
    }

    #[test]
    fn the_running_test_is_in_cargo_layout() {
        let build_dir = BuildDir::of_current_exe().expect("tests run from a Cargo target dir");
        assert!(
            build_dir
                .target_dir
                .join(&build_dir.profile)
                .join("deps")
                .is_dir()
        );
    }

    #[test]
    fn only_the_running_package_variables_are_withheld() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_BIN_EXE_bench",
            "OUT_DIR",
        ] {
            assert!(describes_the_running_package(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "PATH",
        ] {
            assert!(!describes_the_running_package(name), "{name}");
        }
    }

    #[test]
    fn executable_is_taken_from_the_matching_artifact() {
        let messages = concat!(
            "{\"reason\":\"compiler-artifact\",\"package_id\":\"path+file:///w/operator#sluice-operator@0.1.0\",",
            "\"target\":{\"name\":\"sluice-operator\",\"kind\":[\"lib\"]},\"executable\":null}\n",
            "{\"reason\":\"compiler-artifact\",\"package_id\":\"path+file:///w/operator#sluice-operator@0.1.0\",",
            "\"target\":{\"name\":\"sluice-operator\",\"kind\":[\"bin\"]},\"executable\":\"/t/debug/sluice-operator\"}\n",
            "{\"reason\":\"build-finished\",\"success\":true}\n",
        );
        let path = find_executable(messages, "sluice-operator", "sluice-operator").unwrap();
        assert_eq!(path, PathBuf::from("/t/debug/sluice-operator"));
        assert!(find_executable(messages, "sluice-proxy", "sluice-operator").is_err());
        assert!(find_executable(messages, "sluice-operator", "sluice-proxy").is_err());
    }
}
