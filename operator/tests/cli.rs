//! The `sluice-operator` binary as a user runs it: output, exit status, messages.
#![allow(
    clippy::unwrap_used,
    reason = "a test's helpers fail the test by panicking"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_sluice-operator");

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus(name: &str) -> String {
    repository_root()
        .join("operator/tests/invalid")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn examples() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repository_root().join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| path.to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "examples/ holds {files:?}");
    files
}

fn run(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).output().unwrap()
}

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A failure as a user must see it: non-zero exit, nothing on stdout, every stderr line an
/// `error: ` line, and never a panic.
fn assert_refused(output: &Output) -> String {
    let stderr = stderr(output);
    assert!(
        !output.status.success(),
        "exit status {:?}; stderr: {stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty(), "stdout: {}", stdout(output));
    assert!(
        stderr.lines().all(|line| line.starts_with("error: ")),
        "{stderr}"
    );
    stderr
}

#[test]
fn crds_prints_the_committed_files() {
    let output = run(&["crds"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let committed: Vec<String> = ["mcpservers.sluice.dev.yaml", "mcproutes.sluice.dev.yaml"]
        .iter()
        .map(|name| std::fs::read_to_string(repository_root().join("crds").join(name)).unwrap())
        .collect();
    assert_eq!(stdout(&output), committed.join("---\n"));
}

#[test]
fn run_without_a_cluster_says_so() {
    // No in-cluster environment and a kubeconfig that does not exist: `run` (also the default
    // command) must say it cannot reach an API server, not panic or hang.
    let missing = repository_root().join("operator/tests/no-such-kubeconfig");
    for args in [&["run", "--admin-address", "127.0.0.1:0"][..], &[][..]] {
        let output = Command::new(BINARY)
            .args(args)
            .env("KUBECONFIG", &missing)
            .env("SLUICE_ADMIN_ADDRESS", "127.0.0.1:0")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .output()
            .unwrap();
        let stderr = assert_refused(&output);
        assert!(
            stderr.contains("cannot reach a Kubernetes API server"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn rbac_prints_roles_with_a_reason_per_rule() {
    for (args, roles) in [(&["rbac"][..], 2), (&["rbac", "--namespaced"][..], 3)] {
        let output = run(args);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        assert_eq!(text.matches("\nkind: ").count(), roles, "{text}");
        assert_eq!(
            text.matches("  # ").count(),
            text.matches("  - apiGroups: ").count(),
            "every rule has its reason: {text}"
        );
    }
}

#[test]
fn render_without_files_is_a_usage_error() {
    let output = run(&["render"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--filename"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn every_example_renders_to_the_same_bytes_twice() {
    for example in examples() {
        let first = run(&["render", "-f", &example]);
        let second = run(&["render", "-f", &example]);
        assert!(first.status.success(), "{example}: {}", stderr(&first));
        assert!(!first.stdout.is_empty(), "{example}: nothing rendered");
        assert_eq!(
            first.stdout, second.stdout,
            "{example}: output differs between runs"
        );
        let stderr = stderr(&first);
        assert!(
            stderr
                .lines()
                .all(|line| line.starts_with("warning: ") || line.starts_with("note: ")),
            "{stderr}"
        );
    }
}

/// `render` says where the controller's objects will differ, because only the cluster knows;
/// and says nothing where they will not.
#[test]
fn render_notes_what_only_the_cluster_knows() {
    let notes = |output: &Output| -> Vec<String> {
        assert!(output.status.success(), "{}", stderr(output));
        stderr(output)
            .lines()
            .filter_map(|line| line.strip_prefix("note: ").map(str::to_owned))
            .collect()
    };
    let example = |name: &str| {
        repository_root()
            .join("examples")
            .join(name)
            .to_string_lossy()
            .into_owned()
    };
    // Header tokens: the sidecar reads the token file live, the server has no route.
    let header = run(&["render", "-f", &example("phabricator-header-token.yaml")]);
    assert_eq!(notes(&header), Vec::<String>::new());

    // OAuth: Conduit reads its client secret at start; one route, whose port render picks.
    let oauth = run(&["render", "-f", &example("phabricator-oauth-subpath.yaml")]);
    let said = notes(&oauth);
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(
        said[0].contains("sluice.dev/restart-hash") && said[0].contains("Secret phabricator-oauth"),
        "{said:?}"
    );
    assert!(
        said[1].contains("listener ports of phabricator-public")
            && said[1].contains("status.listenerPort"),
        "{said:?}"
    );

    // Kinds a cluster may not serve: an HTTPRoute and a ServiceMonitor.
    let manifest = std::fs::read_to_string(example("phabricator-serviceaccount.yaml"))
        .unwrap()
        .replace(
            "  policy:\n    authentication:\n      mode: phabricatorToken",
            "  monitoring:\n    serviceMonitor:\n      enabled: true\n  policy:\n    authentication:\n      mode: phabricatorToken",
        )
        .replace(
            "  # No `expose`: the route is reachable inside the cluster only.\n",
            "  hostnames: [mcp.example.com]\n  pathPrefix: /bots\n  expose:\n    httpRoute:\n      parentRefs:\n        - name: public\n          namespace: gateways\n",
        );
    let gated = run_with_stdin(&["render", "-f", "-"], manifest.as_bytes());
    let said = notes(&gated);
    for (kind, needs) in [
        ("HTTPRoute", "the Gateway API"),
        ("ServiceMonitor", "the Prometheus Operator"),
    ] {
        assert!(
            said.iter()
                .any(|note| note.contains(&format!("{kind} ")) && note.contains(needs)),
            "{kind}: {said:?}"
        );
    }
}

#[test]
fn stdin_is_read_with_dash() {
    let example = &examples()[0];
    let from_file = run(&["render", "-f", example]);
    let from_stdin = run_with_stdin(&["render", "-f", "-"], &std::fs::read(example).unwrap());
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    assert_eq!(from_stdin.stdout, from_file.stdout);
}

#[test]
fn bad_stdin_is_named_stdin() {
    let output = run_with_stdin(&["render", "-f", "-"], b"apiVersion: v1\nkind: ConfigMap\n");
    let stderr = assert_refused(&output);
    assert!(
        stderr.contains(
            "error: <stdin>: document 1 (line 1): kind: Unsupported value: \"ConfigMap\""
        ),
        "{stderr}"
    );
}

#[test]
fn namespace_and_images_come_from_the_flags() {
    let example = corpus("../../../examples/phabricator-header-token.yaml");
    let output = run(&[
        "render",
        "-f",
        &example,
        "--namespace",
        "tools",
        "--conduit-image",
        "registry.example.com/conduit:test",
        "--proxy-image",
        "registry.example.com/sluice-proxy:test",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = stdout(&output);
    assert!(stdout.contains("namespace: tools"));
    assert!(!stdout.contains("namespace: default"));
    assert!(stdout.contains("image: registry.example.com/conduit:test"));
    assert!(stdout.contains("image: registry.example.com/sluice-proxy:test"));
}

/// Each case: a corpus file and what stderr must say about it (file, document, field).
const BAD_INPUTS: &[(&str, &str)] = &[
    ("input-empty.yaml", "input-empty.yaml: holds no objects"),
    (
        "input-not-yaml.yaml",
        "input-not-yaml.yaml: document 1 (line 3): invalid YAML",
    ),
    (
        "input-wrong-kind.yaml",
        "input-wrong-kind.yaml: document 1 (line 3): kind: Unsupported value: \"Deployment\"",
    ),
    (
        "input-wrong-api-version.yaml",
        "input-wrong-api-version.yaml: document 1 (line 2): apiVersion: Unsupported value",
    ),
    (
        "input-missing-name.yaml",
        "input-missing-name.yaml: document 1 (McpServer, line 2): metadata.name: Required value",
    ),
    (
        "input-duplicate-objects.yaml",
        "input-duplicate-objects.yaml: document 2 (McpServer tools/phabricator, line 12): Duplicate value",
    ),
    (
        "server-unknown-field-typo.yaml",
        "server-unknown-field-typo.yaml: document 1 (McpServer tools/phabricator, line 3): spec.replica: unknown field",
    ),
    (
        "server-replicas-not-a-number.yaml",
        "document 1 (McpServer tools/phabricator, line 2): spec.replicas: Invalid value: \"two\": must be of type integer",
    ),
    (
        "server-global-rate-limit-without-redis.yaml",
        "spec.redis: Invalid value: \"object\": a global rate limit needs spec.redis",
    ),
    (
        "render-route-server-missing.yaml",
        "render-route-server-missing.yaml: document 2 (line 11): McpRoute tools/public: spec.serverRef.name: McpServer \"phabricatr\" not found",
    ),
];

#[test]
fn bad_inputs_fail_with_the_file_document_and_field() {
    for (file, message) in BAD_INPUTS {
        let output = run(&["render", "--namespace", "tools", "-f", &corpus(file)]);
        let stderr = assert_refused(&output);
        assert!(
            stderr.contains(message),
            "{file}: stderr does not say {message:?}:\n{stderr}"
        );
        assert_eq!(output.status.code(), Some(1), "{file}");
    }
}

#[test]
fn problems_of_all_files_are_reported_together() {
    let output = run(&[
        "render",
        "-f",
        &corpus("input-wrong-kind.yaml"),
        "-f",
        "no-such-file.yaml",
        "-f",
        &corpus("server-replicas-over-maximum.yaml"),
    ]);
    let stderr = assert_refused(&output);
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
    assert!(
        stderr.contains("no-such-file.yaml: cannot read"),
        "{stderr}"
    );
    assert!(
        stderr.contains("input-wrong-kind.yaml: document 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("spec.replicas: Invalid value: 200: must be less than or equal to 100"),
        "{stderr}"
    );
}

#[test]
fn a_huge_file_is_refused() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-huge.yaml");
    std::fs::write(&path, vec![b'#'; 5 * 1024 * 1024]).unwrap();
    let output = run(&["render", "-f", &path.to_string_lossy()]);
    let stderr = assert_refused(&output);
    assert!(
        stderr.contains("cli-huge.yaml: larger than the limit of 4194304 bytes"),
        "{stderr}"
    );
}

#[test]
fn a_directory_is_read_file_by_file() {
    let output = run(&[
        "render",
        "-f",
        &repository_root().join("examples").to_string_lossy(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let examples = examples();
    let mut args = vec!["render"];
    args.extend(examples.iter().flat_map(|example| ["-f", example.as_str()]));
    assert_eq!(output.stdout, run(&args).stdout);
}

#[test]
fn a_closed_stdout_is_an_error_not_a_panic() {
    let mut child = Command::new(BINARY)
        .args(["render", "-f", &examples()[0]])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn stdin_twice_and_an_empty_directory_are_refused() {
    let empty = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-empty-dir");
    std::fs::create_dir_all(&empty).unwrap();
    let output = run_with_stdin(
        &[
            "render",
            "-f",
            "-",
            "-f",
            "-",
            "-f",
            &empty.to_string_lossy(),
        ],
        std::fs::read(&examples()[0]).unwrap().as_slice(),
    );
    let stderr = assert_refused(&output);
    assert!(
        stderr.contains("error: stdin (`-f -`) can be read only once"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cli-empty-dir: the directory holds no .yaml, .yml or .json files"),
        "{stderr}"
    );
}
