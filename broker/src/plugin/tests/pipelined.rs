//! Requests through an ingest chain are queued with the log without waiting for each to be
//! durable (`Submitted::Chained`), as without plugins, and land in the order they were queued.

use super::*;
use crate::ingest::Submitted;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_through_a_chain_are_queued_and_land_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let pass = section("pass", &examples::example("passthrough"), &["t"]);
    let (ingest, log) = ingest_with(dir.path(), pass).await;
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

/// A request that changed a plugin's state finishes before it returns: if its append failed
/// after a later request had run on the state, the state could not be put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_changes_a_state_finishes_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut every_second = section("every-second", &examples::example("downsample"), &["t"]);
    every_second.config = toml::from_str("interval_ms = 1000").unwrap();
    let (ingest, log) = ingest_with(dir.path(), every_second).await;
    let first = ingest.submit_publish("t", records(&["a"])).await;
    assert!(
        matches!(first, Submitted::Finished(Ok(_))),
        "kept: state changed"
    );
    let again = ingest.submit_publish("t", records(&["a"])).await;
    assert!(
        matches!(again, Submitted::Chained(_)),
        "dropped, state as it was"
    );
    again.outcome().await.unwrap();
    drop(ingest);
    log.close().await;
}

/// An idempotent producer's request through a chain finishes before it returns (its sequence
/// check knows only committed requests); a plain producer's is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_request_through_a_chain_finishes_first() {
    use crate::log::batch::{self, Producer};
    use kafka_protocol::records::Compression;
    let dir = tempfile::tempdir().unwrap();
    let pass = section("pass", &examples::example("passthrough"), &["t"]);
    let (ingest, log) = ingest_with(dir.path(), pass).await;
    let request = |producer| {
        let bytes = batch::encode_as(&records(&["a"]), producer, Compression::None).unwrap();
        vec![(batch::validate(&bytes).unwrap(), bytes)]
    };
    let idempotent = Producer {
        id: 3,
        epoch: 0,
        base_sequence: 0,
    };
    let claimed = ingest.submit_batches("t", 0, request(idempotent)).await;
    assert!(matches!(claimed, Submitted::Finished(Ok(_))));
    let plain = ingest.submit_batches("t", 0, request(Producer::NONE)).await;
    assert!(matches!(plain, Submitted::Chained(_)));
    assert_eq!(plain.outcome().await.unwrap().base_offset, 1);
    drop(ingest);
    log.close().await;
}
