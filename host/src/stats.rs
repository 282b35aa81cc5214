//! The counters behind `/metrics`, kept apart from any one generation of the config.
//!
//! [`Stats`] lives as long as the process (the reload [`crate::reload::Control`] holds it) and hands each
//! generation the counters of the routes, plugin entries and upstreams it names, by name: a reload builds
//! new routes, slots and pools, but they count on where the old ones left off. The request path holds an
//! `Arc` to its own counters, resolved at load, so counting is a few relaxed atomic adds, never a lookup or
//! an allocation.
//!
//! Counters that no generation holds any more (a route the new config dropped, once its last request has
//! ended) are dropped at the next scrape: a name that comes back later starts from zero, as a restarted
//! process would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::plugin::{BodyKind, PluginError};
use crate::sandbox::Label;
use crate::upstream::{Lines, UpstreamError};

/// A request's time, from its head to the last byte of its response: from half a millisecond (a proxied
/// request on loopback) to a minute (an upstream's default `timeout`).
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// One plugin call: from 10 µs (a header rewrite takes a few) past the default CPU `timeout` (20 ms) to
/// the default `wall_timeout` (5 s).
const CALL_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.5, 1.0, 5.0,
];

/// Durations in fixed buckets, each an atomic: `prometheus-client`'s histogram takes a lock per
/// observation, which every worker would contend for on a busy route.
pub struct Histogram {
    /// Upper bounds in seconds, as exported, and in nanoseconds, as compared.
    bounds: &'static [f64],
    bounds_ns: Box<[u64]>,
    /// Observations per bucket (not cumulative), the last one past every bound (`+Inf`).
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            // The bounds are constants between 10 µs and a minute: exact enough in nanoseconds.
            bounds_ns: bounds.iter().map(|s| (s * 1e9) as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // The first bucket whose bound is at least `ns`; past the last bound, `+Inf`.
        let bucket = self.bounds_ns.partition_point(|&bound| bound < ns);
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The sum in seconds, the count, and each bucket's own count with its bound (`f64::MAX` for `+Inf`),
    /// as `prometheus-client` encodes them. The count is the buckets' sum, so that it always equals the
    /// `+Inf` bucket even while observations land during a scrape.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

/// The status classes a route's requests are counted by, as exported.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One route's requests, or those that matched no route.
pub struct RouteStats {
    /// Requests by status class, in the order of [`STATUS_CLASSES`].
    classes: [AtomicU64; 5],
    pub latency: Histogram,
}

impl Default for RouteStats {
    fn default() -> RouteStats {
        RouteStats {
            classes: Default::default(),
            latency: Histogram::new(REQUEST_BUCKETS),
        }
    }
}

impl RouteStats {
    /// Counts a request that ended with `status` after `took`.
    pub fn served(&self, status: u16, took: Duration) {
        self.refused(status);
        self.latency.observe(took);
    }

    /// Counts a request refused by the HTTP parser: it has a status but, never read whole, no time.
    pub fn refused(&self, status: u16) {
        let class = usize::from(status / 100).saturating_sub(1);
        if let Some(count) = self.classes.get(class) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests so far, by class, in the order of [`STATUS_CLASSES`].
    pub fn classes(&self) -> [u64; 5] {
        self.classes.each_ref().map(|c| c.load(Ordering::Relaxed))
    }
}

/// The hooks a plugin call is timed by, named as the WIT contract names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    OnRequest,
    OnResponse,
    OnRequestBody,
    OnResponseBody,
}

impl Hook {
    pub const ALL: [Hook; 4] = [
        Hook::OnRequest,
        Hook::OnResponse,
        Hook::OnRequestBody,
        Hook::OnResponseBody,
    ];

    pub fn body(kind: BodyKind) -> Hook {
        match kind {
            BodyKind::Request => Hook::OnRequestBody,
            BodyKind::Response => Hook::OnResponseBody,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::OnRequest => "on-request",
            Hook::OnResponse => "on-response",
            Hook::OnRequestBody => "on-request-body",
            Hook::OnResponseBody => "on-response-body",
        }
    }
}

/// How a plugin call failed, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A trap: a panic, an out-of-bounds access, an instance that could not be made.
    Trap,
    /// Stopped at its CPU `timeout`.
    CpuLimit,
    /// Refused memory past its `memory` cap.
    MemoryLimit,
    /// Stopped at its `wall_timeout`.
    WallLimit,
    /// The hook returned an error, or answered with an invalid response: the plugin's own verdict.
    Error,
    /// No instance came free in time: the entry was overloaded, the plugin did nothing wrong.
    Overload,
}

impl Failure {
    /// The kinds that end the instance, as the `kind` label of the traps counter names them.
    pub const TRAPS: [(Failure, &'static str); 4] = [
        (Failure::Trap, "trap"),
        (Failure::CpuLimit, "cpu_limit"),
        (Failure::MemoryLimit, "memory_limit"),
        (Failure::WallLimit, "wall_limit"),
    ];

    pub fn of(error: &PluginError) -> Failure {
        match error {
            _ if error.is_overload() => Failure::Overload,
            PluginError::Busy(_) => Failure::Overload,
            PluginError::CpuLimit => Failure::CpuLimit,
            PluginError::MemoryLimit(_) => Failure::MemoryLimit,
            PluginError::WallTimeout(_) => Failure::WallLimit,
            PluginError::Failed(_) | PluginError::InvalidAnswer(_) | PluginError::Config { .. } => {
                Failure::Error
            }
            PluginError::Trap(_) | PluginError::Instantiate(_) => Failure::Trap,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One plugin entry (route and plugin label).
pub struct PluginStats {
    /// Call times, in the order of [`Hook::ALL`].
    calls: [Histogram; 4],
    /// Failed calls, by [`Failure`].
    failures: [AtomicU64; 6],
    skips: AtomicU64,
    created: AtomicU64,
}

impl Default for PluginStats {
    fn default() -> PluginStats {
        PluginStats {
            calls: std::array::from_fn(|_| Histogram::new(CALL_BUCKETS)),
            failures: Default::default(),
            skips: AtomicU64::new(0),
            created: AtomicU64::new(0),
        }
    }
}

impl PluginStats {
    pub fn called(&self, hook: Hook, took: Duration) {
        self.calls(hook).observe(took);
    }

    pub fn calls(&self, hook: Hook) -> &Histogram {
        let [on_request, on_response, on_request_body, on_response_body] = &self.calls;
        match hook {
            Hook::OnRequest => on_request,
            Hook::OnResponse => on_response,
            Hook::OnRequestBody => on_request_body,
            Hook::OnResponseBody => on_response_body,
        }
    }

    pub fn failed(&self, error: &PluginError) {
        if let Some(count) = self.failures.get(Failure::of(error).index()) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn failures(&self, kind: Failure) -> u64 {
        self.failures
            .get(kind.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A failed call left out of its request by `on_error = "skip"`.
    pub fn skipped(&self) {
        self.skips.fetch_add(1, Ordering::Relaxed);
    }

    pub fn skips(&self) -> u64 {
        self.skips.load(Ordering::Relaxed)
    }

    pub fn instance_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    /// Instances made (instantiated and initialised) since the process started, by every generation.
    pub fn instances_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }
}

/// Which wait of an upstream ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `connect_timeout`.
    Connect,
    /// `timeout`, to the response head.
    Response,
}

impl Phase {
    pub const ALL: [(Phase, &'static str); 2] =
        [(Phase::Connect, "connect"), (Phase::Response, "response")];
}

/// One upstream.
#[derive(Default)]
pub struct UpstreamStats {
    connect_errors: AtomicU64,
    /// By [`Phase`].
    timeouts: [AtomicU64; 2],
    opened: AtomicU64,
    open: AtomicU64,
    retries: AtomicU64,
    /// Retries the budget refused.
    retries_refused: AtomicU64,
    ejections: AtomicU64,
    /// Requests waiting in line for one of an endpoint's `max_requests` now.
    queued: AtomicU64,
    /// Requests that waited past `queue_timeout`.
    queue_timeouts: AtomicU64,
    /// Its endpoints' lines, which outlive a generation as these counters do.
    lines: Lines,
}

impl UpstreamStats {
    /// Counts a failed send: `connecting` when it failed before a connection was made.
    pub fn failed(&self, error: &UpstreamError, connecting: bool) {
        let count = match error {
            UpstreamError::Timeout { .. } if connecting => self.timeouts.first(),
            UpstreamError::Timeout { .. } => self.timeouts.get(1),
            UpstreamError::Unreachable { .. } | UpstreamError::Tls { .. } if connecting => {
                Some(&self.connect_errors)
            }
            _ => None,
        };
        if let Some(count) = count {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn connect_errors(&self) -> u64 {
        self.connect_errors.load(Ordering::Relaxed)
    }

    pub fn timeouts(&self, phase: Phase) -> u64 {
        let index = match phase {
            Phase::Connect => 0,
            Phase::Response => 1,
        };
        self.timeouts
            .get(index)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn connection_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections made since the process started.
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Connections open now, idle in the pool or carrying a request.
    pub fn connections_open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// A request sent again after a failed attempt.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// A retry the rules allowed but the retry budget did not.
    pub fn retry_refused(&self) {
        self.retries_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retries_refused(&self) -> u64 {
        self.retries_refused.load(Ordering::Relaxed)
    }

    /// An endpoint taken out after failures in a row.
    pub fn ejected(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Counts a request waiting in line until the guard is dropped.
    pub fn queue(&self) -> Queued<'_> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        Queued(&self.queued)
    }

    pub fn lines(&self) -> &Lines {
        &self.lines
    }

    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn queue_timed_out(&self) {
        self.queue_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queue_timeouts(&self) -> u64 {
        self.queue_timeouts.load(Ordering::Relaxed)
    }
}

/// One request in an endpoint's line.
pub struct Queued<'a>(&'a AtomicU64);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every counter of the process, by name.
#[derive(Default)]
pub struct Stats {
    /// Requests that matched no route, refused before routing included.
    unrouted: Arc<RouteStats>,
    routes: Keyed<String, RouteStats>,
    plugins: Keyed<(String, String), PluginStats>,
    upstreams: Keyed<String, UpstreamStats>,
}

impl Stats {
    pub fn unrouted(&self) -> &Arc<RouteStats> {
        &self.unrouted
    }

    /// The counters of the route named `name`: the ones an earlier generation used, or new ones. Routes
    /// that share a name share them.
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        self.routes.get(name.to_owned())
    }

    pub fn plugin(&self, label: &Label) -> Arc<PluginStats> {
        self.plugins
            .get((label.route.clone(), label.plugin.clone()))
    }

    pub fn upstream(&self, name: &str) -> Arc<UpstreamStats> {
        self.upstreams.get(name.to_owned())
    }

    /// The routes' counters some generation holds, by name.
    pub fn routes(&self) -> Vec<(String, Arc<RouteStats>)> {
        self.routes.live()
    }

    /// The plugin entries' counters some generation holds, by route and plugin label.
    pub fn plugins(&self) -> Vec<((String, String), Arc<PluginStats>)> {
        self.plugins.live()
    }

    pub fn upstreams(&self) -> Vec<(String, Arc<UpstreamStats>)> {
        self.upstreams.live()
    }
}

/// Counters by name, handed out as `Arc`s: an entry is kept while something besides this map holds it.
struct Keyed<K, V>(Mutex<BTreeMap<K, Arc<V>>>);

impl<K, V> Default for Keyed<K, V> {
    fn default() -> Self {
        Keyed(Mutex::new(BTreeMap::new()))
    }
}

impl<K: Ord + Clone, V: Default> Keyed<K, V> {
    fn get(&self, key: K) -> Arc<V> {
        self.map().entry(key).or_default().clone()
    }

    /// The entries a generation still holds, in key order; the others are dropped.
    fn live(&self) -> Vec<(K, Arc<V>)> {
        let mut map = self.map();
        map.retain(|_, stats| Arc::strong_count(stats) > 1);
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// A map of plain counters stays sound whatever panicked while holding it.
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<K, Arc<V>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_puts_each_observation_in_the_first_bucket_that_holds_it() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(1000)); // on the bound: `le` includes it
        h.observe(Duration::from_micros(1001));
        h.observe(Duration::from_secs(3));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets, vec![(0.001, 1), (0.01, 1), (f64::MAX, 1)]);
        assert!((sum - 3.002001).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn status_classes() {
        let r = RouteStats::default();
        for status in [200, 204, 301, 404, 499, 502, 101] {
            r.served(status, Duration::ZERO);
        }
        assert_eq!(r.classes(), [1, 2, 1, 2, 1]);
    }

    #[test]
    fn counters_are_shared_by_name_and_dropped_once_nothing_holds_them() {
        let stats = Stats::default();
        let a = stats.route("a");
        a.served(200, Duration::ZERO);
        // The next generation's route of the same name counts on.
        let again = stats.route("a");
        assert!(Arc::ptr_eq(&a, &again));
        drop(stats.route("gone"));
        let names: Vec<String> = stats.routes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a"]);
        drop((a, again));
        assert!(stats.routes().is_empty());
    }
}
