//! MQTT and Kafka into the same log, read back through the other protocol, with real clients:
//! rumqttc (MQTT 3.1.1) and the rdkafka crate (librdkafka).

mod common;

use std::time::Duration;

use common::*;
use headwater_tests::InProcess;
use rumqttc::{AsyncClient, QoS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_publish_is_read_by_a_kafka_consumer() {
    let hw = InProcess::start().await;
    let (client, eventloop) = AsyncClient::new(mqtt_options("sensor-1", hw.mqtt()), 16);
    let (_incoming, mut acks) = spawn_event_loop(eventloop);
    for i in 0..5 {
        client
            .publish(
                "sensors/dev1/temp",
                QoS::AtLeastOnce,
                false,
                format!("{{\"temp\":{i}}}"),
            )
            .await
            .unwrap();
    }
    wait_for_count(&mut acks, 5).await;

    let kafka = hw.kafka();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "sensors", 1, 5, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 5, "all five QoS 1 publishes reach Kafka");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key.as_deref(), Some(&b"sensors/dev1/temp"[..]));
        assert_eq!(r.value_str(), format!("{{\"temp\":{i}}}"));
        assert_eq!(r.header("mqtt.topic").as_deref(), Some("sensors/dev1/temp"));
    }
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_record_reaches_mqtt_subscribers_of_the_topic_name() {
    let hw = InProcess::start().await;
    let (client, eventloop) = AsyncClient::new(mqtt_options("dashboard", hw.mqtt()), 16);
    let (mut incoming, mut acks) = spawn_event_loop(eventloop);
    client.subscribe("alerts", QoS::AtLeastOnce).await.unwrap();
    wait_for_count(&mut acks, 1).await;

    let producer = producer(&hw.kafka(), &[]);
    send(&producer, "alerts", "pump-7", "overheat").await;

    let got = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
        .await
        .expect("delivery in time")
        .expect("event loop alive");
    assert_eq!(got.topic, "alerts");
    assert_eq!(&got.payload[..], b"overheat");
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_subscriber_sees_original_topic_of_mqtt_records() {
    let hw = InProcess::start().await;
    let (sub, sub_loop) = AsyncClient::new(mqtt_options("sub", hw.mqtt()), 16);
    let (mut incoming, mut sub_acks) = spawn_event_loop(sub_loop);
    sub.subscribe("factory/+/temperature", QoS::AtLeastOnce)
        .await
        .unwrap();
    wait_for_count(&mut sub_acks, 1).await;

    let (publ, pub_loop) = AsyncClient::new(mqtt_options("pub", hw.mqtt()), 16);
    let (_i, mut pub_acks) = spawn_event_loop(pub_loop);
    publ.publish(
        "factory/line1/pressure",
        QoS::AtLeastOnce,
        false,
        "not for you",
    )
    .await
    .unwrap();
    publ.publish("factory/line2/temperature", QoS::AtLeastOnce, false, "21.5")
        .await
        .unwrap();
    wait_for_count(&mut pub_acks, 2).await;

    let got = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
        .await
        .expect("delivery in time")
        .expect("event loop alive");
    assert_eq!(got.topic, "factory/line2/temperature");
    assert_eq!(&got.payload[..], b"21.5");
    // The non-matching publish must not arrive after it either.
    let extra = tokio::time::timeout(Duration::from_millis(300), incoming.recv()).await;
    assert!(
        extra.is_err(),
        "only the matching publish is delivered: {extra:?}"
    );
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips() {
    let hw = InProcess::start().await;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for codec in codecs {
        let producer = producer(&hw.kafka(), &[("compression.type", codec)]);
        // Compressible values: librdkafka sends a batch uncompressed when compressing would
        // not shrink it.
        let topic = format!("codec-{codec}");
        for i in 0..20 {
            send(&producer, &topic, "k", &value(codec, i)).await;
        }
    }
    for codec in codecs {
        let kafka = hw.kafka();
        let topic = format!("codec-{codec}");
        let records = tokio::task::spawn_blocking(move || {
            consume(&kafka, &topic, 1, 20, Duration::from_secs(20))
        })
        .await
        .unwrap();
        let values: Vec<String> = records.iter().map(Consumed::value_str).collect();
        let expected: Vec<String> = (0..20).map(|i| value(codec, i)).collect();
        assert_eq!(values, expected, "codec {codec}");
        // The batches are stored as produced, still compressed. (librdkafka uses LZ4 only
        // when the broker advertises FindCoordinator, which it now does.)
        let expected_codec = match codec {
            "gzip" => 1,
            "snappy" => 2,
            "lz4" => 3,
            "zstd" => 4,
            _ => continue,
        };
        let log = hw.broker.log();
        let topic = log.topic(&format!("codec-{codec}")).expect("topic exists");
        let stored = log.read(&topic.partitions[0], 0, 1 << 20).unwrap();
        assert!(!stored.is_empty());
        for batch in stored {
            let header = headwater::log::BatchHeader::parse(&batch.bytes).unwrap();
            assert_eq!(
                header.compression(),
                expected_codec,
                "codec {codec} stored as produced"
            );
        }
    }
    hw.broker.stop().await;
}

fn value(codec: &str, i: usize) -> String {
    format!("{codec}-{i}-{}", "sensor reading ".repeat(20))
}
