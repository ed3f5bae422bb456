//! Where the checkout is: the workspace root and the e2e crate's own directory.

use std::path::{Path, PathBuf};

/// The e2e crate's directory (`<root>/e2e`): its venvs, `node_modules`, `py/` and `js/` live here.
pub fn e2e_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace root: the directory holding the top-level `Cargo.toml`, `examples/`, `crds/`.
pub fn workspace_root() -> &'static Path {
    // The e2e crate sits directly below the root; a manifest dir always has a parent.
    e2e_dir().parent().unwrap_or_else(|| e2e_dir())
}

/// A path below the workspace root, e.g. `workspace_path("examples")`.
pub fn workspace_path(relative: impl AsRef<Path>) -> PathBuf {
    workspace_root().join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_the_workspace() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{manifest}");
        assert_eq!(workspace_path("e2e"), e2e_dir());
    }
}
