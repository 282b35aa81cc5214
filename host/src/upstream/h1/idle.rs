//! The HTTP/1.1 connections an endpoint keeps between requests, and the task that closes those kept too
//! long or closed by the upstream.

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
}

struct Kept {
    conn: Conn,
    since: Instant,
}

impl Kept {
    fn usable(&mut self, now: Instant) -> bool {
        now.duration_since(self.since) < IDLE_TIMEOUT && self.conn.is_open()
    }
}

impl Idle {
    /// A kept connection that is still open, if there is one.
    pub fn take(&self) -> Option<Conn> {
        let now = Instant::now();
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
            since: Instant::now(),
        };
        self.lock().push(kept);
    }

    /// Closes the connections kept too long, and those the upstream closed.
    fn reap(&self) {
        let now = Instant::now();
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
        loop {
            tokio::time::sleep(REAP_EVERY).await;
            for idle in &idle {
                idle.reap();
            }
        }
    })))
}
