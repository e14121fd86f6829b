//! Store-and-forward to an upstream Kafka-protocol endpoint (a second Headwater), across an
//! upstream outage: records produced while it is down wait in the edge's log and arrive, in
//! order, without gaps or duplicates, when it returns.

mod common;

use std::time::Duration;

use common::*;
use headwater::config::UpstreamSection;
use headwater_tests::{ChildBroker, InProcess};

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");

/// The edge's upstream section: `sensors` forwarded to `bootstrap`, quick retries.
fn upstream_to(bootstrap: &str) -> UpstreamSection {
    UpstreamSection {
        bootstrap: bootstrap.to_string(),
        topics: vec!["sensors".into()],
        retry_backoff_ms: 100,
        max_batch_bytes: 64 * 1024,
        request_timeout_ms: 2000,
    }
}

async fn read_all(bootstrap: String, want: usize, timeout: Duration) -> Vec<Consumed> {
    tokio::task::spawn_blocking(move || consume(&bootstrap, "sensors", 1, want, timeout))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_in_order_across_an_upstream_outage() {
    let dir = tempfile::tempdir().unwrap();
    let central_data = dir.path().join("central");
    let central = ChildBroker::spawn(BIN, &central_data, "");
    let central_kafka = central.kafka();

    let edge = InProcess::start_with(|c| {
        c.gateway_id = Some("gw-test".into());
        c.upstream = Some(upstream_to(&central_kafka));
    })
    .await;
    let p = producer(&edge.kafka(), &[]);
    for i in 0..10 {
        send(&p, "sensors", "dev", &format!("v{i}")).await;
    }
    let first = read_all(central_kafka.clone(), 10, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 10, "forwarded while the upstream is up");

    // Outage: the central broker goes away; the edge keeps accepting.
    assert!(central.terminate().success());
    for i in 10..25 {
        send(&p, "sensors", "dev", &format!("v{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The central broker returns on the same address.
    let central = ChildBroker::spawn(
        BIN,
        &central_data,
        &format!("[listeners]\nkafka = \"{central_kafka}\"\nmqtt = \"off\"\nquic = \"off\"\nhttp = \"off\"\n"),
    );
    let all = read_all(central.kafka(), 25, Duration::from_secs(30)).await;
    let values: Vec<String> = all.iter().map(Consumed::value_str).collect();
    let expected: Vec<String> = (0..25).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected, "in order, no gaps");
    // Nothing more than the 25 (no duplicates).
    let again = read_all(central.kafka(), 26, Duration::from_secs(2)).await;
    assert_eq!(again.len(), 25, "no duplicates upstream");
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.header("hw.origin.gateway").as_deref(), Some("gw-test"));
        assert_eq!(r.header("hw.origin.topic").as_deref(), Some("sensors"));
        assert_eq!(r.header("hw.origin.offset"), Some(i.to_string()));
    }
    edge.broker.stop().await;
    assert!(central.terminate().success());
}

/// A stored batch that decompresses past the decode limit cannot get origin headers; it is
/// forwarded as stored (made anonymous) instead of stopping its partition forever, and the records
/// after it follow with their headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_large_to_decode_is_forwarded_as_stored() {
    use headwater::log::batch::{self, Producer};
    use headwater::log::NewRecord;
    use kafka_protocol::records::Compression;

    let central = InProcess::start().await;
    let central_kafka = central.kafka();
    let edge = InProcess::start_with(|c| {
        c.upstream = Some(upstream_to(&central_kafka));
    })
    .await;
    let record = |value: Vec<u8>| NewRecord {
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(value.into()),
        headers: vec![],
    };
    // 65 MiB of zeros compress to a few KiB: over the 64 MiB decode limit.
    let producer = Producer {
        id: 9,
        epoch: 0,
        base_sequence: 0,
    };
    let big = batch::encode_as(&[record(vec![0; 65 << 20])], producer, Compression::Zstd).unwrap();
    assert!(big.len() < 1 << 20);
    let log = edge.broker.log();
    let partition = log.topic_for_write("sensors").await.unwrap().partitions[0].clone();
    log.append_batches(&partition, vec![(batch::validate(&big).unwrap(), big)])
        .await
        .unwrap();
    log.append_records(&partition, &[record(b"after".to_vec())])
        .await
        .unwrap();

    let upstream = central.broker.log().clone();
    let arrived = headwater_tests::eventually(Duration::from_secs(20), || {
        let t = upstream.topic("sensors")?;
        (t.partitions[0].high_watermark() >= 2).then(|| t.partitions[0].clone())
    })
    .await
    .expect("both batches forwarded");
    let stored = upstream.read(&arrived, 0, 1 << 20).unwrap();
    let first = batch::validate(&stored[0].bytes).unwrap();
    assert_eq!((first.records_count, first.producer_id), (1, -1));
    assert_eq!(first.compression(), Compression::Zstd as i16);
    let after = &batch::decode(&stored[1].bytes).unwrap()[0];
    assert_eq!(after.value.as_deref(), Some(&b"after"[..]));
    assert!(after.headers.iter().any(|(k, _)| k == "hw.origin.offset"));
    edge.broker.stop().await;
    central.broker.stop().await;
}

