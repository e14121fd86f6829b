//! Store-and-forward to an upstream Kafka-protocol endpoint (a second Headwater), across an
//! upstream outage: records produced while it is down wait in the edge's log and arrive, in
//! order, without gaps or duplicates, when it returns.

mod common;

use std::time::Duration;

use common::*;
use headwater::config::UpstreamSection;
use headwater_tests::{ChildBroker, InProcess};

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");

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
        c.upstream = Some(UpstreamSection {
            bootstrap: central_kafka.clone(),
            topics: vec!["sensors".into()],
            retry_backoff_ms: 100,
            max_batch_bytes: 64 * 1024,
            request_timeout_ms: 2000,
        });
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
