//! The HTTP/1.1 connections an endpoint keeps between requests, and the task that closes those kept too
//! long or closed by the upstream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::Conn;

/// Idle connections are kept this long: below the 60–75 s keep-alive of common servers, so Weir closes
/// first and seldom sends on a connection the upstream is closing.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// How often kept connections are looked at. An upstream's close is seen by the next request anyway; this
/// only keeps the socket from waiting in CLOSE_WAIT for a request that may not come.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// An endpoint's kept connections, the most recent last: it is taken first, as the likeliest to be open.
#[derive(Default)]
pub struct Idle {
    kept: Mutex<Vec<Kept>>,
    /// The reaper's clock, in whole seconds since it started, as of its last look. A kept connection's age
    /// is told by it rather than read from the system clock, which every request would do twice (once to
    /// put a connection back, once to take one).
    now: AtomicU64,
}

struct Kept {
    conn: Conn,
    /// The reaper's clock when it was put back: up to one look behind the time, so a connection is
    /// closed after 49 to 51 s unused (`IDLE_TIMEOUT` less a look's lag, plus the wait for the next look).
    since: u64,
}

impl Kept {
    fn usable(&mut self, now: u64) -> bool {
        now.saturating_sub(self.since) < IDLE_TIMEOUT.as_secs() && self.conn.is_open()
    }
}

impl Idle {
    /// A kept connection that is still open, if there is one.
    pub fn take(&self) -> Option<Conn> {
        let now = self.now.load(Ordering::Relaxed);
        loop {
            // Popped under the lock, looked at (and closed, if it is no good) outside it.
            let mut kept = self.lock().pop()?;
            if kept.usable(now) {
                return Some(kept.conn);
            }
        }
    }

    pub fn put(&self, conn: Conn) {
        let kept = Kept {
            conn,
            since: self.now.load(Ordering::Relaxed),
        };
        self.lock().push(kept);
    }

    /// Closes the connections kept too long, and those the upstream closed.
    fn reap(&self, now: u64) {
        self.now.store(now, Ordering::Relaxed);
        let mut all = std::mem::take(&mut *self.lock());
        if all.is_empty() {
            return;
        }
        // Looked at, and the stale ones closed, outside the lock.
        all.retain_mut(|kept| kept.usable(now));
        // Whatever was put back meanwhile is newer: it goes after these.
        let mut kept = self.lock();
        all.append(&mut kept);
        *kept = all;
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Kept>> {
        // A list of connections is sound whatever panicked while holding its lock.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The task that reaps an upstream's kept connections, stopped when dropped (with the upstream's
/// generation).
pub struct Reaper(JoinHandle<()>);

impl Drop for Reaper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts reaping `idle`; `None` outside a tokio runtime (`weir check`, a unit test), where no connection is
/// ever made.
pub fn reaper(idle: Vec<Arc<Idle>>) -> Option<Reaper> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    Some(Reaper(runtime.spawn(async move {
        // The time, not a count of looks: a busy runtime that looks late must not keep connections longer.
        let start = Instant::now();
        loop {
            tokio::time::sleep(REAP_EVERY).await;
            let now = start.elapsed().as_secs();
            for idle in &idle {
                idle.reap(now);
            }
        }
    })))
}