/// An upstream plugin shapes what is forwarded, never the local log: the json-range filter keeps
/// in-range readings for the central cluster, drops the rest, and dead-letters what it cannot
/// parse into the edge's own log with its source partition and offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_plugins_filter_what_is_forwarded_and_the_local_log_stays_raw() {
    use headwater::config::{Attach, PluginSection};

    let central = InProcess::start().await;
    let central_kafka = central.kafka();
    let edge = InProcess::start_with(|c| {
        c.gateway_id = Some("gw-test".into());
        c.upstream = Some(upstream_to(&central_kafka));
        let mut config = std::collections::BTreeMap::new();
        config.insert("field".to_string(), toml::Value::String("temp".into()));
        config.insert("max".to_string(), toml::Value::Float(100.0));
        c.plugins.push(PluginSection {
            name: "range".into(),
            module: headwater_tests::plugin_wasm("json_range"),
            attach: Attach::Upstream,
            topics: vec!["sensors".into()],
            dead_letter_topic: "upstream-dead".into(),
            config,
            max_memory_bytes: 16 * 1024 * 1024,
            timeout_ms: 1000,
            max_consecutive_failures: 10,
            instances: 1,
        });
    })
    .await;
    let p = producer(&edge.kafka(), &[]);
    let values = [
        r#"{"temp": 21}"#,
        r#"{"temp": 500}"#,
        "garbled",
        r#"{"temp": 22}"#,
    ];
    for v in values {
        send(&p, "sensors", "dev", v).await;
    }

    let forwarded = read_all(central_kafka.clone(), 2, Duration::from_secs(20)).await;
    let got: Vec<String> = forwarded.iter().map(Consumed::value_str).collect();
    assert_eq!(got, [r#"{"temp": 21}"#, r#"{"temp": 22}"#]);
    for r in &forwarded {
        assert_eq!(r.header("hw.origin.gateway").as_deref(), Some("gw-test"));
        assert_eq!(r.header("hw.origin.partition").as_deref(), Some("0"));
        assert_eq!(
            r.header("hw.origin.offset"),
            None,
            "plugin output maps to no one offset"
        );
    }
    let local = read_all(edge.kafka(), 4, Duration::from_secs(20)).await;
    let raw: Vec<String> = local.iter().map(Consumed::value_str).collect();
    assert_eq!(raw, values, "the local log stays raw");
    let edge_kafka = edge.kafka();
    let dead = tokio::task::spawn_blocking(move || {
        consume(&edge_kafka, "upstream-dead", 1, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value_str(), "garbled");
    assert_eq!(dead[0].header("headwater.plugin").as_deref(), Some("range"));
    assert_eq!(
        dead[0].header("headwater.source.offset").as_deref(),
        Some("2")
    );
    // Nothing more reaches the central cluster.
    let again = read_all(central_kafka, 3, Duration::from_secs(2)).await;
    assert_eq!(again.len(), 2);
    edge.broker.stop().await;
    central.broker.stop().await;
}

/// Sends `value` for key "dev" with an explicit record timestamp.
async fn send_at(producer: &rdkafka::producer::FutureProducer, value: &str, timestamp: i64) {
    let record = rdkafka::producer::FutureRecord::to("sensors")
        .key("dev")
        .payload(value)
        .timestamp(timestamp);
    producer
        .send(record, Duration::from_secs(15))
        .await
        .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
}

/// The downsampler keeps one record per key per second for the central cluster; its state (the
/// last kept timestamp per key) is committed with the replication cursor, so it survives a
/// restart of the edge: a reading too close to the last forwarded one stays at home afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampling_state_survives_an_edge_restart() {
    let dir = tempfile::tempdir().unwrap();
    let central = InProcess::start().await;
    let central_kafka = central.kafka();
    let edge_data = dir.path().join("edge");
    let config = format!(
        "[upstream]\nbootstrap = {central_kafka:?}\ntopics = [\"sensors\"]\nretry_backoff_ms = 100\n\n\
         [[plugins]]\nname = \"every-second\"\nmodule = {:?}\nattach = \"upstream\"\n\
         topics = [\"sensors\"]\nconfig = {{ interval_ms = 1000 }}\n",
        headwater_tests::plugin_wasm("downsample").display().to_string()
    );
    let edge = ChildBroker::spawn(BIN, &edge_data, &config);
    // Recent timestamps: older ones would fall to the default time retention.
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let p = producer(&edge.kafka(), &[]);
    for (value, at) in [("a", 0), ("b", 400), ("c", 1000), ("d", 1999)] {
        send_at(&p, value, t0 + at).await;
    }
    let forwarded = read_all(central_kafka.clone(), 2, Duration::from_secs(20)).await;
    let got: Vec<String> = forwarded.iter().map(Consumed::value_str).collect();
    assert_eq!(got, ["a", "c"]);
    drop(p);
    assert!(edge.terminate().success());

    let edge = ChildBroker::spawn(BIN, &edge_data, &config);
    let p = producer(&edge.kafka(), &[]);
    // 500 ms after "c", the last kept: dropped if the state survived, kept if it was lost.
    send_at(&p, "e", t0 + 1500).await;
    send_at(&p, "f", t0 + 2000).await;
    let forwarded = read_all(central_kafka.clone(), 4, Duration::from_secs(5)).await;
    let got: Vec<String> = forwarded.iter().map(Consumed::value_str).collect();
    assert_eq!(got, ["a", "c", "f"]);
    let local = read_all(edge.kafka(), 6, Duration::from_secs(20)).await;
    assert_eq!(local.len(), 6, "the local log keeps every reading");
    drop(p);
    assert!(edge.terminate().success());
    central.broker.stop().await;
}

/// A topic deleted on the edge and created again under the same name is forwarded from its
/// start: its replication cursor went with the old topic (in the log and in the replicator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_is_forwarded_from_its_start() {
    let central = InProcess::start().await;
    let central_kafka = central.kafka();
    let edge = InProcess::start_with(|c| {
        c.upstream = Some(upstream_to(&central_kafka));
    })
    .await;
    let p = producer(&edge.kafka(), &[]);
    for i in 0..5 {
        send(&p, "sensors", "dev", &format!("old{i}")).await;
    }
    let first = read_all(central_kafka.clone(), 5, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 5);
    drop(p);

    edge.broker.log().delete_topic("sensors").await.unwrap();
    let p = producer(&edge.kafka(), &[]);
    for i in 0..3 {
        send(&p, "sensors", "dev", &format!("new{i}")).await;
    }
    let all = read_all(central_kafka.clone(), 8, Duration::from_secs(20)).await;
    let values: Vec<String> = all.iter().map(Consumed::value_str).collect();
    assert_eq!(
        values,
        ["old0", "old1", "old2", "old3", "old4", "new0", "new1", "new2"]
    );
    drop(p);
    edge.broker.stop().await;
    central.broker.stop().await;
}
