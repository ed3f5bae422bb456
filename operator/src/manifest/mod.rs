//! Reading McpServer and McpRoute manifests from files and stdin.
//!
//! Inputs are multi-document YAML, as `kubectl apply -f` takes them. This module only finds
//! the objects and refuses what is not ours (wrong apiVersion or kind, no name, duplicates);
//! `admission` then checks each object against the CRD schema. Every problem names the input,
//! the document and the field, and as many problems as can be found are reported at once.

mod envelope;
mod input;
mod problem;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use serde_saphyr::Spanned;

use self::envelope::{namespace_problem, read_object};
pub use self::input::{Input, MAX_INPUT_BYTES, read_inputs};
pub use self::problem::{ManifestError, short_json};

/// Most YAML nodes one document may hold (aliases expanded).
const MAX_NODES_PER_DOCUMENT: usize = 20_000;

/// The kinds this operator reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `sluice.dev/v1alpha1` McpServer.
    McpServer,
    /// `sluice.dev/v1alpha1` McpRoute.
    McpRoute,
}

impl Kind {
    /// Every kind, as offered in messages.
    pub const ALL: [Kind; 2] = [Kind::McpServer, Kind::McpRoute];

    /// The `kind` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::McpServer => "McpServer",
            Kind::McpRoute => "McpRoute",
        }
    }

    fn parse(kind: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a document came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The input's name (path or `<stdin>`).
    pub input: String,
    /// 1-based index of the document among the input's non-empty documents.
    pub document: usize,
    /// 1-based line the document's content starts on, when known.
    pub line: Option<u64>,
    /// `Kind namespace/name`, once known.
    pub object: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.input, self.document)?;
        match (&self.object, self.line) {
            (Some(object), Some(line)) => write!(f, " ({object}, line {line})"),
            (Some(object), None) => write!(f, " ({object})"),
            (None, Some(line)) => write!(f, " (line {line})"),
            (None, None) => Ok(()),
        }
    }
}

/// A Sluice object found in the inputs, not yet checked against the schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub kind: Kind,
    /// `metadata.namespace`, defaulted when the manifest has none.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    pub origin: Origin,
    /// The manifest as JSON, with `metadata.namespace` filled in.
    pub value: Value,
}

/// The objects found in all inputs and every problem met on the way.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Objects that passed the checks of this module, in input order.
    pub objects: Vec<Object>,
    /// Every problem found, in input order.
    pub problems: Vec<ManifestError>,
}

/// Splits every input into documents and picks out the Sluice objects, filling in
/// `default_namespace` where a manifest names none. Empty documents are skipped, as kubectl
/// does; an input with no document at all is a problem.
pub fn parse(inputs: &[Input], default_namespace: &str) -> Parsed {
    let mut parsed = Parsed::default();
    if let Some(problem) = namespace_problem(default_namespace) {
        parsed.problems.push(ManifestError::DefaultNamespace {
            namespace: default_namespace.to_string(),
            problem,
        });
        return parsed;
    }
    for input in inputs {
        parse_input(input, default_namespace, &mut parsed);
    }
    refuse_duplicates(&mut parsed);
    parsed
}

fn parse_input(input: &Input, default_namespace: &str, parsed: &mut Parsed) {
    let options = serde_saphyr::options! {
        // Budgets count per document. One object is a few hundred nodes; the cap stops alias
        // bombs early (the default, 250 000, takes seconds to reach).
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_INPUT_BYTES),
            max_nodes: MAX_NODES_PER_DOCUMENT,
        },
        with_snippet: false,
    };
    let mut text = input.text.as_bytes();
    let documents = serde_saphyr::read_with_options::<_, Spanned<Value>>(&mut text, options);
    let mut count = 0;
    for result in documents {
        count += 1;
        let origin = Origin {
            input: input.name.clone(),
            document: count,
            line: None,
            object: None,
        };
        match result {
            Ok(document) => {
                let origin = Origin {
                    line: Some(document.referenced.line()),
                    ..origin
                };
                match read_object(document.value, origin, default_namespace) {
                    Ok(object) => parsed.objects.push(object),
                    Err(problems) => parsed.problems.extend(problems),
                }
            }
            Err(error) => {
                let line = error.location().map(|location| location.line());
                parsed.problems.push(ManifestError::Yaml {
                    at: Origin { line, ..origin },
                    message: yaml_message(&error),
                });
            }
        }
    }
    if count == 0 {
        parsed.problems.push(ManifestError::Empty {
            input: input.name.clone(),
        });
    }
}

/// The parser's message, for people.
fn yaml_message(error: &serde_saphyr::Error) -> String {
    error.render_with_formatter(&serde_saphyr::UserMessageFormatter)
}

