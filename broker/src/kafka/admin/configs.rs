//! The catalogue of topic and broker configs the admin APIs show and change.
//!
//! Three topic configs are real and can be set per topic: `retention.ms`, `retention.bytes` (the
//! log's retention sweep honours them) and `cleanup.policy`, which only has `delete` here since
//! Headwater does not compact. The other entries are configs Kafka tools commonly ask for
//! (`kafka-topics.sh --describe`, Kafka UI, Terraform providers); they are listed read-only
//! with the value that describes Headwater's behaviour (mostly Kafka's default), so a client
//! that reads them gets an honest answer and one that sets them gets INVALID_CONFIG with a
//! reason, unless it sets the value they already have, which changes nothing and is accepted
//! (tools often send `min.insync.replicas=1` or similar with every create).

use kafka_protocol::error::ResponseError;

use super::Refusal;
use crate::log::{TopicConfig, TopicDefaults};

/// Kafka's ConfigSource codes (DescribeConfigs v1+).
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// Kafka's ConfigType codes (DescribeConfigs v3+).
pub const TYPE_BOOLEAN: i8 = 1;
pub const TYPE_STRING: i8 = 2;
pub const TYPE_INT: i8 = 3;
pub const TYPE_LONG: i8 = 5;
pub const TYPE_DOUBLE: i8 = 6;
pub const TYPE_LIST: i8 = 7;

pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const CLEANUP_POLICY: &str = "cleanup.policy";

/// One config as DescribeConfigs and CreateTopics v5+ report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    pub value: String,
    pub read_only: bool,
    pub source: i8,
    pub config_type: i8,
    pub doc: &'static str,
}

/// Read-only topic configs: (name, value, type, documentation).
const FIXED_TOPIC: &[(&str, &str, i8, &str)] = &[
    (
        "compression.type",
        "producer",
        TYPE_STRING,
        "Batches are stored as the producer compressed them.",
    ),
    (
        "delete.retention.ms",
        "86400000",
        TYPE_LONG,
        "Kafka's default; unused without compaction.",
    ),
    (
        "file.delete.delay.ms",
        "60000",
        TYPE_LONG,
        "Kafka's default; Headwater deletes batches in place.",
    ),
    (
        "flush.messages",
        "9223372036854775807",
        TYPE_LONG,
        "Every acknowledged write is already fsync'd.",
    ),
    (
        "flush.ms",
        "9223372036854775807",
        TYPE_LONG,
        "Every acknowledged write is already fsync'd.",
    ),
    (
        "index.interval.bytes",
        "4096",
        TYPE_INT,
        "Kafka's default; the LMDB log needs no index.",
    ),
    (
        "max.compaction.lag.ms",
        "9223372036854775807",
        TYPE_LONG,
        "Kafka's default; no compaction.",
    ),
    (
        "max.message.bytes",
        "1048588",
        TYPE_INT,
        "Kafka's default; the broker's max_frame_bytes bounds what a request can carry.",
    ),
    (
        "message.timestamp.type",
        "CreateTime",
        TYPE_STRING,
        "Timestamps are kept as the producer set them.",
    ),
    (
        "min.cleanable.dirty.ratio",
        "0.5",
        TYPE_DOUBLE,
        "Kafka's default; no compaction.",
    ),
    (
        "min.compaction.lag.ms",
        "0",
        TYPE_LONG,
        "Kafka's default; no compaction.",
    ),
    (
        "min.insync.replicas",
        "1",
        TYPE_INT,
        "A single node: one replica is all there is.",
    ),
    ("preallocate", "false", TYPE_BOOLEAN, "Kafka's default."),
    (
        "segment.bytes",
        "1073741824",
        TYPE_INT,
        "Kafka's default; the LMDB log has no segments.",
    ),
    (
        "segment.index.bytes",
        "10485760",
        TYPE_INT,
        "Kafka's default; the LMDB log has no segments.",
    ),
    (
        "segment.jitter.ms",
        "0",
        TYPE_LONG,
        "Kafka's default; the LMDB log has no segments.",
    ),
    (
        "segment.ms",
        "604800000",
        TYPE_LONG,
        "Kafka's default; the LMDB log has no segments.",
    ),
    (
        "unclean.leader.election.enable",
        "false",
        TYPE_BOOLEAN,
        "A single node: there is no other leader.",
    ),
];

