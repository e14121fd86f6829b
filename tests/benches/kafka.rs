//! Kafka side by side with raw LMDB (issue 3, item 9), in one run on one machine:
//! - durable produce with librdkafka (acks=all, batched) for 100 B and 1 KiB records, against raw
//!   heed appends of the same records at the commit size the broker really achieved (read from
//!   its `/metrics`: records / commits);
//! - 100 concurrent producers sending one record per request, against raw heed at commits of 100;
//! - consume with librdkafka and with a raw fetch loop, against a raw heed scan;
//! - produce-to-ack latency at a fixed moderate rate, against a bare fsync'd heed commit.
//!
//! Run: `cargo bench -p headwater-tests --bench kafka` (prints Markdown tables).
//! Scale with `HW_BENCH_SCALE` (default 1.0); `HW_KAFKA_BENCH=one` (or `produce`, `consume`,
//! `latency`, comma-separated) runs only those parts.

#[path = "support/commit_stats.rs"]
mod commit_stats;
#[path = "support/procfs.rs"]
mod procfs;
#[path = "support/scale.rs"]
mod scale;
use scale::scale;
#[path = "support/raw_heed.rs"]
mod raw_heed;
#[path = "support/wire.rs"]
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use headwater::log::{batch, BatchHeader, NewRecord};
use headwater_tests::ChildBroker;
use procfs::cpu_seconds;
use raw_heed::{quantile, RawLog};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer,
    ProducerContext,
};
use rdkafka::{Message, Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");

fn rate(records: u64, took: Duration) -> f64 {
    records as f64 / took.as_secs_f64()
}

/// One measured run: its rate, the records per commit the broker made meanwhile, and the CPU
/// the broker and this process (the clients) used, in cores.
struct Run {
    rate: f64,
    per_commit: f64,
    broker_cores: f64,
    client_cores: f64,
}

async fn measured<F: std::future::Future<Output = (u64, Duration)>>(
    broker: &ChildBroker,
    work: F,
) -> Run {
    let http = broker.addrs.http.expect("http listener");
    let pid = broker.pid().to_string();
    let before = commit_stats::read(http).await;
    let (b0, s0) = (cpu_seconds(&pid), cpu_seconds("self"));
    let (records, took) = work.await;
    let (b1, s1) = (cpu_seconds(&pid), cpu_seconds("self"));
    let done = commit_stats::read(http).await.since(before);
    let secs = took.as_secs_f64();
    Run {
        rate: rate(records, took),
        per_commit: done.records as f64 / done.commits.max(1) as f64,
        broker_cores: (b1 - b0) / secs,
        client_cores: (s1 - s0) / secs,
    }
}

fn producer_config(bootstrap: &str, linger_ms: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", linger_ms)
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "2000000");
    config
}

fn producer(bootstrap: &str, linger_ms: &str) -> FutureProducer {
    producer_config(bootstrap, linger_ms)
        .create()
        .expect("producer")
}

/// Counts delivery reports: the cheapest way to learn of acks from librdkafka (a future per
/// record costs the client more than the broker spends on it).
#[derive(Default)]
struct Acks {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.acked
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Produces `records` values with librdkafka (acks=all) and waits for every ack.
fn librdkafka_produce(
    bootstrap: &str,
    topic: &str,
    value: &[u8],
    records: usize,
) -> (u64, Duration) {
    let producer: BaseProducer<Acks> = producer_config(bootstrap, "5")
        .create_with_context(Acks::default())
        .expect("producer");
    let start = Instant::now();
    for _ in 0..records {
        let mut record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("librdkafka refused a record: {e}"),
            }
        }
    }
    let context = producer.context();
    while context.acked.load(Ordering::Relaxed) + context.failed.load(Ordering::Relaxed)
        < records as u64
    {
        producer.poll(Duration::from_millis(5));
    }
    assert_eq!(
        context.failed.load(Ordering::Relaxed),
        0,
        "every record acked"
    );
    (records as u64, start.elapsed())
}

fn one_record_batch(value: &[u8]) -> Bytes {
    batch::encode(&[NewRecord {
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::copy_from_slice(value)),
        headers: vec![],
    }])
    .expect("encode")
}

