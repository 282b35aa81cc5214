//! The in-process store: a map of keys to values that expire, in shards each behind its own lock, so that
//! workers throttling different clients seldom wait for each other. Its clock is the process's monotonic
//! clock; its memory is bounded by `local_max_bytes`, spent in equal parts by the shards.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::gcra::{self, Cell, Verdict};

/// Enough that two workers rarely meet on one lock, few enough that sweeping one shard is quick.
const SHARDS: usize = 64;

/// What an entry costs beyond its key and value: the map's slot, the entry's fields, the allocation.
const ENTRY_OVERHEAD: usize = 64;

/// The shard's memory is spent: even with every expired entry swept, the new one does not fit.
#[derive(Debug, thiserror::Error)]
#[error("the in-process store is full (local_max_bytes): no room for another key")]
pub struct Full;

pub struct LocalStore {
    shards: Box<[Mutex<Shard>]>,
    /// Which shard a key is in; random per process, so no client can aim its keys at one shard.
    hasher: RandomState,
    shard_budget: usize,
    started: Instant,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<String, Entry>,
    bytes: usize,
}

struct Entry {
    value: Value,
    /// Microseconds on the store's clock.
    expires: u64,
}

enum Value {
    /// A limit's theoretical arrival time.
    Tat(u64),
    Bytes(Vec<u8>),
}

impl Entry {
    fn cost(key: &str, value: &Value) -> usize {
        let data = match value {
            Value::Tat(_) => 0,
            Value::Bytes(bytes) => bytes.len(),
        };
        key.len() + data + ENTRY_OVERHEAD
    }
}

impl LocalStore {
    pub fn new(max_bytes: u64) -> LocalStore {
        LocalStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            shard_budget: usize::try_from(max_bytes).unwrap_or(usize::MAX) / SHARDS,
            started: Instant::now(),
        }
    }

    /// Microseconds since the store began, from 1 so that no stored time is 0.
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX) + 1
    }

    fn shard_of(&self, key: &str) -> usize {
        usize::try_from(self.hasher.hash_one(key)).unwrap_or(0) % SHARDS
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // Nothing panics while a shard is locked; a poisoned one is still a sound map.
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// [`gcra::throttle`] over every key at once: the shards the keys are in are locked together, in
    /// ascending order so that two calls can never wait for each other.
    pub fn throttle(
        &self,
        keys: &[String],
        cells: &[Cell],
        cost: u64,
    ) -> Result<Vec<Verdict>, Full> {
        let shard_of: Vec<usize> = keys.iter().map(|k| self.shard_of(k)).collect();
        let mut order = shard_of.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
            order.iter().map(|&s| (s, self.lock(s))).collect();
        let now = self.now();
        let stored: Vec<Option<u64>> = keys
            .iter()
            .zip(&shard_of)
            .map(|(key, &s)| match locked(&mut guards, s).live(key, now) {
                Some(Value::Tat(tat)) => Some(*tat),
                _ => None,
            })
            .collect();
        let (verdicts, commit) = gcra::throttle(cells, &stored, now, cost);
        if let Some(tats) = commit {
            for ((key, &s), tat) in keys.iter().zip(&shard_of).zip(tats) {
                locked(&mut guards, s).put(key, Value::Tat(tat), tat, now, self.shard_budget)?;
            }
        }
        Ok(verdicts)
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = self.now();
        match self.lock(self.shard_of(key)).live(key, now) {
            Some(Value::Bytes(bytes)) => Some(bytes.clone()),
            _ => None,
        }
    }

    pub fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), Full> {
        let now = self.now();
        let expires = now.saturating_add(u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX));
        self.lock(self.shard_of(key))
            .put(key, Value::Bytes(value), expires, now, self.shard_budget)
    }

    pub fn delete(&self, key: &str) {
        self.lock(self.shard_of(key)).remove(key);
    }
}

