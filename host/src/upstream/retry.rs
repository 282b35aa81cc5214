//! What is retried, and how much: the per-request rules and the per-upstream retry budget.
//!
//! A request is tried again, on another endpoint when there is one, only if its body can be sent again
//! whole (it has none, or not a byte of it was sent), and only:
//! - after a failure to connect, whatever the method: nothing reached the upstream (and only on another
//!   endpoint);
//! - after the connection broke before a response head, or an answer in `retry_on`, for `retry_methods`
//!   only: the upstream may have acted on the request.
//!
//! A timeout is never retried: the upstream may still be working on the request, and a second one would
//! double the load of an upstream that is slow because it is loaded.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, StatusCode};

use crate::config::UpstreamConfig;

pub struct RetryPolicy {
    /// Further attempts a request may make.
    pub retries: u32,
    on: Vec<StatusCode>,
    methods: Vec<Method>,
    budget: Budget,
}

/// Why an attempt failed, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing was sent: the connection (or its TLS handshake) failed.
    Connect,
    /// The connection broke after the request may have been sent, before a response head.
    Reset,
    /// An answer whose status is in `retry_on`.
    Status,
}

impl RetryPolicy {
    pub fn new(config: &UpstreamConfig) -> RetryPolicy {
        RetryPolicy {
            retries: config.retries,
            on: config
                .retry_on
                .iter()
                .filter_map(|s| StatusCode::from_u16(*s).ok())
                .collect(),
            methods: config.retry_methods.iter().map(|m| m.0.clone()).collect(),
            budget: Budget {
                percent: u64::from(config.retry_budget_percent),
                min: u64::from(config.retry_min_concurrency),
                active: AtomicU64::new(0),
                retrying: AtomicU64::new(0),
            },
        }
    }

    /// Whether any failure of a request of `method` could be retried on an upstream of `endpoints`.
    pub fn may_retry(&self, method: &Method, endpoints: usize) -> bool {
        self.retries > 0 && (endpoints > 1 || self.methods.contains(method))
    }

    /// True when an answer with `status` is one to retry.
    pub fn retries_status(&self, status: StatusCode) -> bool {
        self.on.contains(&status)
    }

    /// Whether `failure` may be retried for a request of `method` to an upstream of `endpoints` (the body
    /// and the count aside). A failed connect is retried only on another endpoint: the same address refusing
    /// again a moment later is the rule, and a single endpoint's refusals would only be doubled.
    pub fn allows(&self, failure: Failure, method: &Method, endpoints: usize) -> bool {
        match failure {
            Failure::Connect => endpoints > 1,
            Failure::Reset | Failure::Status => self.methods.contains(method),
        }
    }

    /// Counts a request to the upstream as active until the guard is dropped.
    pub fn begin(&self) -> Active<'_> {
        self.budget.active.fetch_add(1, Ordering::Relaxed);
        Active(&self.budget.active)
    }

    /// A place for one retry in the budget, or `None` when the budget is spent.
    pub fn try_retry(&self) -> Option<Retrying<'_>> {
        self.budget.try_retry()
    }
}

/// Envoy's retry budget: retries in flight may be at most `percent` of the upstream's requests in flight,
/// and never fewer than `min` (so that an upstream with little traffic can still retry at all). When every
/// endpoint fails, at most that share of the load is sent again, instead of every request being multiplied
/// by `1 + retries`.
struct Budget {
    percent: u64,
    min: u64,
    active: AtomicU64,
    retrying: AtomicU64,
}

impl Budget {
    fn try_retry(&self) -> Option<Retrying<'_>> {
        let active = self.active.load(Ordering::Relaxed);
        let allowed = (active.saturating_mul(self.percent) / 100).max(self.min);
        let taken = self.retrying.fetch_add(1, Ordering::Relaxed);
        let retrying = Retrying(&self.retrying);
        (taken < allowed).then_some(retrying)
    }
}

/// A request in flight, for the budget.
pub struct Active<'a>(&'a AtomicU64);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A retry in flight, for the budget: until its attempt has an answer or has failed.
pub struct Retrying<'a>(&'a AtomicU64);

impl Drop for Retrying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> RetryPolicy {
        let config: UpstreamConfig =
            toml::from_str(&format!("url = \"http://127.0.0.1:1\"\n{text}")).unwrap();
        RetryPolicy::new(&config)
    }

    #[test]
    fn connect_failures_retry_every_method_elsewhere_the_rest_only_retry_methods() {
        let p = policy("retry_methods = [\"GET\", \"PUT\"]");
        assert!(p.allows(Failure::Connect, &Method::POST, 2));
        assert!(!p.allows(Failure::Connect, &Method::GET, 1));
        assert!(!p.allows(Failure::Reset, &Method::POST, 2));
        assert!(!p.allows(Failure::Status, &Method::DELETE, 2));
        assert!(p.allows(Failure::Status, &Method::PUT, 2));
        assert!(p.allows(Failure::Reset, &Method::GET, 1));
        let default = policy("");
        assert!(!default.allows(Failure::Reset, &Method::PUT, 2));
        assert!(default.allows(Failure::Reset, &Method::HEAD, 2));
        // What a retry needs is kept only when one could happen.
        assert!(!default.may_retry(&Method::POST, 1));
        assert!(default.may_retry(&Method::POST, 2));
        assert!(default.may_retry(&Method::GET, 1));
        assert!(!policy("retries = 0").may_retry(&Method::GET, 3));
    }

    #[test]
    fn the_budget_is_a_share_of_the_active_requests_and_at_least_the_minimum() {
        let p = policy("retry_budget_percent = 20\nretry_min_concurrency = 2");
        let active: Vec<Active> = (0..20).map(|_| p.begin()).collect();
        let retries: Vec<Retrying> = (0..10).filter_map(|_| p.try_retry()).collect();
        assert_eq!(retries.len(), 4);
        drop(retries);
        drop(active);
        let retries: Vec<Retrying> = (0..10).filter_map(|_| p.try_retry()).collect();
        assert_eq!(retries.len(), 2);
        drop(retries);
        // Refused places are given back: the budget does not leak.
        assert_eq!(p.budget.retrying.load(Ordering::Relaxed), 0);
    }
}
