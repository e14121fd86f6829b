//! A minimal Kafka load generator for benchmarks: pre-encoded requests over one TCP stream,
//! one request in flight. librdkafka is the real client in the tests; here it would measure
//! itself (its threads and queues cost more CPU than the broker on a 2-core machine), so the
//! "one record per request" and "raw fetch" rows use this to load the broker and little else.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use headwater::log::BatchHeader;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PRODUCE_VERSION: i16 = 7;
const FETCH_VERSION: i16 = 11;

pub struct Wire {
    stream: TcpStream,
    correlation: i32,
}

fn frame<R: Request>(version: i16, correlation: i32, body: &R) -> Vec<u8> {
    let api = ApiKey::try_from(R::KEY).expect("known api key");
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("headwater-bench")));
    let mut payload = BytesMut::new();
    payload.put_i32(0);
    header
        .encode(&mut payload, api.request_header_version(version))
        .expect("encode header");
    body.encode(&mut payload, version).expect("encode body");
    let len = (payload.len() - 4) as i32;
    payload[..4].copy_from_slice(&len.to_be_bytes());
    payload.to_vec()
}

impl Wire {
    pub async fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Wire {
            stream,
            correlation: 0,
        }
    }

    async fn round_trip(&mut self, request: &[u8]) -> Bytes {
        self.stream.write_all(request).await.expect("write request");
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.expect("read length");
        let mut answer = BytesMut::zeroed(i32::from_be_bytes(len) as usize);
        self.stream
            .read_exact(&mut answer)
            .await
            .expect("read response");
        // Decoding splits the records off this buffer without copying them.
        answer.freeze()
    }

    /// Produces `records` (one v2 batch) with acks=all and returns its base offset.
    pub async fn produce(&mut self, topic: &str, records: Bytes) -> i64 {
        self.correlation += 1;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let bytes = frame(PRODUCE_VERSION, self.correlation, &request);
        let mut answer = self.round_trip(&bytes).await;
        ResponseHeader::decode(
            &mut answer,
            ApiKey::Produce.response_header_version(PRODUCE_VERSION),
        )
        .expect("response header");
        let response = ProduceResponse::decode(&mut answer, PRODUCE_VERSION).expect("produce");
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "produce refused");
        partition.base_offset
    }

    /// Fetches partition 0 of `topic` from `offset`; returns (records, next offset).
    pub async fn fetch(&mut self, topic: &str, offset: i64, max_bytes: i32) -> (u64, i64) {
        self.correlation += 1;
        let request = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]);
        let bytes = frame(FETCH_VERSION, self.correlation, &request);
        let mut answer = self.round_trip(&bytes).await;
        ResponseHeader::decode(
            &mut answer,
            ApiKey::Fetch.response_header_version(FETCH_VERSION),
        )
        .expect("response header");
        let response = FetchResponse::decode(&mut answer, FETCH_VERSION).expect("fetch");
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "fetch refused");
        count_records(partition.records.as_deref().unwrap_or_default(), offset)
    }
}

/// A server that answers every request frame at once with the same successful produce response:
/// no broker, no disk. What the clients reach against it is the floor this machine's loopback
/// TCP and scheduler set for a request/response protocol, measured with the very same clients.
/// It runs on its own two-worker runtime, as the broker does in its own process.
pub fn canned_produce_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                serve_canned(listener).await;
            })
    });
    rx.recv().expect("canned server address")
}

async fn serve_canned(listener: TcpListener) {
    let mut response = BytesMut::new();
    response.put_i32(0);
    ResponseHeader::default()
        .encode(
            &mut response,
            ApiKey::Produce.response_header_version(PRODUCE_VERSION),
        )
        .expect("encode header");
    ProduceResponse::default()
        .with_responses(vec![TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("floor")))
            .with_partition_responses(vec![PartitionProduceResponse::default()])])
        .encode(&mut response, PRODUCE_VERSION)
        .expect("encode response");
    let len = (response.len() - 4) as i32;
    response[..4].copy_from_slice(&len.to_be_bytes());
    let response = response.freeze();
    while let Ok((mut stream, _)) = listener.accept().await {
        let response = response.clone();
        tokio::spawn(async move {
            stream.set_nodelay(true).expect("nodelay");
            let mut request = Vec::new();
            loop {
                let mut len = [0u8; 4];
                if stream.read_exact(&mut len).await.is_err() {
                    return;
                }
                request.resize(i32::from_be_bytes(len) as usize, 0);
                if stream.read_exact(&mut request).await.is_err()
                    || stream.write_all(&response).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Walks the batch headers of a fetch answer: records at or after `from`, and the next offset.
/// A batch cut short by the size limit ends the walk, as it does in every Kafka client.
fn count_records(mut blob: &[u8], from: i64) -> (u64, i64) {
    let (mut records, mut next) = (0u64, from);
    while let Ok(header) = BatchHeader::parse(blob) {
        let len = header.batch_length as usize + 12;
        if blob.len() < len {
            break;
        }
        let last = header.base_offset + header.last_offset_delta as i64;
        records += (last - header.base_offset.max(from) + 1).max(0) as u64;
        next = last + 1;
        blob = &blob[len..];
    }
    (records, next)
}
