//! Builds every Kubernetes object the operator applies for an McpServer and its routes.

pub mod names;
