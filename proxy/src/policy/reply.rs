//! List replies rewritten: the items a caller may not use are dropped from the result of a
//! `tools/list` (`resources/list`, `resources/templates/list`, `prompts/list`) response; every
//! other byte of the reply stays as the upstream wrote it (other keys, their order, numbers,
//! `nextCursor`, `ttlMs`), so clients see the upstream's reply minus what they may not call.
//!
//! Which responses are list replies: in the reply to a POST, those whose id is a list
//! request's ([`Targets::Ids`]); on a GET stream, where no request is at hand (a resumed POST
//! stream, the legacy HTTP+SSE transport's replies), every response whose result holds a list
//! ([`Targets::AnyList`]).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::rules::Kind;

/// A list method and where its reply keeps its items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Resources,
    ResourceTemplates,
    Prompts,
}

impl ListKind {
    /// The list a method asks for.
    pub fn of_method(method: &str) -> Option<Self> {
        match method {
            "tools/list" => Some(Self::Tools),
            "resources/list" => Some(Self::Resources),
            "resources/templates/list" => Some(Self::ResourceTemplates),
            "prompts/list" => Some(Self::Prompts),
            _ => None,
        }
    }

    /// What the items are named as, for the policy.
    pub fn kind(self) -> Kind {
        match self {
            Self::Tools => Kind::Tool,
            Self::Resources | Self::ResourceTemplates => Kind::Resource,
            Self::Prompts => Kind::Prompt,
        }
    }

    /// The result's key holding the items.
    fn result_key(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Resources => "resources",
            Self::ResourceTemplates => "resourceTemplates",
            Self::Prompts => "prompts",
        }
    }

    /// The list a result holds, by its first key naming one.
    fn of_result_key(key: &str) -> Option<Self> {
        match key {
            "tools" => Some(Self::Tools),
            "resources" => Some(Self::Resources),
            "resourceTemplates" => Some(Self::ResourceTemplates),
            "prompts" => Some(Self::Prompts),
            _ => None,
        }
    }

    /// The item's key the policy judges. Templates are judged by their `uriTemplate` text,
    /// which resource patterns match like a URI (`phab://task/*` covers `phab://task/{id}`).
    fn item_key(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::ResourceTemplates => "uriTemplate",
        }
    }
}

/// A list request whose reply must be filtered.
#[derive(Debug)]
pub struct Target {
    /// The request's id as sent.
    pub id: Box<RawValue>,
    key: IdKey,
    /// The list it asks for; `None` for another request of the same POST (a batch), whose
    /// response passes as it is.
    pub kind: Option<ListKind>,
}

impl Target {
    pub fn new(id: &RawValue, kind: ListKind) -> Self {
        Self::with(id, Some(kind))
    }

    /// Another request of the same POST: its response is expected, and not a list.
    pub fn other(id: &RawValue) -> Self {
        Self::with(id, None)
    }

    fn with(id: &RawValue, kind: Option<ListKind>) -> Self {
        Self {
            key: IdKey::of(id),
            id: id.to_owned(),
            kind,
        }
    }
}

/// The responses to filter.
#[derive(Debug)]
pub enum Targets {
    /// Those answering these requests; each is done with once answered.
    Ids(Vec<Target>),
    /// Every response whose result holds a list, for as long as the stream lasts.
    AnyList,
}

impl Targets {
    /// Whether nothing is left to filter: every list request is answered.
    pub fn is_done(&self) -> bool {
        matches!(self, Targets::Ids(ids) if ids.iter().all(|t| t.kind.is_none()))
    }

    /// What a response with `id` answers: a list request (then done with), another request
    /// of the POST, or — from [`Targets::AnyList`] — whatever its result holds. `None`: nothing
    /// awaited (a stray response).
    fn answer(&mut self, id: &RawValue) -> Option<Answer> {
        match self {
            Targets::Ids(ids) => {
                let key = IdKey::of(id);
                let at = ids.iter().position(|t| t.key == key)?;
                Some(match ids.swap_remove(at).kind {
                    Some(kind) => Answer::List(kind),
                    None => Answer::Other,
                })
            }
            Targets::AnyList => Some(Answer::AnyList),
        }
    }
}

/// What a response answers.
enum Answer {
    List(ListKind),
    Other,
    AnyList,
}

/// An id compared by value: the upstream may escape a string id or space a number differently.
#[derive(Debug, PartialEq)]
enum IdKey {
    Value(serde_json::Value),
    Unreadable,
}

