//! Per-plugin metrics: one family per figure, one label set per plugin, encoded from the
//! plugins' counters at scrape time (a collector, so each family is declared once however many
//! plugins there are).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::config::Attach;
use crate::plugin::{Plugin, StatsSnapshot, BATCH_SECONDS_BUCKETS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    attach: &'static str,
}

/// Encodes the counters of `plugins` when registered in a registry.
pub struct PluginCollector {
    plugins: Vec<Arc<Plugin>>,
}

impl std::fmt::Debug for PluginCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.plugins.iter().map(|p| p.name()))
            .finish()
    }
}

impl PluginCollector {
    pub fn new(plugins: Vec<Arc<Plugin>>) -> PluginCollector {
        PluginCollector { plugins }
    }
}

/// One counter family: name without `_total`, help, and the figure it shows.
type CounterFamily = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

const COUNTERS: [CounterFamily; 8] = [
    ("plugin_calls", "Calls into the plugin (batches)", |s| {
        s.calls
    }),
    (
        "plugin_failed_batches",
        "Batches that failed as a whole (trap, timeout, bad output, reported failure)",
        |s| s.failed_batches,
    ),
    ("plugin_records_in", "Records handed to the plugin", |s| {
        s.records_in
    }),
    (
        "plugin_records_out",
        "Records the plugin kept or emitted (any topic)",
        |s| s.records_out,
    ),
    (
        "plugin_records_dropped",
        "Input records of successful batches that came out as neither a record nor a dead letter",
        |s| s.records_dropped,
    ),
    (
        "plugin_records_failed",
        "Records sent to the plugin's dead-letter topic",
        |s| s.records_failed,
    ),
    (
        "plugin_restarts",
        "Fresh instances started after a failed batch",
        |s| s.restarts,
    ),
    (
        "plugin_reloads",
        "Modules swapped in while running (hot reload)",
        |s| s.reloads,
    ),
];

impl Collector for PluginCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.plugins.is_empty() {
            return Ok(());
        }
        let stats: Vec<(PluginLabels, StatsSnapshot)> = self
            .plugins
            .iter()
            .map(|p| {
                let attach = match p.attach() {
                    Attach::Ingest => "ingest",
                    Attach::Upstream => "upstream",
                };
                let labels = PluginLabels {
                    plugin: p.name().to_string(),
                    attach,
                };
                (labels, p.stats().snapshot())
            })
            .collect();
        for (name, help, figure) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, s) in &stats {
                ConstCounter::new(figure(s)).encode(family.encode_family(labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "plugin_disabled",
            "1 while the plugin is disabled after repeated failures",
            None,
            MetricType::Gauge,
        )?;
        for (labels, s) in &stats {
            ConstGauge::new(i64::from(s.disabled)).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "plugin_batch_seconds",
            "Time per batch: encoding, the call and decoding",
            None,
            MetricType::Histogram,
        )?;
        for (labels, s) in &stats {
            let buckets: Vec<(f64, u64)> = BATCH_SECONDS_BUCKETS
                .iter()
                .copied()
                .chain([f64::MAX])
                .zip(s.batch_buckets)
                .collect();
            family
                .encode_family(labels)?
                .encode_histogram::<PluginLabels>(
                    s.busy_nanos as f64 / 1e9,
                    s.calls,
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}
