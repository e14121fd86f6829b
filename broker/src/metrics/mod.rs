//! Prometheus metrics, rendered at scrape time.
//!
//! Most figures already live where the work happens (partition state in the log, lag in the
//! replicator), so a scrape reads them into a fresh registry instead of mirroring every change
//! into counters on the hot path.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::log::{CommitCounts, Log};
use crate::mqtt::MqttContext;
use crate::plugin::Plugin;
use crate::upstream::LagMap;

mod plugins;

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
    /// Every loaded plugin, ingest and upstream.
    pub plugins: Vec<std::sync::Arc<Plugin>>,
    /// The MQTT side.
    pub mqtt: Option<MqttContext>,
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
    register_commits(&mut registry, sources.log.commit_counts());
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
    if let Some(mqtt) = &sources.mqtt {
        register_mqtt(&mut registry, mqtt);
    }
    registry.register_collector(Box::new(plugins::PluginCollector::new(
        sources.plugins.clone(),
    )));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// Connected clients, parked connections and the subscribers' shared reads.
fn register_mqtt(registry: &mut Registry, mqtt: &MqttContext) {
    let stats = mqtt.stats();
    let gauge = |value: usize| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        g
    };
    let counter = |value: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        c
    };
    registry.register(
        "mqtt_clients",
        "Connected MQTT client ids",
        gauge(stats.clients),
    );
    registry.register(
        "mqtt_parked_connections",
        "Quiet publish-only MQTT connections waiting without a task of their own",
        gauge(stats.parked),
    );
    registry.register(
        "mqtt_read_cache_hits",
        "Subscriber reads served by the shared cache of decoded batches",
        counter(stats.cache_hits),
    );
    registry.register(
        "mqtt_read_cache_misses",
        "Subscriber reads that went to the log",
        counter(stats.cache_misses),
    );
}

/// The writer's group commits: commits, records per commit (records / commits) and time in commit.
fn register_commits(registry: &mut Registry, counts: CommitCounts) {
    let commits = Counter::<u64>::default();
    commits.inc_by(counts.commits);
    registry.register(
        "log_commits",
        "Group commits (write transactions) made by the log writer",
        commits,
    );
    let records = Counter::<u64>::default();
    records.inc_by(counts.records);
    registry.register(
        "log_committed_records",
        "Records appended by those commits",
        records,
    );
    let seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    seconds.inc_by(counts.commit_nanos as f64 / 1e9);
    registry.register(
        "log_commit_seconds",
        "Time spent in LMDB commit (including fsync)",
        seconds,
    );
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::log::{LogOptions, NewRecord, TopicConfig};

    fn value_of(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[tokio::test]
    async fn scrape_shows_offsets_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&LogOptions::for_tests(dir.path(), 64 << 20)).unwrap();
        let topic = log
            .create_topic("t", 1, TopicConfig::default())
            .await
            .unwrap();
        let record = |v: &'static str| NewRecord {
            timestamp: 1,
            key: None,
            value: Some(Bytes::from_static(v.as_bytes())),
            headers: vec![],
        };
        log.append_records(&topic.partitions[0], &[record("a"), record("b")])
            .await
            .unwrap();
        log.append_records(&topic.partitions[0], &[record("c")])
            .await
            .unwrap();
        let text = render(&MetricSources {
            log: log.clone(),
            upstream_lag: None,
            plugins: Vec::new(),
            mqtt: None,
        });
        assert_eq!(
            value_of(
                &text,
                "headwater_log_end_offset{topic=\"t\",partition=\"0\"}"
            ),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            value_of(&text, "headwater_log_committed_records_total"),
            Some(3.0)
        );
        // Creating the topic was a commit too.
        let commits = value_of(&text, "headwater_log_commits_total").unwrap();
        assert!((2.0..=3.0).contains(&commits), "{text}");
        drop(topic);
        log.close().await;
    }
}
