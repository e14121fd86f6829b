//! Idempotent producers end to end: librdkafka with `enable.idempotence=true` delivers every
//! record once and in order; a retried batch after `kill -9` and a restart is still recognised
//! (producer state is durable with the data); a transactional producer fails clearly.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use headwater::log::{batch, NewRecord};
use headwater_tests::{ChildBroker, InProcess};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");
const RECORDS: usize = 6000;
const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_idempotent_producer_delivers_every_record_once_in_order() {
    let broker = InProcess::start().await;
    let bootstrap = broker.kafka();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("rdkafka admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(
                "idem",
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let producer = producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
            ("batch.num.messages", "50"),
        ],
    );
    // Everything is in flight at once, so librdkafka pipelines up to five requests per
    // partition and the broker's sequence checks see them back to back.
    let sends: Vec<_> = (0..RECORDS)
        .map(|i| {
            let partition = (i % PARTITIONS as usize) as i32;
            let value = format!("{partition}:{i}");
            producer
                .send_result(
                    FutureRecord::<(), _>::to("idem")
                        .partition(partition)
                        .payload(&value),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue failed: {e}"))
        })
        .collect();
    let mut acked: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for send in sends {
        let delivery = send
            .await
            .expect("delivery report")
            .unwrap_or_else(|(e, _)| panic!("idempotent produce failed: {e}"));
        acked
            .entry(delivery.partition)
            .or_default()
            .push(delivery.offset);
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    // librdkafka really ran as an idempotent producer: it took the broker's first id (0), so
    // the next one handed out is higher.
    let next = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let init: InitProducerIdResponse = Raw::connect(&bootstrap).call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default().with_transactional_id(None),
            );
            init.producer_id.0
        })
        .await
        .unwrap()
    };
    assert!(next > 0, "librdkafka did not ask for a producer id");
    for (partition, offsets) in &acked {
        let dense: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, &dense,
            "partition {partition}: acked offsets dense, in send order"
        );
    }

    let records = tokio::task::spawn_blocking(move || {
        consume(
            &bootstrap,
            "idem",
            PARTITIONS,
            RECORDS,
            Duration::from_secs(30),
        )
    })
    .await
    .unwrap();
    assert_eq!(records.len(), RECORDS, "every record arrived, none twice");
    let mut per_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for r in &records {
        let value = r.value_str();
        let (p, i) = value.split_once(':').expect("partition:index");
        assert_eq!(p.parse::<i32>().unwrap(), r.partition);
        per_partition
            .entry(r.partition)
            .or_default()
            .push(i.parse().unwrap());
    }
    for (partition, indexes) in per_partition {
        let expected: Vec<usize> = (0..RECORDS)
            .filter(|i| (i % PARTITIONS as usize) as i32 == partition)
            .collect();
        assert_eq!(
            indexes, expected,
            "partition {partition} in order, each once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_producer_fails_clearly() {
    let broker = InProcess::start().await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.kafka())
        .set("transactional.id", "headwater-txn")
        .create()
        .expect("rdkafka producer");
    let outcome =
        tokio::task::spawn_blocking(move || producer.init_transactions(Duration::from_secs(20)))
            .await
            .unwrap();
    let error = outcome.expect_err("transactions are not supported");
    let text = error.to_string();
    assert!(
        text.to_lowercase().contains("authorization"),
        "the client says why: {text}"
    );
}

