//! Checks objects against the generated CRD schemas and their CEL rules, as the API server does.
//!
//! The schema is the one `crdgen` writes, not rules restated by hand: what `render` accepts,
//! the API server accepts. Admission runs in the API server's order: drop what it ignores
//! (`status`, `null`s), check the structure (types, ranges, patterns, enums, required and
//! unknown fields), apply schema defaults, evaluate the CEL rules. Only an object that passes
//! is turned into the typed `McpServer` or `McpRoute`.

mod cel;
mod path;
mod problem;
mod structural;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use sluice_crds::{McpRoute, McpServer};

use self::cel::CelRules;
pub use self::path::FieldPath;
pub use self::problem::{Problem, Problems, SchemaError};
use crate::key::ObjectKey;
use crate::manifest::{self, Input, Kind, ManifestError, Object, Origin};

/// The Sluice objects of a set of inputs, admitted and typed.
#[derive(Clone, Debug, Default)]
pub struct Admitted {
    /// Every McpServer, in input order.
    pub servers: Vec<McpServer>,
    /// Every McpRoute, in input order.
    pub routes: Vec<McpRoute>,
    /// Where each object came from, by kind, namespace and name.
    origins: BTreeMap<(String, String, String), Origin>,
}

impl Admitted {
    /// Where the object `key` came from, if it came from an input.
    pub fn origin_of(&self, key: &ObjectKey) -> Option<&Origin> {
        self.origins.get(&(
            key.kind.to_string(),
            key.namespace.clone(),
            key.name.clone(),
        ))
    }
}

/// The compiled schemas of both kinds.
pub struct Admission {
    server: KindSchema,
    route: KindSchema,
}

/// One kind's schema, compiled twice: for structure and for CEL rules.
struct KindSchema {
    structure: jsonschema::Validator,
    rules: CelRules,
}

impl Admission {
    /// Compiles the schemas of the generated CRDs.
    pub fn new() -> Result<Self, SchemaError> {
        let crds = sluice_crds::crds();
        Ok(Self {
            server: KindSchema::compile(&crds, Kind::McpServer)?,
            route: KindSchema::compile(&crds, Kind::McpRoute)?,
        })
    }

    /// Why CEL rules of the CRDs do not compile (empty when all do).
    pub fn rule_compilation_errors(&self) -> Vec<String> {
        let mut errors = self.server.rules.compilation_errors();
        errors.extend(self.route.rules.compilation_errors());
        errors
    }

    /// Reads every path (`-` is stdin; a directory is read file by file) and admits what
    /// it holds: the way `render` takes from files to typed objects. Every problem found in
    /// any input is reported, not just the first.
    pub fn load_files(
        &self,
        paths: &[String],
        default_namespace: &str,
    ) -> Result<Admitted, Problems> {
        let (inputs, unreadable) = manifest::read_inputs(paths);
        self.load_inputs(&inputs, unreadable, default_namespace)
    }

    /// Splits and admits inputs already in memory.
    pub fn load(&self, inputs: &[Input], default_namespace: &str) -> Result<Admitted, Problems> {
        self.load_inputs(inputs, Vec::new(), default_namespace)
    }

    fn load_inputs(
        &self,
        inputs: &[Input],
        unreadable: Vec<ManifestError>,
        default_namespace: &str,
    ) -> Result<Admitted, Problems> {
        let parsed = manifest::parse(inputs, default_namespace);
        let mut problems: Vec<Problem> = unreadable
            .into_iter()
            .chain(parsed.problems)
            .map(Problem::from)
            .collect();
        let admitted = match self.admit(parsed.objects) {
            Ok(admitted) => admitted,
            Err(violations) => {
                problems.extend(violations.into_iter().map(Problem::from));
                Admitted::default()
            }
        };
        // Reading, splitting and admitting find problems in passes; report them as a reader
        // meets them: input by input, document by document.
        problems.sort_by_key(|problem| {
            problem.origin().map(|origin| {
                let input = inputs.iter().position(|input| input.name == origin.input);
                (input, origin.document)
            })
        });
        if problems.is_empty() {
            Ok(admitted)
        } else {
            Err(Problems(problems))
        }
    }

    /// Admits every object; on failure, returns every violation of every object.
    pub fn admit(&self, objects: Vec<Object>) -> Result<Admitted, Vec<Violation>> {
        let mut admitted = Admitted::default();
        let mut violations = Vec::new();
        for object in objects {
            let checked = self.check(&object);
            let key = (
                object.kind.as_str().to_string(),
                object.namespace.clone(),
                object.name.clone(),
            );
            admitted.origins.insert(key, object.origin.clone());
            let typed = checked.and_then(|value| match object.kind {
                Kind::McpServer => {
                    typed(&object.origin, value).map(|server| admitted.servers.push(server))
                }
                Kind::McpRoute => {
                    typed(&object.origin, value).map(|route| admitted.routes.push(route))
                }
            });
            if let Err(found) = typed {
                violations.extend(found);
            }
        }
        if violations.is_empty() {
            Ok(admitted)
        } else {
            Err(violations)
        }
    }

