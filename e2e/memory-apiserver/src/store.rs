//! The objects, the global resourceVersion, per-type watch history and watchers, and the indexes GC needs.
//!
//! Objects are kept per resource type (all versions of a CRD share one table) in a map ordered
//! by (namespace, name), so a namespace is a range and lists come out in the order etcd keys
//! would. Every change gets the next resourceVersion and is offered to the type's watchers and
//! kept in a bounded history that watches from an older resourceVersion replay.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::catalog::{Catalog, ResourceType};
use crate::log::{Actor, RequestRecord, Ring, Verb, Write};
use crate::metadata;

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub(crate) type ObjKey = (String, String);

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One change, as watchers and the history see it.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub kind: ChangeKind,
    /// The object before (None when added).
    pub old: Option<Arc<Value>>,
    /// The object after (for deletions: its last state, with the deletion's resourceVersion).
    pub new: Arc<Value>,
    pub namespace: String,
    encoded: OnceLock<Bytes>,
}

impl Change {
    fn new(
        rv: u64,
        kind: ChangeKind,
        old: Option<Arc<Value>>,
        new: Arc<Value>,
        namespace: String,
    ) -> Self {
        Self {
            rv,
            kind,
            old,
            new,
            namespace,
            encoded: OnceLock::new(),
        }
    }

    /// A synthetic ADDED for the initial state of a watch.
    pub(crate) fn initial(obj: Arc<Value>, namespace: String) -> Self {
        let rv = resource_version(&obj);
        Self::new(rv, ChangeKind::Added, None, obj, namespace)
    }

    /// `new` as JSON, serialised once for all watchers.
    pub(crate) fn encoded(&self) -> &Bytes {
        self.encoded
            .get_or_init(|| Bytes::from(serde_json::to_vec(&*self.new).unwrap_or_default()))
    }
}

/// What a watch stream is sent, in order.
#[derive(Debug, Clone)]
pub(crate) enum WatchItem {
    Change(Arc<Change>),
    /// A BOOKMARK at this resourceVersion; `initial_end` marks the end of `sendInitialEvents`.
    Bookmark {
        rv: u64,
        initial_end: bool,
    },
    /// An ERROR event with 410 Expired, then the end.
    Gone(String),
}

#[derive(Debug)]
struct Watcher {
    id: u64,
    namespace: Option<String>,
    tx: mpsc::Sender<WatchItem>,
}

/// One resource type's objects, history and watchers.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub objects: BTreeMap<ObjKey, Arc<Value>>,
    history: VecDeque<Arc<Change>>,
    /// Watches from a resourceVersion below this get 410: their events left the history.
    floor: u64,
    watchers: Vec<Watcher>,
}

impl Table {
    /// Objects in one namespace (or all, for None) after `after`, in key order.
    pub(crate) fn scan_after<'a>(
        &'a self,
        namespace: Option<&'a str>,
        after: &ObjKey,
    ) -> Box<dyn Iterator<Item = (&'a ObjKey, &'a Arc<Value>)> + 'a> {
        use std::ops::Bound::{Excluded, Unbounded};
        let rest = self
            .objects
            .range::<ObjKey, _>((Excluded(after), Unbounded));
        match namespace {
            None => Box::new(rest),
            Some(ns) => Box::new(
                rest.skip_while(move |((n, _), _)| n.as_str() < ns)
                    .take_while(move |((n, _), _)| n == ns),
            ),
        }
    }

    /// Objects in one namespace (or all, for None), in key order.
    pub(crate) fn scan<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = (&'a ObjKey, &'a Arc<Value>)> + 'a> {
        match namespace {
            None => Box::new(self.objects.iter()),
            Some(ns) => Box::new(
                self.objects
                    .range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns),
            ),
        }
    }
}

/// Sizes that keep the server bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Changes kept per resource type for watches that resume.
    pub history: usize,
    /// Events queued per watch before the server drops it (the client re-watches).
    pub watch_queue: usize,
    /// Writes and requests kept in the logs.
    pub log: usize,
}

/// A watch just registered: what to send first, then the live feed.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub id: u64,
    pub initial: Vec<WatchItem>,
    pub rx: Option<mpsc::Receiver<WatchItem>>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchFrom {
    /// Synthetic ADDED events for the current objects, then changes (no or `0` resourceVersion).
    Current { initial_end_bookmark: bool },
    /// Changes after this resourceVersion.
    After(u64),
}

