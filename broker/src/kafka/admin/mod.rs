//! The admin API: topics and their configs, managed by stock Kafka admin clients
//! (librdkafka's `rd_kafka_CreateTopics` and friends, kafka-python's and confluent-kafka's
//! `AdminClient`, the Java `Admin` and `kafka-topics.sh`).
//!
//! One file per API: [`create_topics`], [`delete_topics`], [`create_partitions`],
//! [`describe_configs`], [`alter_configs`] (AlterConfigs), [`incremental_alter_configs`],
//! [`describe_cluster`], [`delete_records`]. [`configs`] is the one catalogue of topic and broker
//! configs they all share: which keys can be set (`retention.ms`, `retention.bytes`,
//! `cleanup.policy`), how values are parsed, and the read-only Kafka configs that are listed with
//! their Kafka defaults so tools that ask for them get an answer.
//!
//! Headwater is a single node: replication factors other than 1 (or -1, "the default") and
//! replica assignments naming another broker are refused with Kafka's errors for them. Every
//! change goes through the log's writer ([`crate::log::Log::delete_topic`] and friends) and is
//! answered only once it is durable. Each file's docs say why its version range is what it is:
//! in short, the versions librdkafka 2.12, kafka-python 2.x and the Java client send, cut to what
//! `kafka-protocol` 0.18 can decode, and below versions that need topic ids (which Headwater does
//! not have).

pub mod alter_configs;
pub mod configs;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod incremental_alter_configs;
#[cfg(test)]
pub mod schema_tests;

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;

/// Kafka's resource type codes (ConfigResource.Type).
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// An error code with the message clients show to their users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ResponseError,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// The message as the protocol's nullable string.
    pub fn text(&self) -> Option<StrBytes> {
        Some(StrBytes::from_string(self.message.clone()))
    }
}

impl From<&crate::log::LogError> for Refusal {
    fn from(e: &crate::log::LogError) -> Refusal {
        let code = super::errors::log_error(e);
        if super::errors::is_server_side(code) {
            tracing::warn!(error = %e, "admin request failed in the log");
        }
        Refusal::new(code, e.to_string())
    }
}

/// A single node can only hold one replica of each partition, on itself.
fn check_replicas<'a>(
    mut assignments: impl Iterator<Item = &'a [kafka_protocol::messages::BrokerId]>,
) -> Result<(), Refusal> {
    if assignments.all(|brokers| brokers.len() == 1 && brokers[0].0 == super::metadata::NODE_ID) {
        Ok(())
    } else {
        Err(Refusal::new(
            ResponseError::InvalidReplicaAssignment,
            format!(
                "Headwater is a single node (broker {}): each partition has exactly one replica, on it",
                super::metadata::NODE_ID
            ),
        ))
    }
}

/// Names that occur more than once in one request; Kafka refuses all of them.
fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    let mut twice = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            twice.insert(name.to_string());
        }
    }
    twice
}
