//! Reading inputs: files, directories of them, and stdin, each capped in size.

use std::io::Read;
use std::path::Path;

use super::ManifestError;

/// Largest input accepted, per file (or stdin): manifests are small, and a cap keeps a
/// mistaken `-f` from reading a disk image into memory.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// The file name that means standard input.
pub const STDIN: &str = "-";

/// How standard input is named in messages.
const STDIN_NAME: &str = "<stdin>";

/// One input as read: its name for messages and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// The path as given on the command line, or `<stdin>`.
    pub name: String,
    pub text: String,
}

impl Input {
    /// An input from text already in memory (tests, the controller).
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Reads every path (`-` is stdin; a directory contributes its `.yaml`, `.yml` and `.json`
/// files in name order). Returns what could be read and a problem for each path that could
/// not.
pub fn read_inputs(paths: &[String]) -> (Vec<Input>, Vec<ManifestError>) {
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    let mut stdin_read = false;
    for path in paths {
        if path == STDIN {
            if stdin_read {
                problems.push(ManifestError::StdinTwice);
                continue;
            }
            stdin_read = true;
            push_read(
                &mut inputs,
                &mut problems,
                STDIN_NAME,
                std::io::stdin().lock(),
            );
        } else if Path::new(path).is_dir() {
            match manifest_files_in(Path::new(path)) {
                Ok(files) if files.is_empty() => problems.push(ManifestError::EmptyDirectory {
                    input: path.clone(),
                }),
                Ok(files) => {
                    for file in files {
                        read_file(&mut inputs, &mut problems, &file);
                    }
                }
                Err(error) => problems.push(ManifestError::Unreadable {
                    input: path.clone(),
                    error,
                }),
            }
        } else {
            read_file(&mut inputs, &mut problems, path);
        }
    }
    (inputs, problems)
}

fn manifest_files_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_manifest = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"));
        if is_manifest && path.is_file() {
            files.push(path.to_string_lossy().into_owned());
        }
    }
    files.sort();
    Ok(files)
}

fn read_file(inputs: &mut Vec<Input>, problems: &mut Vec<ManifestError>, path: &str) {
    match std::fs::File::open(path) {
        Ok(file) => push_read(inputs, problems, path, file),
        Err(error) => problems.push(ManifestError::Unreadable {
            input: path.to_string(),
            error,
        }),
    }
}

fn push_read(
    inputs: &mut Vec<Input>,
    problems: &mut Vec<ManifestError>,
    name: &str,
    reader: impl Read,
) {
    match read_capped(name, reader) {
        Ok(text) => inputs.push(Input::new(name, text)),
        Err(problem) => problems.push(problem),
    }
}

/// Reads at most [`MAX_INPUT_BYTES`] (one byte more tells that there was more).
fn read_capped(name: &str, reader: impl Read) -> Result<String, ManifestError> {
    let mut bytes = Vec::new();
    let cap = MAX_INPUT_BYTES as u64 + 1;
    reader
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|error| ManifestError::Unreadable {
            input: name.to_string(),
            error,
        })?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ManifestError::TooLarge {
            input: name.to_string(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8 {
        input: name.to_string(),
    })?;
    Ok(text
        .strip_prefix('\u{feff}')
        .map(str::to_string)
        .unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_inclusive() {
        let at_cap = vec![b'#'; MAX_INPUT_BYTES];
        assert_eq!(
            read_capped("a", at_cap.as_slice()).unwrap().len(),
            MAX_INPUT_BYTES
        );
        let over = vec![b'#'; MAX_INPUT_BYTES + 1];
        let error = read_capped("a", over.as_slice()).unwrap_err();
        assert!(matches!(error, ManifestError::TooLarge { .. }), "{error}");
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        assert_eq!(
            read_capped("a", "\u{feff}kind: x\n".as_bytes()).unwrap(),
            "kind: x\n"
        );
    }

    #[test]
    fn a_directory_contributes_its_manifests_in_name_order() {
        let dir = std::env::temp_dir().join(format!("sluice-manifest-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.yaml", "a.yml", "c.json", "notes.txt"] {
            std::fs::write(dir.join(name), "kind: x\n").unwrap();
        }
        let (inputs, problems) = read_inputs(&[dir.to_string_lossy().into_owned()]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(problems.is_empty());
        let names: Vec<String> = inputs
            .iter()
            .map(|input| {
                Path::new(&input.name)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml", "c.json"]);
    }
}
