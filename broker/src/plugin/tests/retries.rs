//! An idempotent producer's retry that arrives while its original request is still in the
//! chain runs the chain once: it waits for the original and is answered from the log.

use std::sync::Arc;
use std::time::Duration;

use headwater_sdk::{OutRecord, Output};
use kafka_protocol::records::Compression;

use super::hostile::Wat;
use super::instances::spinning;
use super::*;
use crate::ingest::Ingest;
use crate::log::batch::{self, Producer};
use crate::log::{Log, LogOptions, TopicConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_overlapping_its_original_runs_the_chain_once() {
    let dir = tempfile::tempdir().unwrap();
    // Routes every batch's one record to another topic (which the writer's check of the
    // producer's sequences does not cover), slowly.
    let mut routing = Output::new();
    routing.keep(OutRecord {
        topic: Some("other".into()),
        timestamp: 7,
        key: None,
        value: Some(b"routed".as_slice().into()),
        headers: vec![],
    });
    let module = write_module(
        dir.path(),
        "router",
        &spinning(Wat::returning(&routing), 200_000_000).build(),
    );
    let mut s = section("router", &module, &["t"]);
    s.timeout_ms = 30_000;
    let plugins = Arc::new(IngestPlugins::from_config(&[s]).unwrap());
    let log = Log::open(&LogOptions::for_tests(&dir.path().join("log"), 64 << 20)).unwrap();
    let ingest = Ingest::new(log.clone(), plugins.clone());
    log.create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    let producer = Producer {
        id: 3,
        epoch: 0,
        base_sequence: 0,
    };
    let bytes = batch::encode_as(&records(&["a"]), producer, Compression::None).unwrap();
    let request = vec![(batch::validate(&bytes).unwrap(), bytes)];

    let original = tokio::spawn({
        let (ingest, request) = (ingest.clone(), request.clone());
        async move { ingest.produce_batches("t", 0, request).await }
    });
    // The original is in the chain, its sequence range not yet stored, when the retry comes.
    let stats = || plugins.plugins()[0].stats().snapshot();
    while stats().records_in == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let retry = ingest.produce_batches("t", 0, request).await.unwrap();
    let original = original.await.unwrap().unwrap();
    assert_eq!(retry, original, "the retry gets the original's answer");
    assert_eq!(stats().calls, 1, "the chain ran once");
    let routed = log.topic("other").unwrap().partitions[0].high_watermark();
    assert_eq!(routed, 1, "the routed record was written once");
    drop(ingest);
    log.close().await;
}
