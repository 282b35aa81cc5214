//! An upstream's endpoints: where each is, how many requests it has in flight, its health, and the pick of
//! one for each attempt of a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

use super::balance::{self, Balancer, Choice};
use super::h1::Idle;
use super::health::{Clock, Ejection, Health, Verdict};
use super::queue::{Lines, Places};
use crate::config::UpstreamUrl;

pub struct Endpoint {
    pub url: UpstreamUrl,
    /// `scheme://authority/base`, as the log and the metrics name it.
    pub label: String,
    /// The `Host` sent to it, unless `preserve_host` keeps the client's.
    pub host: Option<HeaderValue>,
    in_flight: AtomicU64,
    pub health: Health,
    seed: u64,
    /// Its `max_requests`, when it has one.
    pub places: Option<Places>,
    /// The HTTP/1.1 connections kept for its next requests.
    pub idle: Arc<Idle>,
}

impl Choice for Endpoint {
    fn load(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn seed(&self) -> u64 {
        self.seed
    }
}

impl Endpoint {
    /// Its places, under `max_requests`, are the ones `lines` kept for it, if an earlier generation had it.
    pub fn new(
        url: &UpstreamUrl,
        preserve_host: bool,
        max_requests: Option<u32>,
        lines: &Lines,
    ) -> Endpoint {
        let label = format!("{}://{}{}", url.scheme, url.authority, url.base_path);
        Endpoint {
            // An authority's characters are all valid in a header value; were one not, the client's Host
            // would go instead of none.
            host: (!preserve_host)
                .then(|| HeaderValue::from_str(url.authority.as_str()).ok())
                .flatten(),
            seed: balance::hash(label.as_bytes()),
            url: url.clone(),
            in_flight: AtomicU64::new(0),
            health: Health::default(),
            places: max_requests.map(|max| lines.places(&label, max)),
            idle: Arc::default(),
            label,
        }
    }

    /// Counts a request in flight to this endpoint until the guard is dropped.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }
}

/// One attempt in flight to an endpoint.
pub struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Endpoints {
    list: Vec<Endpoint>,
    balancer: Balancer,
    ejection: Ejection,
    clock: Clock,
}

impl Endpoints {
    pub fn new(list: Vec<Endpoint>, balancer: Balancer, ejection: Ejection) -> Endpoints {
        Endpoints {
            list,
            balancer,
            ejection,
            clock: Clock::new(),
        }
    }

    pub fn list(&self) -> &[Endpoint] {
        &self.list
    }

    /// The endpoint for the next attempt of a request: among those in, less `tried` (the one its last
    /// attempt failed on) when another is in. When none is in, every endpoint is used as if all were (as
    /// Envoy's panic threshold does): an outage that took them all out must not turn into a proxy that
    /// refuses to try, and the one that came back first is found by the traffic itself.
    pub fn pick(&self, key: Option<u64>, tried: Option<usize>) -> (usize, &Endpoint) {
        let n = self.list.len();
        // Read once, and only if an endpoint was ejected: most picks read no clock.
        let read = std::cell::OnceCell::new();
        let now = || *read.get_or_init(|| self.clock.now());
        let healthy = |i: usize| Some(i) != tried && self.list[i].health.is_in(now);
        let index = if (0..n).any(healthy) {
            self.balancer.pick(&self.list, healthy, key)
        } else {
            let others = |i: usize| n == 1 || Some(i) != tried;
            self.balancer.pick(&self.list, others, key)
        };
        // The balancer answers an index below `n`; were it not, the first endpoint serves.
        match self.list.get(index) {
            Some(endpoint) => (index, endpoint),
            None => (0, &self.list[0]),
        }
    }

    pub fn succeeded(&self, endpoint: &Endpoint) {
        endpoint.health.succeeded(|| self.clock.now());
    }

    pub fn failed(&self, endpoint: &Endpoint) -> Verdict {
        endpoint.health.failed(self.clock.now(), &self.ejection)
    }

    /// Each endpoint and whether it is in now, for the metrics.
    pub fn states(&self) -> Vec<(String, bool)> {
        let now = self.clock.now();
        self.list
            .iter()
            .map(|e| (e.label.clone(), e.health.is_in(|| now)))
            .collect()
    }
}
