//! The shared store behind `weir:plugin/store`: rate-limit counters and small values with a time to live,
//! in this process (`local`) or in a Redis every replica reaches (`redis`), chosen by the `[store]` table.
//!
//! A plugin entry reaches it only when granted (`grants.store`), through a [`StoreAccess`] that puts the
//! entry's namespace before every key, so no plugin can read or spend another's state. The store outlives
//! a reload that leaves `[store]` as it was: counters, the connection and the breaker carry on.

mod breaker;
pub mod gcra;
mod host;
mod local;
mod redis_store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use crate::config::store::{Backend, StoreConfig};
use gcra::{Cell, Verdict};
use local::LocalStore;
use redis_store::RedisStore;

pub use host::imports_store;

/// Why a store call did nothing: the two cases of the contract's `store-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot answer now: down, slow past the deadline, the breaker open, or full.
    #[error("{0}")]
    Unavailable(String),
    /// The call is wrong whatever the backend's state.
    #[error("{0}")]
    Invalid(String),
}

pub struct Store {
    /// Always there: the `local` backend itself, or the fallback of plugins whose Redis is down.
    local: LocalStore,
    redis: Option<RedisStore>,
    key_prefix: String,
    /// The counts of each plugin entry by its route and plugin labels: kept by the store, so that they
    /// carry on through a reload as the limits themselves do.
    counts: Mutex<BTreeMap<(String, String), Arc<Counts>>>,
}

/// One entry's counts, by limit name.
type Counts = Mutex<Vec<(String, LimitCounts)>>;

/// The stores of the running generations, by config: a reload with the same `[store]` gets the same one.
static RUNNING: Mutex<Vec<(StoreConfig, Weak<Store>)>> = Mutex::new(Vec::new());

impl Store {
    /// The store `config` describes: the running one if a generation already holds it, else a new one
    /// (which does not connect yet).
    pub fn for_config(config: &StoreConfig) -> Result<Arc<Store>, String> {
        // Nothing panics while the list is locked; a poisoned one is still sound.
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|(_, store)| store.strong_count() > 0);
        if let Some(store) = running
            .iter()
            .find(|(c, _)| c == config)
            .and_then(|(_, store)| store.upgrade())
        {
            return Ok(store);
        }
        let redis = match (config.backend, &config.url) {
            (Backend::Redis, Some(url)) => Some(RedisStore::new(config, url)?),
            (Backend::Redis, None) => return Err("backend = \"redis\" needs a url".into()),
            (Backend::Local, _) => None,
        };
        let store = Arc::new(Store {
            local: LocalStore::new(config.local_max_bytes.0),
            redis,
            key_prefix: config.key_prefix.clone(),
            counts: Mutex::default(),
        });
        running.push((config.clone(), Arc::downgrade(&store)));
        Ok(store)
    }

    /// The counts of the entry `label` names (route, plugin), made on first use.
    fn counts_of(&self, label: (&str, &str)) -> Arc<Counts> {
        // Nothing panics while the map is locked; a poisoned one is still sound.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .entry((label.0.to_owned(), label.1.to_owned()))
            .or_default()
            .clone()
    }

    /// `local` or `redis`, for metrics.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "local"
        }
    }

    /// Whether the Redis breaker is open; `None` for the local backend.
    pub fn breaker_open(&self) -> Option<bool> {
        self.redis.as_ref().map(RedisStore::breaker_open)
    }

    async fn throttle(
        &self,
        keys: &[String],
        cells: &[Cell],
        cost: u64,
    ) -> Result<Vec<Verdict>, StoreError> {
        match &self.redis {
            Some(redis) => redis.throttle(keys, cells, cost).await,
            None => self.throttle_local(keys, cells, cost),
        }
    }

    fn throttle_local(
        &self,
        keys: &[String],
        cells: &[Cell],
        cost: u64,
    ) -> Result<Vec<Verdict>, StoreError> {
        self.local
            .throttle(keys, cells, cost)
            .map_err(|full| StoreError::Unavailable(full.to_string()))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.redis {
            Some(redis) => redis.get(key).await,
            None => Ok(self.local.get(key)),
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        match &self.redis {
            Some(redis) => redis.set(key, &value, ttl).await,
            None => self
                .local
                .set(key, value, ttl)
                .map_err(|full| StoreError::Unavailable(full.to_string())),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match &self.redis {
            Some(redis) => redis.delete(key).await,
            None => {
                self.local.delete(key);
                Ok(())
            }
        }
    }
}

/// Where a granted entry's keys live: its own namespace (`grants.store = true`), or one it shares by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    /// The entry at `position` (from 0) of route `route`.
    Entry {
        route: String,
        position: usize,
    },
    Named(String),
}

