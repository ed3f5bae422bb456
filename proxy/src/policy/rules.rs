//! Allow/deny lists compiled for the request path, the names they can judge, and the choice of
//! a caller's lists among an entry point's rules.

use sluice_proxy_config::{NameFilter, Pattern, ToolRule};

use crate::request::Identity;

/// Longest tool or prompt name judged; the MCP specification says names SHOULD be 1 to 128
/// characters long.
pub const MAX_NAME_CHARS: usize = 128;

/// Longest resource URI judged.
pub const MAX_URI_CHARS: usize = 4096;

/// What a name is, and so which characters it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A tool (`tools/call`, `tools/list`).
    Tool,
    /// A resource URI (`resources/read`, `resources/list`, `resources/templates/list`).
    Resource,
    /// A prompt (`prompts/get`, `prompts/list`).
    Prompt,
}

impl Kind {
    /// The metric label and the word used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Resource => "resource",
            Kind::Prompt => "prompt",
        }
    }

    /// Whether `name` is a name of this kind a pattern can judge: tool and prompt names use
    /// ASCII letters, digits and `_ - . /` (the MCP tool-name alphabet and the patterns'),
    /// URIs visible ASCII. Anything else (a Cyrillic look-alike, a control character) can never
    /// match a pattern, so it is refused rather than let through a deny-only list.
    pub fn is_valid(self, name: &str) -> bool {
        match self {
            Kind::Tool | Kind::Prompt => {
                !name.is_empty()
                    && name.len() <= MAX_NAME_CHARS
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b))
            }
            Kind::Resource => {
                !name.is_empty()
                    && name.len() <= MAX_URI_CHARS
                    && name.bytes().all(|b| b.is_ascii_graphic())
            }
        }
    }
}

/// What lists say about a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Matched by `deny`, or not matched by a non-empty `allow`.
    Denied,
    /// Not a name of its kind (see [`Kind::is_valid`]).
    Invalid,
}

/// Allow and deny patterns; deny wins, an empty allow list allows everything not denied.
#[derive(Debug, Default)]
pub struct Lists {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
}

impl Lists {
    pub fn new(allow: &[Pattern], deny: &[Pattern]) -> Self {
        Self {
            allow: allow.to_vec(),
            deny: deny.to_vec(),
        }
    }

    /// From an optional filter; `None` when it is absent or lets everything through.
    pub fn configured(filter: Option<&NameFilter>) -> Option<Self> {
        filter
            .map(|f| Self::new(&f.allow, &f.deny))
            .filter(|l| !l.is_open())
    }

    /// Whether these lists let every name through unjudged.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Judges `name` as a name of `kind`. Open lists allow everything, valid or not.
    pub fn verdict(&self, kind: Kind, name: &str) -> Verdict {
        if self.is_open() {
            return Verdict::Allowed;
        }
        if !kind.is_valid(name) {
            return Verdict::Invalid;
        }
        if self.deny.iter().any(|p| p.matches(name)) {
            return Verdict::Denied;
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| p.matches(name)) {
            return Verdict::Denied;
        }
        Verdict::Allowed
    }
}

/// A per-caller rule: its tool lists replace the entry point's for the callers it names.
#[derive(Debug)]
pub struct Rule {
    identities: Vec<Pattern>,
    groups: Vec<Pattern>,
    pub tools: Lists,
}

impl Rule {
    pub fn new(rule: &ToolRule) -> Self {
        Self {
            identities: rule.identities.clone(),
            groups: rule.groups.clone(),
            tools: Lists::new(&rule.allow, &rule.deny),
        }
    }

    /// Whether the rule names `caller`. An anonymous caller (no identity) matches no rule.
    pub fn matches(&self, caller: Option<&Identity>) -> bool {
        let Some(caller) = caller else {
            return false;
        };
        self.identities.iter().any(|p| p.matches(&caller.name))
            || self
                .groups
                .iter()
                .any(|p| caller.groups.iter().any(|g| p.matches(g)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|p| Pattern::uri(p).unwrap()).collect()
    }

    fn lists(allow: &[&str], deny: &[&str]) -> Lists {
        Lists::new(&pats(allow), &pats(deny))
    }

    #[test]
    fn deny_wins_and_an_empty_allow_list_allows_the_rest() {
        let l = lists(&["pha_task_*", "pha_user_whoami"], &["pha_task_create"]);
        assert_eq!(l.verdict(Kind::Tool, "pha_task_get"), Verdict::Allowed);
        assert_eq!(l.verdict(Kind::Tool, "pha_user_whoami"), Verdict::Allowed);
        assert_eq!(l.verdict(Kind::Tool, "pha_task_create"), Verdict::Denied);
        assert_eq!(l.verdict(Kind::Tool, "pha_wiki_edit"), Verdict::Denied);
        let deny_only = lists(&[], &["pha_passphrase_*"]);
        assert_eq!(
            deny_only.verdict(Kind::Tool, "pha_wiki_edit"),
            Verdict::Allowed
        );
        assert_eq!(
            deny_only.verdict(Kind::Tool, "pha_passphrase_get"),
            Verdict::Denied
        );
    }

    #[test]
    fn names_outside_the_alphabet_are_invalid_whatever_the_lists_say() {
        let deny_only = lists(&[], &["pha_passphrase_*"]);
        for name in [
            "pha_p\u{0430}ssphrase_get",
            "pha_passphrase_get\u{200b}",
            "pha passphrase",
            "",
            &"a".repeat(MAX_NAME_CHARS + 1),
        ] {
            assert_eq!(
                deny_only.verdict(Kind::Tool, name),
                Verdict::Invalid,
                "{name:?}"
            );
        }
        assert_eq!(
            deny_only.verdict(Kind::Tool, &"a".repeat(MAX_NAME_CHARS)),
            Verdict::Allowed
        );
        // Open lists judge nothing.
        assert_eq!(
            Lists::default().verdict(Kind::Tool, "pha_p\u{0430}ss"),
            Verdict::Allowed
        );
        // URIs may hold any visible ASCII, not spaces or non-ASCII.
        let r = lists(&["phab://task/*"], &[]);
        assert_eq!(
            r.verdict(Kind::Resource, "phab://task/T1?x=1"),
            Verdict::Allowed
        );
        assert_eq!(
            r.verdict(Kind::Resource, "phab://task/T 1"),
            Verdict::Invalid
        );
        assert_eq!(r.verdict(Kind::Resource, "phab://wiki/x"), Verdict::Denied);
    }

    #[test]
    fn rules_match_identities_or_groups_and_never_the_anonymous_caller() {
        let rule = Rule::new(&ToolRule {
            identities: pats(&["system:serviceaccount:ci:*"]),
            groups: pats(&["admins"]),
            allow: pats(&["*"]),
            deny: vec![],
        });
        assert!(rule.matches(Some(&Identity::named("system:serviceaccount:ci:builder"))));
        assert!(!rule.matches(Some(&Identity::named("alice"))));
        let admin = Identity {
            name: Arc::from("bob"),
            groups: Arc::from([Arc::from("users"), Arc::from("admins")]),
        };
        assert!(rule.matches(Some(&admin)));
        assert!(!rule.matches(None));
    }
}