/// A minimal blocking Kafka client: one request, one answer.
struct Raw {
    stream: TcpStream,
    correlation: i32,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }

    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        self.correlation += 1;
        let mut payload = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw")))
            .encode(&mut payload, api.request_header_version(version))
            .unwrap();
        body.encode(&mut payload, version).unwrap();
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        self.stream.write_all(&frame).unwrap();
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).unwrap();
        let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut answer).unwrap();
        let mut answer = Bytes::from(answer);
        let header =
            ResponseHeader::decode(&mut answer, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        Resp::decode(&mut answer, version).unwrap()
    }

    /// (error code, base offset) of one idempotent batch to `topic`/0.
    fn produce(&mut self, topic: &str, pid: i64, epoch: i16, seq: i32, count: i32) -> (i16, i64) {
        let records: Vec<NewRecord> = (0..count)
            .map(|i| NewRecord {
                // Now, not a fixed date: the default retention would delete old records.
                timestamp: now_ms(),
                key: None,
                value: Some(Bytes::from(format!("s{}", seq + i))),
                headers: vec![],
            })
            .collect();
        let producer = batch::Producer {
            id: pid,
            epoch,
            base_sequence: seq,
        };
        let batch = batch::encode_as(&records, producer, Compression::None).unwrap();
        let mut p = PartitionProduceData::default();
        p.index = 0;
        p.records = Some(batch);
        let mut t = TopicProduceData::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        t.partition_data = vec![p];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 10_000;
        request.topic_data = vec![t];
        let response: ProduceResponse = self.call(ApiKey::Produce, 9, &request);
        let p = &response.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let mut client = Raw::connect(&broker.kafka());
    let init: InitProducerIdResponse = client.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default().with_transactional_id(None),
    );
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert_eq!(client.produce("crash", pid, epoch, 0, 3), (0, 0));
    assert_eq!(client.produce("crash", pid, epoch, 3, 3), (0, 3));
    drop(client);
    broker.kill9();

    let broker = ChildBroker::spawn(BIN, &data, "");
    let mut client = Raw::connect(&broker.kafka());
    // The ack of the last batch was "lost": its retry is recognised, not written again.
    assert_eq!(client.produce("crash", pid, epoch, 3, 3), (0, 3));
    // A gap is still a gap, and the next batch in sequence goes on where it left off.
    assert_eq!(client.produce("crash", pid, epoch, 7, 1).0, 45);
    assert_eq!(client.produce("crash", pid, epoch, 6, 2), (0, 6));
    // The id counter survived too: a new producer gets a new id.
    let again: InitProducerIdResponse = client.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default().with_transactional_id(None),
    );
    assert!(again.producer_id.0 > pid, "ids are never reused");
    drop(client);
    let kafka = broker.kafka();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "crash", 1, 8, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let values: Vec<String> = records.iter().map(Consumed::value_str).collect();
    let expected: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    assert_eq!(values, expected);
    assert!(broker.terminate().success());
}

/// A topic with an ingest plugin stores the chain's output, re-encoded without the producer's
/// id; the producer's sequence range is claimed for it, so retries and gaps are still caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_an_ingest_plugin_are_not_written_twice() {
    let hw = InProcess::start_with(|c| {
        c.plugins.push(headwater::config::PluginSection {
            name: "pass".into(),
            module: headwater_tests::plugin_wasm("passthrough"),
            attach: headwater::config::Attach::Ingest,
            topics: vec!["plugged".into()],
            dead_letter_topic: "dead-letters".into(),
            config: BTreeMap::new(),
            max_memory_bytes: 16 * 1024 * 1024,
            timeout_ms: 1000,
            max_consecutive_failures: 10,
            instances: 1,
        })
    })
    .await;
    let kafka = hw.kafka();
    let answers = tokio::task::spawn_blocking(move || {
        let mut client = Raw::connect(&kafka);
        let init: InitProducerIdResponse = client.call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
        );
        let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
        [
            client.produce("plugged", pid, epoch, 0, 3),
            client.produce("plugged", pid, epoch, 0, 3),
            client.produce("plugged", pid, epoch, 5, 1),
            client.produce("plugged", pid, epoch, 3, 2),
        ]
    })
    .await
    .unwrap();
    assert_eq!(answers[0], (0, 0));
    assert_eq!(answers[1], (0, 0), "a retry gets its original offset");
    assert_eq!(answers[2].0, 45, "a gap is OUT_OF_ORDER_SEQUENCE_NUMBER");
    assert_eq!(answers[3], (0, 3));
    let kafka = hw.kafka();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "plugged", 1, 5, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let values: Vec<String> = records.iter().map(Consumed::value_str).collect();
    let expected: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    assert_eq!(values, expected);
}
