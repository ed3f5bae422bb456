//! Rate limits: GCRA budgets per rule, keyed by the parts the rule names (identity, tool,
//! client address; the entry point always), counting the messages of the rule's methods (and
//! tools). Local rules count per pod; global rules count in Redis for all replicas, and without
//! Redis either count per pod (`failMode: open`) or refuse with 503 (`closed`).
//!
//! Every message of a request counts, batch items included, in order; the first rule that
//! refuses one refuses the request (429 with `Retry-After`), and what earlier checks took stays
//! taken. Limiter state outlives config generations ([`Kept`]): a reload that keeps a rule
//! keeps its budgets.

mod global;
mod local;
mod sentinel;
mod store;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use sluice_proxy_config::{
    EntryPoint, FailMode, Pattern, ProxyConfig, RateLimit, RateLimitKey, RateLimitScope, Redis,
};

use crate::errors::Refusal;
use crate::metrics::{FallbackLabels, Metrics, RuleLabels};
use crate::policy::Kind;
use crate::request::{Identity, Inspection, Message};

pub use global::{Answer, Global};
pub use local::{Gcra, Local};

/// A budget's key within one rule of one entry point: the parts the rule's `by` names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Key {
    /// The caller's name; `None` for an anonymous caller (who all share one budget) or when
    /// the rule is not by identity.
    pub identity: Option<Arc<str>>,
    pub tool: Option<Box<str>>,
    pub address: Option<IpAddr>,
}

/// The `tool` key part of names outside the tool-name alphabet: they share one budget, so
/// junk names cannot mint keys (or long Redis keys).
const INVALID_TOOL: &str = "~invalid";

/// An entry point's rate limits, compiled once per config generation.
#[derive(Debug, Default)]
pub struct RateLimits {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    name: Arc<str>,
    /// `<entry point>:<rule>`, the start of its Redis keys.
    scope_key: String,
    by_identity: bool,
    by_tool: bool,
    by_address: bool,
    methods: Box<[Box<str>]>,
    tools: Vec<Pattern>,
    gcra: Gcra,
    limited: Counter,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Local(Arc<Local>),
    Global {
        redis: Arc<Global>,
        /// Counts instead of Redis when failing open.
        fallback: Arc<Local>,
        fallbacks: Counter,
    },
}

impl RateLimits {
    /// Compiles the rate limits of `ep`, reusing budgets and the Redis client from `kept`.
    pub fn new(ep: &EntryPoint, config: &ProxyConfig, metrics: &Metrics, kept: &Kept) -> Self {
        let entry_point: Arc<str> = Arc::from(ep.name.as_str());
        let rules = ep
            .rate_limits
            .iter()
            .map(|rl| {
                let name: Arc<str> = Arc::from(rl.name.as_str());
                let gcra = Gcra::new(rl.requests, rl.period.get(), rl.burst);
                let backend = match (rl.scope, &config.redis) {
                    (RateLimitScope::Global, Some(redis)) => Backend::Global {
                        redis: kept.global(redis, metrics),
                        fallback: kept.local(&entry_point, rl, gcra),
                        fallbacks: metrics
                            .rate_limit_fallbacks
                            .get_or_create(&FallbackLabels {
                                entry_point: entry_point.clone(),
                                rule: name.clone(),
                                fail_mode: match redis.fail_mode {
                                    FailMode::Open => "open",
                                    FailMode::Closed => "closed",
                                },
                            })
                            .clone(),
                    },
                    // Validation refuses global rules without redis; count such a rule locally.
                    _ => Backend::Local(kept.local(&entry_point, rl, gcra)),
                };
                Rule {
                    scope_key: format!("sluice:ratelimit:{}:{}", ep.name, rl.name),
                    by_identity: rl.by.contains(&RateLimitKey::Identity),
                    by_tool: rl.by.contains(&RateLimitKey::Tool),
                    by_address: rl.by.contains(&RateLimitKey::ClientAddress),
                    methods: rl.methods.iter().map(|m| Box::from(m.as_str())).collect(),
                    tools: rl.tools.clone(),
                    gcra,
                    limited: metrics
                        .rate_limited
                        .get_or_create(&RuleLabels {
                            entry_point: entry_point.clone(),
                            rule: name.clone(),
                        })
                        .clone(),
                    backend,
                    name,
                }
            })
            .collect();
        Self { rules }
    }
}

