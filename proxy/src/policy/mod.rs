//! Tool policy: which tools, resources and prompts each caller may use. A request naming
//! anything else is refused before it reaches the upstream (a batch whole, if one item is), and
//! list replies are filtered so each caller only sees what it may use: the replies to its list
//! requests, and on its GET event streams (resumed POST streams, the legacy HTTP+SSE
//! transport) every response holding a list.
//!
//! The caller's lists are the entry point's `allow`/`deny`, or those of the first rule naming the
//! caller by identity or group (an anonymous caller matches no rule). A caller whose lists are
//! open, with no resource or prompt filter configured, costs one branch: nothing is checked or
//! filtered.
//!
//! Names are judged as the upstream will read them (inspection unescapes JSON strings). A name
//! outside its alphabet (see [`Kind::is_valid`]) can never match a pattern, so under any
//! non-open lists it is refused as invalid, never allowed through a deny-only list.
//!
//! Patterns that match nothing are harmless (nothing is allowed through them) and cannot be
//! told at config load, when the upstream's tools are unknown; the config validation already
//! refuses patterns with characters no name can hold. What is caught instead is the effect:
//! the first time a caller's filtered list comes out empty although the upstream offered
//! items, a warning names the entry point and the rule.

mod events;
mod filter;
mod reply;
mod rules;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_proxy_config::ToolPolicy;

use crate::errors::{Denial, Refusal};
use crate::metrics::{DenialLabels, Metrics};
use crate::request::Identity;
use crate::request::Inspection;

pub use filter::ListFilter;
pub use reply::ListKind;
pub use rules::{Kind, Verdict};

use reply::{Target, Targets};
use rules::{Lists, Rule};

/// An entry point's tool policy, compiled once per config generation.
#[derive(Debug)]
pub struct Policy {
    entry_point: Arc<str>,
    tools: Lists,
    rules: Vec<Rule>,
    resources: Option<Lists>,
    prompts: Option<Lists>,
    /// Nothing configured: every step skips at once.
    open: bool,
    /// Per set of tool lists (the entry point's, then each rule's): an emptied list was
    /// warned about.
    warned_empty: Box<[AtomicBool]>,
}

impl Policy {
    /// Compiles `config` for the entry point `entry_point`.
    pub fn new(entry_point: Arc<str>, config: &ToolPolicy) -> Self {
        let rules: Vec<Rule> = config.rules.iter().map(Rule::new).collect();
        let resources = Lists::configured(config.resources.as_ref());
        let prompts = Lists::configured(config.prompts.as_ref());
        let tools = Lists::new(&config.allow, &config.deny);
        let open = tools.is_open() && rules.is_empty() && resources.is_none() && prompts.is_none();
        Self {
            entry_point,
            warned_empty: (0..=rules.len()).map(|_| AtomicBool::new(false)).collect(),
            tools,
            rules,
            resources,
            prompts,
            open,
        }
    }

    /// Whether the policy lets everything through for every caller.
    /// The entry point it guards.
    pub fn entry_point(&self) -> Arc<str> {
        self.entry_point.clone()
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The lists that apply to `caller`.
    pub fn view(&self, caller: Option<&Identity>) -> View<'_> {
        let index = self
            .rules
            .iter()
            .position(|r| r.matches(caller))
            .map_or(0, |i| i + 1);
        View {
            policy: self,
            index,
        }
    }

    fn warn_emptied(&self, index: usize, list: ListKind) {
        let Some(flag) = self.warned_empty.get(index) else {
            return;
        };
        if flag.swap(true, Ordering::Relaxed) {
            return;
        }
        let lists = match index {
            0 => "the entry point's allow/deny lists".to_owned(),
            i => format!("tools.rules[{}]", i - 1),
        };
        tracing::warn!(
            entry_point = &*self.entry_point,
            lists = %lists,
            list = ?list,
            "the tool policy hides every item the upstream offered; check the patterns"
        );
    }
}

/// The lists that apply to one caller.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    policy: &'a Policy,
    /// 0: the entry point's tool lists; `i + 1`: rule `i`'s.
    index: usize,
}

impl View<'_> {
    fn tools(&self) -> &Lists {
        match self.index {
            0 => &self.policy.tools,
            i => self
                .policy
                .rules
                .get(i - 1)
                .map_or(&self.policy.tools, |r| &r.tools),
        }
    }

    /// The lists judging names of `kind`; `None` when they let everything through.
    fn lists(&self, kind: Kind) -> Option<&Lists> {
        match kind {
            Kind::Tool => Some(self.tools()).filter(|l| !l.is_open()),
            Kind::Resource => self.policy.resources.as_ref(),
            Kind::Prompt => self.policy.prompts.as_ref(),
        }
    }

    /// Whether this caller may use everything.
    pub fn is_open(&self) -> bool {
        self.tools().is_open() && self.policy.resources.is_none() && self.policy.prompts.is_none()
    }

    /// What the caller's lists say about `name`.
    pub fn verdict(&self, kind: Kind, name: &str) -> Verdict {
        self.lists(kind)
            .map_or(Verdict::Allowed, |l| l.verdict(kind, name))
    }
}

/// The kind of name a call names: `tools/call`, `resources/read`, `prompts/get`.
fn called(method: &str) -> Option<Kind> {
    match method {
        "tools/call" => Some(Kind::Tool),
        "resources/read" => Some(Kind::Resource),
        "prompts/get" => Some(Kind::Prompt),
        _ => None,
    }
}

// === the request path ===

