//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated with kube-cel.

use kube::core::cel::{CompiledSchema, ErrorKind, RootContext, ValidationError, Validator};
use serde_json::Value;

use super::path::FieldPath;

/// A CRD schema's CEL rules, compiled once.
pub struct CelRules {
    compiled: CompiledSchema,
    schema: Value,
    root: RootContext,
    validator: Validator,
}

impl CelRules {
    /// Compiles every rule of `schema` (a CRD's `openAPIV3Schema`) for objects of `kind`.
    /// Rules that do not compile are reported by [`CelRules::compilation_errors`] and fail
    /// every object they apply to, as they would fail the CRD's registration.
    pub fn compile(schema: &Value, kind: &str) -> Self {
        Self {
            compiled: kube::core::cel::compile_schema(schema),
            schema: schema.clone(),
            root: RootContext {
                api_version: sluice_crds::API_VERSION.into(),
                api_group: sluice_crds::GROUP.into(),
                kind: kind.into(),
            },
            validator: Validator::new(),
        }
    }

    /// Why rules do not compile, one message per rule.
    pub fn compilation_errors(&self) -> Vec<String> {
        self.compiled
            .compilation_errors()
            .iter()
            .map(|error| error.to_string())
            .collect()
    }

    /// The object with the schema's defaults applied, as the API server stores it.
    pub fn with_defaults(&self, object: &Value) -> Value {
        kube::core::cel::apply_defaults(&self.schema, object)
    }

    /// Evaluates every rule on `object` (defaults are applied first, as the API server
    /// does). Returns the failures as fields and messages, sorted by field.
    pub fn check(&self, object: &Value) -> Vec<(FieldPath, String)> {
        let Err(errors) = self.validator.validate_compiled_with_context(
            &self.compiled,
            object,
            None,
            Some(&self.root),
        ) else {
            return Vec::new();
        };
        let mut failures: Vec<(FieldPath, String)> =
            errors.iter().map(|error| self.describe(error)).collect();
        // kube-cel walks properties in hash order; sort for stable output.
        failures.sort();
        failures.dedup();
        failures
    }

    /// Says which rule failed, in the API server's words: the type of the field as the
    /// "value" (it does not print whole objects) and the rule's message.
    fn describe(&self, error: &ValidationError) -> (FieldPath, String) {
        let field = FieldPath::from_dotted(&error.field_path);
        let schema_type = schema_type_at(&self.schema, &field).unwrap_or("object");
        let detail = match error.kind {
            ErrorKind::ValidationFailure => {
                format!("Invalid value: \"{schema_type}\": {}", error.message)
            }
            _ => format!(
                "Internal error: the rule `{}` could not be evaluated: {}",
                error.rule, error.message
            ),
        };
        (field, detail)
    }
}

/// The `type` the schema declares for a field, if it declares the field.
fn schema_type_at<'a>(schema: &'a Value, field: &FieldPath) -> Option<&'a str> {
    let declared = segments(field.as_str())
        .into_iter()
        .try_fold(schema, |node, segment| {
            match segment {
                Segment::Field(name) => node.get("properties").and_then(|fields| fields.get(name)),
                // A map key: the schema of the map's values.
                Segment::Key => node
                    .get("additionalProperties")
                    .filter(|values| values.is_object()),
                Segment::Item => node.get("items"),
            }
        });
    declared?.get("type")?.as_str()
}

/// One step of a field path.
enum Segment<'a> {
    Field(&'a str),
    Key,
    Item,
}

/// Splits `a.b[0].c` into field `a`, field `b`, an item, field `c` (and `labels[k]` into
/// field `labels`, a key).
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let (name, brackets) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            segments.push(Segment::Field(name));
        }
        for inside in brackets
            .split(['[', ']'])
            .filter(|inside| !inside.is_empty())
        {
            let is_index = inside.bytes().all(|b| b.is_ascii_digit());
            segments.push(if is_index {
                Segment::Item
            } else {
                Segment::Key
            });
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules() -> CelRules {
        let schema = json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "mode": {"type": "string", "default": "a"},
                    "items": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "x-kubernetes-validations": [{"rule": "self.name != 'x'", "message": "no x"}]
                    }}
                },
                "x-kubernetes-validations": [
                    {"rule": "self.mode != 'a' || self.replicas <= 1", "message": "mode a runs one replica", "fieldPath": ".replicas"}
                ]
            }}
        });
        CelRules::compile(&schema, "Thing")
    }

    #[test]
    fn a_failed_rule_names_its_field_path_and_the_schema_type() {
        let failures = rules().check(&json!({"spec": {"replicas": 3}}));
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0.as_str(), "spec.replicas");
        assert_eq!(
            failures[0].1,
            "Invalid value: \"integer\": mode a runs one replica"
        );
    }

    #[test]
    fn rules_see_schema_defaults() {
        // `mode` defaults to `a`, which allows one replica only.
        assert!(rules().check(&json!({"spec": {"replicas": 1}})).is_empty());
        assert!(!rules().check(&json!({"spec": {"replicas": 2}})).is_empty());
        assert!(
            rules()
                .check(&json!({"spec": {"replicas": 2, "mode": "b"}}))
                .is_empty()
        );
    }

    #[test]
    fn failures_in_list_items_carry_the_index() {
        let failures = rules().check(&json!({"spec": {"items": [{"name": "y"}, {"name": "x"}]}}));
        assert_eq!(
            failures,
            [(
                FieldPath::from_dotted("spec.items[1]"),
                "Invalid value: \"object\": no x".into()
            )]
        );
    }

    #[test]
    fn a_rule_that_does_not_compile_is_reported() {
        let schema = json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.(", "message": "m"}]});
        let rules = CelRules::compile(&schema, "Thing");
        assert_eq!(rules.compilation_errors().len(), 1);
        let failures = rules.check(&json!({}));
        assert!(failures[0].1.starts_with("Internal error"), "{failures:?}");
    }
}