/// `producers` connections, each sending `per` one-record produce requests back to back.
async fn one_record_producers(
    kafka: SocketAddr,
    producers: usize,
    per: usize,
    value: &[u8],
) -> (u64, Duration) {
    let batch = one_record_batch(value);
    // Create the topic first so connections do not race to create it.
    wire::Wire::connect(kafka)
        .await
        .produce("one", batch.clone())
        .await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|_| {
            let batch = batch.clone();
            tokio::spawn(async move {
                let mut client = wire::Wire::connect(kafka).await;
                for _ in 0..per {
                    client.produce("one", batch.clone()).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("producer task");
    }
    ((producers * per) as u64, start.elapsed())
}

/// `connections` raw clients, each sending `per` produce requests of one `records`-record batch.
async fn raw_batch_producers(
    kafka: SocketAddr,
    connections: usize,
    per: usize,
    batch: Bytes,
) -> (u64, Duration) {
    let records = BatchHeader::parse(&batch).expect("batch").records_count as u64;
    wire::Wire::connect(kafka)
        .await
        .produce("batches", batch.clone())
        .await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let batch = batch.clone();
            tokio::spawn(async move {
                let mut client = wire::Wire::connect(kafka).await;
                for _ in 0..per {
                    client.produce("batches", batch.clone()).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("producer task");
    }
    ((connections * per) as u64 * records, start.elapsed())
}

fn librdkafka_consume(bootstrap: &str, topic: &str, records: u64) -> (u64, Duration) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "52428800")
        // librdkafka pauses a partition's fetching for fetch.queue.backoff.ms (1 s) once
        // queued.min.messages (100,000) are waiting in its queue: a client-side throttle that
        // would measure the pause, not the broker.
        .set("queued.min.messages", "2000000")
        .set("queued.max.messages.kbytes", "2000000")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    // The clock starts at the first record: connecting and finding the offset are not consuming.
    let mut start = None;
    let mut seen = 0u64;
    while seen < records {
        if let Some(message) = consumer.poll(Duration::from_secs(10)) {
            let message = message.expect("consume");
            std::hint::black_box(message.payload());
            start.get_or_insert_with(Instant::now);
            seen += 1;
        } else {
            panic!("librdkafka consumer stalled at {seen} of {records}");
        }
    }
    (seen, start.map(|s| s.elapsed()).unwrap_or_default())
}

async fn raw_consume(kafka: SocketAddr, topic: &str, records: u64) -> (u64, Duration) {
    let mut client = wire::Wire::connect(kafka).await;
    let start = Instant::now();
    let (mut seen, mut offset) = (0u64, 0i64);
    while seen < records {
        let (n, next) = client.fetch(topic, offset, 50 << 20).await;
        seen += n;
        offset = next;
    }
    (seen, start.elapsed())
}

/// Sends one record every `1 / per_second` with librdkafka (linger.ms=0) and returns each
/// record's send-to-ack time.
async fn librdkafka_latencies(
    bootstrap: &str,
    per_second: u64,
    records: usize,
    value: &[u8],
) -> Vec<Duration> {
    let producer = producer(bootstrap, "0");
    // Warm up the connection and metadata.
    let warm: FutureRecord<'_, (), [u8]> = FutureRecord::to("latency").payload(value);
    producer
        .send(warm, Duration::from_secs(10))
        .await
        .expect("warm-up");
    let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_second));
    let mut waiting = Vec::with_capacity(records);
    for _ in 0..records {
        ticks.tick().await;
        let sent = Instant::now();
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to("latency").payload(value);
        let ack = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .expect("queue");
        waiting.push(tokio::spawn(async move {
            ack.await.expect("delivery").expect("acked");
            sent.elapsed()
        }));
    }
    let mut out = Vec::with_capacity(records);
    for w in waiting {
        out.push(w.await.expect("latency task"));
    }
    out
}

/// The same with the raw client: one request in flight, sent on the tick.
async fn raw_latencies(
    kafka: SocketAddr,
    per_second: u64,
    records: usize,
    value: &[u8],
) -> Vec<Duration> {
    let batch = one_record_batch(value);
    let mut client = wire::Wire::connect(kafka).await;
    client.produce("latency-raw", batch.clone()).await;
    let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_second));
    let mut out = Vec::with_capacity(records);
    for _ in 0..records {
        ticks.tick().await;
        let sent = Instant::now();
        client.produce("latency-raw", batch.clone()).await;
        out.push(sent.elapsed());
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// [`librdkafka_produce`] on a blocking thread.
async fn blocking(bootstrap: &str, topic: &str, value: &[u8], records: usize) -> (u64, Duration) {
    let (bootstrap, topic, value) = (bootstrap.to_string(), topic.to_string(), value.to_vec());
    tokio::task::spawn_blocking(move || librdkafka_produce(&bootstrap, &topic, &value, records))
        .await
        .expect("producer thread")
}

/// Whether `HW_KAFKA_BENCH` (default: all) names `part`.
fn wanted(part: &str) -> bool {
    scale::wanted("HW_KAFKA_BENCH", part)
}

/// Runs `work` under [`measured`] when `part` is wanted.
async fn part<F: std::future::Future<Output = (u64, Duration)>>(
    broker: &ChildBroker,
    name: &str,
    work: F,
) -> Option<Run> {
    if wanted(name) {
        Some(measured(broker, work).await)
    } else {
        None
    }
}

#[tokio::main]
async fn main() {
    let small = vec![b'x'; 100];
    let large = vec![b'x'; 1024];
    let n_small = scale(1_000_000);
    let n_large = scale(300_000);
    let (producers, per_producer) = (100, scale(300));
    let (batch_connections, batches_each) = (4, scale(250));
    let (latency_rate, latency_records) = (1_000, scale(5_000));

    let dir = tempfile::tempdir().expect("tempdir");
    let broker = ChildBroker::spawn(BIN, &dir.path().join("data"), "");
    let kafka = broker.addrs.kafka.expect("kafka listener");
    let bootstrap = broker.kafka();

    // Consuming reads what the 100 B produce wrote, so `consume` runs it too.
    let produce_small = if wanted("produce") || wanted("consume") {
        Some(measured(&broker, blocking(&bootstrap, "p100", &small, n_small)).await)
    } else {
        None
    };
    let produce_large = part(
        &broker,
        "produce",
        blocking(&bootstrap, "p1k", &large, n_large),
    )
    .await;
    let thousand = batch::encode(
        &(0..1000)
            .map(|i| NewRecord {
                timestamp: 1_700_000_000_000 + i,
                key: None,
                value: Some(Bytes::from(small.clone())),
                headers: vec![],
            })
            .collect::<Vec<_>>(),
    )
    .expect("encode");
    let produce_batches = part(
        &broker,
        "produce",
        raw_batch_producers(kafka, batch_connections, batches_each, thousand),
    )
    .await;
    let produce_one = part(
        &broker,
        "one",
        one_record_producers(kafka, producers, per_producer, &small),
    )
    .await;
    let consume_rdkafka = {
        let bootstrap = bootstrap.clone();
        let n = n_small as u64;
        part(&broker, "consume", async move {
            tokio::task::spawn_blocking(move || librdkafka_consume(&bootstrap, "p100", n))
                .await
                .expect("consumer thread")
        })
        .await
    };
    let consume_raw = part(
        &broker,
        "consume",
        raw_consume(kafka, "p100", n_small as u64),
    )
    .await;
    let latencies = if wanted("latency") {
        let rdkafka = librdkafka_latencies(&bootstrap, latency_rate, latency_records, &small).await;
        let http = broker.addrs.http.expect("http listener");
        let before = commit_stats::read(http).await;
        let raw = raw_latencies(kafka, latency_rate, latency_records, &small).await;
        let commits = commit_stats::read(http).await.since(before);
        Some((rdkafka, raw, commits))
    } else {
        None
    };
    assert!(broker.terminate().success());

    // Raw heed after the broker is gone, so the two never share the disk or the CPUs.
    let raw = |value: &[u8], records: usize, per_commit: f64| {
        let per_commit = (per_commit.round() as usize).max(1);
        rate(
            records as u64,
            RawLog::open().append_records(value, records, per_commit),
        )
    };
    let pct = |a: f64, b: f64| format!("{:.0}%", 100.0 * a / b);
    println!("| measurement | records/s | records per commit | CPU cores: broker / clients | vs raw heed |");
    println!("|---|---:|---:|---:|---|");
    let baseline = |name: &str, rate: f64, per_commit: f64| {
        let per_commit = if per_commit.is_nan() {
            "-".to_string()
        } else {
            format!("{per_commit:.1}")
        };
        println!("| {name} | {rate:.0} | {per_commit} | - | baseline |");
    };
    let measured_row = |name: &str, run: &Run, versus: String| {
        let per_commit = if run.per_commit > 0.0 {
            format!("{:.1}", run.per_commit)
        } else {
            "-".to_string()
        };
        println!(
            "| {name} | {:.0} | {per_commit} | {:.2} / {:.2} | {versus} |",
            run.rate, run.broker_cores, run.client_cores
        );
    };
    if let (Some(small_run), Some(large_run), Some(batches)) =
        (&produce_small, &produce_large, &produce_batches)
    {
        baseline(
            "raw heed, 100 B records, commits of 10,000",
            raw(&small, n_small, 10_000.0),
            10_000.0,
        );
        let raw_small = raw(&small, n_small, small_run.per_commit);
        baseline(
            "raw heed, 100 B records, commits as the broker made them (librdkafka)",
            raw_small,
            small_run.per_commit,
        );
        measured_row(
            "Kafka produce, librdkafka acks=all, 100 B",
            small_run,
            pct(small_run.rate, raw_small),
        );
        let raw_large = raw(&large, n_large, large_run.per_commit);
        baseline(
            "raw heed, 1 KiB records, commits as the broker made them",
            raw_large,
            large_run.per_commit,
        );
        measured_row(
            "Kafka produce, librdkafka acks=all, 1 KiB",
            large_run,
            pct(large_run.rate, raw_large),
        );
        let raw_batches = raw(
            &small,
            batch_connections * batches_each * 1000,
            batches.per_commit,
        );
        baseline(
            "raw heed, 100 B records, commits as the broker made them (raw client)",
            raw_batches,
            batches.per_commit,
        );
        measured_row(
            &format!("Kafka produce, raw client, 1,000 x 100 B per request, {batch_connections} connections, acks=all"),
            batches,
            pct(batches.rate, raw_batches),
        );
    }
    if let Some(one) = &produce_one {
        let one_total = producers * per_producer;
        let raw_one_100 = raw(&small, one_total, 100.0);
        let raw_one_same = raw(&small, one_total, one.per_commit);
        let (answered, took) = one_record_producers(
            wire::canned_produce_server(),
            producers,
            per_producer,
            &small,
        )
        .await;
        let floor = rate(answered, took);
        println!(
            "| TCP floor: the same 100 producers answered at once by a canned response (no broker, no disk) | {floor:.0} | - | - | requests/s this machine's loopback allows |"
        );
        baseline(
            "raw heed, 100 B records, commits of 100",
            raw_one_100,
            100.0,
        );
        baseline(
            "raw heed, 100 B records, commits as the broker made them (100 producers)",
            raw_one_same,
            one.per_commit,
        );
        measured_row(
            "Kafka produce, 100 producers x 1 record per request, acks=all",
            one,
            format!(
                "{} of commits-of-100; {} at the same commit size; {} of the TCP floor",
                pct(one.rate, raw_one_100),
                pct(one.rate, raw_one_same),
                pct(one.rate, floor)
            ),
        );
    }
    if let (Some(librdkafka), Some(raw_fetch)) = (&consume_rdkafka, &consume_raw) {
        let raw_scan = {
            let mut raw = RawLog::open();
            raw.append_records(&small, n_small, 10_000);
            let (entries, took) = raw.scan();
            rate(entries, took)
        };
        baseline("raw heed scan, 100 B records", raw_scan, f64::NAN);
        measured_row(
            "Kafka consume, librdkafka, 100 B",
            librdkafka,
            pct(librdkafka.rate, raw_scan),
        );
        measured_row(
            "Kafka consume, raw fetch loop, 100 B",
            raw_fetch,
            pct(raw_fetch.rate, raw_scan),
        );
    }
    let Some((mut lat_rdkafka, mut lat_raw, raw_commits)) = latencies else {
        return;
    };
    let mut lat_heed = RawLog::open().commit_latencies(&small, latency_records);
    let mut lat_heed_paced =
        RawLog::open().paced_commit_latencies(&small, latency_records, latency_rate);
    let mut lat_floor = raw_latencies(
        wire::canned_produce_server(),
        latency_rate,
        latency_records,
        &small,
    )
    .await;
    println!();
    println!("| latency, {latency_rate} records/s, 100 B | p50 ms | p99 ms | p99 vs bare commit | p99 vs bare commit at the same pace |");
    println!("|---|---:|---:|---|---|");
    let heed_p99 = quantile(&mut lat_heed, 0.99);
    let paced_p99 = quantile(&mut lat_heed_paced, 0.99);
    for (name, samples) in [
        (
            "bare heed commit (fsync), 1 record, back to back",
            &mut lat_heed,
        ),
        (
            "bare heed commit (fsync), 1 record, at the same pace",
            &mut lat_heed_paced,
        ),
        (
            "Kafka produce-to-ack, librdkafka linger.ms=0",
            &mut lat_rdkafka,
        ),
        ("Kafka produce-to-ack, raw client", &mut lat_raw),
        (
            "TCP floor: raw client answered at once by a canned response",
            &mut lat_floor,
        ),
    ] {
        let p50 = quantile(samples, 0.5);
        let p99 = quantile(samples, 0.99);
        println!(
            "| {name} | {} | {} | {:.2}x | {:.2}x |",
            ms(p50),
            ms(p99),
            p99.as_secs_f64() / heed_p99.as_secs_f64(),
            p99.as_secs_f64() / paced_p99.as_secs_f64()
        );
    }
    // Where the raw client's time goes: the broker's own commits (LMDB commit with its fsync,
    // from `/metrics`) against the bare ones.
    let mean = |samples: &[Duration]| {
        samples.iter().sum::<Duration>().as_secs_f64() * 1e3 / samples.len().max(1) as f64
    };
    println!(
        "\nHeadwater's commits during the raw-client run: {} of {:.1} records, {:.3} ms each on average; bare commits {:.3} ms on average back to back, {:.3} ms at the same pace",
        raw_commits.commits,
        raw_commits.records as f64 / raw_commits.commits.max(1) as f64,
        1e3 * raw_commits.seconds / raw_commits.commits.max(1) as f64,
        mean(&lat_heed),
        mean(&lat_heed_paced)
    );
}
