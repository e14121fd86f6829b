//! The json-range example plugin attached by config as an ingest plugin, driven by real MQTT and
//! Kafka clients: in-range records are kept, out-of-range ones dropped, unparseable ones go to the
//! dead-letter topic with the error in headers.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use headwater::config::{Attach, PluginSection};
use headwater_tests::{plugin_wasm, InProcess};
use rumqttc::{AsyncClient, QoS};

fn json_range() -> PluginSection {
    let mut config = BTreeMap::new();
    config.insert("field".to_string(), toml::Value::String("temp".into()));
    config.insert("min".to_string(), toml::Value::Float(-40.0));
    config.insert("max".to_string(), toml::Value::Float(125.0));
    PluginSection {
        name: "range".into(),
        module: plugin_wasm("json_range"),
        attach: Attach::Ingest,
        topics: vec!["sensors".into()],
        dead_letter_topic: "dead-letters".into(),
        config,
        max_memory_bytes: 16 * 1024 * 1024,
        timeout_ms: 1000,
        max_consecutive_failures: 10,
        instances: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_range_filters_mqtt_and_kafka_records() {
    let hw = InProcess::start_with(|c| c.plugins.push(json_range())).await;
    let (client, eventloop) = AsyncClient::new(mqtt_options("probe", hw.mqtt()), 16);
    let (_incoming, mut acks) = spawn_event_loop(eventloop);
    let payloads = [
        r#"{"temp": 21.5}"#,
        r#"{"temp": 900}"#,
        "not json at all",
        r#"{"temp": -40}"#,
    ];
    for p in payloads {
        client
            .publish("sensors/dev1", QoS::AtLeastOnce, false, p)
            .await
            .unwrap();
    }
    wait_for_count(&mut acks, payloads.len()).await;
    // Idempotent: the first request is dropped whole by the filter, yet its sequence must count
    // or the second would be refused as out of order.
    let producer = producer(&hw.kafka(), &[("enable.idempotence", "true")]);
    send(&producer, "sensors", "dev2", r#"{"temp": 130}"#).await;
    send(&producer, "sensors", "dev2", r#"{"temp": 99.9}"#).await;

    let kafka = hw.kafka();
    let kept = tokio::task::spawn_blocking(move || {
        consume(&kafka, "sensors", 1, 3, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let values: Vec<String> = kept.iter().map(Consumed::value_str).collect();
    assert_eq!(
        values,
        vec![r#"{"temp": 21.5}"#, r#"{"temp": -40}"#, r#"{"temp": 99.9}"#]
    );

    let kafka = hw.kafka();
    let dead = tokio::task::spawn_blocking(move || {
        consume(&kafka, "dead-letters", 1, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value_str(), "not json at all");
    let headers: Vec<&str> = dead[0].headers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        dead[0].headers.iter().any(|(_, v)| v == b"range"),
        "dead letter names the plugin: {headers:?}"
    );
    assert!(
        dead[0].headers.iter().any(|(_, v)| v == b"sensors"),
        "dead letter names the source topic: {headers:?}"
    );
    hw.broker.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");

/// An ingest plugin's state is stored in the transaction that appends the records it goes with:
/// after `kill -9` the downsampler still remembers the reading it kept, so the restart lets no
/// extra reading through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_downsampler_state_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Ten minutes: every reading of this test falls in one interval.
    let config = format!(
        "[[plugins]]\nname = \"per-key\"\nmodule = {:?}\nattach = \"ingest\"\n\
         topics = [\"readings\"]\nconfig = {{ interval_ms = 600000 }}\n",
        plugin_wasm("downsample").display().to_string()
    );
    let broker = headwater_tests::ChildBroker::spawn(BIN, &data, &config);
    let p = producer(&broker.kafka(), &[]);
    send(&p, "readings", "dev1", "a").await;
    send(&p, "readings", "dev1", "b").await;
    drop(p);
    broker.kill9();

    let broker = headwater_tests::ChildBroker::spawn(BIN, &data, &config);
    let p = producer(&broker.kafka(), &[]);
    // Dropped only if the state survived; then a new key, kept.
    send(&p, "readings", "dev1", "c").await;
    send(&p, "readings", "dev2", "d").await;
    let kafka = broker.kafka();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "readings", 1, 2, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let values: Vec<String> = records.iter().map(Consumed::value_str).collect();
    assert_eq!(values, ["a", "d"]);
    drop(p);
    assert!(broker.terminate().success());
}
