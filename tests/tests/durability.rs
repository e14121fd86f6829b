//! Acked means durable: data survives a clean restart and `kill -9`, checked with librdkafka.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use headwater_tests::ChildBroker;

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_restart_keeps_data_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let p = producer(&broker.kafka(), &[]);
    for i in 0..10 {
        send(&p, "keep", "k", &format!("v{i}")).await;
    }
    drop(p);
    let status = broker.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");

    let broker = ChildBroker::spawn(BIN, &data, "");
    let p = producer(&broker.kafka(), &[]);
    let (_, offset) = send(&p, "keep", "k", "after-restart").await;
    assert_eq!(offset, 10, "offsets continue after a restart");
    let kafka = broker.kafka();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "keep", 1, 11, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let values: Vec<String> = records.iter().map(Consumed::value_str).collect();
    let mut expected: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    expected.push("after-restart".into());
    assert_eq!(values, expected);
    assert!(broker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acked_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let p = producer(
        &broker.kafka(),
        &[("message.timeout.ms", "3000"), ("retries", "0")],
    );
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    // The producer keeps going, 200 records in flight at a time, until the broker dies under it;
    // every record whose ack arrived is remembered.
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut next = 0u64;
            loop {
                let mut wave = Vec::new();
                for _ in 0..200 {
                    let value = format!("r{next}");
                    next += 1;
                    let record = rdkafka::producer::FutureRecord::to("crash")
                        .key("k")
                        .payload(&value);
                    match p.send_result(record) {
                        Ok(f) => wave.push((value.clone(), f)),
                        Err((e, _)) => panic!("enqueue failed: {e}"),
                    }
                }
                let mut failed = false;
                for (value, f) in wave {
                    match f.await {
                        Ok(Ok(_)) => acked.lock().unwrap().push(value),
                        _ => failed = true,
                    }
                }
                if failed {
                    return next;
                }
            }
        })
    };
    let seen = headwater_tests::eventually(Duration::from_secs(60), || {
        let n = acked.lock().unwrap().len();
        (n >= 2000).then_some(n)
    })
    .await;
    assert!(
        seen.is_some(),
        "the broker acked 2000 records before the kill"
    );
    broker.kill9();
    let sent = writer.await.unwrap();
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!((acked.len() as u64) < sent, "the kill happened mid-stream");

    let broker = ChildBroker::spawn(BIN, &data, "");
    let kafka = broker.kafka();
    let want = acked.len();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "crash", 1, want, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let stored: HashSet<String> = records.iter().map(Consumed::value_str).collect();
    let lost: Vec<&String> = acked.iter().filter(|v| !stored.contains(*v)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acked records lost after kill -9, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // Offsets stay dense after recovery.
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
    }
}
