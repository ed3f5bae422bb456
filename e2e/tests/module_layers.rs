//! The crates' modules stand in layers (ARCHITECTURE.md): each imports only from modules below
//! it, so no two modules need each other, directly or around a circle. This reads the sources
//! (`crate::…` paths outside the test modules, names lib.rs re-exports counted as their
//! module's) and fails naming every circle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module (the file or folder under `src/`, `main` and `lib` left out) → the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_proxy_has_no_import_circle() {
    assert_no_circle("proxy/src");
}

#[test]
fn the_operator_has_no_import_circle() {
    assert_no_circle("operator/src");
}

#[test]
fn a_circle_is_found() {
    let graph = Graph::from([
        ("a".into(), BTreeSet::from(["b".into()])),
        ("b".into(), BTreeSet::from(["c".into()])),
        ("c".into(), BTreeSet::from(["a".into()])),
        ("d".into(), BTreeSet::from(["a".into()])),
    ]);
    assert_eq!(circles(&graph), vec![vec!["a", "b", "c"]]);
    let mut items = BTreeSet::new();
    let reexports = reexports(
        "mod f;\npub use f::{Error, Result};\npub use g::init as init_g;\npub mod h {\n    pub use crate::b;\n}\n",
    );
    uses(
        "use crate::{a::X, b, c::{D, e::F}, Error};\nlet x = crate::d::y();\n// crate::e in a comment\nfn f() -> crate::Result<()> { crate::init_g() }\n",
        &reexports,
        &mut items,
    );
    assert_eq!(
        items,
        BTreeSet::from(["a", "b", "c", "d", "e", "f", "g"].map(String::from))
    );
}

fn assert_no_circle(src: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(src);
    let graph = graph(&root);
    assert!(graph.len() > 5, "{src}: only {} modules read", graph.len());
    let circles = circles(&graph);
    assert!(
        circles.is_empty(),
        "{src}: modules that import each other (around a circle): {circles:?}"
    );
}

fn graph(root: &Path) -> Graph {
    let lib = fs::read_to_string(root.join("lib.rs")).expect("a lib.rs");
    let reexports = reexports(&lib);
    let mut graph = Graph::new();
    let mut files = Vec::new();
    rust_files(root, &mut files);
    for path in files {
        let relative = path.strip_prefix(root).expect("under the root");
        let first = relative.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = fs::read_to_string(&path).expect("a source file");
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        uses(code, &reexports, graph.entry(module).or_default());
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (module, names) in &mut graph {
        names.retain(|name| name != module && modules.contains(name));
    }
    graph
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What lib.rs re-exports at the crate root, by name: its module (`pub use error::{Error,
/// Result};`, `pub use logging::init as init_logging;`).
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for statement in lib.split(';') {
        // At the crate root only: a line of its own starting the statement, naming a module.
        let Some(at) = statement.find("\npub use ") else {
            continue;
        };
        let path = &statement[at + "\npub use ".len()..];
        if path.starts_with("crate::") || path.starts_with("self::") {
            continue;
        }
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.rsplit(" as ").next().unwrap_or(item).trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            if !name.is_empty() {
                names.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    names
}

/// Adds the top modules `code` names through `crate::`: `crate::a::…`, `use crate::{a, b::…}`,
/// and names lib.rs re-exports (`crate::Error`), as their module.
fn uses(code: &str, reexports: &BTreeMap<String, String>, into: &mut BTreeSet<String>) {
    let mut add = |name: String| {
        let module = reexports.get(&name).cloned().unwrap_or(name);
        if !module.is_empty() {
            into.insert(module);
        }
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        add(identifier(&group[i..]));
                        item_start = false;
                    }
                    c if !c.is_whitespace() => item_start = false,
                    _ => {}
                }
            }
        } else {
            add(identifier(rest));
        }
    }
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
fn circles(graph: &Graph) -> Vec<Vec<&str>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<&'a str>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in &self.graph[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self
                    .stack
                    .iter()
                    .position(|m| *m == v)
                    .expect("on the stack");
                let mut component = self.stack.split_off(at);
                if component.len() > 1 {
                    component.sort_unstable();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}
