//! The epoch ticker: what turns a plugin's `timeout` into an epoch deadline that passes.
//!
//! The epoch only has to move while a plugin call runs: a store's deadline is set relative to the epoch
//! current when it is set (`Store::set_epoch_deadline`, and `UpdateDeadline::Continue` from the deadline
//! callback), so an epoch that stood still while nothing ran changes no deadline. An idle proxy therefore
//! costs no wake-ups: the ticker parks once a whole tick has passed without a call, and the first call to
//! start unparks it, which then sleeps a whole tick before the first increment, so the first tick of a
//! call is not a fraction of one.
//!
//! It parks only after a tick with no call at all, not whenever none is in flight as it ticks: under load a
//! call runs for microseconds between network events, so at most ticks none is, and parking then cost a
//! futex wake in the next call and a second switch to the ticker every tick.
//!
//! Every plugin call (instantiation and `init` included) must hold a [`CallGuard`] for as long as it may run
//! Wasm: a call without one is not interrupted unless another call happens to be in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

/// How often the epoch advances while a call is in flight. A plugin's CPU deadline is a whole number of
/// ticks, so 1 ms keeps the default 20 ms bound within 5 %.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Plugin calls in flight in the whole process, whichever engine they run on.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// The one ticker thread, shared by every engine of the process so that a test or a bench making many
/// sandboxes does not leave a thread behind for each.
static TICKER: OnceLock<Thread> = OnceLock::new();

/// Set by a call that starts, cleared by the ticker at each tick: whether the last tick saw a call.
static CALLED: AtomicBool = AtomicBool::new(false);

/// Ticks so far: wasmtime does not tell an engine's epoch, and the tests watch the ticker stand still.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// The engines the ticker advances; an engine is forgotten at the first tick after it is dropped.
static ENGINES: Mutex<Vec<EngineWeak>> = Mutex::new(Vec::new());

/// Has `engine`'s epoch advanced every [`EPOCH_TICK`] while any plugin call is in flight, for as long as
/// the engine lives.
pub fn tick(engine: &Engine) -> std::io::Result<()> {
    // Nothing panics while the lock is held, and a push or a retain either happened or did not.
    let mut engines = ENGINES.lock().unwrap_or_else(PoisonError::into_inner);
    engines.push(engine.weak());
    if TICKER.get().is_none() {
        // Spawned under the lock, so two sandboxes made at once start one thread.
        let handle = std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(run)?;
        let _ = TICKER.set(handle.thread().clone());
    }
    Ok(())
}

fn run() {
    loop {
        // A `CallGuard` made between the look and the park leaves the park token set, so the park returns
        // at once: no wake-up is lost. SeqCst here and in `enter`: a call that finds `CALLED` set skips the
        // unpark, which is sound only if this swap then sees it set or the load after it sees the call.
        while !CALLED.swap(false, Ordering::SeqCst) && IN_FLIGHT.load(Ordering::SeqCst) == 0 {
            std::thread::park();
        }
        std::thread::sleep(EPOCH_TICK);
        TICKS.fetch_add(1, Ordering::Relaxed);
        ENGINES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|weak| match weak.upgrade() {
                Some(engine) => {
                    engine.increment_epoch();
                    true
                }
                None => false,
            });
    }
}

/// Held by a plugin call while it may run Wasm; dropping it (the call returned, or its future was dropped
/// half-way) lets the ticker park again once a whole tick passes without a call.
#[must_use = "the epoch advances only while the guard is held"]
#[derive(Debug)]
pub struct CallGuard(());

impl CallGuard {
    pub fn enter() -> CallGuard {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        // Under load `CALLED` is already set, and most calls do one load. It is set only together with an
        // unpark: set without one, every later call would skip its unpark and the ticker stay parked.
        if !CALLED.load(Ordering::SeqCst)
            && let Some(ticker) = TICKER.get()
        {
            CALLED.store(true, Ordering::SeqCst);
            // A futex wake only when the ticker is parked, which it is at most once per idle spell.
            ticker.unpark();
        }
        CallGuard(())
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ticks() -> u64 {
        TICKS.load(Ordering::Relaxed)
    }

    fn waits_for_ticks(from: u64, ticks_wanted: u64) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if ticks() >= from + ticks_wanted {
                return true;
            }
            std::thread::sleep(EPOCH_TICK);
        }
        false
    }

    // One test, not several: the in-flight count is process-wide, and tests run in parallel.
    #[test]
    fn the_epoch_moves_only_while_a_call_is_in_flight() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).expect("engine");
        tick(&engine).expect("ticker");

        let call = CallGuard::enter();
        assert!(
            waits_for_ticks(ticks(), 3),
            "the epoch stood still during a call"
        );
        drop(call);

        // A tick already under way may still land.
        std::thread::sleep(EPOCH_TICK * 5);
        let idle = ticks();
        std::thread::sleep(EPOCH_TICK * 50);
        assert_eq!(ticks(), idle, "the epoch moved while idle");

        let again = CallGuard::enter();
        assert!(waits_for_ticks(idle, 1), "the ticker was not woken");
        drop(again);
    }
}
