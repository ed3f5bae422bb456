//! Who is calling: what authentication establishes, for tool rules, rate limits and audit logs.

use std::sync::Arc;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The caller's name: a Phabricator user name, an API-key client name,
    /// `system:serviceaccount:<namespace>:<name>`, or a JWT's identity claim.
    pub name: Arc<str>,
    /// The caller's groups (from a JWT groups claim), for group-based tool rules.
    pub groups: Arc<[Arc<str>]>,
}

impl Identity {
    /// An identity without groups.
    pub fn named(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            groups: Arc::new([]),
        }
    }
}