impl Rule {
    /// Whether `message` counts: its method is one of the rule's and, when the rule names
    /// tools and the message is a `tools/call`, it calls one of them.
    fn counts(&self, message: &Message) -> bool {
        let Some(method) = message.method() else {
            return false;
        };
        let method = method.as_str();
        if !self.methods.iter().any(|m| **m == *method) {
            return false;
        }
        // `tools` narrows tool calls; other methods listed count whatever they name.
        self.tools.is_empty()
            || method != "tools/call"
            || message
                .name()
                .is_some_and(|n| self.tools.iter().any(|p| p.matches(n)))
    }

    fn key(&self, message: &Message, caller: Option<&Identity>, client: IpAddr) -> Key {
        Key {
            identity: self
                .by_identity
                .then(|| caller.map(|c| c.name.clone()))
                .flatten(),
            tool: self.by_tool.then(|| tool_part(message)),
            address: self.by_address.then_some(client),
        }
    }

    /// The Redis key of `key` (without `redis.keyPrefix`). Parts carry their lengths, so no
    /// identity can spell another key.
    fn redis_key(&self, key: &Key) -> String {
        let mut out = self.scope_key.clone();
        if self.by_identity {
            match &key.identity {
                Some(id) => {
                    let _ = write!(out, ":identity={}:{id}", id.len());
                }
                None => out.push_str(":identity=-"),
            }
        }
        if let Some(tool) = &key.tool {
            let _ = write!(out, ":tool={}:{tool}", tool.len());
        }
        if let Some(address) = &key.address {
            let _ = write!(out, ":address={address}");
        }
        out
    }

    async fn admit(
        &self,
        message: &Message,
        caller: Option<&Identity>,
        client: IpAddr,
    ) -> Result<(), Refusal> {
        let key = self.key(message, caller, client);
        let wait = match &self.backend {
            Backend::Local(local) => local.check(&key).err(),
            Backend::Global {
                redis,
                fallback,
                fallbacks,
            } => match redis.check(&self.redis_key(&key), self.gcra).await {
                Ok(Answer::Admit) => None,
                Ok(Answer::Wait(wait)) => Some(wait),
                Err(_) => {
                    fallbacks.inc();
                    match redis.fail_mode() {
                        FailMode::Open => fallback.check(&key).err(),
                        FailMode::Closed => return Err(Refusal::LimiterUnavailable),
                    }
                }
            },
        };
        match wait {
            None => Ok(()),
            Some(wait) => {
                self.limited.inc();
                Err(Refusal::RateLimited {
                    rule: self.name.clone(),
                    retry_after: retry_after(wait),
                })
            }
        }
    }
}

/// The `tool` key part: the tool a `tools/call` names (valid names only), else none.
fn tool_part(message: &Message) -> Box<str> {
    match (message.method().map(|m| m.as_str()), message.name()) {
        (Some("tools/call"), Some(name)) if Kind::Tool.is_valid(name) => Box::from(name),
        (Some("tools/call"), Some(_)) => Box::from(INVALID_TOOL),
        _ => Box::from(""),
    }
}

/// `Retry-After`: whole seconds, rounded up, at least 1.
fn retry_after(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

// === the request path ===

impl RateLimits {
    /// Counts the messages of `inspection` by `identity` from the `client` address against the
    /// rules; 429 over a limit.
    pub async fn check(
        &self,
        inspection: Option<&Inspection>,
        identity: Option<&Identity>,
        client: IpAddr,
    ) -> Result<(), Refusal> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let Some(inspection) = inspection else {
            return Ok(());
        };
        for message in inspection.messages() {
            for rule in &self.rules {
                if rule.counts(message) {
                    rule.admit(message, identity, client).await?;
                }
            }
        }
        Ok(())
    }
}

// === state across generations ===

/// Limiter state kept across config generations: per-pod budgets by entry point and rule
/// (while the rule stays the same), and the Redis client (while `redis` stays the same).
#[derive(Debug, Default)]
pub struct Kept {
    inner: Mutex<KeptInner>,
}

#[derive(Debug, Default)]
struct KeptInner {
    local: Vec<(Arc<str>, RateLimit, Weak<Local>)>,
    redis: Option<Weak<Global>>,
}

