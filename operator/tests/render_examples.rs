//! Every manifest in examples/ renders, twice to the same bytes, into valid sidecar config.

mod render_fixtures;

use std::path::{Path, PathBuf};

use render_fixtures::{documents, proxy_config};
use serde_json::Value;
use sluice_crds::{McpRoute, McpServer};
use sluice_operator::render::{self, RenderOptions};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// The example files, sorted.
fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(EXAMPLES)
        .expect("examples/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// The servers and routes of one example file, in namespace `examples` (as `kubectl apply -n`
/// would place them).
fn load(path: &Path) -> (Vec<McpServer>, Vec<McpRoute>) {
    let text = std::fs::read_to_string(path).expect("readable example");
    let mut servers = Vec::new();
    let mut routes = Vec::new();
    for mut doc in documents(&text) {
        if doc.is_null() {
            continue;
        }
        doc["metadata"]["namespace"] = Value::from("examples");
        match doc["kind"].as_str() {
            Some("McpServer") => servers.push(serde_json::from_value(doc).expect("an McpServer")),
            Some("McpRoute") => routes.push(serde_json::from_value(doc).expect("an McpRoute")),
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
    (servers, routes)
}

#[test]
fn there_are_examples() {
    assert!(example_files().len() >= 3, "{:?}", example_files());
}

#[test]
fn every_example_renders_deterministically_into_valid_config() {
    for path in example_files() {
        let (servers, routes) = load(&path);
        assert!(!servers.is_empty(), "{}: no McpServer", path.display());
        let options = RenderOptions::default();
        let first = render::render_all(&servers, &routes, &options)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stream = render::to_yaml_stream(&first.objects).expect("serialises");
        let again = render::render_all(&servers, &routes, &options).expect("renders again");
        assert_eq!(
            stream,
            render::to_yaml_stream(&again.objects).expect("serialises")
        );

        let docs = documents(&stream);
        assert_eq!(docs.len(), first.objects.len(), "{}", path.display());
        for server in &servers {
            let name = server.metadata.name.as_deref().expect("named");
            let config = proxy_config(&docs, name);
            assert_eq!(config.entry_points[0].name, name);
            let route_count = routes
                .iter()
                .filter(|r| r.spec.server_ref.name == name)
                .count();
            assert_eq!(
                config.entry_points.len(),
                1 + route_count,
                "{}",
                path.display()
            );
        }
        for doc in &docs {
            assert_eq!(
                doc["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "sluice-operator"
            );
        }
    }
}