/// Every topic config with its current value, sorted by name.
pub fn topic_entries(config: &TopicConfig, defaults: &TopicDefaults) -> Vec<Entry> {
    let settable = |name, value: Option<i64>, default: i64, config_type, doc| Entry {
        name,
        value: value.unwrap_or(default).to_string(),
        read_only: false,
        source: if value.is_some() {
            SOURCE_DYNAMIC_TOPIC
        } else {
            SOURCE_DEFAULT
        },
        config_type,
        doc,
    };
    let mut out = vec![
        settable(
            RETENTION_MS,
            config.retention_ms,
            defaults.retention_ms,
            TYPE_LONG,
            "Batches older than this are deleted; -1 keeps them forever.",
        ),
        settable(
            RETENTION_BYTES,
            config.retention_bytes,
            defaults.retention_bytes,
            TYPE_LONG,
            "Oldest batches are deleted while a partition holds more; -1 means no limit.",
        ),
        Entry {
            name: CLEANUP_POLICY,
            value: config
                .cleanup_policy
                .clone()
                .unwrap_or_else(|| crate::log::CLEANUP_DELETE.to_string()),
            read_only: false,
            source: if config.cleanup_policy.is_some() {
                SOURCE_DYNAMIC_TOPIC
            } else {
                SOURCE_DEFAULT
            },
            config_type: TYPE_LIST,
            doc: "Only \"delete\": Headwater does not compact.",
        },
    ];
    out.extend(
        FIXED_TOPIC
            .iter()
            .map(|(name, value, config_type, doc)| Entry {
                name,
                value: value.to_string(),
                read_only: true,
                source: SOURCE_DEFAULT,
                config_type: *config_type,
                doc,
            }),
    );
    out.sort_by(|a, b| a.name.cmp(b.name));
    out
}

/// The broker's own (read-only) configs.
pub fn broker_entries(defaults: &TopicDefaults, max_frame_bytes: usize) -> Vec<Entry> {
    let fixed = |name, value: String, config_type, doc| Entry {
        name,
        value,
        read_only: true,
        source: SOURCE_STATIC_BROKER,
        config_type,
        doc,
    };
    vec![
        fixed(
            "auto.create.topics.enable",
            defaults.auto_create.to_string(),
            TYPE_BOOLEAN,
            "From the log section of the config file.",
        ),
        fixed(
            "broker.id",
            super::super::metadata::NODE_ID.to_string(),
            TYPE_INT,
            "A single node.",
        ),
        fixed(
            "default.replication.factor",
            "1".into(),
            TYPE_INT,
            "A single node.",
        ),
        fixed(
            "log.cleanup.policy",
            crate::log::CLEANUP_DELETE.into(),
            TYPE_LIST,
            "No compaction.",
        ),
        fixed(
            "log.retention.bytes",
            defaults.retention_bytes.to_string(),
            TYPE_LONG,
            "Default retention.bytes of topics.",
        ),
        fixed(
            "log.retention.ms",
            defaults.retention_ms.to_string(),
            TYPE_LONG,
            "Default retention.ms of topics.",
        ),
        fixed(
            "message.max.bytes",
            max_frame_bytes.to_string(),
            TYPE_INT,
            "The largest request frame accepted.",
        ),
        fixed(
            "min.insync.replicas",
            "1".into(),
            TYPE_INT,
            "A single node.",
        ),
        fixed(
            "num.partitions",
            defaults.partitions.to_string(),
            TYPE_INT,
            "Partitions of auto-created topics.",
        ),
    ]
}

fn invalid(message: String) -> Refusal {
    Refusal::new(ResponseError::InvalidConfig, message)
}