/// Everything behind the server's one lock.
#[derive(Debug)]
pub(crate) struct State {
    pub catalog: Catalog,
    /// The last resourceVersion handed out.
    pub rv: u64,
    tables: HashMap<String, Table>,
    /// uid → where the object lives.
    uids: HashMap<String, (String, ObjKey)>,
    /// owner uid → its dependents.
    dependents: HashMap<String, BTreeSet<(String, ObjKey)>>,
    pub writes: Ring<Write>,
    pub requests: Ring<RequestRecord>,
    pub limits: Limits,
    next_uid: u64,
    next_watch: u64,
    next_name: u64,
}

/// The resourceVersion in an object's metadata.
pub(crate) fn resource_version(obj: &Value) -> u64 {
    metadata::text(obj, "resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// Who and how, for the write log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub verb: Verb,
    pub actor: Actor,
    pub manager: Option<&'a str>,
    pub subresource: Option<&'a str>,
}

impl State {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            catalog: Catalog::with_builtins(),
            rv: 0,
            tables: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            writes: Ring::new(limits.log),
            requests: Ring::new(limits.log),
            limits,
            next_uid: 0,
            next_watch: 0,
            next_name: 0,
        }
    }

    /// A fresh uid: UUID-shaped, unique within this server, deterministic from run to run.
    pub(crate) fn new_uid(&mut self) -> String {
        self.next_uid += 1;
        let n = self.next_uid;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            0x5105_ce00_u32,
            (n >> 48) & 0xffff,
            (n >> 36) & 0xfff,
            (n >> 24) & 0xfff,
            n & 0xff_ffff_ffff
        )
    }

    /// Five characters for `generateName`, from kube's alphabet (deterministic).
    pub(crate) fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.next_name += 1;
        // Multiplying by a number coprime to 27 permutes 0..27^5: distinct, yet not sequential.
        const SPACE: u64 = 27 * 27 * 27 * 27 * 27;
        let mut n = (self.next_name % SPACE) * 7_654_321 % SPACE;
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % 27) as usize] as char;
                n /= 27;
                c
            })
            .collect()
    }

    pub(crate) fn table(&self, key: &str) -> Option<&Table> {
        self.tables.get(key)
    }

    pub(crate) fn get(&self, ty: &ResourceType, key: &ObjKey) -> Option<Arc<Value>> {
        self.tables.get(&ty.key())?.objects.get(key).cloned()
    }

    /// Where the object with this uid lives.
    pub(crate) fn locate(&self, uid: &str) -> Option<(String, ObjKey)> {
        self.uids.get(uid).cloned()
    }

    /// Dependents of the object with this uid.
    pub(crate) fn dependents_of(&self, uid: &str) -> Vec<(String, ObjKey)> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn object_count(&self) -> usize {
        self.tables.values().map(|t| t.objects.len()).sum()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores a new object (metadata prepared, no resourceVersion yet).
    pub(crate) fn insert(
        &mut self,
        ty: &ResourceType,
        mut obj: Value,
        origin: Origin<'_>,
    ) -> Arc<Value> {
        let rv = self.next_rv();
        set_rv(&mut obj, rv);
        let key = obj_key(&obj);
        let obj = Arc::new(obj);
        let tkey = ty.key();
        if let Some(uid) = metadata::text(&obj, "uid") {
            self.uids
                .insert(uid.to_string(), (tkey.clone(), key.clone()));
        }
        self.index_owners(&tkey, &key, None, &obj);
        self.tables
            .entry(tkey.clone())
            .or_default()
            .objects
            .insert(key.clone(), obj.clone());
        self.log_write(ty, &key, rv, origin);
        self.emit(
            &tkey,
            Change::new(rv, ChangeKind::Added, None, obj.clone(), key.0),
        );
        obj
    }

    /// Replaces a stored object with a changed version (metadata prepared).
    pub(crate) fn replace(
        &mut self,
        ty: &ResourceType,
        mut obj: Value,
        origin: Origin<'_>,
    ) -> Arc<Value> {
        let rv = self.next_rv();
        set_rv(&mut obj, rv);
        let key = obj_key(&obj);
        let obj = Arc::new(obj);
        let tkey = ty.key();
        let table = self.tables.entry(tkey.clone()).or_default();
        let old = table.objects.insert(key.clone(), obj.clone());
        self.index_owners(&tkey, &key, old.as_deref(), &obj);
        self.log_write(ty, &key, rv, origin);
        self.emit(
            &tkey,
            Change::new(rv, ChangeKind::Modified, old, obj.clone(), key.0),
        );
        obj
    }

    /// Removes an object for good; its dependents are left to the caller's GC.
    pub(crate) fn remove(
        &mut self,
        ty: &ResourceType,
        key: &ObjKey,
        origin: Origin<'_>,
    ) -> Option<Arc<Value>> {
        let tkey = ty.key();
        let old = self.tables.get_mut(&tkey)?.objects.remove(key)?;
        let rv = self.next_rv();
        let mut last = (*old).clone();
        set_rv(&mut last, rv);
        let last = Arc::new(last);
        if let Some(uid) = metadata::text(&old, "uid") {
            self.uids.remove(uid);
        }
        for owner in metadata::owner_uids(&old) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(&(tkey.clone(), key.clone()));
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
        self.log_write(ty, key, rv, origin);
        self.emit(
            &tkey,
            Change::new(
                rv,
                ChangeKind::Deleted,
                Some(old),
                last.clone(),
                key.0.clone(),
            ),
        );
        Some(last)
    }

    fn index_owners(&mut self, tkey: &str, key: &ObjKey, old: Option<&Value>, new: &Value) {
        let before = old.map(metadata::owner_uids).unwrap_or_default();
        let after = metadata::owner_uids(new);
        let entry = (tkey.to_string(), key.clone());
        for uid in before.iter().filter(|u| !after.contains(u)) {
            if let Some(set) = self.dependents.get_mut(uid) {
                set.remove(&entry);
                if set.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        for uid in after {
            self.dependents
                .entry(uid)
                .or_default()
                .insert(entry.clone());
        }
    }

    fn log_write(&mut self, ty: &ResourceType, key: &ObjKey, rv: u64, origin: Origin<'_>) {
        self.writes.push(Write {
            verb: origin.verb,
            actor: origin.actor,
            api_version: ty.api_version(),
            kind: ty.kind.clone(),
            namespace: (!key.0.is_empty()).then(|| key.0.clone()),
            name: key.1.clone(),
            subresource: origin.subresource.map(String::from),
            field_manager: origin.manager.map(String::from),
            resource_version: rv,
        });
    }

    fn emit(&mut self, tkey: &str, change: Change) {
        let change = Arc::new(change);
        let cap = self.limits.history;
        let table = self.tables.entry(tkey.to_string()).or_default();
        table.history.push_back(change.clone());
        while table.history.len() > cap {
            if let Some(dropped) = table.history.pop_front() {
                table.floor = dropped.rv;
            }
        }
        table.watchers.retain(|w| {
            if w.namespace
                .as_ref()
                .is_some_and(|ns| *ns != change.namespace)
            {
                return true;
            }
            // A full or closed queue drops the watch; the client resumes from its last event.
            w.tx.try_send(WatchItem::Change(change.clone())).is_ok()
        });
    }

    /// Registers a watch on a type.
    pub(crate) fn watch(
        &mut self,
        ty: &ResourceType,
        namespace: Option<&str>,
        from: WatchFrom,
    ) -> Subscription {
        self.next_watch += 1;
        let id = self.next_watch;
        let current = self.rv;
        let table = self.tables.entry(ty.key()).or_default();
        let mut initial = Vec::new();
        match from {
            WatchFrom::Current {
                initial_end_bookmark,
            } => {
                for ((ns, _), obj) in table.scan(namespace) {
                    initial.push(WatchItem::Change(Arc::new(Change::initial(
                        obj.clone(),
                        ns.clone(),
                    ))));
                }
                if initial_end_bookmark {
                    initial.push(WatchItem::Bookmark {
                        rv: current,
                        initial_end: true,
                    });
                }
            }
            WatchFrom::After(rv) if rv < table.floor => {
                initial.push(WatchItem::Gone(format!(
                    "too old resource version: {rv} ({})",
                    table.floor
                )));
                return Subscription {
                    id,
                    initial,
                    rx: None,
                };
            }
            WatchFrom::After(rv) => {
                let start = table.history.partition_point(|c| c.rv <= rv);
                for change in table.history.range(start..) {
                    if namespace.is_none_or(|ns| ns == change.namespace) {
                        initial.push(WatchItem::Change(change.clone()));
                    }
                }
            }
        }
        let (tx, rx) = mpsc::channel(self.limits.watch_queue.max(1));
        table.watchers.push(Watcher {
            id,
            namespace: namespace.map(String::from),
            tx,
        });
        Subscription {
            id,
            initial,
            rx: Some(rx),
        }
    }

    /// Queues a BOOKMARK at the current resourceVersion behind the events already queued.
    pub(crate) fn bookmark(&mut self, tkey: &str, id: u64) {
        let rv = self.rv;
        if let Some(table) = self.tables.get_mut(tkey) {
            table.watchers.retain(|w| {
                w.id != id
                    || w.tx
                        .try_send(WatchItem::Bookmark {
                            rv,
                            initial_end: false,
                        })
                        .is_ok()
            });
        }
    }

    /// Ends a watch's live feed; returns the resourceVersion everything queued so far covers.
    pub(crate) fn detach(&mut self, tkey: &str, id: u64) -> u64 {
        if let Some(table) = self.tables.get_mut(tkey) {
            table.watchers.retain(|w| w.id != id);
        }
        self.rv
    }

    /// Ends every watch (streams send what is queued, then close).
    pub(crate) fn close_watches(&mut self) {
        for table in self.tables.values_mut() {
            table.watchers.clear();
        }
    }

    /// Forgets all watch history: watches from any resourceVersion older than now get 410.
    pub(crate) fn compact(&mut self) {
        let rv = self.rv;
        for table in self.tables.values_mut() {
            table.history.clear();
            table.floor = rv;
        }
    }

    /// Drops a whole type (a deleted CRD): its objects, history and watches.
    pub(crate) fn drop_table(&mut self, tkey: &str) {
        if let Some(table) = self.tables.remove(tkey) {
            for (key, obj) in &table.objects {
                if let Some(uid) = metadata::text(obj, "uid") {
                    self.uids.remove(uid);
                }
                for owner in metadata::owner_uids(obj) {
                    if let Some(set) = self.dependents.get_mut(&owner) {
                        set.remove(&(tkey.to_string(), key.clone()));
                    }
                }
            }
        }
    }
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(meta) = metadata::meta_mut(obj) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

/// (namespace, name) of a prepared object.
pub(crate) fn obj_key(obj: &Value) -> ObjKey {
    (
        metadata::text(obj, "namespace").unwrap_or("").to_string(),
        metadata::text(obj, "name").unwrap_or("").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(history: usize) -> Limits {
        Limits {
            history,
            watch_queue: 16,
            log: 16,
        }
    }

    fn config_map(ns: &str, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": ns, "name": name}})
    }

    const CLIENT: Origin<'static> = Origin {
        verb: Verb::Create,
        actor: Actor::Client,
        manager: None,
        subresource: None,
    };

    #[test]
    fn namespaces_are_ranges_and_rvs_increase() {
        let mut state = State::new(limits(8));
        let ty = state.catalog.get("", "v1", "configmaps").expect("served");
        for (ns, name) in [("b", "x"), ("a", "y"), ("a", "x"), ("c", "z")] {
            state.insert(&ty, config_map(ns, name), CLIENT);
        }
        let table = state.table("configmaps").expect("table");
        let in_a: Vec<&str> = table
            .scan(Some("a"))
            .map(|((_, n), _)| n.as_str())
            .collect();
        assert_eq!(in_a, ["x", "y"]);
        assert_eq!(table.scan(None).count(), 4);
        assert_eq!(state.rv, 4);
        assert_eq!(state.writes.snapshot().len(), 4);
    }

    #[test]
    fn history_bounds_decide_gone() {
        let mut state = State::new(limits(2));
        let ty = state.catalog.get("", "v1", "configmaps").expect("served");
        for name in ["a", "b", "c"] {
            state.insert(&ty, config_map("ns", name), CLIENT);
        }
        // rv 1 left the history: a watch from 0 would miss it.
        let gone = state.watch(&ty, None, WatchFrom::After(0));
        assert!(matches!(gone.initial.as_slice(), [WatchItem::Gone(_)]));
        let resumed = state.watch(&ty, None, WatchFrom::After(1));
        assert_eq!(resumed.initial.len(), 2);
        state.compact();
        let after_compact = state.watch(&ty, None, WatchFrom::After(2));
        assert!(matches!(
            after_compact.initial.as_slice(),
            [WatchItem::Gone(_)]
        ));
        let current = state.watch(&ty, Some("ns"), WatchFrom::After(3));
        assert!(current.initial.is_empty());
    }

    #[test]
    fn generated_names_and_uids_are_distinct() {
        let mut state = State::new(limits(2));
        let names: BTreeSet<String> = (0..1000).map(|_| state.name_suffix()).collect();
        assert_eq!(names.len(), 1000);
        let a = state.new_uid();
        assert_ne!(a, state.new_uid());
        assert_eq!(a.len(), 36);
    }
}