impl IdKey {
    fn of(id: &RawValue) -> Self {
        serde_json::from_str(id.get()).map_or(IdKey::Unreadable, IdKey::Value)
    }
}

/// What rewriting a reply did.
#[derive(Debug, Default, PartialEq)]
pub struct Rewritten {
    /// The new JSON, when anything changed.
    pub json: Option<Vec<u8>>,
    /// A list that offered items came out empty (the policy hides everything).
    pub emptied: Option<ListKind>,
    /// A response that answers none of the awaited list requests ([`Targets::Ids`]): on the
    /// stream of a list request, such a response cannot be trusted to hold no list (its id may
    /// be one the upstream read differently), so it must not be passed on.
    pub stray: bool,
}

/// Rewrites a JSON-RPC message or batch of messages. A response that is one of `targets` has
/// its list filtered with `keep`; anything else is left alone. Fails only when `json` is not
/// JSON.
pub fn rewrite(
    json: &[u8],
    targets: &mut Targets,
    keep: &dyn Fn(Kind, &str) -> bool,
) -> Result<Rewritten, serde_json::Error> {
    let mut out = Rewritten::default();
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            out.json = message(json, targets, keep, &mut out)?;
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(json)?;
            let mut changed = false;
            let mut parts = Vec::with_capacity(items.len());
            for item in &items {
                match message(item.get().as_bytes(), targets, keep, &mut out)? {
                    Some(new) => {
                        changed = true;
                        parts.push(Cow::Owned(new));
                    }
                    None => parts.push(Cow::Borrowed(item.get().as_bytes())),
                }
            }
            if changed {
                let mut new = Vec::with_capacity(json.len());
                new.push(b'[');
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        new.push(b',');
                    }
                    new.extend_from_slice(part);
                }
                new.push(b']');
                out.json = Some(new);
            }
        }
        _ => {
            serde_json::from_slice::<de::IgnoredAny>(json)?;
            out.stray = matches!(targets, Targets::Ids(_));
        }
    }
    Ok(out)
}

/// One message: `Some(new JSON)` when it answers a target with a list to filter. A response
/// that answers none while targets are awaited is marked stray in `out`.
fn message(
    json: &[u8],
    targets: &mut Targets,
    keep: &dyn Fn(Kind, &str) -> bool,
    out: &mut Rewritten,
) -> Result<Option<Vec<u8>>, serde_json::Error> {
    let Entries(entries) = serde_json::from_slice(json)?;
    if entries.iter().any(|(k, _)| k == "method") {
        return Ok(None);
    }
    let awaiting = matches!(targets, Targets::Ids(_));
    let Some((_, id)) = entries.iter().find(|(k, _)| k == "id") else {
        out.stray |= awaiting;
        return Ok(None);
    };
    let kind = match targets.answer(id) {
        None => {
            out.stray |= awaiting;
            return Ok(None);
        }
        Some(Answer::Other) => return Ok(None),
        Some(Answer::List(kind)) => Some(kind),
        Some(Answer::AnyList) => None,
    };
    let emptied = &mut out.emptied;
    let mut changed = false;
    let mut parts = Vec::with_capacity(entries.len());
    for (k, v) in &entries {
        let new = if k == "result" {
            result(v, kind, keep, emptied)?
        } else {
            None
        };
        changed |= new.is_some();
        parts.push((k, new.map_or(Cow::Borrowed(v.get().as_bytes()), Cow::Owned)));
    }
    Ok(changed.then(|| object(&parts, json.len())))
}

/// A list result: `Some(new JSON)` when items were dropped. Without a `kind`, every key naming
/// a list is filtered.
fn result(
    raw: &RawValue,
    kind: Option<ListKind>,
    keep: &dyn Fn(Kind, &str) -> bool,
    emptied: &mut Option<ListKind>,
) -> Result<Option<Vec<u8>>, serde_json::Error> {
    if !raw.get().starts_with('{') {
        // Not a list result; the client cannot read it as one either.
        return Ok(None);
    }
    let Entries(entries) = serde_json::from_str(raw.get())?;
    let mut changed = false;
    let mut parts = Vec::with_capacity(entries.len());
    for (k, v) in &entries {
        let list = match kind {
            Some(kind) => (k == kind.result_key()).then_some(kind),
            None => ListKind::of_result_key(k),
        };
        let new = if let Some(list) = list {
            let (filtered, offered, kept) = items(v, list, keep);
            if offered > 0 && kept == 0 {
                *emptied = Some(list);
            }
            filtered
        } else {
            None
        };
        changed |= new.is_some();
        parts.push((k, new.map_or(Cow::Borrowed(v.get().as_bytes()), Cow::Owned)));
    }
    Ok(changed.then(|| object(&parts, raw.get().len())))
}

