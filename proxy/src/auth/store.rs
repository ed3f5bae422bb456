//! What authentication keeps across config generations: caches, clients and watched Secrets,
//! shared by every entry point with the same settings.
//!
//! An entry point is recompiled on every config reload, and the operator rewrites the config
//! whenever any route changes; rebuilding the `user.whoami` cache or the JWKS each time would
//! send a burst of calls to Phabricator or the issuer for nothing. So compiled entry points ask
//! the store, which hands out the instance the previous generation used when the settings
//! (the key) are equal, and forgets an instance once no entry point holds it.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::watch::Watched;

/// Shared instances, by settings.
#[derive(Default)]
pub struct Store {
    slots: Mutex<HashMap<String, Slot>>,
}

struct Slot {
    value: Weak<dyn Any + Send + Sync>,
    /// Set for watched sources: what [`Store::refresh`] re-reads.
    watched: Option<Weak<dyn Refresh>>,
}

/// A watched source, as the store sees it.
trait Refresh: Send + Sync {
    fn refresh(&self);
    fn problem(&self) -> Option<String>;
}

impl<T: Send + Sync> Refresh for Watched<T> {
    fn refresh(&self) {
        Watched::refresh(self);
    }

    fn problem(&self) -> Option<String> {
        Watched::problem(self)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// The live instance for `key`, or a new one from `make`. The key must name the type and
    /// every setting the instance was built from.
    pub fn shared<T: Send + Sync + 'static>(
        &self,
        key: String,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        self.get_or_insert(key, make, |_| None)
    }

    /// Like [`Store::shared`] for a watched source, which [`Store::refresh`] then re-reads.
    pub fn watched<T: Send + Sync + 'static>(
        &self,
        key: String,
        make: impl FnOnce() -> Watched<T>,
    ) -> Arc<Watched<T>> {
        self.get_or_insert(key, make, |w| {
            let weak: Weak<dyn Refresh> = Arc::downgrade(w) as Weak<dyn Refresh>;
            Some(weak)
        })
    }

    fn get_or_insert<T: Send + Sync + 'static>(
        &self,
        key: String,
        make: impl FnOnce() -> T,
        watched: impl FnOnce(&Arc<T>) -> Option<Weak<dyn Refresh>>,
    ) -> Arc<T> {
        if let Some(found) = self.find::<T>(&key) {
            return found;
        }
        // Built outside the lock: building may itself ask the store (a client, a file).
        let value = Arc::new(make());
        let any: Arc<dyn Any + Send + Sync> = value.clone();
        let slot = Slot {
            value: Arc::downgrade(&any),
            watched: watched(&value),
        };
        self.lock().insert(key, slot);
        value
    }

    fn find<T: Send + Sync + 'static>(&self, key: &str) -> Option<Arc<T>> {
        let slots = self.lock();
        let any = slots.get(key)?.value.upgrade()?;
        any.downcast::<T>().ok()
    }

    /// Re-reads every watched source still in use, and forgets instances no longer in use.
    pub fn refresh(&self) {
        let live: Vec<Arc<dyn Refresh>> = {
            let mut slots = self.lock();
            slots.retain(|_, s| s.value.strong_count() > 0);
            slots
                .values()
                .filter_map(|s| s.watched.as_ref()?.upgrade())
                .collect()
        };
        // Outside the lock: reading files must not hold up entry points being compiled.
        for w in live {
            w.refresh();
        }
    }

    /// What is wrong with watched sources in use, for `/readyz`.
    pub fn problems(&self) -> Vec<String> {
        let live: Vec<Arc<dyn Refresh>> = self
            .lock()
            .values()
            .filter_map(|s| s.watched.as_ref()?.upgrade())
            .collect();
        let mut problems: Vec<String> = live.iter().filter_map(|w| w.problem()).collect();
        problems.sort();
        problems
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::watch::{Content, Parsed, Source};

    #[test]
    fn equal_keys_share_while_in_use() {
        let store = Store::default();
        let a = store.shared("k".into(), || 1u32);
        let b = store.shared("k".into(), || 2u32);
        assert!(Arc::ptr_eq(&a, &b));
        // Another type under the same key is not confused with it.
        assert_eq!(*store.shared("k".into(), || "x"), "x");
        drop((a, b));
        store.refresh();
        assert_eq!(*store.shared("k".into(), || 3u32), 3);
    }

    #[test]
    fn watched_sources_are_refreshed_and_report_problems() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "1").unwrap();
        let store = Store::default();
        let parse = |c: Content| match c {
            Content::File(b) if b == b"bad" => Err("bad".to_string()),
            Content::File(b) => Ok(Parsed::clean(b)),
            Content::Dir(_) => Err("a directory".into()),
        };
        let w = store.watched("f".into(), || {
            Watched::new("file", Source::File(path.clone()), parse)
        });
        std::fs::write(&path, "2").unwrap();
        store.refresh();
        assert_eq!(*w.current().unwrap(), b"2");
        std::fs::write(&path, "bad").unwrap();
        store.refresh();
        assert_eq!(store.problems().len(), 1);
        drop(w);
        store.refresh();
        assert!(store.problems().is_empty());
    }
}