impl Policy {
    /// Refuses the request when the caller's lists refuse any of its messages (403, nothing goes
    /// upstream), counting the denial.
    pub fn authorize(
        &self,
        inspection: Option<&Inspection>,
        identity: Option<&Identity>,
        metrics: &Metrics,
    ) -> Result<(), Refusal> {
        let Some(inspection) = inspection else {
            return Ok(());
        };
        let view = self.view(identity);
        let open = self.is_open() || view.is_open();
        for message in inspection.messages() {
            let (Some(kind), Some(name)) = (
                message.method().and_then(|m| called(m.as_str())),
                message.name(),
            ) else {
                continue;
            };
            let verdict = if open {
                Verdict::Allowed
            } else {
                view.verdict(kind, name)
            };
            let invalid = match verdict {
                Verdict::Allowed => {
                    // An allowed tool gets a metric label of its own; a refused one never does,
                    // so invented names cannot use up the labels.
                    if kind == Kind::Tool {
                        metrics.tools.admit(name);
                    }
                    continue;
                }
                Verdict::Denied => false,
                Verdict::Invalid => true,
            };
            metrics
                .policy_denials
                .get_or_create(&DenialLabels {
                    entry_point: self.entry_point.clone(),
                    kind: kind.as_str(),
                    name: metrics.tools.label(Some(name)),
                    reason: if invalid { "invalid" } else { "denied" },
                })
                .inc();
            let shown: String = name.chars().take(rules::MAX_NAME_CHARS).collect();
            return Err(Refusal::Denied(Denial {
                kind: kind.as_str(),
                name: shown.into(),
                invalid,
            }));
        }
        Ok(())
    }

    /// The filter for the reply, when the request (`method`, and `inspection` for a POST) asks
    /// for a list this caller sees filtered, or opens an event stream (GET) that may carry list
    /// replies.
    pub fn list_filter(
        self: &Arc<Self>,
        method: &http::Method,
        inspection: Option<&Inspection>,
        identity: Option<&Identity>,
        metrics: &Metrics,
    ) -> Option<ListFilter> {
        if self.is_open() {
            return None;
        }
        let view = self.view(identity);
        if view.is_open() {
            return None;
        }
        let filter = |targets| ListFilter::new(self.clone(), view.index, targets, metrics);
        let Some(inspection) = inspection else {
            // A resumed POST stream (`Last-Event-ID`) or the legacy transport's reply stream
            // carries responses to requests this GET does not name.
            return (method == http::Method::GET).then(|| filter(Targets::AnyList));
        };
        // Every request of the POST is awaited: a response answering none of them is stray.
        let targets: Vec<Target> = inspection
            .messages()
            .iter()
            .filter_map(|m| {
                let id = m.id()?;
                let method = m.method()?;
                Some(match ListKind::of_method(method.as_str()) {
                    Some(list) if view.lists(list.kind()).is_some() => Target::new(id, list),
                    _ => Target::other(id),
                })
            })
            .collect();
        targets
            .iter()
            .any(|t| t.kind.is_some())
            .then(|| filter(Targets::Ids(targets)))
    }
}

#[cfg(test)]
mod tests {
    use sluice_proxy_config::{NameFilter, Pattern, ToolRule};

    use super::*;

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|p| Pattern::uri(p).unwrap()).collect()
    }

    fn policy(config: ToolPolicy) -> Policy {
        Policy::new(Arc::from("main"), &config)
    }

    #[test]
    fn the_first_matching_rule_replaces_the_entry_points_lists() {
        let p = policy(ToolPolicy {
            deny: pats(&["pha_passphrase_*", "pha_task_create"]),
            rules: vec![
                ToolRule {
                    identities: pats(&["ops-*"]),
                    allow: pats(&["*"]),
                    ..ToolRule::default()
                },
                ToolRule {
                    identities: pats(&["ops-bot"]),
                    deny: pats(&["*"]),
                    ..ToolRule::default()
                },
            ],
            ..ToolPolicy::default()
        });
        let ops = Identity::named("ops-bot");
        let v = p.view(Some(&ops));
        assert_eq!(
            v.verdict(Kind::Tool, "pha_passphrase_get"),
            Verdict::Allowed
        );
        let alice = Identity::named("alice");
        for caller in [Some(&alice), None] {
            let v = p.view(caller);
            assert_eq!(v.verdict(Kind::Tool, "pha_passphrase_get"), Verdict::Denied);
            assert_eq!(v.verdict(Kind::Tool, "pha_task_get"), Verdict::Allowed);
        }
    }

    #[test]
    fn open_views_and_filters_that_apply_only_when_configured() {
        let open = policy(ToolPolicy::default());
        assert!(open.is_open());
        let p = policy(ToolPolicy {
            rules: vec![ToolRule {
                identities: pats(&["root"]),
                ..ToolRule::default()
            }],
            deny: pats(&["x"]),
            prompts: Some(NameFilter::default()),
            ..ToolPolicy::default()
        });
        assert!(!p.is_open());
        // A rule without lists opens everything for its callers; an empty filter is open.
        assert!(p.view(Some(&Identity::named("root"))).is_open());
        assert!(!p.view(None).is_open());
        assert_eq!(
            p.view(None).verdict(Kind::Prompt, "any thing"),
            Verdict::Allowed
        );
        let p = policy(ToolPolicy {
            resources: Some(NameFilter {
                allow: pats(&["phab://task/*"]),
                deny: vec![],
            }),
            ..ToolPolicy::default()
        });
        let v = p.view(None);
        assert!(!v.is_open());
        assert_eq!(v.verdict(Kind::Tool, "anything"), Verdict::Allowed);
        assert_eq!(v.verdict(Kind::Resource, "phab://wiki/x"), Verdict::Denied);
    }
}