fn retention(name: &str, value: &str) -> Result<i64, Refusal> {
    match value.trim().parse::<i64>() {
        Ok(v) if v >= -1 => Ok(v),
        _ => Err(invalid(format!(
            "{name} must be -1 (unlimited) or a whole number of at least 0, not {value:?}"
        ))),
    }
}

/// Sets (`Some`) or resets to the default (`None`) one config of `config`.
pub fn apply(config: &mut TopicConfig, name: &str, value: Option<&str>) -> Result<(), Refusal> {
    match name {
        RETENTION_MS => config.retention_ms = value.map(|v| retention(name, v)).transpose()?,
        RETENTION_BYTES => {
            config.retention_bytes = value.map(|v| retention(name, v)).transpose()?
        }
        CLEANUP_POLICY => {
            config.cleanup_policy = match value.map(str::trim) {
                None => None,
                Some(crate::log::CLEANUP_DELETE) => Some(crate::log::CLEANUP_DELETE.to_string()),
                Some(other) => {
                    return Err(invalid(format!(
                        "cleanup.policy {other:?} is not supported: Headwater has no log compaction, only \"delete\""
                    )))
                }
            }
        }
        other => match FIXED_TOPIC.iter().find(|(n, ..)| *n == other) {
            // Setting a fixed config to what it already is, or back to its default, is a no-op.
            Some((_, fixed, ..)) if value.is_none_or(|v| v.trim() == *fixed) => {}
            Some((_, fixed, ..)) => {
                return Err(invalid(format!(
                    "{other} cannot be changed in Headwater (it is always {fixed})"
                )))
            }
            None => return Err(invalid(format!("unknown topic config {other:?}"))),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TopicDefaults {
        TopicDefaults {
            auto_create: true,
            partitions: 1,
            retention_ms: 604_800_000,
            retention_bytes: -1,
        }
    }

    #[test]
    fn settable_configs_parse_and_reset() {
        let mut config = TopicConfig::default();
        apply(&mut config, RETENTION_MS, Some("1000")).unwrap();
        apply(&mut config, RETENTION_BYTES, Some("-1")).unwrap();
        apply(&mut config, CLEANUP_POLICY, Some("delete")).unwrap();
        assert_eq!(config.retention_ms, Some(1000));
        assert_eq!(config.retention_bytes, Some(-1));
        assert_eq!(config.cleanup_policy.as_deref(), Some("delete"));
        apply(&mut config, RETENTION_MS, None).unwrap();
        assert_eq!(config.retention_ms, None);
    }

    #[test]
    fn bad_values_unknown_and_fixed_keys_are_invalid_config() {
        let mut config = TopicConfig::default();
        for (name, value) in [
            (RETENTION_MS, Some("soon")),
            (RETENTION_BYTES, Some("-2")),
            (CLEANUP_POLICY, Some("compact")),
            (CLEANUP_POLICY, Some("compact,delete")),
            ("no.such.config", Some("1")),
            ("segment.bytes", Some("1024")),
        ] {
            let err = apply(&mut config, name, value).unwrap_err();
            assert_eq!(err.code, ResponseError::InvalidConfig, "{name}");
            assert!(!err.message.is_empty());
        }
        assert_eq!(
            config,
            TopicConfig::default(),
            "a refused change changes nothing"
        );
        apply(&mut config, "min.insync.replicas", Some("1")).unwrap();
    }

    #[test]
    fn entries_show_overrides_and_defaults() {
        let config = TopicConfig {
            retention_ms: Some(5),
            ..TopicConfig::default()
        };
        let entries = topic_entries(&config, &defaults());
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap().clone();
        assert_eq!(get(RETENTION_MS).value, "5");
        assert_eq!(get(RETENTION_MS).source, SOURCE_DYNAMIC_TOPIC);
        assert_eq!(get(RETENTION_BYTES).value, "-1");
        assert_eq!(get(RETENTION_BYTES).source, SOURCE_DEFAULT);
        assert_eq!(get(CLEANUP_POLICY).value, "delete");
        assert!(get("segment.bytes").read_only);
        assert!(entries.windows(2).all(|w| w[0].name < w[1].name));
    }
}
