//! First numbers, measured side by side in one run on one machine:
//! - log append (Headwater's writer thread, fsync'd group commits) against raw heed appends of
//!   the same batch bytes at the same commit size;
//! - end-to-end Kafka produce (librdkafka, acks=all) and MQTT QoS 1 publish (rumqttc) against a
//!   broker child process;
//! - idle RSS of the broker process.
//!
//! Run: `cargo bench -p headwater-tests --bench throughput` (prints a Markdown table).
//! Scale with `HW_BENCH_SCALE` (default 1.0).

#[path = "support/bench_log.rs"]
mod bench_log;
#[path = "support/procfs.rs"]
mod procfs;
#[path = "support/scale.rs"]
#[allow(dead_code)] // the part selector is for the larger benches
mod scale;
use scale::scale;

use std::time::{Duration, Instant};

use bytes::Bytes;
use headwater::log::{batch, BatchHeader, NewRecord, TopicConfig};
use headwater_tests::ChildBroker;
use raw_heed::RawLog;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[path = "support/raw_heed.rs"]
mod raw_heed;

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");
const RECORD_BYTES: usize = 100;

struct Row {
    name: String,
    records_per_s: f64,
    mb_per_s: f64,
    note: String,
}

fn row(name: &str, records: usize, bytes: usize, elapsed: Duration, note: String) -> Row {
    let s = elapsed.as_secs_f64();
    Row {
        name: name.to_string(),
        records_per_s: records as f64 / s,
        mb_per_s: bytes as f64 / s / 1e6,
        note,
    }
}

fn sample_batch(records: usize) -> Bytes {
    let recs: Vec<NewRecord> = (0..records)
        .map(|i| NewRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::from(vec![b'x'; RECORD_BYTES])),
            headers: vec![],
        })
        .collect();
    batch::encode(&recs).expect("encode")
}

/// Headwater's log: `appenders` tasks each appending `commits / appenders` batches.
async fn log_append(batch: &Bytes, commits: usize, appenders: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let log = bench_log::open_fsync(dir.path());
    let topic = log
        .create_topic("bench", 1, TopicConfig::default())
        .await
        .unwrap();
    let partition = topic.partitions[0].clone();
    let header = BatchHeader::parse(batch).unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let log = log.clone();
        let partition = partition.clone();
        let batch = batch.clone();
        let per = commits / appenders;
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                log.append_batches(&partition, vec![(header, batch.clone())])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    drop(partition);
    drop(topic);
    log.close().await;
    elapsed
}

async fn kafka_produce(bootstrap: &str, records: usize) -> Duration {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let payload = vec![b'x'; RECORD_BYTES];
    let start = Instant::now();
    let mut futures = Vec::with_capacity(records);
    for _ in 0..records {
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to("bench-kafka").payload(&payload);
        futures.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for f in futures {
        f.await.unwrap().unwrap();
    }
    start.elapsed()
}

/// `publishers` rumqttc clients each publishing `per` QoS 1 messages; time until every PUBACK.
async fn mqtt_publish(addr: std::net::SocketAddr, publishers: usize, per: usize) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..publishers {
        tasks.push(tokio::spawn(async move {
            let mut options =
                MqttOptions::new(format!("bench-{p}"), addr.ip().to_string(), addr.port());
            options.set_inflight(100);
            options.set_keep_alive(Duration::from_secs(30));
            let (client, mut eventloop) = AsyncClient::new(options, 1000);
            let sender = tokio::spawn(async move {
                let payload = vec![b'x'; RECORD_BYTES];
                for _ in 0..per {
                    client
                        .publish(
                            format!("bench/{p}"),
                            QoS::AtLeastOnce,
                            false,
                            payload.clone(),
                        )
                        .await
                        .unwrap();
                }
                client
            });
            let mut acked = 0;
            while acked < per {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) => panic!("mqtt bench client failed: {e}"),
                }
            }
            drop(sender.await);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();
    let per_batch = 1000;
    let batch = sample_batch(per_batch);
    let commits = scale(300);
    let records = commits * per_batch;
    let bytes = commits * batch.len();

    let raw = RawLog::open().append_batches(&batch, commits);
    rows.push(row(
        "raw heed put+commit (fsync), 1000-record batch per commit",
        records,
        bytes,
        raw,
        "baseline".into(),
    ));
    let one = log_append(&batch, commits, 1).await;
    rows.push(row(
        "Headwater log append, 1 appender, 1000-record batches",
        records,
        bytes,
        one,
        format!(
            "{:.0}% of raw heed",
            100.0 * raw.as_secs_f64() / one.as_secs_f64()
        ),
    ));
    let many = log_append(&batch, commits, 8).await;
    rows.push(row(
        "Headwater log append, 8 concurrent appenders (group commit)",
        records,
        bytes,
        many,
        format!(
            "{:.0}% of raw heed",
            100.0 * raw.as_secs_f64() / many.as_secs_f64()
        ),
    ));
    let small = sample_batch(1);
    let small_commits = scale(300);
    let raw_small = RawLog::open().append_batches(&small, small_commits);
    rows.push(row(
        "raw heed put+commit (fsync), 1 record per commit",
        small_commits,
        small_commits * small.len(),
        raw_small,
        "baseline".into(),
    ));
    let grouped = log_append(&small, scale(3000), 100).await;
    rows.push(row(
        "Headwater log append, 100 appenders x 1 record (group commit)",
        scale(3000),
        scale(3000) * small.len(),
        grouped,
        format!(
            "{:.1}x raw heed at 1 record/commit",
            (scale(3000) as f64 / grouped.as_secs_f64())
                / (small_commits as f64 / raw_small.as_secs_f64())
        ),
    ));

    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::spawn(BIN, &dir.path().join("data"), "");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = procfs::rss_kib(broker.pid());

    let kafka_records = scale(200_000);
    let kafka = kafka_produce(&broker.kafka(), kafka_records).await;
    rows.push(row(
        "Kafka produce, librdkafka, acks=all, 100 B records",
        kafka_records,
        kafka_records * RECORD_BYTES,
        kafka,
        "end to end, broker in a child process".into(),
    ));
    let mqtt_addr = broker.addrs.mqtt.unwrap();
    let per = scale(20_000);
    let one_pub = mqtt_publish(mqtt_addr, 1, per).await;
    rows.push(row(
        "MQTT QoS 1 publish, 1 rumqttc publisher, in-flight 100",
        per,
        per * RECORD_BYTES,
        one_pub,
        "PUBACK after durable append".into(),
    ));
    let per10 = scale(5_000);
    let ten_pub = mqtt_publish(mqtt_addr, 10, per10).await;
    rows.push(row(
        "MQTT QoS 1 publish, 10 rumqttc publishers, in-flight 100 each",
        per10 * 10,
        per10 * 10 * RECORD_BYTES,
        ten_pub,
        "PUBACK after durable append".into(),
    ));
    let busy_rss = procfs::rss_kib(broker.pid());
    assert!(broker.terminate().success());

    println!("| measurement | records/s | MB/s | note |");
    println!("|---|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.1} | {} |",
            r.name, r.records_per_s, r.mb_per_s, r.note
        );
    }
    println!();
    println!("| broker RSS | KiB |");
    println!("|---|---:|");
    println!("| idle, just started | {idle_rss} |");
    println!("| after the runs above | {busy_rss} |");
}
