//! The `redis` backend: one multiplexed connection that reconnects by itself (the `redis` crate's
//! connection manager), every call bounded by the store's deadline, and a circuit breaker in front, so that
//! once Redis is known to be down a call fails at once instead of waiting out the deadline.
//!
//! The crate's own bounds are set explicitly rather than left to its defaults: `connect_timeout` for one
//! connection attempt, `response_timeout` for one command, and no reconnection retries inside the crate
//! (the breaker's probes are the retries, one per `breaker_open`).

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use super::StoreError;
use super::breaker::{Breaker, Change};
use super::gcra::{Cell, Verdict};
use crate::config::store::{RedisUrl, StoreConfig};

/// GCRA over all of a request's limits in one round trip: sent by hash (EVALSHA), and loaded again when a
/// restarted Redis answers NOSCRIPT.
const THROTTLE: &str = include_str!("throttle.lua");

pub struct RedisStore {
    manager: ConnectionManager,
    script: Script,
    deadline: Duration,
    breaker: Breaker,
    /// The URL without its password, for the log.
    shown: String,
}

impl RedisStore {
    /// Makes the connection manager and starts connecting in the background: the first requests should
    /// not spend their deadline on the TCP handshake. A failure there is only the first call's to report.
    pub fn new(config: &StoreConfig, url: &RedisUrl) -> Result<RedisStore, String> {
        let client = redis::Client::open(url.0.as_str()).map_err(|e| e.to_string())?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(0);
        let manager =
            ConnectionManager::new_lazy_with_config(client, settings).map_err(|e| e.to_string())?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut connection = manager.clone();
            runtime.spawn(async move {
                let _: RedisResult<()> = redis::cmd("PING").query_async(&mut connection).await;
            });
        }
        Ok(RedisStore {
            manager,
            script: Script::new(THROTTLE),
            deadline: config.deadline,
            breaker: Breaker::new(config.breaker_failures, config.breaker_open),
            shown: url.shown(),
        })
    }

    /// True while calls fail without reaching Redis.
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Runs one command within the deadline, through the breaker; only changes of the breaker are logged.
    async fn call<T>(
        &self,
        command: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let Some(permit) = self.breaker.admit() else {
            return Err(StoreError::Unavailable(format!(
                "Redis at {} is down (circuit breaker open)",
                self.shown
            )));
        };
        let failure = match tokio::time::timeout(self.deadline, command).await {
            Ok(Ok(value)) => {
                if permit.succeeded() == Change::Closed {
                    tracing::info!(redis = %self.shown, "store: Redis answers again; shared limits are back");
                }
                return Ok(value);
            }
            Ok(Err(e)) => format!("Redis at {}: {e}", self.shown),
            Err(_) => format!(
                "Redis at {} did not answer within the store's deadline ({:?})",
                self.shown, self.deadline
            ),
        };
        match permit.failed() {
            Change::Opened => tracing::warn!(
                "store: {failure}; calls now fail at once, and one probes again every {:?}",
                self.breaker.open_for()
            ),
            Change::StillOpen => tracing::debug!("store: probe failed: {failure}"),
            Change::None | Change::Closed => {}
        }
        Err(StoreError::Unavailable(failure))
    }

    pub async fn throttle(
        &self,
        keys: &[String],
        cells: &[Cell],
        cost: u64,
    ) -> Result<Vec<Verdict>, StoreError> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(cost);
        for (key, cell) in keys.iter().zip(cells) {
            invocation.key(key).arg(cell.interval).arg(cell.capacity);
        }
        let mut connection = self.manager.clone();
        let flat: Vec<u64> = self.call(invocation.invoke_async(&mut connection)).await?;
        if flat.len() != 5 * cells.len() {
            return Err(StoreError::Unavailable(format!(
                "Redis at {} answered the throttle script with {} numbers, not {}",
                self.shown,
                flat.len(),
                5 * cells.len()
            )));
        }
        Ok(flat
            .chunks_exact(5)
            .map(|v| Verdict {
                allowed: v[0] == 1,
                remaining: v[1],
                next: v[2],
                reset: v[3],
                retry_after: v[4],
            })
            .collect())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.manager.clone();
        self.call(redis::cmd("GET").arg(key).query_async(&mut connection))
            .await
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut connection = self.manager.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.call(
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut connection),
        )
        .await
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut connection = self.manager.clone();
        self.call(redis::cmd("DEL").arg(key).query_async(&mut connection))
            .await
    }
}
