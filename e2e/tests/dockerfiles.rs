//! The image recipes (`Dockerfile.operator`, `Dockerfile.proxy`, `.dockerignore`), checked by
//! reading them: no container engine runs here. Multi-stage, pinned bases, a distroless
//! non-root final stage with nothing but the binaries, `--locked` release builds of exactly the
//! binaries shipped, no downloads piped into a shell, OCI labels, an exec-form ENTRYPOINT; the
//! Makefile runs the same cargo commands (so CI compiles what the images ship); the build
//! stage's Rust is the one rust-toolchain.toml pins and Cargo.toml's `rust-version` names; and
//! the entrypoints need no shared library the final base lacks.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_e2e::process::run_ok;
use sluice_e2e::workspace::workspace_path;
use sluice_e2e::{sluice_operator, sluice_proxy};

/// A binary an image ships, and how it is linked.
#[derive(Clone, Copy, Debug)]
struct Shipped {
    package: &'static str,
    bin: &'static str,
    /// Linked statically (`+crt-static`), to run in images that are not this one.
    linked_statically: bool,
}

impl Shipped {
    /// The cargo command of the build stage that builds it, flags and all.
    fn build_command(&self) -> String {
        let Self { package, bin, .. } = self;
        if self.linked_statically {
            // An explicit --target keeps the static flag off build scripts and proc macros.
            format!(
                "RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked \
                 --target \"$(rustc -vV | sed -n 's/^host: //p')\" -p {package} --bin {bin}"
            )
        } else {
            format!("cargo build --release --locked -p {package} --bin {bin}")
        }
    }
}

/// An image: its Dockerfile, the binary its ENTRYPOINT runs, and what it ships beside it.
#[derive(Clone, Copy, Debug)]
struct Image {
    dockerfile: &'static str,
    entrypoint: Shipped,
    beside: &'static [Shipped],
}

impl Image {
    /// Every binary the image ships, the entrypoint first.
    fn binaries(&self) -> Vec<Shipped> {
        std::iter::once(self.entrypoint)
            .chain(self.beside.iter().copied())
            .collect()
    }
}

const IMAGES: [Image; 2] = [
    Image {
        dockerfile: "Dockerfile.operator",
        entrypoint: Shipped {
            package: "sluice-operator",
            bin: "sluice-operator",
            linked_statically: false,
        },
        beside: &[],
    },
    Image {
        dockerfile: "Dockerfile.proxy",
        entrypoint: Shipped {
            package: "sluice-proxy",
            bin: "sluice-proxy",
            linked_statically: false,
        },
        // Copied into a stdio server's pod by the bridge's init container.
        beside: &[Shipped {
            package: "sluice-bridge",
            bin: "sluice-bridge",
            linked_statically: true,
        }],
    },
];

/// The final bases allowed: distroless, Debian 12, the `nonroot` variant (UID 65532).
const FINAL_BASES: [&str; 2] = [
    "gcr.io/distroless/cc-debian12:nonroot",
    "gcr.io/distroless/static-debian12:nonroot",
];

/// Shared libraries `gcr.io/distroless/cc-debian12` provides (glibc, libgcc, libstdc++ aside
/// from the loader and the vDSO).
const CC_DEBIAN12_LIBS: [&str; 10] = [
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libstdc++.so.6",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

/// One instruction: its keyword (upper case) and the rest, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    rest: String,
}

/// The instructions of a Dockerfile, comments and blank lines dropped.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            joined.push(std::mem::take(&mut current));
        }
    }
    assert!(
        current.is_empty(),
        "the file ends inside a continuation: {current}"
    );
    joined
        .into_iter()
        .map(|line| {
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            Instruction {
                keyword: keyword.to_ascii_uppercase(),
                rest: rest.split_whitespace().collect::<Vec<_>>().join(" "),
            }
        })
        .collect()
}

/// The stages: each starts at a FROM.
fn stages(instructions: &[Instruction]) -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        let Some(stage) = stages.last_mut() else {
            assert!(
                matches!(instruction.keyword.as_str(), "ARG"),
                "{} before the first FROM",
                instruction.keyword
            );
            continue;
        };
        stage.push(instruction.clone());
    }
    stages
}

/// The image of a `FROM image [AS name]` (flags such as `--platform` skipped).
fn from_image(from: &Instruction) -> String {
    from.rest
        .split_whitespace()
        .find(|word| !word.starts_with("--"))
        .unwrap()
        .to_owned()
}

