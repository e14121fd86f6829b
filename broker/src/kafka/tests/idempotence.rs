//! Idempotent producers over a real connection: InitProducerId, then produce, retry, gap and
//! fenced epoch, answered with Kafka's codes.

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, TransactionalId,
};
use kafka_protocol::records::Compression;

use super::*;

/// A batch of producer `pid`/`epoch` holding `count` records from sequence `seq`.
fn idempotent(pid: i64, epoch: i16, seq: i32, count: i32) -> Bytes {
    let records: Vec<NewRecord> = (0..count)
        .map(|i| NewRecord {
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("r{}", seq + i))),
            headers: vec![],
        })
        .collect();
    let producer = batch::Producer {
        id: pid,
        epoch,
        base_sequence: seq,
    };
    batch::encode_as(&records, producer, Compression::None).unwrap()
}

/// (error code, base offset) of producing `batch` to `idem`/0.
async fn produce(client: &mut Client, batch: Bytes) -> (i16, i64) {
    let response = client.call(9, &produce_request("idem", 0, -1, batch)).await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test]
async fn retries_are_deduplicated_and_sequence_errors_use_kafka_codes() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    let init = client
        .call(
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0);

    assert_eq!(
        produce(&mut client, idempotent(pid, epoch, 0, 3)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, idempotent(pid, epoch, 3, 2)).await,
        (0, 3)
    );
    // A retry: success with the original offset, nothing written twice.
    assert_eq!(
        produce(&mut client, idempotent(pid, epoch, 0, 3)).await,
        (0, 0)
    );
    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    assert_eq!(
        produce(&mut client, idempotent(pid, epoch, 9, 1)).await.0,
        45
    );

    // A newer epoch (the client's own bump) starts at sequence 0 and fences the old one with
    // INVALID_PRODUCER_EPOCH (47).
    assert_eq!(
        produce(&mut client, idempotent(pid, epoch + 1, 0, 1)).await,
        (0, 5)
    );
    assert_eq!(
        produce(&mut client, idempotent(pid, epoch, 5, 1)).await.0,
        47
    );
    // KIP-360: presenting the id it holds gets the producer a fresh id, as in Kafka.
    let mut renew = InitProducerIdRequest::default().with_transactional_id(None);
    renew.producer_id = ProducerId(pid);
    renew.producer_epoch = epoch + 1;
    let renewed = client.call(4, &renew).await;
    assert_eq!(renewed.error_code, 0);
    assert!(renewed.producer_id.0 > pid);
    assert_eq!(renewed.producer_epoch, 0);

    let fetched = client.call(11, &fetch_request("idem", 0, 0, 0)).await;
    let records = fetched.responses[0].partitions[0].records.clone().unwrap();
    let got: Vec<String> = values(&records).into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, ["r0", "r1", "r2", "r3", "r4", "r0"]);

    // Transactions are refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53).
    for version in [0, 2, 4, 5] {
        let txn = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn-app"))));
        let refused = client.call(version, &txn).await;
        assert_eq!(refused.error_code, 53, "v{version}");
    }
}

/// Requests captured (through a logging TCP proxy) from idempotent producers writing to
/// Headwater: confluent-kafka 2.16.1 on librdkafka 2.16.0 (`enable.idempotence=true`) and
/// kafka-python 3.0.12 (idempotent by default). Each is a frame body without its length.
const REAL_CLIENTS: &[(&str, &[u8])] = &[
    (
        "librdkafka-2.16.0-init_producer_id-v4",
        include_bytes!("fixtures/librdkafka-2.16.0-init_producer_id-v4.bin"),
    ),
    (
        "librdkafka-2.16.0-produce-idempotent-v9",
        include_bytes!("fixtures/librdkafka-2.16.0-produce-idempotent-v9.bin"),
    ),
    (
        "kafka-python-3.0.12-init_producer_id-v4",
        include_bytes!("fixtures/kafka-python-3.0.12-init_producer_id-v4.bin"),
    ),
    (
        "kafka-python-3.0.12-produce-idempotent-v9",
        include_bytes!("fixtures/kafka-python-3.0.12-produce-idempotent-v9.bin"),
    ),
];

#[tokio::test]
async fn real_clients_idempotent_requests_are_answered_and_replays_deduplicated() {
    use crate::kafka::request::{self, Body};
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    let mut next_offset = 0;
    for (name, bytes) in REAL_CLIENTS {
        let decoded =
            request::decode(Bytes::from_static(bytes)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(name.ends_with(&format!("-v{}", decoded.version)), "{name}");
        let header_version = decoded.api.response_header_version(decoded.version);
        match decoded.body {
            Body::InitProducerId(init) => {
                assert!(init.transactional_id.is_none(), "{name}");
                client.send_raw(bytes).await;
                let mut frame = client.read_frame().await.unwrap();
                ResponseHeader::decode(&mut frame, header_version).unwrap();
                let r = InitProducerIdResponse::decode(&mut frame, decoded.version).unwrap();
                assert_eq!(r.error_code, 0, "{name}");
                assert!(r.producer_id.0 >= 0, "{name}");
            }
            Body::Produce(produce) => {
                let records = produce.topic_data[0].partition_data[0].records.clone();
                let batches = crate::kafka::produce::validate(records).unwrap();
                assert!(batches[0].0.producer_id >= 0, "{name}: an idempotent batch");
                // Sent, then replayed as a retry would be: one write, the same offset twice.
                for attempt in 0..2 {
                    client.send_raw(bytes).await;
                    let mut frame = client.read_frame().await.unwrap();
                    ResponseHeader::decode(&mut frame, header_version).unwrap();
                    let r = ProduceResponse::decode(&mut frame, decoded.version).unwrap();
                    let p = &r.responses[0].partition_responses[0];
                    assert_eq!(p.error_code, 0, "{name} #{attempt}: {:?}", p.error_message);
                    assert_eq!(p.base_offset, next_offset, "{name} #{attempt}");
                }
                next_offset += 1;
            }
            _ => panic!("{name}: unexpected request"),
        }
    }
    let topic = broker.log.topic("cap").unwrap();
    assert_eq!(topic.partitions[0].high_watermark(), next_offset);
}