/// The locked shard `shard` among those a throttle call holds.
fn locked<'g>(guards: &'g mut [(usize, MutexGuard<'_, Shard>)], shard: usize) -> &'g mut Shard {
    let at = guards
        .iter()
        .position(|(s, _)| *s == shard)
        .expect("a throttle call locks the shard of every key it reads");
    &mut guards[at].1
}

impl Shard {
    /// The value under `key` unless it has expired.
    fn live(&self, key: &str, now: u64) -> Option<&Value> {
        self.entries
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| &e.value)
    }

    fn put(
        &mut self,
        key: &str,
        value: Value,
        expires: u64,
        now: u64,
        budget: usize,
    ) -> Result<(), Full> {
        let cost = Entry::cost(key, &value);
        let freed = self
            .entries
            .get(key)
            .map_or(0, |e| Entry::cost(key, &e.value));
        if self.bytes - freed + cost > budget {
            self.sweep(now);
            let freed = self
                .entries
                .get(key)
                .map_or(0, |e| Entry::cost(key, &e.value));
            if self.bytes - freed + cost > budget {
                return Err(Full);
            }
        }
        self.remove(key);
        self.bytes += cost;
        self.entries
            .insert(key.to_owned(), Entry { value, expires });
        Ok(())
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= Entry::cost(key, &old.value);
        }
    }

    /// Drops every expired entry: run only when the shard is out of room, so its cost is paid by the
    /// memory it frees.
    fn sweep(&mut self, now: u64) {
        let mut freed = 0;
        self.entries.retain(|key, entry| {
            let live = entry.expires > now;
            if !live {
                freed += Entry::cost(key, &entry.value);
            }
            live
        });
        self.bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(rate: u32, burst: u32) -> Cell {
        Cell::new(rate, 60_000, burst).unwrap()
    }

    #[test]
    fn limits_across_shards_are_spent_together_or_not_at_all() {
        let store = LocalStore::new(1 << 20);
        let keys: Vec<String> = (0..8).map(|i| format!("client:{i}")).collect();
        let cells: Vec<Cell> = (0..8)
            .map(|i| cell(if i == 7 { 2 } else { 100 }, 0))
            .collect();
        let spent = |store: &LocalStore| store.throttle(&keys, &cells, 1).unwrap();
        assert!(spent(&store).iter().all(|v| v.allowed));
        assert!(spent(&store).iter().all(|v| v.allowed));
        let refused = spent(&store);
        assert!(!refused[7].allowed);
        // The refused call spent none of the other limits.
        assert_eq!(refused[0].remaining, 98);
    }

    #[test]
    fn values_expire_and_can_be_deleted() {
        let store = LocalStore::new(1 << 20);
        store
            .set("a", b"1".to_vec(), Duration::from_secs(60))
            .unwrap();
        store.set("gone", b"2".to_vec(), Duration::ZERO).unwrap();
        assert_eq!(store.get("a"), Some(b"1".to_vec()));
        assert_eq!(store.get("gone"), None);
        store.delete("a");
        assert_eq!(store.get("a"), None);
    }

    #[test]
    fn memory_is_bounded_and_expired_entries_make_room() {
        let cost = Entry::cost("k0", &Value::Bytes(vec![0; 100]));
        let budget = 2 * cost;
        let mut shard = Shard::default();
        let put = |shard: &mut Shard, key: &str, expires| {
            shard.put(key, Value::Bytes(vec![0; 100]), expires, 10, budget)
        };
        put(&mut shard, "k0", 10).unwrap();
        put(&mut shard, "k1", 10).unwrap();
        // Both have expired (at 10, now is 10): swept to make room.
        put(&mut shard, "k2", 99).unwrap();
        put(&mut shard, "k3", 99).unwrap();
        assert!(put(&mut shard, "k4", 99).is_err());
        // Replacing a key reuses its own room.
        put(&mut shard, "k3", 99).unwrap();
        assert_eq!(shard.bytes, budget);
    }
}