/// How the limits of one plugin entry decided, by limit name, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitCounts {
    pub allowed: u64,
    pub refused: u64,
    pub store_errors: u64,
}

/// Limit names counted apart per entry; the names come from the plugin, so their number is bounded, and
/// further names are counted under [`OTHER_LIMITS`].
const MAX_LIMIT_NAMES: usize = 32;
pub const OTHER_LIMITS: &str = "(other)";

/// One plugin entry's way into the store.
pub struct StoreAccess {
    store: Arc<Store>,
    /// `key_prefix` and the namespace, before every key the plugin names.
    prefix: String,
    counts: Arc<Counts>,
}

impl std::fmt::Debug for StoreAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAccess")
            .field("prefix", &self.prefix)
            .field("backend", &self.store.backend())
            .finish()
    }
}

impl StoreAccess {
    /// The access of the entry `label` names (its route and plugin, as `/metrics` labels them).
    pub fn new(store: Arc<Store>, namespace: &Namespace, label: (&str, &str)) -> StoreAccess {
        // `e:` and `n:` keep an entry's own namespace apart from a named one however the route is called,
        // and a `:` in a route's name is escaped, so that no route and key can spell another entry's
        // namespace (route `a:1`, entry 1, against route `a`, entry 1, key `1:…`).
        let prefix = match namespace {
            Namespace::Entry { route, position } => {
                let route = route.replace('%', "%25").replace(':', "%3A");
                format!("{}e:{route}:{}:", store.key_prefix, position + 1)
            }
            Namespace::Named(name) => format!("{}n:{name}:", store.key_prefix),
        };
        StoreAccess {
            counts: store.counts_of(label),
            store,
            prefix,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The counts so far, by limit name.
    pub fn limit_counts(&self) -> Vec<(String, LimitCounts)> {
        self.counts().clone()
    }

    fn counts(&self) -> MutexGuard<'_, Vec<(String, LimitCounts)>> {
        // Nothing panics while the counts are locked; poisoned, they are still sound.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one call's outcome for each of its limits.
    fn count(&self, names: &[String], outcome: &Result<Vec<Verdict>, StoreError>) {
        let mut counts = self.counts();
        for (i, name) in names.iter().enumerate() {
            let at = match counts.iter().position(|(n, _)| n == name) {
                Some(at) => at,
                None if counts.len() < MAX_LIMIT_NAMES => {
                    counts.push((name.clone(), LimitCounts::default()));
                    counts.len() - 1
                }
                None => match counts.iter().position(|(n, _)| n == OTHER_LIMITS) {
                    Some(at) => at,
                    None => {
                        counts.push((OTHER_LIMITS.to_owned(), LimitCounts::default()));
                        counts.len() - 1
                    }
                },
            };
            let entry = &mut counts[at].1;
            match outcome {
                Ok(verdicts) if verdicts.get(i).is_some_and(|v| v.allowed) => entry.allowed += 1,
                Ok(_) => entry.refused += 1,
                Err(StoreError::Unavailable(_)) => entry.store_errors += 1,
                Err(StoreError::Invalid(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_route_and_key_spell_another_entrys_namespace() {
        let store = Store::for_config(&StoreConfig::default()).unwrap();
        let access = |route: &str| {
            let namespace = Namespace::Entry {
                route: route.into(),
                position: 0,
            };
            StoreAccess::new(store.clone(), &namespace, (route, "plugin #1 (rate-limit)"))
        };
        assert_eq!(access("api").key("k"), "weir:e:api:1:k");
        assert_ne!(access("a:1").key("x"), access("a").key("1:x"));
        let named = StoreAccess::new(store.clone(), &Namespace::Named("api".into()), ("b", "p"));
        assert_eq!(named.key("k"), "weir:n:api:k");
    }
}
