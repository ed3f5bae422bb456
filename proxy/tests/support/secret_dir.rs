//! A directory laid out as the kubelet mounts a Secret, updated as the kubelet updates one.

use std::path::{Path, PathBuf};

/// A directory laid out as the kubelet mounts a Secret: the keys live in a timestamped
/// directory that `..data` points at, and each key name is a symlink through `..data`.
pub struct SecretDir {
    root: PathBuf,
    generation: u32,
}

impl SecretDir {
    pub fn new(root: &Path, keys: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(root).unwrap();
        let mut dir = Self {
            root: root.to_owned(),
            generation: 0,
        };
        dir.update(keys);
        dir
    }

    /// The kubelet's atomic update: new data directory, `..data` swapped by a rename, key
    /// symlinks added and removed, the old data directory deleted.
    pub fn update(&mut self, keys: &[(&str, &str)]) {
        self.generation += 1;
        let data = format!("..2026_01_01_00_00_00.{:09}", self.generation);
        std::fs::create_dir(self.root.join(&data)).unwrap();
        for (name, value) in keys {
            std::fs::write(self.root.join(&data).join(name), value).unwrap();
        }
        let old = std::fs::read_link(self.root.join("..data")).ok();
        std::os::unix::fs::symlink(&data, self.root.join("..data_tmp")).unwrap();
        std::fs::rename(self.root.join("..data_tmp"), self.root.join("..data")).unwrap();
        for entry in std::fs::read_dir(&self.root).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.starts_with('.') && !keys.iter().any(|(k, _)| *k == name) {
                std::fs::remove_file(self.root.join(&name)).unwrap();
            }
        }
        for (name, _) in keys {
            let link = self.root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), link).unwrap();
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(self.root.join(old)).unwrap();
        }
    }
}
