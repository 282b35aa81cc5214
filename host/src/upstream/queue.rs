//! An endpoint's cap on requests in flight (`max_requests`) and the line that waits for a place, as HAProxy's
//! server `maxconn` and its queue: over HTTP/1.1 each request in flight holds a connection, with its
//! buffers, so the cap bounds what a crowd of clients makes the proxy and the endpoint hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::stats::UpstreamStats;

/// A place in flight, held until the response body is done with (or the attempt failed).
pub type Place = OwnedSemaphorePermit;

pub struct Places {
    // Tokio's semaphore hands out permits in the order they were asked for: the line is first come, first
    // served.
    free: Arc<Semaphore>,
}

/// An upstream's endpoints' lines, kept with its counters across reloads: an endpoint that keeps its URL and
/// its `max_requests` in a new generation keeps its places, so that requests still in flight from the old
/// one count against the cap. Long polls and tunnels would otherwise let each reload add a cap's worth.
#[derive(Default)]
pub struct Lines(Mutex<HashMap<(String, u32), Weak<Semaphore>>>);

impl Lines {
    /// The places of `endpoint` (its label) under `max`: the line an earlier generation made, while any
    /// generation or request holds it, else a new one.
    pub fn places(&self, endpoint: &str, max: u32) -> Places {
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lines.retain(|_, line| line.strong_count() > 0);
        let key = (endpoint.to_owned(), max);
        if let Some(free) = lines.get(&key).and_then(Weak::upgrade) {
            return Places { free };
        }
        let free = Arc::new(Semaphore::new(max as usize));
        lines.insert(key, Arc::downgrade(&free));
        Places { free }
    }
}

impl Places {
    /// A place, at once when one is free, else after waiting in line for up to `within`; `None` when the
    /// wait ran out.
    pub async fn take(&self, within: Duration, stats: &UpstreamStats) -> Option<Place> {
        if let Ok(place) = self.free.clone().try_acquire_owned() {
            return Some(place);
        }
        let _queued = stats.queue();
        match tokio::time::timeout(within, self.free.clone().acquire_owned()).await {
            // The semaphore is never closed.
            Ok(place) => place.ok(),
            Err(_) => {
                stats.queue_timed_out();
                None
            }
        }
    }
}
