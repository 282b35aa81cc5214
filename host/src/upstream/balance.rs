//! Which endpoint a request goes to: round robin, the lesser loaded of two picked at random (least
//! requests), or a consistent hash of a header or a context value. Each pick is among the endpoints it is
//! handed as usable; none of them allocates.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderName;

use crate::config::upstream::{Balance, HashOn};

/// What `balance = "hash"` reads of a request.
pub enum HashKey {
    Header(HeaderName),
    Context(String),
}

impl HashKey {
    pub fn new(on: &HashOn) -> Option<HashKey> {
        match (&on.header, &on.context) {
            (Some(header), _) => Some(HashKey::Header(header.0.clone())),
            (None, Some(key)) => Some(HashKey::Context(key.clone())),
            (None, None) => None,
        }
    }
}

pub struct Balancer {
    policy: Balance,
    /// Round robin's turn; also the hash's, for requests without the value.
    turn: AtomicUsize,
}

/// An endpoint as the balancer sees it.
pub trait Choice {
    /// Requests in flight to it.
    fn load(&self) -> u64;
    /// Its place on the hash ring: a hash of its URL.
    fn seed(&self) -> u64;
}

impl Balancer {
    pub fn new(policy: Balance) -> Balancer {
        Balancer {
            policy,
            turn: AtomicUsize::new(0),
        }
    }

    /// The index of the endpoint to try, among those `usable` allows (at least one must be); `key` is the
    /// hash of the request's `hash_on` value, when it has one.
    pub fn pick<E: Choice>(
        &self,
        endpoints: &[E],
        usable: impl Fn(usize) -> bool,
        key: Option<u64>,
    ) -> usize {
        match (self.policy, key) {
            (Balance::LeastRequests, _) => least_requests(endpoints, &usable),
            (Balance::Hash, Some(key)) => highest_score(endpoints, &usable, key),
            (Balance::RoundRobin | Balance::Hash, _) => self.round_robin(endpoints.len(), &usable),
        }
    }

    /// The next usable endpoint in turn: one that is out passes its turn to the next.
    fn round_robin(&self, n: usize, usable: &impl Fn(usize) -> bool) -> usize {
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| start.wrapping_add(k) % n)
            .find(|&i| usable(i))
            .unwrap_or(0)
    }
}

/// Two usable endpoints at random, and the one with fewer requests in flight (the first on a tie): the
/// "power of two choices", which avoids a slow endpoint almost as well as scanning them all, without every
/// request of a burst herding onto the one that looked least loaded.
fn least_requests<E: Choice>(endpoints: &[E], usable: &impl Fn(usize) -> bool) -> usize {
    let count = (0..endpoints.len()).filter(|&i| usable(i)).count();
    let nth = |n: usize| {
        (0..endpoints.len())
            .filter(|&i| usable(i))
            .nth(n)
            .unwrap_or(0)
    };
    if count < 2 {
        return nth(0);
    }
    let first = fastrand::usize(..count);
    let mut second = fastrand::usize(..count - 1);
    if second >= first {
        second += 1;
    }
    let (a, b) = (nth(first), nth(second));
    let load = |i: usize| endpoints.get(i).map_or(u64::MAX, Choice::load);
    if load(b) < load(a) { b } else { a }
}

/// Rendezvous hashing: each endpoint scores the key, the highest score wins. An endpoint going out moves
/// only its own keys (each to its runner-up), and coming back takes exactly those back.
fn highest_score<E: Choice>(endpoints: &[E], usable: &impl Fn(usize) -> bool, key: u64) -> usize {
    endpoints
        .iter()
        .enumerate()
        .filter(|&(i, _)| usable(i))
        .max_by_key(|(_, e)| mix(key ^ e.seed()))
        .map_or(0, |(i, _)| i)
}

/// FNV-1a: stable across builds and processes, so that every replica of Weir sends a key to the same
/// endpoint.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: FNV's low bits are weak, and a score must depend on every bit of the key.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        load: u64,
        seed: u64,
    }

    impl Choice for Fake {
        fn load(&self) -> u64 {
            self.load
        }
        fn seed(&self) -> u64 {
            self.seed
        }
    }

    fn fakes(loads: &[u64]) -> Vec<Fake> {
        loads
            .iter()
            .enumerate()
            .map(|(i, &load)| Fake {
                load,
                seed: hash(format!("http://10.0.0.{i}:80").as_bytes()),
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_turns_and_skips_what_is_out() {
        let b = Balancer::new(Balance::RoundRobin);
        let e = fakes(&[0, 0, 0]);
        let picks: Vec<usize> = (0..6).map(|_| b.pick(&e, |_| true, None)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let picks: Vec<usize> = (0..4).map(|_| b.pick(&e, |i| i != 1, None)).collect();
        assert_eq!(picks, [0, 2, 2, 0]);
    }

    #[test]
    fn least_requests_never_picks_the_most_loaded_of_three() {
        let b = Balancer::new(Balance::LeastRequests);
        let e = fakes(&[5, 100, 7]);
        assert!((0..1000).all(|_| b.pick(&e, |_| true, None) != 1));
        assert!((0..100).all(|_| b.pick(&e, |i| i == 1, None) == 1));
    }

    #[test]
    fn a_hash_keeps_its_endpoint_and_only_the_keys_of_one_that_goes_out_move() {
        let b = Balancer::new(Balance::Hash);
        let e = fakes(&[0; 5]);
        let keys: Vec<u64> = (0..1000)
            .map(|k| hash(format!("user{k}").as_bytes()))
            .collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|&k| b.pick(&e, |_| true, Some(k)))
            .collect();
        let again: Vec<usize> = keys
            .iter()
            .map(|&k| b.pick(&e, |_| true, Some(k)))
            .collect();
        assert_eq!(before, again);
        let mut spread = [0; 5];
        before.iter().for_each(|&i| spread[i] += 1);
        assert!(spread.iter().all(|&n| n > 120), "{spread:?}");
        let after: Vec<usize> = keys
            .iter()
            .map(|&k| b.pick(&e, |i| i != 2, Some(k)))
            .collect();
        for (was, is) in before.iter().zip(&after) {
            assert!(
                was == is || *was == 2,
                "a key of endpoint {was} moved to {is}"
            );
            assert_ne!(*is, 2);
        }
    }
}
