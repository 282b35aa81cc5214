//! What `/metrics` reports, read from the running config at each scrape: nothing on the request path pays
//! for a metric it does not already count.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::crypto::Key;
use crate::logging;
use crate::reload::Control;

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
        let proxy = self.control.proxy.load();
        let slots: Vec<_> = proxy.routes.iter().flat_map(|r| &r.chain).collect();

        let mut created = encoder.encode_descriptor(
            "weir_plugin_instances_created",
            "Plugin instances made (instantiated and initialised), per plugin entry",
            None,
            MetricType::Counter,
        )?;
        for slot in &slots {
            let labels = [
                ("route", slot.label.route.as_str()),
                ("plugin", slot.label.plugin.as_str()),
            ];
            ConstCounter::new(slot.instances_created()).encode(created.encode_family(&labels)?)?;
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
            for slot in &slots {
                let labels = [
                    ("route", slot.label.route.as_str()),
                    ("plugin", slot.label.plugin.as_str()),
                ];
                let (in_use, idle) = slot.instances_in_use();
                let value = i64::try_from(if leased { in_use } else { idle }).unwrap_or(i64::MAX);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }

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
