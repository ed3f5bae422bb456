//! `sluice-bridge install DIR`: the init container's job. The sidecar's image is distroless
//! (no shell, no `cp`), so the binary copies itself into the volume the server's container
//! mounts. It writes a temporary file and renames it, so a server container never sees half a
//! binary.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The name of the installed binary.
pub const BINARY: &str = "sluice-bridge";

/// Copies the running executable to `dir/sluice-bridge`, readable and executable by all and
/// writable by none; returns the path.
pub fn install(dir: &Path) -> io::Result<PathBuf> {
    let source = std::env::current_exe()?;
    let target = dir.join(BINARY);
    let partial = dir.join(format!(".{BINARY}.partial"));
    fs::copy(&source, &partial)?;
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o555))?;
    fs::rename(&partial, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_itself_as_a_read_only_executable() {
        let dir =
            std::env::temp_dir().join(format!("sluice-bridge-install-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("a directory");
        let installed = install(&dir).expect("installs");
        let mode = fs::metadata(&installed)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o555);
        let copied = fs::read(&installed).expect("readable");
        let original = fs::read(std::env::current_exe().expect("exe")).expect("readable");
        assert!(
            copied == original,
            "the copy differs from the running executable"
        );
        // Installing again (a restarted init container) replaces it.
        install(&dir).expect("installs again");
        fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
