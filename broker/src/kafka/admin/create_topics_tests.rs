//! CreateTopics against auto-creation and against itself: exactly one creator wins.

use std::sync::Arc;

use kafka_protocol::messages::TopicName;

use super::*;
use crate::config::KafkaSection;
use crate::ingest::Ingest;
use crate::log::{Log, LogError, LogOptions};
use crate::plugin::IngestPlugins;

fn context(dir: &std::path::Path) -> KafkaContext {
    let log = Log::open(&LogOptions::for_tests(dir, 64 * 1024 * 1024)).unwrap();
    let ingest = Ingest::new(log, Arc::new(IngestPlugins::default()));
    KafkaContext::new(ingest, &KafkaSection::default()).unwrap()
}

fn request(name: &str, partitions: i32) -> CreateTopicsRequest {
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_string(name.to_string()));
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    let mut request = CreateTopicsRequest::default();
    request.topics.push(topic);
    request
}

#[tokio::test]
async fn an_exclusive_create_loses_to_an_auto_create_that_came_first() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let log = ctx.log().clone();
    // Both reach the writer; the auto-create is queued first.
    let (auto, exclusive) = tokio::join!(
        log.topic_for_write("race"),
        log.create_topic_exclusive("race", 3, TopicConfig::default())
    );
    let auto = auto.unwrap();
    assert!(
        matches!(exclusive, Err(LogError::TopicExists(ref n)) if n == "race"),
        "{exclusive:?}"
    );
    assert_eq!(
        log.topic("race").unwrap().partitions.len(),
        auto.partitions.len()
    );
    // Without a race, too: the writer refuses what the handler's early check would.
    assert!(matches!(
        log.create_topic_exclusive("race", 1, TopicConfig::default())
            .await,
        Err(LogError::TopicExists(_))
    ));
    // Auto-creation itself still returns the existing topic.
    assert!(log.topic_for_write("race").await.is_ok());
}

#[tokio::test]
async fn the_second_of_two_concurrent_creates_gets_topic_already_exists() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let (first, second) = tokio::join!(
        handle(&ctx, request("twice", 2)),
        handle(&ctx, request("twice", 5))
    );
    let codes = [first.topics[0].error_code, second.topics[0].error_code];
    assert_eq!(codes, [0, ResponseError::TopicAlreadyExists.code()]);
    assert_eq!(first.topics[0].num_partitions, 2);
    assert_eq!(second.topics[0].num_partitions, -1);
    assert_eq!(ctx.log().topic("twice").unwrap().partitions.len(), 2);
    assert!(second.topics[0]
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("already exists")));
}
