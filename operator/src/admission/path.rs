//! Field paths as the API server prints them: `spec.policy.rateLimits[0].period`.

use std::fmt;

use serde_json::Value;

/// A path to a field of an object: names joined by `.`, list indexes in `[]`, and map keys
/// that are not plain names (e.g. `app.kubernetes.io/name`) in `[]` as well.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(String);

impl FieldPath {
    /// The path of the object itself.
    pub fn root() -> Self {
        Self::default()
    }

    /// A path already in dotted form (as kube-cel reports it). A leading `.` (as in a CEL
    /// rule's `fieldPath`) is dropped.
    pub fn from_dotted(path: &str) -> Self {
        Self(path.strip_prefix('.').unwrap_or(path).to_string())
    }

    /// The path of the field a JSON pointer (`/spec/rateLimits/0`) points to in `root`.
    /// Walking `root` tells list indexes from map keys that look like numbers.
    pub fn from_json_pointer(pointer: &str, root: &Value) -> Self {
        let mut path = Self::root();
        let mut node = Some(root);
        for token in pointer.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            match (node, token.parse::<usize>()) {
                (Some(Value::Array(items)), Ok(index)) => {
                    path = path.index(index);
                    node = items.get(index);
                }
                (current, _) => {
                    path = path.child(&token);
                    node = current.and_then(|value| value.get(&token));
                }
            }
        }
        path
    }

    /// The path of a field of this one.
    pub fn child(&self, name: &str) -> Self {
        let plain = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match (self.0.is_empty(), plain) {
            (true, true) => Self(name.to_string()),
            (false, true) => Self(format!("{}.{name}", self.0)),
            (_, false) => Self(format!("{}[{name}]", self.0)),
        }
    }

    /// The path of an item of this list.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// Whether this is the object itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pointers_become_dotted_paths_with_indexes() {
        let root = json!({"spec": {"policy": {"rateLimits": [{"period": "x"}]}}});
        let path = FieldPath::from_json_pointer("/spec/policy/rateLimits/0/period", &root);
        assert_eq!(path.as_str(), "spec.policy.rateLimits[0].period");
    }

    #[test]
    fn map_keys_that_are_not_names_go_in_brackets() {
        let root = json!({"labels": {"app.kubernetes.io/name": "x", "7": "y"}});
        let path = FieldPath::from_json_pointer("/labels/app.kubernetes.io~1name", &root);
        assert_eq!(path.as_str(), "labels[app.kubernetes.io/name]");
        assert_eq!(
            FieldPath::from_json_pointer("/labels/7", &root).as_str(),
            "labels[7]"
        );
    }

    #[test]
    fn a_leading_dot_of_a_cel_field_path_is_dropped() {
        assert_eq!(
            FieldPath::from_dotted(".metadata.name").as_str(),
            "metadata.name"
        );
        assert_eq!(
            FieldPath::from_dotted("spec.replicas").as_str(),
            "spec.replicas"
        );
    }
}
