//! What `/metrics` reports, read at each scrape: the counters of [`crate::stats`], which the request path
//! keeps in atomics and which outlive reloads, and what the running generation's pools hold now.
//!
//! | family | labels | what |
//! |---|---|---|
//! | `weir_requests_total` | `route`, `status` | requests by status class; `route=""` for those that matched no route |
//! | `weir_request_duration_seconds` | `route` | from the request head to the end of the response body |
//! | `weir_plugin_call_duration_seconds` | `route`, `plugin`, `hook` | one hook call, the wait for an instance included |
//! | `weir_plugin_traps_total` | `route`, `plugin`, `kind` | calls that ended their instance: `trap`, `cpu_limit`, `memory_limit`, `wall_limit` |
//! | `weir_plugin_errors_total` | `route`, `plugin` | calls that returned an error (or an invalid answer) |
//! | `weir_plugin_overloads_total` | `route`, `plugin` | calls that found no instance free in time (503) |
//! | `weir_plugin_skips_total` | `route`, `plugin` | failed calls left out by `on_error = "skip"` |
//! | `weir_plugin_instances_created_total` | `route`, `plugin` | instances made |
//! | `weir_plugin_instances_leased`, `_idle` | `route`, `plugin` | the running generation's instances now |
//! | `weir_upstream_connect_errors_total` | `upstream` | connections refused or unreachable |
//! | `weir_upstream_timeouts_total` | `upstream`, `phase` | `connect` (`connect_timeout`) or `response` (`timeout`) |
//! | `weir_upstream_connections_opened_total`, `weir_upstream_connections_open` | `upstream` | connections made, and open now (pooled or busy) |
//! | `weir_upstream_retries_total`, `weir_upstream_retries_refused_total` | `upstream` | requests sent again; retries the budget refused |
//! | `weir_upstream_ejections_total` | `upstream` | endpoints taken out after failures in a row |
//! | `weir_upstream_queued`, `weir_upstream_queue_timeouts_total` | `upstream` | requests waiting now for one of an endpoint's `max_requests`; those answered 503 after `queue_timeout` |
//! | `weir_upstream_endpoint_up` | `upstream`, `endpoint` | 1 while the running generation's endpoint takes requests |
//! | `weir_upstream_ca_expiry_timestamp_seconds` | `upstream` | when the earliest certificate of the upstream's `ca_file` expires |
//! | `weir_rate_limit_decisions_total` | `route`, `plugin`, `limit`, `outcome` | throttle calls by limit: `allowed`, `refused`, `store_error` |
//! | `weir_store_breaker_open` | | 1 while the Redis breaker fails store calls at once |
//! | `weir_tls_expiry_timestamp_seconds` | `field` | when each file of `[server.tls]` expires (Unix time) |
//! | `weir_tls_clients_refused_total` | | TLS connections ended because a later check refused their client |
//! | `weir_proxy_protocol_refused_total` | | load balancers' connections closed for want of a good PROXY protocol header |

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::crypto::Key;
use crate::logging;
use crate::proxy_protocol;
use crate::reload::Control;
use crate::stats::{Failure, Histogram, Hook, Phase, PluginStats, STATUS_CLASSES, UpstreamStats};
use crate::tls::Peer;

pub struct Metrics {
    control: Arc<Control>,
}

impl Metrics {
    pub fn new(control: Arc<Control>) -> Metrics {
        Metrics { control }
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.routes(&mut encoder)?;
        self.plugins(&mut encoder)?;
        self.instances(&mut encoder)?;
        self.upstreams(&mut encoder)?;
        self.rate_limits(&mut encoder)?;
        self.tls(&mut encoder)?;
        self.proxy_protocol(&mut encoder)?;
        self.process(&mut encoder)
    }
}

