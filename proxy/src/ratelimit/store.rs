//! A bounded keyed state store for governor: at most a fixed number of keys per limiter, so
//! callers minting new keys (addresses, tool names) cannot grow memory without bound. Keys
//! beyond the bound share one overflow budget per shard: stricter for them, never looser.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard, PoisonError};

use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;

/// Shards, so concurrent checks of different keys rarely wait on one lock.
const SHARDS: usize = 8;

/// Each key's theoretical arrival time (GCRA's one number of state), sharded.
#[derive(Debug)]
pub struct BoundedStore<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    hasher: std::hash::RandomState,
    per_shard: usize,
}

#[derive(Debug)]
struct Shard<K> {
    keys: HashMap<K, u64>,
    /// The budget of keys that found the shard full.
    overflow: Option<u64>,
}

impl<K> BoundedStore<K> {
    /// A store for at most about `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        keys: HashMap::new(),
                        overflow: None,
                    })
                })
                .collect(),
            hasher: std::hash::RandomState::new(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    fn lock(shard: &Mutex<Shard<K>>) -> MutexGuard<'_, Shard<K>> {
        // A panic under the lock leaves a number, never a broken invariant.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let at = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let mut shard = Self::lock(&self.shards[at]);
        let per_shard = self.per_shard;
        if let Some(tat) = shard.keys.get_mut(key) {
            let (out, next) = f(Some(Nanos::new(*tat)))?;
            *tat = next.as_u64();
            return Ok(out);
        }
        if shard.keys.len() >= per_shard {
            let (out, next) = f(shard.overflow.map(Nanos::new))?;
            shard.overflow = Some(next.as_u64());
            return Ok(out);
        }
        let (out, next) = f(None)?;
        shard.keys.insert(key.clone(), next.as_u64());
        Ok(out)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    /// Forgets keys whose state equals a fresh key's.
    fn retain_recent(&self, drop_below: Nanos) {
        let below = drop_below.as_u64();
        for shard in &self.shards {
            let mut shard = Self::lock(shard);
            shard.keys.retain(|_, tat| *tat > below);
            if shard.overflow.is_some_and(|tat| tat <= below) {
                shard.overflow = None;
            }
        }
    }

    fn shrink_to_fit(&self) {
        for shard in &self.shards {
            let mut shard = Self::lock(shard);
            if shard.keys.capacity() > 4 * shard.keys.len().max(16) {
                shard.keys.shrink_to_fit();
            }
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| Self::lock(s).keys.len()).sum()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
