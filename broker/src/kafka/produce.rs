//! Produce (key 0): validate each partition's batches and append them durably.
//!
//! Versions 3–9: v3 is the first with v2 record batches (and the oldest `kafka-protocol`
//! decodes); v9 is the first flexible one. v10–v12 only add leader-discovery hints (KIP-951)
//! and transaction-protocol markers (KIP-890) that mean nothing on one node without
//! transactions; librdkafka 2.12 asks for at most v10 and settles on 9.
//!
//! Batches are stored exactly as received, whatever their compression: `log::batch::split`
//! checks each header and CRC-32C, and the few header fields checked here are what the log and
//! its readers rely on. Kafka's rules for what a client may not send are kept:
//! - transactional batches: INVALID_TXN_STATE, Kafka's answer to a transactional write it has
//!   no ongoing transaction for (Headwater has no transaction coordinator yet);
//! - control batches: INVALID_RECORD, only a broker writes those.
//!
//! Idempotent batches (a producer id, from InitProducerId) are checked by the log's writer,
//! atomically with the append (`log::producers`): a retry of a batch already written is answered
//! with its original offsets and not written again; an older epoch is INVALID_PRODUCER_EPOCH and
//! a gap in the sequence OUT_OF_ORDER_SEQUENCE_NUMBER ([`sequence_error`]).
//! On a topic with ingest plugins the stored records are the chain's output, re-encoded without
//! the producer's id; the producer's sequence range is claimed for them instead, so retries and
//! gaps are caught there too.
//!
//! [`start`] queues the appends of every partition of a request with the log writer, in request
//! order; [`Started::finish`] waits until they are durable (they were queued together, so they
//! share commits) and builds the answer. A connection may start its next produce before the
//! previous one is finished (see `connection`), which is what lets one producer with several
//! requests in flight fill a group commit.
//! With `acks = 0` nothing is answered, and, as Kafka does, a failure closes the connection so
//! the producer notices and refreshes its metadata.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::bounds::{between, from, Schema, Ty};
use super::errors;
use super::KafkaContext;
use crate::ingest::Submitted;
use crate::log::batch::{self, HEADER_LEN};
use crate::log::producers::SequenceError;
use crate::log::BatchHeader;

/// ProduceRequest (flexible from v9).
pub const SCHEMA: Schema = Schema {
    flexible_since: 9,
    fields: &[
        from(3, Ty::Str), // transactional_id
        from(0, Ty::I16), // acks
        from(0, Ty::I32), // timeout_ms
        from(
            0,
            Ty::Structs(&[
                between(0, 12, Ty::Str),                                       // name
                from(13, Ty::Uuid),                                            // topic_id
                from(0, Ty::Structs(&[from(0, Ty::I32), from(0, Ty::Bytes)])), // index, records
            ]),
        ),
    ],
};

/// The smallest a v2 record can be: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
const MIN_RECORD_LEN: usize = 7;

/// What the connection does after a produce request.
pub enum Outcome {
    Respond(ProduceResponse),
    /// `acks = 0` and everything was stored.
    Silent,
    /// `acks = 0` and something failed: close the connection, as Kafka does.
    Close(String),
}

/// Why a partition's records were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ResponseError,
    pub message: String,
}