impl Metrics {
    fn routes(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = &self.control.stats;
        let mut routes: Vec<(String, _)> = vec![(String::new(), stats.unrouted().clone())];
        routes.extend(stats.routes());
        let mut requests = encoder.encode_descriptor(
            "weir_requests",
            "Requests answered, by route (\"\" for those that matched no route) and status class; a \
             client gone before the answer counts as 499",
            None,
            MetricType::Counter,
        )?;
        for (route, counts) in &routes {
            let route = escape(route);
            for (class, n) in STATUS_CLASSES.iter().zip(counts.classes()) {
                let labels = [("route", route.as_ref()), ("status", class)];
                ConstCounter::new(n).encode(requests.encode_family(&labels)?)?;
            }
        }
        let mut latency = encoder.encode_descriptor(
            "weir_request_duration_seconds",
            "Time from the request head to the end of the response body, by route",
            None,
            MetricType::Histogram,
        )?;
        for (route, counts) in &routes {
            let labels = [("route", escape(route))];
            histogram(&counts.latency, latency.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn plugins(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let plugins: Vec<_> = self
            .control
            .stats
            .plugins()
            .into_iter()
            .map(|((route, plugin), stats)| {
                (
                    escape(&route).into_owned(),
                    escape(&plugin).into_owned(),
                    stats,
                )
            })
            .collect();

        let mut calls = encoder.encode_descriptor(
            "weir_plugin_call_duration_seconds",
            "Time of one hook call, the wait for an instance included, per plugin entry and hook",
            None,
            MetricType::Histogram,
        )?;
        for (route, plugin, stats) in &plugins {
            for hook in Hook::ALL {
                let calls_of_hook = stats.calls(hook);
                // A hook the plugin never had called (most have no body hooks) has no series.
                if calls_of_hook.count() == 0 {
                    continue;
                }
                let labels = [
                    ("route", route.as_str()),
                    ("plugin", plugin.as_str()),
                    ("hook", hook.name()),
                ];
                histogram(calls_of_hook, calls.encode_family(&labels)?)?;
            }
        }

        let mut traps = encoder.encode_descriptor(
            "weir_plugin_traps",
            "Plugin calls that ended their instance, by kind: a trap, or the CPU, memory or wall-clock limit",
            None,
            MetricType::Counter,
        )?;
        for (route, plugin, stats) in &plugins {
            for (kind, name) in Failure::TRAPS {
                let labels = [
                    ("route", route.as_str()),
                    ("plugin", plugin),
                    ("kind", name),
                ];
                ConstCounter::new(stats.failures(kind)).encode(traps.encode_family(&labels)?)?;
            }
        }

        type Count = fn(&PluginStats) -> u64;
        let counters: [(&str, &str, Count); 4] = [
            (
                "weir_plugin_errors",
                "Plugin calls that returned an error, or answered with an invalid response",
                |s| s.failures(Failure::Error),
            ),
            (
                "weir_plugin_overloads",
                "Plugin calls that found no instance free within wall_timeout (answered 503)",
                |s| s.failures(Failure::Overload),
            ),
            (
                "weir_plugin_skips",
                "Failed plugin calls left out of their request by on_error = \"skip\"",
                PluginStats::skips,
            ),
            (
                "weir_plugin_instances_created",
                "Plugin instances made (instantiated and initialised), per plugin entry",
                PluginStats::instances_created,
            ),
        ];
        for (name, help, count) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (route, plugin, stats) in &plugins {
                let labels = [("route", route.as_str()), ("plugin", plugin)];
                ConstCounter::new(count(stats)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// The running generation's instances, summed by entry label (routes may share a name).
    fn instances(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let proxy = self.control.proxy.load();
        let mut entries: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
        for slot in proxy.routes.iter().flat_map(|r| &r.chain) {
            let (leased, idle) = slot.instances_in_use();
            let entry = entries
                .entry((&slot.label.route, &slot.label.plugin))
                .or_default();
            entry.0 += leased;
            entry.1 += idle;
        }
        for (name, help, leased) in [
            (
                "weir_plugin_instances_leased",
                "Plugin instances serving a call or a body now, per plugin entry",
                true,
            ),
            (
                "weir_plugin_instances_idle",
                "Initialised plugin instances waiting in the pool, per plugin entry",
                false,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((route, plugin), (in_use, idle)) in &entries {
                let labels = [("route", escape(route)), ("plugin", escape(plugin))];
                let value = i64::try_from(if leased { *in_use } else { *idle }).unwrap_or(i64::MAX);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn upstreams(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let upstreams = self.control.stats.upstreams();
        let mut connect_errors = encoder.encode_descriptor(
            "weir_upstream_connect_errors",
            "Connections to the upstream refused or unreachable (502)",
            None,
            MetricType::Counter,
        )?;
        for (name, stats) in &upstreams {
            let labels = [("upstream", escape(name))];
            ConstCounter::new(stats.connect_errors())
                .encode(connect_errors.encode_family(&labels)?)?;
        }
        let mut timeouts = encoder.encode_descriptor(
            "weir_upstream_timeouts",
            "Requests whose upstream ran out of connect_timeout (phase connect) or of timeout before the \
             response head (phase response), answered 504",
            None,
            MetricType::Counter,
        )?;
        for (name, stats) in &upstreams {
            let name = escape(name);
            for (phase, label) in Phase::ALL {
                let labels = [("upstream", name.as_ref()), ("phase", label)];
                ConstCounter::new(stats.timeouts(phase))
                    .encode(timeouts.encode_family(&labels)?)?;
            }
        }
        let mut opened = encoder.encode_descriptor(
            "weir_upstream_connections_opened",
            "Connections made to the upstream",
            None,
            MetricType::Counter,
        )?;
        for (name, stats) in &upstreams {
            let labels = [("upstream", escape(name))];
            ConstCounter::new(stats.connections_opened()).encode(opened.encode_family(&labels)?)?;
        }
        let mut open = encoder.encode_descriptor(
            "weir_upstream_connections_open",
            "Connections to the upstream open now: pooled (idle) or carrying a request",
            None,
            MetricType::Gauge,
        )?;
        for (name, stats) in &upstreams {
            let labels = [("upstream", escape(name))];
            let value = i64::try_from(stats.connections_open()).unwrap_or(i64::MAX);
            ConstGauge::new(value).encode(open.encode_family(&labels)?)?;
        }
        for (family, help, count) in [
            (
                "weir_upstream_retries",
                "Requests sent again after a failed attempt",
                UpstreamStats::retries as fn(&UpstreamStats) -> u64,
            ),
            (
                "weir_upstream_retries_refused",
                "Retries the rules allowed but the retry budget refused",
                UpstreamStats::retries_refused,
            ),
            (
                "weir_upstream_ejections",
                "Endpoints taken out after failures in a row (eject_after)",
                UpstreamStats::ejections,
            ),
            (
                "weir_upstream_queue_timeouts",
                "Requests answered 503 after waiting queue_timeout for one of an endpoint's max_requests",
                UpstreamStats::queue_timeouts,
            ),
        ] {
            let mut counter = encoder.encode_descriptor(family, help, None, MetricType::Counter)?;
            for (name, stats) in &upstreams {
                let labels = [("upstream", escape(name))];
                ConstCounter::new(count(stats)).encode(counter.encode_family(&labels)?)?;
            }
        }
        let mut queued = encoder.encode_descriptor(
            "weir_upstream_queued",
            "Requests waiting now for one of an endpoint's max_requests",
            None,
            MetricType::Gauge,
        )?;
        for (name, stats) in &upstreams {
            let labels = [("upstream", escape(name))];
            let value = i64::try_from(stats.queued()).unwrap_or(i64::MAX);
            ConstGauge::new(value).encode(queued.encode_family(&labels)?)?;
        }
        self.endpoints(encoder)?;
        self.upstream_cas(encoder)
    }

    /// Whether each endpoint of the running generation's upstreams is in now.
    fn endpoints(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let proxy = self.control.proxy.load();
        let mut up = encoder.encode_descriptor(
            "weir_upstream_endpoint_up",
            "1 while the endpoint takes requests, 0 while it is ejected or failing its health checks",
            None,
            MetricType::Gauge,
        )?;
        for (name, upstream) in proxy.upstreams.iter() {
            for (endpoint, is_in) in upstream.endpoint_states() {
                let labels = [("upstream", escape(name)), ("endpoint", escape(&endpoint))];
                ConstGauge::new(i64::from(is_in)).encode(up.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// When the running generation's upstreams' own CAs expire, as the listener's files' do.
    fn upstream_cas(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let proxy = self.control.proxy.load();
        let mut ca = encoder.encode_descriptor(
            "weir_upstream_ca_expiry_timestamp_seconds",
            "When the earliest certificate of the upstream's ca_file expires: past it, endpoints whose \
             certificates chain to it are refused (502)",
            None,
            MetricType::Gauge,
        )?;
        for (name, upstream) in proxy.upstreams.iter() {
            if let Some(at) = upstream.ca_expires() {
                let labels = [("upstream", escape(name))];
                ConstGauge::new(at).encode(ca.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// Per plugin entry granted the store, and per limit it names: the decisions of its throttle calls (the
    /// counts live in the store, so they carry on through a reload); and whether Redis's breaker is open.
    fn rate_limits(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let proxy = self.control.proxy.load();
        let granted: Vec<_> = proxy
            .routes
            .iter()
            .flat_map(|r| &r.chain)
            .filter_map(|slot| Some((slot, slot.settings.limits.store.as_ref()?)))
            .collect();
        let mut decisions = encoder.encode_descriptor(
            "weir_rate_limit_decisions",
            "Throttle calls through the shared store, per plugin entry and limit: allowed (the limit had \
             room), refused (it had none; in shadow mode not refused), store_error (no answer in time)",
            None,
            MetricType::Counter,
        )?;
        for (slot, access) in &granted {
            for (limit, counts) in access.limit_counts() {
                for (outcome, n) in [
                    ("allowed", counts.allowed),
                    ("refused", counts.refused),
                    ("store_error", counts.store_errors),
                ] {
                    let labels = [
                        ("route", escape(&slot.label.route)),
                        ("plugin", escape(&slot.label.plugin)),
                        ("limit", escape(&limit)),
                        ("outcome", Cow::Borrowed(outcome)),
                    ];
                    ConstCounter::new(n).encode(decisions.encode_family(&labels)?)?;
                }
            }
        }
        if let Some(open) = granted.first().and_then(|(_, a)| a.store().breaker_open()) {
            let breaker = encoder.encode_descriptor(
                "weir_store_breaker_open",
                "1 while the store's Redis circuit breaker fails calls at once, else 0",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(open)).encode(breaker)?;
        }
        Ok(())
    }

    fn proxy_protocol(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let refused = proxy_protocol::refused_total();
        // Shown while balancers are named, and after, once any connection was refused.
        if self.control.proxy.load().proxy_protocol.is_none() && refused == 0 {
            return Ok(());
        }
        let family = encoder.encode_descriptor(
            "weir_proxy_protocol_refused",
            "Connections from the peers [server.proxy_protocol] names, closed for want of a whole, \
             well-formed PROXY protocol header within header_read_timeout",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(refused).encode(family)
    }

    fn tls(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        // Cloned, so that the channel's lock is not held while the text is written.
        let Some(listener) = self.control.tls.borrow().clone() else {
            return Ok(());
        };
        let refused = encoder.encode_descriptor(
            "weir_tls_clients_refused",
            "TLS connections ended because a later check of clients' certificates refused their client: \
             a reload's, or the check run again as a certificate of their chain, a CA certificate or a \
             revocation list expired",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(Peer::refused_total()).encode(refused)?;
        let mut expiry = encoder.encode_descriptor(
            "weir_tls_expiry_timestamp_seconds",
            "When each file of [server.tls] expires, by the field that names it: a certificate's notAfter \
             (past it clients refuse the handshake), the earliest of client_ca's (past it every client \
             that chains to it is refused), \
             client_crl's next update (past it every certificate a list covers is refused), an ocsp \
             response's next update (past it the response is no longer stapled)",
            None,
            MetricType::Gauge,
        )?;
        for deadline in &listener.deadlines {
            let labels = [("field", deadline.label())];
            ConstGauge::new(deadline.at).encode(expiry.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn process(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let dropped = encoder.encode_descriptor(
            "weir_log_lines_dropped",
            "Log lines dropped because the log writer fell behind",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(logging::dropped_lines()).encode(dropped)?;

        let signatures = encoder.encode_descriptor(
            "weir_crypto_signatures",
            "Signatures made by plugins' keys through weir:plugin/crypto (upstream-jwt mints with them)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(Key::signatures()).encode(signatures)?;
        let counts = self.control.counts();
        let generation = encoder.encode_descriptor(
            "weir_config_generation",
            "The running config's generation: 1 at start, one more for each reload that took",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(counts.generation).unwrap_or(i64::MAX)).encode(generation)?;
        let mut reloads = encoder.encode_descriptor(
            "weir_config_reloads",
            "Reloads asked for, by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in [("ok", counts.reloads_ok), ("failed", counts.reloads_failed)] {
            ConstCounter::new(n).encode(reloads.encode_family(&[("outcome", outcome)])?)?;
        }
        Ok(())
    }
}

fn histogram(
    histogram: &Histogram,
    mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), fmt::Error> {
    let (sum, count, buckets) = histogram.snapshot();
    encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

/// A label value as the exposition format wants it: `prometheus-client` writes values as given, and a
/// route name may hold a quote, a backslash or a newline.
fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("api"), "api");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