fn refuse_duplicates(parsed: &mut Parsed) {
    let mut first_seen: BTreeMap<(Kind, String, String), Origin> = BTreeMap::new();
    let mut unique = Vec::with_capacity(parsed.objects.len());
    for object in std::mem::take(&mut parsed.objects) {
        let key = (object.kind, object.namespace.clone(), object.name.clone());
        match first_seen.get(&key) {
            Some(first) => parsed.problems.push(ManifestError::Duplicate {
                at: object.origin,
                first: Box::new(first.clone()),
            }),
            None => {
                first_seen.insert(key, object.origin.clone());
                unique.push(object);
            }
        }
    }
    parsed.objects = unique;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "apiVersion: sluice.dev/v1alpha1
kind: McpServer
metadata:
  name: phabricator
spec: {}
";

    fn parse_one(text: &str) -> Parsed {
        parse(&[Input::new("in.yaml", text)], "tools")
    }

    fn messages(parsed: &Parsed) -> Vec<String> {
        parsed.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn empty_documents_are_skipped_and_not_counted() {
        let text = format!(
            "---\n# nothing\n---\n{SERVER}---\n---\n{}",
            SERVER.replace("phabricator", "second")
        );
        let parsed = parse_one(&text);
        assert!(parsed.problems.is_empty(), "{:?}", messages(&parsed));
        let origins: Vec<String> = parsed
            .objects
            .iter()
            .map(|o| o.origin.to_string())
            .collect();
        assert_eq!(
            origins,
            [
                "in.yaml: document 1 (McpServer tools/phabricator, line 4)",
                "in.yaml: document 2 (McpServer tools/second, line 11)",
            ]
        );
    }

    #[test]
    fn the_default_namespace_is_written_into_objects_without_one() {
        let explicit = SERVER.replace(
            "  name: phabricator\n",
            "  name: phabricator\n  namespace: infra\n",
        );
        let parsed = parse(
            &[Input::new("a.yaml", SERVER), Input::new("b.yaml", explicit)],
            "tools",
        );
        let namespaces: Vec<(&str, &Value)> = parsed
            .objects
            .iter()
            .map(|o| (o.namespace.as_str(), &o.value["metadata"]["namespace"]))
            .collect();
        assert_eq!(
            namespaces,
            [
                ("tools", &Value::from("tools")),
                ("infra", &Value::from("infra"))
            ]
        );
    }

    #[test]
    fn every_envelope_problem_of_a_document_is_reported() {
        let parsed = parse_one("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  nam: x\n");
        assert_eq!(
            messages(&parsed),
            [
                "in.yaml: document 1 (line 1): apiVersion: Unsupported value: \"apps/v1\": supported values: \"sluice.dev/v1alpha1\" (only sluice.dev/v1alpha1 McpServer and McpRoute are accepted)",
                "in.yaml: document 1 (line 1): kind: Unsupported value: \"Deployment\": supported values: \"McpServer\", \"McpRoute\" (of apiVersion sluice.dev/v1alpha1)",
                "in.yaml: document 1 (line 1): metadata.nam: unknown field",
                "in.yaml: document 1 (line 1): metadata.name: Required value",
            ]
        );
        assert!(parsed.objects.is_empty());
    }

    #[test]
    fn a_later_duplicate_is_refused_and_the_first_kept() {
        let text = format!(
            "{SERVER}---\n{SERVER}---\n{}",
            SERVER.replace("McpServer", "McpRoute")
        );
        let parsed = parse_one(&text);
        assert_eq!(
            parsed.objects.len(),
            2,
            "the server once and the route of the same name"
        );
        assert_eq!(parsed.objects[0].origin.document, 1);
        assert_eq!(
            messages(&parsed),
            [
                "in.yaml: document 2 (McpServer tools/phabricator, line 7): Duplicate value: the same object is also defined at in.yaml: document 1 (McpServer tools/phabricator, line 1)"
            ]
        );
    }

    #[test]
    fn a_syntax_error_names_its_line_and_ends_the_input() {
        let parsed = parse_one(&format!("{SERVER}---\nkind: [McpServer\n---\n{SERVER}"));
        assert_eq!(parsed.objects.len(), 1);
        let messages = messages(&parsed);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].starts_with("in.yaml: document 2 (line 7): invalid YAML: "),
            "{messages:?}"
        );
    }

    #[test]
    fn an_input_without_documents_is_a_problem() {
        for text in ["", "\n\n", "# only a comment\n", "---\n---\n"] {
            let parsed = parse_one(text);
            assert_eq!(
                messages(&parsed),
                ["in.yaml: holds no objects (the input is empty)"],
                "{text:?}"
            );
        }
    }
}