    /// Checks one object. Returns it as the API server would store it (status and nulls
    /// dropped, defaults applied), or every violation found.
    pub fn check(&self, object: &Object) -> Result<Value, Vec<Violation>> {
        let schema = match object.kind {
            Kind::McpServer => &self.server,
            Kind::McpRoute => &self.route,
        };
        let mut value = object.value.clone();
        if let Some(fields) = value.as_object_mut() {
            // The status subresource is on: writes to the object ignore status.
            fields.remove("status");
        }
        structural::drop_nulls(&mut value);
        let violation = |(field, detail): (FieldPath, String)| Violation {
            at: object.origin.clone(),
            field,
            detail,
        };
        let structural: Vec<Violation> = schema
            .structure
            .iter_errors(&value)
            .flat_map(|error| structural::describe(&error, &value))
            .map(violation)
            .collect();
        if !structural.is_empty() {
            // CEL rules assume a well-typed object; their failures would only add noise.
            return Err(structural);
        }
        let rules: Vec<Violation> = schema
            .rules
            .check(&value)
            .into_iter()
            .map(violation)
            .collect();
        if !rules.is_empty() {
            return Err(rules);
        }
        Ok(schema.rules.with_defaults(&value))
    }
}

impl KindSchema {
    fn compile(crds: &[CustomResourceDefinition], kind: Kind) -> Result<Self, SchemaError> {
        let schema = crds
            .iter()
            .find(|crd| crd.spec.names.kind == kind.as_str())
            .and_then(|crd| {
                crd.spec
                    .versions
                    .iter()
                    .find(|version| version.name == sluice_crds::VERSION)
            })
            .and_then(|version| version.schema.as_ref())
            .and_then(|schema| schema.open_api_v3_schema.as_ref())
            .ok_or_else(|| SchemaError {
                kind,
                message: "the CRD has no openAPIV3Schema".into(),
            })?;
        let schema = serde_json::to_value(schema).map_err(|error| SchemaError {
            kind,
            message: error.to_string(),
        })?;
        let structure = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&structural::api_server_dialect(&schema))
            .map_err(|error| SchemaError {
                kind,
                message: error.to_string(),
            })?;
        Ok(Self {
            structure,
            rules: CelRules::compile(&schema, kind.as_str()),
        })
    }
}

/// Turns an admitted (defaulted) object into its API type. Failing here means the schema
/// and the types disagree: a bug, but reported like any other problem, never a panic.
fn typed<T: serde::de::DeserializeOwned>(at: &Origin, value: Value) -> Result<T, Vec<Violation>> {
    serde_json::from_value(value).map_err(|error| {
        vec![Violation {
            at: at.clone(),
            field: FieldPath::root(),
            detail: format!(
                "Internal error: the object passed the schema but not the API types: {error}"
            ),
        }]
    })
}

/// One way an object breaks its schema: the object, the field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Violation {
    pub at: Origin,
    /// The field, e.g. `spec.policy.rateLimits[0].period`.
    pub field: FieldPath,
    /// What is wrong, e.g. `Invalid value: 200: must be less than or equal to 100`.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_root() {
            write!(f, "{}: {}", self.at, self.detail)
        } else {
            write!(f, "{}: {}: {}", self.at, self.field, self.detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every schema node that declares a `default`, with its path.
    fn defaulted_nodes(node: &Value, path: &str, found: &mut Vec<(String, Value)>) {
        if node.get("default").is_some() {
            found.push((path.to_string(), node.clone()));
        }
        for (name, child) in node
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            defaulted_nodes(child, &format!("{path}.{name}"), found);
        }
        if let Some(items) = node.get("items") {
            defaulted_nodes(items, &format!("{path}[]"), found);
        }
    }

    /// The API server refuses a CRD whose defaults break their own schema (types, ranges,
    /// unknown fields, CEL rules); the derive cannot see that a `Default` impl is off.
    #[test]
    fn every_schema_default_passes_its_own_schema() {
        let mut nodes = Vec::new();
        for crd in sluice_crds::crds() {
            let schema = crd.spec.versions[0]
                .schema
                .clone()
                .unwrap()
                .open_api_v3_schema;
            let schema = serde_json::to_value(schema.unwrap()).unwrap();
            defaulted_nodes(&schema, &crd.spec.names.kind, &mut nodes);
        }
        assert!(
            nodes.len() > 20,
            "only {} defaults found; is the walk broken?",
            nodes.len()
        );
        let mut problems = Vec::new();
        for (path, node) in &nodes {
            let default = &node["default"];
            let structure = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&structural::node_dialect(node))
                .unwrap();
            for error in structure.iter_errors(default) {
                problems.push(format!("{path}: default {default}: {error}"));
            }
            for (field, detail) in CelRules::compile(node, "Default").check(default) {
                problems.push(format!("{path}: default {default}: {field}: {detail}"));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
