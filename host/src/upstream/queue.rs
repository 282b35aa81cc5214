//! An endpoint's cap on requests in flight (`max_requests`) and the line that waits for a place, as HAProxy's
//! server `maxconn` and its queue: over HTTP/1.1 each request in flight holds a connection, with its
//! buffers, so the cap bounds what a crowd of clients makes the proxy and the endpoint hold.

use std::sync::Arc;
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

impl Places {
    pub fn new(max: u32) -> Places {
        Places {
            free: Arc::new(Semaphore::new(max as usize)),
        }
    }

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
