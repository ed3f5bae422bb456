//! Checks objects against the generated CRD schemas and their CEL rules, as the API server does.