/// The items of a list: `Some(new array)` when any was dropped, and how many were offered and
/// kept. An item without a readable name, or with a name that is not a string, is dropped; a
/// value that is not an array becomes an empty one.
fn items(
    raw: &RawValue,
    kind: ListKind,
    keep: &dyn Fn(Kind, &str) -> bool,
) -> (Option<Vec<u8>>, usize, usize) {
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        return (Some(b"[]".to_vec()), 0, 0);
    };
    let kept: Vec<&RawValue> = items
        .iter()
        .copied()
        .filter(|item| allowed(item, kind, keep))
        .collect();
    if kept.len() == items.len() {
        return (None, items.len(), kept.len());
    }
    let mut new = Vec::with_capacity(raw.get().len());
    new.push(b'[');
    for (i, item) in kept.iter().enumerate() {
        if i > 0 {
            new.push(b',');
        }
        new.extend_from_slice(item.get().as_bytes());
    }
    new.push(b']');
    (Some(new), items.len(), kept.len())
}

/// Whether an item may be shown: its name key (every occurrence, if repeated) is a string the
/// policy keeps.
fn allowed(item: &RawValue, kind: ListKind, keep: &dyn Fn(Kind, &str) -> bool) -> bool {
    let Ok(Entries(entries)) = serde_json::from_str(item.get()) else {
        return false;
    };
    let mut named = false;
    for (k, v) in &entries {
        if k != kind.item_key() {
            continue;
        }
        match serde_json::from_str::<Text<'_>>(v.get()) {
            Ok(Text(name)) if keep(kind.kind(), &name) => named = true,
            _ => return false,
        }
    }
    named
}

/// Writes an object from its entries.
fn object(parts: &[(&Cow<'_, str>, Cow<'_, [u8]>)], capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(b'{');
    for (i, (k, v)) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, k.as_ref());
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.push(b'}');
    out
}

// === parsing ===

