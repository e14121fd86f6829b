//! The listener end to end: `run` on 127.0.0.1:0 over a real log in a temporary directory,
//! driven by `kafka-protocol` requests over plain TCP streams. This file is the harness;
//! [`apis`] covers each API's behaviour, [`connections`] framing, ordering, limits and
//! shutdown, and [`fixtures`] requests captured from real clients.

mod admin;
mod apis;
mod connections;
mod fixtures;
mod groups;
mod idempotence;
mod roundtrip;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{run, KafkaContext};
use crate::config::KafkaSection;
use crate::ingest::Ingest;
use crate::log::{batch, Log, LogOptions, NewRecord};
use crate::plugin::IngestPlugins;

const PATIENCE: Duration = Duration::from_secs(10);

struct Broker {
    addr: SocketAddr,
    log: Log,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(mut section: KafkaSection) -> Broker {
    // Groups form at once: the initial rebalance delay would only slow these tests down.
    section.groups.initial_rebalance_delay_ms = 0;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&LogOptions::for_tests(dir.path(), 64 * 1024 * 1024)).unwrap();
    let ingest = Ingest::new(log.clone(), Arc::new(IngestPlugins::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let ctx = KafkaContext::new(ingest, &section).unwrap();
    let task = tokio::spawn(run(listener, ctx, shutdown.clone()));
    Broker {
        addr,
        log,
        shutdown,
        task,
        _dir: dir,
    }
}

async fn broker() -> Broker {
    start(KafkaSection::default()).await
}

struct Client {
    stream: TcpStream,
    next_id: i32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_id: 1,
        }
    }

    async fn send<R: Request>(&mut self, version: i16, body: &R) -> i32 {
        let api = ApiKey::try_from(R::KEY).unwrap();
        let id = self.next_id;
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("headwater-test")));
        let mut payload = BytesMut::new();
        header
            .encode(&mut payload, api.request_header_version(version))
            .unwrap();
        body.encode(&mut payload, version).unwrap();
        self.send_raw(&payload).await;
        id
    }

    async fn send_raw(&mut self, payload: &[u8]) {
        let mut framed = BytesMut::new();
        framed.put_i32(payload.len() as i32);
        framed.extend_from_slice(payload);
        self.stream.write_all(&framed).await.unwrap();
    }

    /// The next response frame, or `None` if the broker closed the connection.
    async fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(PATIENCE, self.stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => panic!("no response within {PATIENCE:?}"),
        }
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    async fn recv<R: Request>(&mut self, version: i16, id: i32) -> R::Response {
        let api = ApiKey::try_from(R::KEY).unwrap();
        let mut frame = self.read_frame().await.expect("connection closed");
        let header =
            ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, id, "responses come back in order");
        R::Response::decode(&mut frame, version).unwrap()
    }

    async fn call<R: Request>(&mut self, version: i16, body: &R) -> R::Response {
        let id = self.send(version, body).await;
        self.recv::<R>(version, id).await
    }

    /// True if the broker closed the connection (without sending anything more).
    async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(PATIENCE, self.stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => panic!("connection neither answered nor closed within {PATIENCE:?}"),
        }
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn records(values: &[&str], timestamp: i64) -> Bytes {
    let records: Vec<NewRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| NewRecord {
            timestamp: timestamp + i as i64,
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: vec![],
        })
        .collect();
    batch::encode(&records).unwrap()
}

fn produce_request(topic: &str, partition: i32, acks: i16, batch: Bytes) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = partition;
    p.records = Some(batch);
    let mut t = TopicProduceData::default();
    t.name = name(topic);
    t.partition_data = vec![p];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 5000;
    request.topic_data = vec![t];
    request
}

fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = partition;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = name(topic);
    t.partitions = vec![p];
    let mut request = FetchRequest::default();
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = 50 << 20;
    request.topics = vec![t];
    request
}

fn list_offsets_request(topic: &str, timestamp: i64) -> ListOffsetsRequest {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = (-1).into();
    request.topics = vec![t];
    request
}

fn values(records: &Bytes) -> Vec<(i64, String)> {
    batch::decode(records)
        .unwrap()
        .into_iter()
        .map(|r| {
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            (r.offset, value)
        })
        .collect()
}
