//! The one place tokens are compared. Digests of the presented and the configured token are compared with
//! `subtle`, whose result the optimiser cannot turn back into an early-exit branch: the time a request
//! takes must not tell an attacker how many leading bytes of a token they guessed.

use subtle::{Choice, ConstantTimeEq};

pub type Digest = [u8; 32];

pub fn equal(a: &Digest, b: &Digest) -> Choice {
    #[cfg(test)]
    calls::record();
    a.ct_eq(b)
}

/// Counts the calls of [`equal`] on this thread, so that a test can prove a lookup went through it and
/// compared every configured token.
#[cfg(test)]
pub mod calls {
    use std::cell::Cell;

    thread_local! {
        static COUNT: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn record() {
        COUNT.with(|c| c.set(c.get() + 1));
    }

    /// What `f` returned, and the calls made while it ran.
    pub fn during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = COUNT.with(Cell::get);
        let result = f();
        (result, COUNT.with(Cell::get) - before)
    }
}
