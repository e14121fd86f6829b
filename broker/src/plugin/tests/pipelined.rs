//! Requests through an ingest chain are queued with the log without waiting for each to be
//! durable (`Submitted::Chained`), as without plugins, and land in the order they were queued.

use std::sync::Arc;

use super::*;
use crate::ingest::{Ingest, Submitted};
use crate::log::{Log, LogOptions, TopicConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_through_a_chain_are_queued_and_land_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let pass = section("pass", &examples::example("passthrough"), &["t"]);
    let plugins = IngestPlugins::from_config(&[pass]).unwrap();
    let log = Log::open(&LogOptions::for_tests(dir.path(), 64 << 20)).unwrap();
    let ingest = Ingest::new(log.clone(), Arc::new(plugins));
    log.create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    let sent: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let mut pending = Vec::new();
    for value in &sent {
        let submitted = ingest.submit_publish("t", records(&[value])).await;
        assert!(
            matches!(submitted, Submitted::Chained(_)),
            "queued, not waited for"
        );
        pending.push(submitted);
    }
    for (i, submitted) in pending.into_iter().enumerate() {
        assert_eq!(submitted.outcome().await.unwrap().base_offset, i as i64);
    }
    let p = log.topic("t").unwrap().partitions[0].clone();
    let stored = log.read_records(&p, 0, 1 << 20).unwrap();
    let values: Vec<&str> = stored
        .iter()
        .map(|r| std::str::from_utf8(r.value.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(values, sent);
    drop(ingest);
    log.close().await;
}
