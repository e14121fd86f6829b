//! The admin API with librdkafka's AdminClient (the rdkafka crate): create a topic with
//! partitions and a config, describe and alter its configs, grow it, delete records below an
//! offset (a consumer then starts at the new log start) and delete it.

mod common;

use std::time::Duration;

use headwater_tests::InProcess;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

const PATIENCE: Duration = Duration::from_secs(15);

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("rdkafka admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(PATIENCE))
}

/// Partition counts of `topic` in a fresh Metadata answer; `None` if it is not listed.
fn partitions(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Option<usize> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, PATIENCE)
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_client_manages_topics_end_to_end() {
    let broker = InProcess::start().await;
    let bootstrap = broker.kafka();
    let admin = admin(&bootstrap);
    let topic = "admin-e2e";

    // CreateTopics: 3 partitions, a retention override; a second create is refused.
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1)).set("retention.ms", "3600000")],
            &options(),
        )
        .await
        .expect("create_topics");
    assert_eq!(created, vec![Ok(topic.to_string())]);
    let again = admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &options(),
        )
        .await
        .expect("create_topics");
    assert!(matches!(
        &again[0],
        Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))
    ));
    let replicated = admin
        .create_topics(
            &[NewTopic::new(
                "admin-replicated",
                1,
                TopicReplication::Fixed(3),
            )],
            &options(),
        )
        .await
        .expect("create_topics");
    assert!(matches!(
        &replicated[0],
        Err((
            _,
            rdkafka::types::RDKafkaErrorCode::InvalidReplicationFactor
        ))
    ));
    assert_eq!(partitions(&admin, topic), Some(3));

    // DescribeConfigs: the override, a default and a read-only Kafka config.
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options())
        .await
        .expect("describe_configs");
    let resource = described[0].as_ref().expect("topic configs");
    let retention = resource.get("retention.ms").expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    let policy = resource.get("cleanup.policy").expect("cleanup.policy");
    assert_eq!(policy.value.as_deref(), Some("delete"));
    assert!(policy.is_default);
    assert!(
        resource
            .get("segment.bytes")
            .expect("segment.bytes")
            .is_read_only
    );

    // AlterConfigs (what the crate exposes): retention changes; compaction is refused.
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(topic)).set("retention.ms", "120000")],
            &options(),
        )
        .await
        .expect("alter_configs");
    assert!(altered[0].is_ok(), "{:?}", altered[0]);
    let refused = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(topic)).set("cleanup.policy", "compact")],
            &options(),
        )
        .await
        .expect("alter_configs");
    // The crate reports every AlterConfigs resource as Ok (it does not read the per-resource
    // error code), so the refusal shows in what the topic still has: had it been applied,
    // AlterConfigs' replace-everything semantics would also have reset retention.ms.
    assert_eq!(refused.len(), 1);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options())
        .await
        .expect("describe_configs");
    let resource = described[0].as_ref().expect("topic configs");
    assert_eq!(
        resource
            .get("retention.ms")
            .and_then(|e| e.value.as_deref()),
        Some("120000")
    );
    assert_eq!(
        resource
            .get("cleanup.policy")
            .and_then(|e| e.value.as_deref()),
        Some("delete")
    );

    // CreatePartitions 3 -> 5; shrinking is refused.
    let grown = admin
        .create_partitions(&[NewPartitions::new(topic, 5)], &options())
        .await
        .expect("create_partitions");
    assert_eq!(grown, vec![Ok(topic.to_string())]);
    assert_eq!(partitions(&admin, topic), Some(5));
    let shrunk = admin
        .create_partitions(&[NewPartitions::new(topic, 2)], &options())
        .await
        .expect("create_partitions");
    assert!(matches!(
        &shrunk[0],
        Err((_, rdkafka::types::RDKafkaErrorCode::InvalidPartitions))
    ));

    // DeleteRecords up to offset 6 of partition 0; a consumer from the beginning starts there.
    let producer = common::producer(&bootstrap, &[]);
    for i in 0..10 {
        let value = format!("record-{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&value),
                PATIENCE,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
    }
    let mut upto = TopicPartitionList::new();
    upto.add_partition_offset(topic, 0, Offset::Offset(6))
        .expect("partition list");
    let trimmed = admin
        .delete_records(&upto, &options())
        .await
        .expect("delete_records");
    let element = trimmed
        .find_partition(topic, 0)
        .expect("partition 0 result");
    assert_eq!(element.offset(), Offset::Offset(6));
    assert!(element.error().is_ok());
    let consumed = common::consume(&bootstrap, topic, 1, 4, PATIENCE);
    let offsets: Vec<i64> = consumed.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, vec![6, 7, 8, 9]);
    assert_eq!(consumed[0].value_str(), "record-6");
    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("consumer");
    let (low, high) = watermarks
        .fetch_watermarks(topic, 0, PATIENCE)
        .expect("watermarks");
    assert_eq!((low, high), (6, 10));

    // DeleteTopics: gone from Metadata.
    let deleted = admin
        .delete_topics(&[topic], &options())
        .await
        .expect("delete_topics");
    assert_eq!(deleted, vec![Ok(topic.to_string())]);
    assert_eq!(partitions(&admin, topic), None);
    let missing = admin
        .delete_topics(&[topic], &options())
        .await
        .expect("delete_topics");
    assert!(missing[0].is_err());
}
