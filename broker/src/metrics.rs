//! Prometheus metrics, rendered at scrape time.
//!
//! Most figures already live where the work happens (partition state in the log, lag in the
//! replicator), so a scrape reads them into a fresh registry instead of mirroring every change
//! into counters on the hot path.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::log::Log;
use crate::upstream::LagMap;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: u32,
}

/// Sources the HTTP endpoint reads from.
#[derive(Clone)]
pub struct MetricSources {
    pub log: Log,
    /// Records not yet forwarded upstream, per (topic, partition); absent without `[upstream]`.
    pub upstream_lag: Option<LagMap>,
}

/// The Prometheus text exposition of the broker's current state.
pub fn render(sources: &MetricSources) -> String {
    let mut registry = Registry::with_prefix("headwater");
    let end = Family::<PartitionLabels, Gauge>::default();
    let start = Family::<PartitionLabels, Gauge>::default();
    let bytes = Family::<PartitionLabels, Gauge>::default();
    for topic in sources.log.topics() {
        for p in &topic.partitions {
            let labels = PartitionLabels {
                topic: topic.name.to_string(),
                partition: p.index,
            };
            let state = p.state();
            end.get_or_create(&labels).set(state.next_offset);
            start.get_or_create(&labels).set(state.log_start);
            bytes.get_or_create(&labels).set(state.bytes as i64);
        }
    }
    registry.register(
        "log_end_offset",
        "Next offset of each partition (high watermark)",
        end,
    );
    registry.register(
        "log_start_offset",
        "First offset still stored of each partition",
        start,
    );
    registry.register(
        "log_bytes",
        "Bytes of record batches stored per partition",
        bytes,
    );
    let disk = Gauge::<i64>::default();
    disk.set(sources.log.disk_bytes() as i64);
    registry.register("data_disk_bytes", "Size of the LMDB data file", disk);
    if let Some(lag) = &sources.upstream_lag {
        let family = Family::<PartitionLabels, Gauge>::default();
        if let Ok(map) = lag.lock() {
            for ((topic, partition), records) in map.iter() {
                family
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition: *partition,
                    })
                    .set(*records);
            }
        }
        registry.register(
            "upstream_lag_records",
            "Records not yet acknowledged by the upstream cluster",
            family,
        );
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}