impl Kept {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeptInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The budgets of `rule` on `entry_point`: the ones in use if the rule is unchanged.
    fn local(&self, entry_point: &Arc<str>, rule: &RateLimit, gcra: Gcra) -> Arc<Local> {
        let mut inner = self.lock();
        inner.local.retain(|(_, _, l)| l.strong_count() > 0);
        if let Some(local) = inner
            .local
            .iter()
            .find(|(ep, r, _)| ep == entry_point && r == rule)
            .and_then(|(_, _, l)| l.upgrade())
        {
            return local;
        }
        let local = Arc::new(Local::new(gcra));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(local::retain_periodically(Arc::downgrade(&local)));
        }
        inner
            .local
            .push((entry_point.clone(), rule.clone(), Arc::downgrade(&local)));
        local
    }

    /// The Redis client for `config`: the one in use if the settings are unchanged.
    fn global(&self, config: &Redis, metrics: &Metrics) -> Arc<Global> {
        let mut inner = self.lock();
        if let Some(global) = inner
            .redis
            .as_ref()
            .and_then(Weak::upgrade)
            .filter(|g| g.config() == config)
        {
            return global;
        }
        let global = Global::start(config, metrics);
        inner.redis = Some(Arc::downgrade(&global));
        global
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::inspect;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::from_secs(20)), 20);
        assert_eq!(retry_after(Duration::from_millis(19_001)), 20);
        assert_eq!(retry_after(Duration::from_millis(1)), 1);
        assert_eq!(retry_after(Duration::ZERO), 1);
    }

    fn rule(by: &[RateLimitKey], methods: &[&str], tools: &[&str]) -> Rule {
        Rule {
            name: Arc::from("r"),
            scope_key: "sluice:ratelimit:main:r".into(),
            by_identity: by.contains(&RateLimitKey::Identity),
            by_tool: by.contains(&RateLimitKey::Tool),
            by_address: by.contains(&RateLimitKey::ClientAddress),
            methods: methods.iter().map(|m| Box::from(*m)).collect(),
            tools: tools.iter().map(|t| Pattern::name(t).unwrap()).collect(),
            gcra: Gcra::new(1, Duration::from_secs(1), None),
            limited: Counter::default(),
            backend: Backend::Local(Arc::new(Local::new(Gcra::new(
                1,
                Duration::from_secs(1),
                None,
            )))),
        }
    }

    fn call(tool: &str) -> crate::request::Inspection {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{}}}}}"#,
            serde_json::to_string(tool).unwrap()
        );
        inspect(body.as_bytes()).unwrap()
    }

    #[test]
    fn methods_and_tools_decide_what_counts() {
        let calls = rule(&[], &["tools/call"], &[]);
        let list = inspect(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(calls.counts(&call("x").messages()[0]));
        assert!(!calls.counts(&list.messages()[0]));
        let tasks = rule(&[], &["tools/call", "tools/list"], &["pha_task_*"]);
        assert!(tasks.counts(&call("pha_task_get").messages()[0]));
        assert!(!tasks.counts(&call("pha_user_whoami").messages()[0]));
        // `tools` narrows tool calls only.
        assert!(tasks.counts(&list.messages()[0]));
        let response = inspect(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
        assert!(!calls.counts(&response.messages()[0]));
    }

    #[test]
    fn keys_hold_the_parts_the_rule_names_and_redis_keys_cannot_collide() {
        let all = rule(
            &[
                RateLimitKey::Identity,
                RateLimitKey::Tool,
                RateLimitKey::ClientAddress,
            ],
            &["tools/call"],
            &[],
        );
        let peer: IpAddr = "10.0.0.7".parse().unwrap();
        let alice = Identity::named("alice");
        let m = call("pha_task_get");
        let key = all.key(&m.messages()[0], Some(&alice), peer);
        assert_eq!(key.identity.as_deref(), Some("alice"));
        assert_eq!(key.tool.as_deref(), Some("pha_task_get"));
        assert_eq!(key.address, Some(peer));
        assert_eq!(
            all.redis_key(&key),
            "sluice:ratelimit:main:r:identity=5:alice:tool=12:pha_task_get:address=10.0.0.7"
        );
        let anonymous = all.key(&m.messages()[0], None, peer);
        assert!(all.redis_key(&anonymous).contains(":identity=-:"));
        // An identity that spells another key's parts gets a different key.
        let sly = Identity::named("a:tool=1:x");
        assert_ne!(
            all.redis_key(&all.key(&m.messages()[0], Some(&sly), peer)),
            all.redis_key(&all.key(&call("x").messages()[0], Some(&Identity::named("a")), peer))
        );
        // Look-alikes share one budget.
        let k1 = all.key(&call("pha_p\u{0430}ss").messages()[0], None, peer);
        let k2 = all.key(&call("pha_\u{0440}ass").messages()[0], None, peer);
        assert_eq!(k1, k2);
        let none = rule(&[], &["tools/call"], &[]);
        assert_eq!(
            none.key(&m.messages()[0], Some(&alice), peer),
            Key::default()
        );
    }
}