fn is_digest_pinned(image: &str) -> bool {
    image
        .split_once("@sha256:")
        .is_some_and(|(_, hex)| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `repository:tag`, without a digest.
fn tag_of(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap();
    let last = name.rsplit('/').next().unwrap();
    last.split_once(':').map(|(_, tag)| tag)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(workspace_path(name))
        .unwrap_or_else(|error| panic!("cannot read {name}: {error}"))
}

/// The workspace's version, license and repository, from the root Cargo.toml.
fn workspace_package(key: &str) -> String {
    let manifest = read("Cargo.toml");
    let section = manifest.split("[workspace.package]").nth(1).unwrap();
    section
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once('=')?;
            (name.trim() == key).then(|| value.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in [workspace.package]"))
}

/// `major.minor` of the toolchain rust-toolchain.toml pins (`1.95` for `1.95.0`): the tag of
/// the build stage's Rust image.
fn pinned_rust() -> String {
    let file = read("rust-toolchain.toml");
    let channel = file
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "channel").then(|| value.trim().trim_matches('"').to_owned())
        })
        .expect("rust-toolchain.toml names no channel");
    let parts: Vec<&str> = channel.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "rust-toolchain.toml should pin a release (major.minor.patch), not {channel}"
    );
    format!("{}.{}", parts[0], parts[1])
}

