//! The operator's error type.

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