impl Refusal {
    fn new(code: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

pub async fn handle(ctx: &KafkaContext, request: ProduceRequest) -> Outcome {
    start(ctx, request).await.finish().await
}

/// A produce request whose appends are queued with the log writer.
pub struct Started {
    request: ProduceRequest,
    /// Per topic, per partition: the queued append or why it was refused up front.
    results: Vec<Vec<Result<Submitted, Refusal>>>,
}

/// Validates every partition's batches and queues their appends, in request order, without
/// waiting for them to be durable: a connection can queue its next request meanwhile and the
/// writer still applies them in order.
pub async fn start(ctx: &KafkaContext, request: ProduceRequest) -> Started {
    let acks = request.acks;
    let acks_valid = (-1..=1).contains(&acks);
    let mut results = Vec::with_capacity(request.topic_data.len());
    for topic in &request.topic_data {
        let mut row = Vec::with_capacity(topic.partition_data.len());
        for partition in &topic.partition_data {
            let checked = if acks_valid {
                validate(partition.records.clone())
            } else {
                Err(Refusal::new(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be 0, 1 or -1, not {acks}"),
                ))
            };
            row.push(match checked {
                Ok(batches) => Ok(ctx
                    .ingest
                    .submit_batches(topic.name.as_str(), partition.index, batches)
                    .await),
                Err(refusal) => Err(refusal),
            });
        }
        results.push(row);
    }
    Started { request, results }
}

impl Started {
    /// See [`Submitted::commit_in_background`].
    pub fn commit_in_background(&mut self) {
        for submitted in self.results.iter_mut().flatten().flatten() {
            submitted.commit_in_background();
        }
    }

    /// Waits until every queued append is durable (they were queued together, so they share
    /// commits) and builds the answer.
    pub async fn finish(self) -> Outcome {
        let Started { request, results } = self;
        let mut outcomes: Vec<Vec<Result<(i64, i64), Refusal>>> = Vec::with_capacity(results.len());
        for (topic, row) in request.topic_data.iter().zip(results) {
            let mut done = Vec::with_capacity(row.len());
            for (partition, submitted) in topic.partition_data.iter().zip(row) {
                done.push(match submitted {
                    Ok(submitted) => durable(submitted, topic.name.as_str(), partition.index).await,
                    Err(refusal) => Err(refusal),
                });
            }
            outcomes.push(done);
        }
        if request.acks == 0 {
            let failures: Vec<&str> = outcomes
                .iter()
                .flatten()
                .filter_map(|r| r.as_ref().err().map(|f| f.message.as_str()))
                .collect();
            return match failures.first() {
                None => Outcome::Silent,
                Some(first) => Outcome::Close(format!(
                    "acks=0 produce failed for {} partition(s): {first}",
                    failures.len()
                )),
            };
        }
        let mut response = ProduceResponse::default();
        response.responses = request
            .topic_data
            .into_iter()
            .zip(outcomes)
            .map(|(topic, row)| {
                let mut out = TopicProduceResponse::default();
                out.name = topic.name;
                out.partition_responses = topic
                    .partition_data
                    .iter()
                    .zip(row)
                    .map(|(p, result)| partition_response(p.index, result))
                    .collect();
                out
            })
            .collect();
        Outcome::Respond(response)
    }
}

/// (base offset, log start) of a durable append, or the refusal with its Kafka code.
async fn durable(submitted: Submitted, topic: &str, partition: i32) -> Result<(i64, i64), Refusal> {
    submitted
        .outcome()
        .await
        .map(|a| (a.base_offset, a.log_start))
        .map_err(|e| {
            let code = errors::ingest_error(&e);
            if errors::is_server_side(code) {
                tracing::warn!(topic, partition, error = %e, "produce failed");
            }
            Refusal::new(code, e.to_string())
        })
}

fn partition_response(index: i32, result: Result<(i64, i64), Refusal>) -> PartitionProduceResponse {
    let mut out = PartitionProduceResponse::default();
    out.index = index;
    out.log_append_time_ms = -1;
    match result {
        Ok((base_offset, log_start)) => {
            out.base_offset = base_offset;
            out.log_start_offset = log_start;
        }
        Err(refusal) => {
            out.error_code = refusal.code.code();
            out.base_offset = -1;
            out.log_start_offset = -1;
            out.error_message = Some(StrBytes::from_string(refusal.message));
        }
    }
    out
}

/// The Kafka error for an idempotent batch the log refused, as Apache Kafka answers it.
pub fn sequence_error(reason: &SequenceError) -> ResponseError {
    match reason {
        // Kafka 2.7+ (KIP-588) answers a Produce from an older epoch with INVALID_PRODUCER_EPOCH
        // rather than the fatal PRODUCER_FENCED, which is kept for the transaction APIs.
        SequenceError::StaleEpoch { .. } => ResponseError::InvalidProducerEpoch,
        SequenceError::NewEpochNotAtZero { .. } | SequenceError::OutOfOrder { .. } => {
            ResponseError::OutOfOrderSequenceNumber
        }
        // Kafka's LogValidator refuses a negative sequence with a producer id as INVALID_RECORD;
        // a request mixing retries with new batches, or several producers, is malformed alike.
        SequenceError::Invalid { .. }
        | SequenceError::MixedDuplicates
        | SequenceError::Scattered => ResponseError::InvalidRecord,
    }
}

/// Splits and checks one partition's records; pure, so it is tested without a log.
pub fn validate(records: Option<Bytes>) -> Result<Vec<(BatchHeader, Bytes)>, Refusal> {
    let records = records.unwrap_or_default();
    if records.is_empty() {
        return Err(Refusal::new(
            ResponseError::InvalidRecord,
            "a produce request must carry at least one record batch per partition",
        ));
    }
    let batches = batch::split(records)
        .map_err(|e| Refusal::new(ResponseError::CorruptMessage, e.to_string()))?;
    // Kafka's rule for v3+ (every version served here). It also keeps an idempotent request to
    // one sequence check per partition, however small its batches.
    if batches.len() != 1 {
        return Err(Refusal::new(
            ResponseError::InvalidRecord,
            format!(
                "a produce request carries exactly one record batch per partition, not {}",
                batches.len()
            ),
        ));
    }
    for (header, _) in &batches {
        check_header(header)?;
    }
    Ok(batches)
}

fn check_header(h: &BatchHeader) -> Result<(), Refusal> {
    if h.is_control() {
        return Err(Refusal::new(
            ResponseError::InvalidRecord,
            "control batches are written by the broker, not by producers",
        ));
    }
    if h.is_transactional() {
        return Err(Refusal::new(
            ResponseError::InvalidTxnState,
            "transactions are not supported by Headwater yet",
        ));
    }
    // The log assigns `last_offset_delta + 1` offsets and readers size their buffers from
    // `records_count`, so the two must agree, as they do in every producer's batches.
    if i64::from(h.records_count) != i64::from(h.last_offset_delta) + 1 {
        return Err(Refusal::new(
            ResponseError::CorruptMessage,
            format!(
                "batch claims {} records but a last offset delta of {}",
                h.records_count, h.last_offset_delta
            ),
        ));
    }
    let body = h.total_len().saturating_sub(HEADER_LEN);
    if h.compression() == 0 && h.records_count as usize > body / MIN_RECORD_LEN {
        return Err(Refusal::new(
            ResponseError::CorruptMessage,
            format!(
                "batch claims {} records in {} bytes of uncompressed records",
                h.records_count, body
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(transactional: bool, producer_id: i64, compression: Compression) -> Bytes {
        let record = Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: if producer_id >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: if producer_id >= 0 { 0 } else { -1 },
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from_static(b"hello")),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &[record], &options).unwrap();
        buf.freeze()
    }

    fn code(records: Bytes) -> Option<ResponseError> {
        validate(Some(records)).err().map(|r| r.code)
    }

    #[test]
    fn plain_and_compressed_batches_pass_unchanged() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = batch(false, -1, compression);
            let batches = validate(Some(bytes.clone())).unwrap();
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].1, bytes, "stored as received");
        }
    }