/// The cargo build commands of a RUN, flags and environment included: its `&&`-separated
/// commands that run `cargo build`, less the RUN's own `--mount` options.
fn cargo_build_commands(run: &str) -> Vec<String> {
    run.split("&&")
        .map(|command| {
            command
                .split_whitespace()
                .skip_while(|word| word.starts_with("--mount="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|command| command.contains("cargo build"))
        .collect()
}

/// Every cargo build command of a Dockerfile, in order.
fn dockerfile_builds(instructions: &[Instruction]) -> Vec<String> {
    instructions
        .iter()
        .filter(|i| i.keyword == "RUN")
        .flat_map(|i| cargo_build_commands(&i.rest))
        .collect()
}

#[test]
fn dockerfiles_are_multi_stage_with_a_pinned_distroless_nonroot_final_base() {
    for image in IMAGES {
        let file = image.dockerfile;
        let text = read(file);
        let stages = stages(&instructions(&text));
        assert!(stages.len() >= 2, "{file}: not multi-stage");
        for stage in &stages {
            let image = from_image(&stage[0]);
            // A tag says which image it is, the digest fixes the bytes pulled.
            assert!(
                is_digest_pinned(&image),
                "{file}: FROM {image} is not pinned by digest"
            );
            assert!(
                tag_of(&image).is_some_and(|tag| tag != "latest"),
                "{file}: FROM {image} names no tag other than latest beside its digest"
            );
        }
        let build = from_image(&stages[0][0]);
        let rust = pinned_rust();
        assert!(
            build.starts_with(&format!("docker.io/library/rust:{rust}-bookworm"))
                || build.starts_with(&format!("docker.io/library/rust:{rust}-slim-bookworm")),
            "{file}: the build stage should use the Rust {rust} image, the toolchain \
             rust-toolchain.toml pins for the tests: {build}"
        );
        let last = from_image(&stages.last().unwrap()[0]);
        let base = last.split('@').next().unwrap();
        assert!(
            FINAL_BASES.contains(&base),
            "{file}: the final base {last} is not one of {FINAL_BASES:?}"
        );
    }
}

#[test]
fn the_workspace_rust_version_is_the_pinned_toolchain() {
    // Cargo refuses to build with a compiler older than `rust-version`; no older one than the
    // pinned toolchain has been tried, so the two say the same.
    assert_eq!(
        workspace_package("rust-version"),
        pinned_rust(),
        "Cargo.toml's rust-version and rust-toolchain.toml disagree"
    );
}

#[test]
fn final_stage_runs_only_the_binaries_as_65532() {
    for image in IMAGES {
        let file = image.dockerfile;
        let stages = stages(&instructions(&read(file)));
        let last = stages.last().unwrap();
        let keywords: Vec<&str> = last.iter().map(|i| i.keyword.as_str()).collect();
        // No RUN (there is no shell), no ADD, nothing but metadata and the binary.
        for keyword in &keywords {
            assert!(
                matches!(
                    *keyword,
                    "FROM" | "ARG" | "LABEL" | "COPY" | "USER" | "ENTRYPOINT" | "CMD"
                ),
                "{file}: {keyword} in the final stage"
            );
        }
        let user = last.iter().rfind(|i| i.keyword == "USER").unwrap();
        assert!(
            matches!(
                user.rest.as_str(),
                "65532" | "65532:65532" | "nonroot" | "nonroot:nonroot"
            ),
            "{file}: USER {}",
            user.rest
        );
        let copies: Vec<&Instruction> = last.iter().filter(|i| i.keyword == "COPY").collect();
        let binaries = image.binaries();
        assert_eq!(
            copies.len(),
            binaries.len(),
            "{file}: the final stage copies one file per binary shipped"
        );
        for (copy, shipped) in copies.iter().zip(&binaries) {
            let binary = format!("/usr/local/bin/{}", shipped.bin);
            assert!(
                copy.rest.starts_with("--from=") && copy.rest.ends_with(&binary),
                "{file}: COPY {}",
                copy.rest
            );
            assert!(
                !copy.rest.contains("--chown"),
                "{file}: {binary} should stay root-owned, not writable by the process"
            );
        }
        let binary = format!("/usr/local/bin/{}", image.entrypoint.bin);
        let entrypoint = last.iter().rfind(|i| i.keyword == "ENTRYPOINT").unwrap();
        let exec_form: Value = serde_json::from_str(&entrypoint.rest).unwrap_or_else(|error| {
            panic!(
                "{file}: ENTRYPOINT {} is not exec form (a JSON array): {error}",
                entrypoint.rest
            )
        });
        assert_eq!(exec_form, serde_json::json!([binary]), "{file}");
        if let Some(cmd) = last.iter().rfind(|i| i.keyword == "CMD") {
            serde_json::from_str::<Vec<String>>(&cmd.rest)
                .unwrap_or_else(|_| panic!("{file}: CMD {} is not exec form", cmd.rest));
        }
    }
}

#[test]
fn images_carry_oci_labels() {
    let version = workspace_package("version");
    let license = workspace_package("license");
    let repository = workspace_package("repository");
    for image in IMAGES {
        let (file, bin) = (image.dockerfile, image.entrypoint.bin);
        let stages = stages(&instructions(&read(file)));
        let last = stages.last().unwrap();
        let labels: String = last
            .iter()
            .filter(|i| i.keyword == "LABEL")
            .map(|i| i.rest.clone())
            .collect::<Vec<_>>()
            .join(" ");
        for (key, value) in [
            ("org.opencontainers.image.title", format!("\"{bin}\"")),
            (
                "org.opencontainers.image.source",
                format!("\"{repository}\""),
            ),
            (
                "org.opencontainers.image.version",
                "\"${VERSION}\"".to_owned(),
            ),
            (
                "org.opencontainers.image.revision",
                "\"${REVISION}\"".to_owned(),
            ),
            (
                "org.opencontainers.image.licenses",
                format!("\"{license}\""),
            ),
        ] {
            assert!(
                labels.contains(&format!("{key}={value}")),
                "{file}: no label {key}={value} in {labels}"
            );
        }
        let version_arg = last
            .iter()
            .find(|i| i.keyword == "ARG" && i.rest.starts_with("VERSION="))
            .unwrap();
        assert_eq!(
            version_arg.rest,
            format!("VERSION={version}"),
            "{file}: the default VERSION is not the workspace version"
        );
    }
}

#[test]
fn builds_are_locked_release_builds_of_the_shipped_binaries_without_downloads() {
    for image in IMAGES {
        let file = image.dockerfile;
        let text = read(file);
        let all = instructions(&text);
        for instruction in &all {
            let rest = instruction.rest.to_ascii_lowercase();
            if instruction.keyword == "ADD" {
                assert!(
                    !rest.contains("http://")
                        && !rest.contains("https://")
                        && !rest.contains("git@"),
                    "{file}: ADD of a URL: {}",
                    instruction.rest
                );
            }
            if instruction.keyword == "RUN" {
                for fetcher in ["curl", "wget"] {
                    assert!(
                        !(rest.contains(fetcher)
                            && (rest.contains("| sh")
                                || rest.contains("|sh")
                                || rest.contains("| bash"))),
                        "{file}: a download piped into a shell: {}",
                        instruction.rest
                    );
                }
            }
        }
        let expected: Vec<String> = image
            .binaries()
            .iter()
            .map(Shipped::build_command)
            .collect();
        assert_eq!(
            dockerfile_builds(&all),
            expected,
            "{file}: one locked release build of each shipped binary, and nothing else"
        );
        for instruction in all.iter().filter(|i| i.keyword == "RUN") {
            assert!(
                !instruction.rest.contains("cargo install")
                    || instruction.rest.contains("--locked"),
                "{file}: cargo install without --locked: {}",
                instruction.rest
            );
        }
    }
}

#[test]
fn ci_runs_the_dockerfiles_cargo_commands() {
    let makefile = read("Makefile");
    // Make's `$$` is the shell's `$`.
    let recipe_lines: Vec<String> = makefile
        .lines()
        .filter(|line| line.starts_with('\t'))
        .map(|line| {
            line.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace("$$", "$")
        })
        .collect();
    // `make test` (what .ci/run runs) depends on the target that holds these lines.
    let test_line = makefile
        .lines()
        .find(|line| line.starts_with("test:"))
        .unwrap();
    assert!(
        test_line
            .split_whitespace()
            .any(|dep| dep == "release-build"),
        "`make test` does not run release-build: {test_line}"
    );
    for image in IMAGES {
        let file = image.dockerfile;
        let builds = dockerfile_builds(&instructions(&read(file)));
        assert!(!builds.is_empty(), "{file}: no cargo build");
        for command in builds {
            let as_make = command.replacen("cargo build", "$(CARGO) build", 1);
            assert!(
                recipe_lines.contains(&as_make),
                "{file}: the Makefile does not run `{as_make}`"
            );
        }
    }
}

#[test]
fn dockerignore_keeps_what_cargo_needs_and_drops_the_rest() {
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    for needed in [
        ".git",
        "target",
        "**/target",
        "**/node_modules",
        "**/.venv*",
        "rust-toolchain.toml",
    ] {
        assert!(patterns.contains(&needed), ".dockerignore lacks {needed}");
    }
    // Every workspace member, the manifest and the lock file reach the build.
    let manifest = read("Cargo.toml");
    let members_line = manifest
        .lines()
        .find(|line| line.trim_start().starts_with("members"))
        .unwrap();
    let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(
        members.contains(&"operator") && members.contains(&"proxy"),
        "{members:?}"
    );
    for path in members.iter().copied().chain(["Cargo.toml", "Cargo.lock"]) {
        for pattern in &patterns {
            let pattern = pattern.trim_start_matches('/');
            let excluded = pattern == path
                || path.starts_with(&format!("{pattern}/"))
                || pattern == "*"
                || pattern == "**";
            assert!(
                !excluded,
                ".dockerignore pattern {pattern} leaves out {path}"
            );
        }
        assert!(workspace_path(path).exists(), "{path} does not exist");
    }
}

/// What `ldd` says a binary loads: the library names.
fn shared_libraries(binary: &Path) -> Vec<String> {
    let output = run_ok(Command::new("ldd").arg(binary), Duration::from_secs(30)).unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let first = line.split_whitespace().next()?;
            Some(Path::new(first).file_name()?.to_string_lossy().into_owned())
        })
        .collect()
}

#[test]
fn entrypoints_need_only_what_the_final_base_provides() {
    for image in IMAGES {
        let (file, bin) = (image.dockerfile, image.entrypoint.bin);
        let path = match bin {
            "sluice-operator" => sluice_operator().unwrap(),
            _ => sluice_proxy().unwrap(),
        };
        let stages = stages(&instructions(&read(file)));
        let base = from_image(&stages.last().unwrap()[0]);
        let libraries = shared_libraries(&path);
        assert!(
            libraries.iter().any(|lib| lib == "libc.so.6"),
            "{bin}: ldd shows no libc; is it static? then use static-debian12: {libraries:?}"
        );
        assert!(
            base.contains("/cc-debian12"),
            "{file}: {bin} links glibc dynamically and needs cc-debian12, not {base}"
        );
        for library in &libraries {
            assert!(
                CC_DEBIAN12_LIBS.contains(&library.as_str()),
                "{bin} needs {library}, which {base} does not have (ldd {}: {libraries:?})",
                path.display()
            );
        }
    }
}
