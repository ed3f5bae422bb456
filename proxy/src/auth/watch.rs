//! Mounted Secrets (a file, or a directory of files) read into a value and re-read when their
//! content changes; a change that does not read or parse keeps the last good value.
//!
//! Kubernetes updates a mounted Secret by swapping a `..data` symlink, so, as for the config
//! file, the content is re-read on the reload interval and compared; the kubelet's own
//! entries (`..data`, `..2024_01_01_…`) and other dotfiles are not part of a directory.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;

use crate::tls::fingerprint;

/// Largest file read, in bytes: Kubernetes caps a whole Secret at 1 MiB.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most files read from one directory.
const MAX_DIR_FILES: usize = 1024;

/// What is read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// One file.
    File(PathBuf),
    /// The visible regular files of a directory (symlinks followed).
    Dir(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) | Source::Dir(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What a [`Source`] held when read.
pub enum Content {
    File(Vec<u8>),
    /// File names and contents, sorted by name.
    Dir(Vec<(String, Vec<u8>)>),
}

/// A parsed value and what is wrong with parts of it (the rest is in use).
pub struct Parsed<T> {
    pub value: T,
    pub warnings: Vec<String>,
}

impl<T> Parsed<T> {
    /// A value without warnings.
    pub fn clean(value: T) -> Self {
        Self {
            value,
            warnings: Vec::new(),
        }
    }
}

type Parser<T> = Box<dyn Fn(Content) -> Result<Parsed<T>, String> + Send + Sync>;

/// A value read from a [`Source`] and kept current by [`Watched::refresh`].
pub struct Watched<T> {
    /// What the source holds, for messages (`API keys`, `upstream token`).
    what: &'static str,
    source: Source,
    parse: Parser<T>,
    current: ArcSwapOption<T>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Fingerprint of the content (or the read error) last looked at.
    fingerprint: Option<u64>,
    /// Why the current value is missing, stale or partial.
    problem: Option<String>,
}

impl<T: Send + Sync> Watched<T> {
    /// Reads `source` now (a failure shows in [`Watched::problem`] and leaves no value).
    pub fn new(
        what: &'static str,
        source: Source,
        parse: impl Fn(Content) -> Result<Parsed<T>, String> + Send + Sync + 'static,
    ) -> Self {
        let watched = Self {
            what,
            source,
            parse: Box::new(parse),
            current: ArcSwapOption::empty(),
            seen: Mutex::default(),
        };
        watched.refresh();
        watched
    }

    /// The last good value, if any was ever read.
    pub fn current(&self) -> Option<Arc<T>> {
        self.current.load_full()
    }

    /// Re-reads the source; applies it when it changed and parses.
    pub fn refresh(&self) {
        let read = read(&self.source);
        let print = match &read {
            Ok(content) => content_fingerprint(content),
            Err(e) => fingerprint(&[b"error", e.as_bytes()]),
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.fingerprint == Some(print) {
            return;
        }
        seen.fingerprint = Some(print);
        let first = self.current.load().is_none() && seen.problem.is_none();
        let result = read.and_then(|content| (self.parse)(content));
        match result {
            Ok(parsed) => {
                self.current.store(Some(Arc::new(parsed.value)));
                for w in &parsed.warnings {
                    tracing::warn!(source = %self.source, "{}: {w}", self.what);
                }
                seen.problem = (!parsed.warnings.is_empty()).then(|| {
                    format!(
                        "{} {}: {}",
                        self.what,
                        self.source,
                        parsed.warnings.join("; ")
                    )
                });
                if !first {
                    tracing::info!(source = %self.source, "{} reloaded", self.what);
                }
            }
            Err(e) => {
                let kept = if self.current.load().is_some() {
                    "the last good version stays in use"
                } else {
                    "none is in use"
                };
                tracing::error!(source = %self.source, error = %e, "{} rejected; {kept}", self.what);
                seen.problem = Some(format!("{} {}: {e} ({kept})", self.what, self.source));
            }
        }
    }

    /// What is wrong with the source, if anything.
    pub fn problem(&self) -> Option<String> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .problem
            .clone()
    }
}

fn content_fingerprint(content: &Content) -> u64 {
    match content {
        Content::File(bytes) => fingerprint(&[b"file", bytes]),
        Content::Dir(files) => {
            // Each part is hashed with its length, so `a`+`bc` differs from `ab`+`c`.
            let mut parts: Vec<&[u8]> = vec![b"dir"];
            for (name, bytes) in files {
                parts.push(name.as_bytes());
                parts.push(bytes);
            }
            fingerprint(&parts)
        }
    }
}

fn read(source: &Source) -> Result<Content, String> {
    match source {
        Source::File(path) => read_file(path).map(Content::File),
        Source::Dir(path) => read_dir(path).map(Content::Dir),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

fn read_dir(path: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let entries = std::fs::read_dir(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read: {e}"))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // `..data` and `..<timestamp>` are the kubelet's; other dotfiles are nobody's key.
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Secret keys are symlinks into `..data`: follow them, skip what is not a file.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            _ => continue,
        }
        if files.len() == MAX_DIR_FILES {
            return Err(format!("holds more than {MAX_DIR_FILES} files"));
        }
        let bytes = read_file(&path).map_err(|e| format!("{name}: {e}"))?;
        files.push((name, bytes));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(content: Content) -> Result<Parsed<Vec<String>>, String> {
        match content {
            Content::Dir(files) => Ok(Parsed::clean(
                files
                    .into_iter()
                    .map(|(n, b)| format!("{n}={}", String::from_utf8_lossy(&b)))
                    .collect(),
            )),
            Content::File(b) if b.starts_with(b"bad") => Err("bad content".into()),
            Content::File(b) => Ok(Parsed::clean(vec![String::from_utf8_lossy(&b).into()])),
        }
    }

    #[test]
    fn a_file_is_reread_and_a_bad_version_keeps_the_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one").unwrap();
        let w = Watched::new("token", Source::File(path.clone()), lines);
        assert_eq!(*w.current().unwrap(), ["one"]);
        assert_eq!(w.problem(), None);
        std::fs::write(&path, "bad").unwrap();
        w.refresh();
        assert_eq!(*w.current().unwrap(), ["one"]);
        assert!(w.problem().unwrap().contains("bad content"));
        std::fs::write(&path, "two").unwrap();
        w.refresh();
        assert_eq!(*w.current().unwrap(), ["two"]);
        assert_eq!(w.problem(), None);
        std::fs::remove_file(&path).unwrap();
        w.refresh();
        assert_eq!(*w.current().unwrap(), ["two"]);
        assert!(w.problem().unwrap().contains("cannot read"));
    }

    #[test]
    fn a_directory_skips_dotfiles_and_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2024_01_01");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("alice"), "a").unwrap();
        std::os::unix::fs::symlink("..2024_01_01", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/alice", dir.path().join("alice")).unwrap();
        std::fs::write(dir.path().join(".hidden"), "h").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let w = Watched::new("keys", Source::Dir(dir.path().into()), lines);
        assert_eq!(*w.current().unwrap(), ["alice=a"]);
        let missing = Watched::new("keys", Source::Dir(dir.path().join("nope")), lines);
        assert!(missing.current().is_none());
        assert!(missing.problem().unwrap().contains("none is in use"));
    }

    #[test]
    fn directory_fingerprints_separate_names_from_contents() {
        let a = Content::Dir(vec![("a".into(), b"bc".to_vec())]);
        let b = Content::Dir(vec![("ab".into(), b"c".to_vec())]);
        assert_ne!(content_fingerprint(&a), content_fingerprint(&b));
    }
}
