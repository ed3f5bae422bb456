//! The CRD YAML files generated from the API types.
