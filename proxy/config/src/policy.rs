//! Tool policy and rate limits of an entry point.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, Pattern};

/// Which tools, resources and prompts callers may use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolPolicy {
    /// Callable tools; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Pattern>,
    /// Refused tools; deny wins over allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Pattern>,
    /// Per-caller lists; the first rule matching the caller replaces `allow`/`deny`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ToolRule>,
    /// Resource URI filter; absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<NameFilter>,
    /// Prompt name filter; absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<NameFilter>,
}

impl ToolPolicy {
    /// Whether the policy lets everything through (nothing to check or filter).
    pub fn is_open(&self) -> bool {
        self.allow.is_empty()
            && self.deny.is_empty()
            && self.rules.is_empty()
            && self.resources.is_none()
            && self.prompts.is_none()
    }
}

/// Tool lists for the callers it names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolRule {
    /// Identity patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Pattern>,
    /// Group patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Pattern>,
    /// Callable tools; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Pattern>,
    /// Refused tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Pattern>,
}

/// Allow and deny patterns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameFilter {
    /// Allowed; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Pattern>,
    /// Refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Pattern>,
}

/// A GCRA rate limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Name, unique within the entry point.
    pub name: String,
    /// Key parts; the entry point is always part of the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by: Vec<RateLimitKey>,
    /// Requests per `period`.
    pub requests: u32,
    /// The period.
    pub period: Duration,
    /// Burst size; absent: `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// JSON-RPC methods that count (e.g. `tools/call`, `resources/read`); absent: `tools/call`.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Only these tools count; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Pattern>,
    /// `local` (per pod) or `global` (Redis).
    #[serde(default)]
    pub scope: RateLimitScope,
}

fn default_methods() -> Vec<String> {
    vec!["tools/call".into()]
}

/// A part of a rate-limit key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitKey {
    Identity,
    Tool,
    ClientAddress,
}

/// Where a limit is counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitScope {
    #[default]
    Local,
    Global,
}
