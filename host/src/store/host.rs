//! The `store` interface as plugins see it: every call checked against its bounds here, before any backend
//! sees it, and refused to an entry that was not granted the store.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;

use super::gcra::{Cell, MAX_PERIOD_MS, Verdict};
use super::{StoreAccess, StoreError};
use crate::plugin::bindings::PluginPre;
use crate::plugin::bindings::weir::plugin::store::{
    Host, Limit, StoreError as WitError, Verdict as WitVerdict,
};
use crate::sandbox::HostState;

/// Limits in one throttle call: a route has a handful; each is a key and an update in one script.
const MAX_LIMITS: usize = 16;
/// A key as the plugin names it, before the namespace is put in front.
const MAX_KEY: usize = 256;
/// A limit's name, a label in `/metrics`.
const MAX_NAME: usize = 64;
/// A value of `set`: small things (a revoked token's id), not a cache of responses.
const MAX_VALUE: usize = 4 << 10;
/// The longest time to live of a value, as the longest period of a limit.
const MAX_TTL_MS: u64 = MAX_PERIOD_MS;

/// The contract's name of the interface, as a component lists it among its imports.
const INTERFACE: &str = "weir:plugin/store@0.3.0";

/// True when the plugin uses the store: an entry that runs it without `grants.store` is refused at load,
/// not on its first request.
pub fn imports_store(pre: &PluginPre<HostState>, engine: &Engine) -> bool {
    pre.instance_pre()
        .component()
        .component_type()
        .imports(engine)
        .any(|(name, _)| name == INTERFACE)
}

fn invalid(message: impl Into<String>) -> WitError {
    WitError::Invalid(message.into())
}

fn wit_error(error: StoreError) -> WitError {
    match error {
        StoreError::Unavailable(message) => WitError::Unavailable(message),
        StoreError::Invalid(message) => WitError::Invalid(message),
    }
}

/// One throttle call, checked: the keys with their namespace, the cells, the names for the counts.
struct Throttle {
    names: Vec<String>,
    keys: Vec<String>,
    cells: Vec<Cell>,
    cost: u64,
}

impl Throttle {
    fn check(access: &StoreAccess, limits: Vec<Limit>, cost: u32) -> Result<Throttle, WitError> {
        if limits.is_empty() || limits.len() > MAX_LIMITS {
            return Err(invalid(format!(
                "a throttle call takes 1 to {MAX_LIMITS} limits, not {}",
                limits.len()
            )));
        }
        let mut throttle = Throttle {
            names: Vec::with_capacity(limits.len()),
            keys: Vec::with_capacity(limits.len()),
            cells: Vec::with_capacity(limits.len()),
            cost: u64::from(cost),
        };
        for limit in limits {
            check_key(&limit.key)?;
            if limit.name.len() > MAX_NAME {
                return Err(invalid(format!(
                    "a limit's name is at most {MAX_NAME} bytes"
                )));
            }
            let cell = Cell::new(limit.rate, limit.period_ms, limit.burst).map_err(invalid)?;
            if throttle.cost > cell.capacity {
                return Err(invalid(format!(
                    "a cost of {cost} never fits limit \"{}\" ({} units at most)",
                    limit.name, cell.capacity
                )));
            }
            throttle.keys.push(access.key(&limit.key));
            throttle.names.push(limit.name);
            throttle.cells.push(cell);
        }
        Ok(throttle)
    }
}

fn check_key(key: &str) -> Result<(), WitError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(invalid(format!("a key is 1 to {MAX_KEY} bytes")));
    }
    Ok(())
}

/// Microseconds to whole milliseconds, rounded up: a client told to come back sooner would be refused.
fn millis(micros: u64) -> u64 {
    micros.div_ceil(1000)
}

fn wit_verdicts(verdicts: Vec<Verdict>) -> Vec<WitVerdict> {
    verdicts
        .into_iter()
        .map(|v| WitVerdict {
            allowed: v.allowed,
            remaining: v.remaining,
            next_ms: millis(v.next),
            reset_ms: millis(v.reset),
            retry_after_ms: millis(v.retry_after),
        })
        .collect()
}

impl HostState {
    fn store_access(&self) -> Result<Arc<StoreAccess>, WitError> {
        self.store.clone().ok_or_else(|| {
            invalid("this plugin entry is not granted the store (`grants.store = true`)")
        })
    }
}

impl HostState {
    /// The entry's store and its checked throttle request, shared by the shared and the local throttle.
    fn throttle_access(
        &self,
        limits: Vec<Limit>,
        cost: u32,
    ) -> Result<(Arc<StoreAccess>, Throttle), WitError> {
        let access = self.store_access()?;
        let throttle = Throttle::check(&access, limits, cost)?;
        Ok((access, throttle))
    }
}

impl Host for HostState {
    async fn throttle(
        &mut self,
        limits: Vec<Limit>,
        cost: u32,
    ) -> wasmtime::Result<Result<Vec<WitVerdict>, WitError>> {
        let (access, throttle) = match self.throttle_access(limits, cost) {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e)),
        };
        let outcome = access
            .store
            .throttle(&throttle.keys, &throttle.cells, throttle.cost)
            .await;
        // Waiting on Redis is not the plugin's CPU time.
        self.waited_on_host = true;
        access.count(&throttle.names, &outcome);
        Ok(outcome.map(wit_verdicts).map_err(wit_error))
    }

    fn throttle_local(
        &mut self,
        limits: Vec<Limit>,
        cost: u32,
    ) -> wasmtime::Result<Result<Vec<WitVerdict>, WitError>> {
        let (access, throttle) = match self.throttle_access(limits, cost) {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e)),
        };
        let outcome = access
            .store
            .throttle_local(&throttle.keys, &throttle.cells, throttle.cost);
        access.count(&throttle.names, &outcome);
        Ok(outcome.map(wit_verdicts).map_err(wit_error))
    }

    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, WitError>> {
        let access = match self
            .store_access()
            .and_then(|a| check_key(&key).map(|()| a))
        {
            Ok(access) => access,
            Err(e) => return Ok(Err(e)),
        };
        let value = access.store.get(&access.key(&key)).await;
        self.waited_on_host = true;
        // A value longer than `set` allows was not put there by a plugin: a bounded answer either way.
        Ok(value
            .map(|v| v.filter(|v| v.len() <= MAX_VALUE))
            .map_err(wit_error))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<(), WitError>> {
        let access = match self
            .store_access()
            .and_then(|a| check_key(&key).map(|()| a))
        {
            Ok(access) => access,
            Err(e) => return Ok(Err(e)),
        };
        if value.len() > MAX_VALUE {
            return Ok(Err(invalid(format!(
                "a value is at most {MAX_VALUE} bytes, not {}",
                value.len()
            ))));
        }
        if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
            return Ok(Err(invalid(format!(
                "a time to live is 1 ms to 366 days, not {ttl_ms} ms"
            ))));
        }
        let done = access
            .store
            .set(&access.key(&key), value, Duration::from_millis(ttl_ms))
            .await;
        self.waited_on_host = true;
        Ok(done.map_err(wit_error))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), WitError>> {
        let access = match self
            .store_access()
            .and_then(|a| check_key(&key).map(|()| a))
        {
            Ok(access) => access,
            Err(e) => return Ok(Err(e)),
        };
        let done = access.store.delete(&access.key(&key)).await;
        self.waited_on_host = true;
        Ok(done.map_err(wit_error))
    }
}