    #[test]
    fn refusals_use_kafka_codes() {
        assert_eq!(code(Bytes::new()), Some(ResponseError::InvalidRecord));
        assert_eq!(
            validate(None).unwrap_err().code,
            ResponseError::InvalidRecord
        );
        assert_eq!(
            code(batch(true, 7, Compression::None)),
            Some(ResponseError::InvalidTxnState)
        );
        // Idempotent batches pass; the log checks their sequences.
        assert_eq!(code(batch(false, 7, Compression::None)), None);
        // Two batches for one partition: Kafka refuses those from v3 on.
        let one = batch(false, 7, Compression::None);
        let two = Bytes::from([one.as_ref(), one.as_ref()].concat());
        assert_eq!(code(two), Some(ResponseError::InvalidRecord));
        let mut corrupt = batch(false, -1, Compression::None).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert_eq!(
            code(Bytes::from(corrupt)),
            Some(ResponseError::CorruptMessage)
        );
    }

    #[test]
    fn record_count_must_match_the_offsets_it_takes() {
        let mut bytes = batch(false, -1, Compression::None).to_vec();
        // records_count at offset 57: claim a huge count, then fix the CRC so only this
        // check can catch it.
        bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            code(Bytes::from(bytes.clone())),
            Some(ResponseError::CorruptMessage)
        );
        // Consistent but impossible for the uncompressed size.
        bytes[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let refusal = validate(Some(Bytes::from(bytes))).unwrap_err();
        assert_eq!(refusal.code, ResponseError::CorruptMessage);
        assert!(
            refusal.message.contains("uncompressed"),
            "{}",
            refusal.message
        );
    }
}
