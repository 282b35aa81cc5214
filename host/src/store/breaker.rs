//! A circuit breaker in front of Redis: once calls have failed `failures` times in a row, calls fail at
//! once, paying no Redis latency, for `open_for`; then one call goes through as a probe, and its success
//! closes the breaker, so a Redis that comes back is used again without a restart.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub struct Breaker {
    failures: u32,
    open_for: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failed: u32,
    },
    Open {
        until: Instant,
    },
    /// One call is probing; the others still fail at once.
    Probing,
}

/// What a call's outcome changed, for the log: only changes are logged, never each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    Opened,
    /// A probe failed: open for another period.
    StillOpen,
    Closed,
}

/// A call the breaker let through. Dropped without an outcome (the client went away, the plugin's call was
/// abandoned half-way) it says nothing about Redis: it changes nothing, except that an abandoned probe lets
/// the next call probe at once, so the breaker cannot be left probing for ever.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Breaker {
    pub fn new(failures: u32, open_for: Duration) -> Breaker {
        Breaker {
            failures,
            open_for,
            state: Mutex::new(State::Closed { failed: 0 }),
        }
    }

    /// A permit to call, or `None` while the breaker is open.
    pub fn admit(&self) -> Option<Permit<'_>> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<Permit<'_>> {
        let mut state = self.state();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now >= until => {
                *state = State::Probing;
                true
            }
            State::Open { .. } | State::Probing => return None,
        };
        Some(Permit {
            breaker: self,
            probe,
            settled: false,
        })
    }

    pub fn open_for(&self) -> Duration {
        self.open_for
    }

    /// True while calls fail without trying (a probe in flight included).
    pub fn is_open(&self) -> bool {
        !matches!(*self.state(), State::Closed { .. })
    }

    fn settle(&self, ok: bool, probe: bool, now: Instant) -> Change {
        let mut state = self.state();
        let before = *state;
        if ok {
            // Redis answered: whoever asked, it is up.
            *state = State::Closed { failed: 0 };
            return if matches!(before, State::Closed { .. }) {
                Change::None
            } else {
                Change::Closed
            };
        }
        let open = State::Open {
            until: now + self.open_for,
        };
        match before {
            _ if probe => {
                *state = open;
                Change::StillOpen
            }
            State::Closed { failed } if failed + 1 >= self.failures => {
                *state = open;
                Change::Opened
            }
            State::Closed { failed } => {
                *state = State::Closed { failed: failed + 1 };
                Change::None
            }
            // A call let through before the breaker opened, failing late: it is open already.
            State::Open { .. } | State::Probing => Change::None,
        }
    }

    /// Nothing panics while the lock is held, so a poisoned state is still a sound one.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Permit<'_> {
    pub fn succeeded(mut self) -> Change {
        self.settled = true;
        self.breaker.settle(true, self.probe, Instant::now())
    }

    pub fn failed(mut self) -> Change {
        self.settled = true;
        self.breaker.settle(false, self.probe, Instant::now())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            let mut state = self.breaker.state();
            if *state == State::Probing {
                *state = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(1);

    #[test]
    fn opens_after_failures_in_a_row_and_fails_fast_until_a_probe_succeeds() {
        let breaker = Breaker::new(3, OPEN);
        let t0 = Instant::now();
        assert_eq!(breaker.admit_at(t0).unwrap().failed(), Change::None);
        // A success in between resets the count.
        assert_eq!(breaker.admit_at(t0).unwrap().succeeded(), Change::None);
        assert_eq!(breaker.admit_at(t0).unwrap().failed(), Change::None);
        assert_eq!(breaker.admit_at(t0).unwrap().failed(), Change::None);
        let third = breaker.admit_at(t0).unwrap();
        assert_eq!(breaker.settle(false, third.probe, t0), Change::Opened);
        std::mem::forget(third);
        assert!(breaker.is_open());
        assert!(breaker.admit_at(t0 + OPEN / 2).is_none());

        // After `open_for`, exactly one probe goes through.
        let probe = breaker.admit_at(t0 + OPEN).unwrap();
        assert!(probe.probe);
        assert!(breaker.admit_at(t0 + OPEN).is_none());
        assert_eq!(probe.succeeded(), Change::Closed);
        assert!(!breaker.is_open());
        assert!(breaker.admit_at(t0 + OPEN).is_some());
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_an_abandoned_call_says_nothing() {
        let breaker = Breaker::new(1, OPEN);
        let t0 = Instant::now();
        // Calls dropped half-way (a client gone) are no failures.
        drop(breaker.admit_at(t0).unwrap());
        assert!(!breaker.is_open());
        let first = breaker.admit_at(t0).unwrap();
        assert_eq!(breaker.settle(false, first.probe, t0), Change::Opened);
        std::mem::forget(first);
        let probe = breaker.admit_at(t0 + OPEN).unwrap();
        assert_eq!(
            breaker.settle(false, probe.probe, t0 + OPEN),
            Change::StillOpen
        );
        std::mem::forget(probe);
        assert!(breaker.admit_at(t0 + OPEN).is_none());
        // An abandoned probe hands the probing to the next call at once.
        let probe = breaker.admit_at(t0 + 2 * OPEN).unwrap();
        drop(probe);
        assert!(breaker.is_open());
        assert!(breaker.admit_at(Instant::now()).unwrap().probe);
    }
}