/// An object's entries in order, values left raw. Repeated keys are kept (and each judged).
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(Text(key)) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// A string, borrowed from the input unless it holds escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_secrets(kind: Kind, name: &str) -> bool {
        kind != Kind::Tool || !name.starts_with("pha_passphrase")
    }

    fn target(id: &str, kind: ListKind) -> Targets {
        targets(&[(id, kind)])
    }

    fn targets(list: &[(&str, ListKind)]) -> Targets {
        Targets::Ids(
            list.iter()
                .map(|(id, kind)| Target::new(&RawValue::from_string((*id).into()).unwrap(), *kind))
                .collect(),
        )
    }

    fn pending(t: &Targets) -> usize {
        match t {
            Targets::Ids(ids) => ids.iter().filter(|t| t.kind.is_some()).count(),
            Targets::AnyList => usize::MAX,
        }
    }

    fn run(json: &str, targets: &mut Targets) -> Option<String> {
        rewrite(json.as_bytes(), targets, &no_secrets)
            .unwrap()
            .json
            .map(|j| String::from_utf8(j).unwrap())
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"pha_task_get","inputSchema":{"type":"object"}},{"description":"x","name":"pha_passphrase_get"},{"name":"pha_user_whoami"}],"nextCursor":"c2"}}"#;

    #[test]
    fn denied_items_are_dropped_and_everything_else_kept_byte_for_byte() {
        let mut t = target("7", ListKind::Tools);
        assert_eq!(
            run(LIST, &mut t).unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"pha_task_get","inputSchema":{"type":"object"}},{"name":"pha_user_whoami"}],"nextCursor":"c2"}}"#
        );
        assert!(t.is_done(), "the target was answered");
    }

    #[test]
    fn only_the_response_to_a_target_is_touched() {
        // Another id, a request, an error: left alone; the target stays pending.
        let mut t = target("8", ListKind::Tools);
        assert_eq!(run(LIST, &mut t), None);
        assert_eq!(pending(&t), 1);
        let request = r#"{"jsonrpc":"2.0","id":8,"method":"tools/list","result":{"tools":[{"name":"pha_passphrase_get"}]}}"#;
        assert_eq!(run(request, &mut t), None);
        assert_eq!(pending(&t), 1);
        let error = r#"{"jsonrpc":"2.0","id":8,"error":{"code":1,"message":"x"}}"#;
        assert_eq!(run(error, &mut t), None);
        assert!(t.is_done());
        // Nothing to drop: unchanged.
        let mut t = target("1", ListKind::Tools);
        assert_eq!(
            run(r#"{"id":1,"result":{"tools":[{"name":"a"}]}}"#, &mut t),
            None
        );
    }

    #[test]
    fn ids_compare_by_value() {
        let mut t = target(r#""a\u0062""#, ListKind::Tools);
        let reply = LIST.replace("\"id\":7", "\"id\":\"ab\"");
        assert!(run(&reply, &mut t).is_some());
        let mut t = target("7", ListKind::Tools);
        let reply = LIST.replace("\"id\":7", "\"id\": 7 ");
        assert!(run(&reply, &mut t).is_some());
        let mut t = target("7", ListKind::Tools);
        let reply = LIST.replace("\"id\":7", "\"id\":\"7\"");
        assert!(run(&reply, &mut t).is_none());
    }

    #[test]
    fn unreadable_items_are_dropped_and_odd_lists_emptied() {
        let mut t = target("1", ListKind::Tools);
        let reply = r#"{"id":1,"result":{"tools":[{"name":"ok"},{"name":3},{"x":1},7,{"name":"ok2","name":"pha_passphrase_get"},{"name":"pha_t\u0061sk"}]}}"#;
        assert_eq!(
            run(reply, &mut t).unwrap(),
            r#"{"id":1,"result":{"tools":[{"name":"ok"},{"name":"pha_t\u0061sk"}]}}"#
        );
        let mut t = target("1", ListKind::Tools);
        assert_eq!(
            run(r#"{"id":1,"result":{"tools":{"name":"x"}}}"#, &mut t).unwrap(),
            r#"{"id":1,"result":{"tools":[]}}"#
        );
    }

    #[test]
    fn batches_resources_templates_and_prompts() {
        let deny_all = |_: Kind, name: &str| name.starts_with("keep");
        let mut t = targets(&[
            ("1", ListKind::Resources),
            ("2", ListKind::ResourceTemplates),
            ("3", ListKind::Prompts),
        ]);
        let batch = r#"[{"id":1,"result":{"resources":[{"uri":"keep://a"},{"uri":"x://b"}]}},
            {"id":2,"result":{"resourceTemplates":[{"uriTemplate":"x://{id}"}]}},
            {"id":3,"result":{"prompts":[{"name":"keep_me"}]}},
            {"id":4,"result":{"tools":[{"name":"x"}]}}]"#;
        let out = rewrite(batch.as_bytes(), &mut t, &deny_all).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.json.unwrap()).unwrap();
        assert_eq!(
            v[0]["result"]["resources"],
            serde_json::json!([{"uri":"keep://a"}])
        );
        assert_eq!(v[1]["result"]["resourceTemplates"], serde_json::json!([]));
        assert_eq!(v[2]["result"]["prompts"][0]["name"], "keep_me");
        assert_eq!(v[3]["result"]["tools"][0]["name"], "x");
        assert_eq!(out.emptied, Some(ListKind::ResourceTemplates));
        assert!(t.is_done());
    }

    #[test]
    fn any_list_shaped_response_is_filtered_on_streams_without_requests() {
        let mut t = Targets::AnyList;
        assert!(run(LIST, &mut t).unwrap().contains("pha_user_whoami"));
        assert!(!run(LIST, &mut t).unwrap().contains("pha_passphrase"));
        let both = r#"{"id":"x","result":{"prompts":[{"name":"a"}],"tools":[{"name":"pha_passphrase_get"}]}}"#;
        assert_eq!(
            run(both, &mut t).unwrap(),
            r#"{"id":"x","result":{"prompts":[{"name":"a"}],"tools":[]}}"#
        );
        let call = r#"{"id":2,"result":{"content":[{"type":"text","text":"pha_passphrase_get"}]}}"#;
        assert_eq!(run(call, &mut t), None);
        assert!(!t.is_done(), "never done: the stream may carry more");
    }

    #[test]
    fn garbage_is_an_error_not_a_pass() {
        let mut t = target("1", ListKind::Tools);
        assert!(rewrite(b"{\"id\":1,", &mut t, &no_secrets).is_err());
        assert!(rewrite(b"nope", &mut t, &no_secrets).is_err());
        assert_eq!(pending(&t), 1);
    }
}
