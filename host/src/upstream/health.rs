//! Whether an endpoint is in: passive health (ejected after failures in a row, for a back-off that grows)
//! and the verdict of active checks ([`super::probe`]). The request path reads a few atomics; the lock is
//! taken only when an endpoint is ejected, or succeeds while its back-off is still raised.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// When an endpoint is ejected, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Ejection {
    /// Failures in a row that eject; 0 never does.
    pub after: u32,
    /// The first ejection's length; each one in a row doubles it.
    pub first: Duration,
    pub max: Duration,
}

impl Ejection {
    /// The length of the `level`-th ejection in a row (1 for the first).
    fn length(&self, level: u32) -> Duration {
        let doubled = 1u32
            .checked_shl(level.saturating_sub(1))
            .and_then(|factor| self.first.checked_mul(factor));
        doubled.map_or(self.max, |length| length.min(self.max))
    }
}

/// Milliseconds on one clock per upstream, so that an ejection's end fits an atomic.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One endpoint's health.
#[derive(Default)]
pub struct Health {
    /// Failures since the last success.
    failures: AtomicU32,
    /// On the upstream's [`Clock`], when the current ejection ends; 0 when none was made since the back-off
    /// last started again.
    out_until: AtomicU64,
    /// Set by active checks that failed `unhealthy` times in a row, cleared after `healthy` passes.
    checked_down: AtomicBool,
    /// The back-off is raised: ejections in a row so far.
    raised: AtomicBool,
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    /// Ejections in a row: the next one lasts `first × 2^level`.
    level: u32,
    /// The last ejection's length, in milliseconds.
    last: u64,
}

/// What a failure did to the endpoint.
pub enum Verdict {
    Stays,
    /// Taken out for this long.
    Ejected(Duration),
}

impl Health {
    /// Whether requests may go to the endpoint now. `now` is asked only of an endpoint ejected since its
    /// back-off last started again, so the requests to a healthy upstream read no clock.
    pub fn is_in(&self, now: impl FnOnce() -> u64) -> bool {
        if self.checked_down.load(Ordering::Relaxed) {
            return false;
        }
        match self.out_until.load(Ordering::Relaxed) {
            0 => true,
            until => until <= now(),
        }
    }

    /// True unless active checks took the endpoint out.
    pub fn checked_up(&self) -> bool {
        !self.checked_down.load(Ordering::Relaxed)
    }

    pub fn set_checked(&self, up: bool) {
        self.checked_down.store(!up, Ordering::Relaxed);
    }

    /// An answer below 500. Once the endpoint has stayed in for as long as it was last out, the back-off
    /// starts again from the first length: an endpoint that fails again soon after coming back is out for
    /// longer each time, one that recovered is not punished for an old outage.
    pub fn succeeded(&self, now: impl FnOnce() -> u64) {
        // A load first: the common case writes nothing, so endpoints' counters do not bounce between cores.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if !self.raised.load(Ordering::Relaxed) {
            return;
        }
        let mut backoff = self.backoff();
        let back_since = self.out_until.load(Ordering::Relaxed);
        if now() >= back_since.saturating_add(backoff.last) {
            *backoff = Backoff::default();
            // Not ejected since the back-off started again: `is_in` need not read the clock.
            self.out_until.store(0, Ordering::Relaxed);
            self.raised.store(false, Ordering::Relaxed);
        }
    }

    /// A connect failure, a reset, a timeout or a 5xx answer.
    pub fn failed(&self, now: u64, ejection: &Ejection) -> Verdict {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if ejection.after == 0 || failures < ejection.after || !self.is_in(|| now) {
            return Verdict::Stays;
        }
        let mut backoff = self.backoff();
        // Another request's failure may have ejected it while this one waited for the lock.
        if self.out_until.load(Ordering::Relaxed) > now {
            return Verdict::Stays;
        }
        backoff.level = backoff.level.saturating_add(1);
        let length = ejection.length(backoff.level);
        backoff.last = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
        self.out_until
            .store(now.saturating_add(backoff.last), Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.raised.store(true, Ordering::Relaxed);
        Verdict::Ejected(length)
    }

    /// The back-off holds two plain numbers: sound whatever panicked while holding it.
    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EJECTION: Ejection = Ejection {
        after: 3,
        first: Duration::from_millis(100),
        max: Duration::from_millis(350),
    };

    fn fail(health: &Health, now: u64, times: u32) -> Option<Duration> {
        (0..times)
            .filter_map(|_| match health.failed(now, &EJECTION) {
                Verdict::Ejected(length) => Some(length),
                Verdict::Stays => None,
            })
            .last()
    }

    #[test]
    fn ejected_after_failures_in_a_row_for_a_back_off_that_doubles_up_to_the_cap() {
        let health = Health::default();
        assert!(health.is_in(|| panic!("an endpoint never ejected reads no clock")));
        assert_eq!(fail(&health, 0, 2), None);
        health.succeeded(|| 0); // a success in between: the count starts again
        assert_eq!(fail(&health, 0, 2), None);
        assert!(health.is_in(|| 0));
        assert_eq!(fail(&health, 0, 1), Some(Duration::from_millis(100)));
        assert!(!health.is_in(|| 99));
        assert!(health.is_in(|| 100));
        // Back, and failing at once: out for twice as long, then capped.
        assert_eq!(fail(&health, 100, 3), Some(Duration::from_millis(200)));
        assert!(health.is_in(|| 300));
        assert_eq!(fail(&health, 300, 3), Some(Duration::from_millis(350)));
        assert_eq!(fail(&health, 650, 3), Some(Duration::from_millis(350)));
    }

    #[test]
    fn the_back_off_starts_again_once_the_endpoint_stayed_in_as_long_as_it_was_out() {
        let health = Health::default();
        fail(&health, 0, 3);
        fail(&health, 100, 3); // out 100..300, its last ejection 200 ms long
        health.succeeded(|| 400); // in for only 100 ms: still raised
        assert_eq!(fail(&health, 400, 3), Some(Duration::from_millis(350)));
        health.succeeded(|| 750 + 350);
        assert!(health.is_in(|| panic!("an endpoint back for good reads no clock")));
        assert_eq!(fail(&health, 1100, 3), Some(Duration::from_millis(100)));
    }

    #[test]
    fn failures_while_out_do_not_eject_again_and_zero_never_ejects() {
        let health = Health::default();
        fail(&health, 0, 3);
        assert_eq!(fail(&health, 50, 10), None);
        let never = Ejection {
            after: 0,
            ..EJECTION
        };
        let other = Health::default();
        assert!((0..100).all(|_| matches!(other.failed(0, &never), Verdict::Stays)));
    }
}
