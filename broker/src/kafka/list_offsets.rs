//! ListOffsets (key 2): a partition's earliest or latest offset, or the first at a time.
//!
//! Versions 1–6 (v0, with its list of old-style offsets, is not decoded by `kafka-protocol`).
//! v7 adds the "max timestamp" query (-3), which the log cannot answer without scanning a
//! whole partition, so it is not advertised; librdkafka asks for up to v7 and uses 6.
//!
//! - `-1` (latest): the high watermark; `-2` (earliest): the log start offset.
//! - A timestamp: the first record at or after it. The log finds the first batch whose
//!   newest timestamp is late enough; that batch is decoded to find the exact record, as
//!   Kafka's time index does. No such record: offset and timestamp -1, as Kafka answers.
//! - Other negative values are queries added by later versions: UNSUPPORTED_VERSION.
//!
//! Topics are never created here; an unknown one is UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::bounds::{from, Schema, Ty};
use super::metadata::LEADER_EPOCH;
use super::{errors, KafkaContext};
use crate::log::{batch, BatchHeader, Log, LogError, PartitionHandle, TopicHandle};

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// ListOffsetsRequest (flexible from v6).
pub const SCHEMA: Schema = Schema {
    flexible_since: 6,
    fields: &[
        from(0, Ty::I32), // replica_id
        from(2, Ty::I8),  // isolation_level
        from(
            0,
            Ty::Structs(&[
                from(0, Ty::Str), // name
                from(
                    0,
                    Ty::Structs(&[
                        from(0, Ty::I32), // partition_index
                        from(4, Ty::I32), // current_leader_epoch
                        from(0, Ty::I64), // timestamp
                    ]),
                ),
            ]),
        ),
        from(10, Ty::I32), // timeout_ms
    ],
};

pub fn handle(
    ctx: &KafkaContext,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let log = ctx.log();
    let mut response = ListOffsetsResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let handle = log.topic(&topic.name);
            let mut out = ListOffsetsTopicResponse::default();
            out.partitions = topic
                .partitions
                .iter()
                .map(|p| answer(log, handle.as_deref(), p, version))
                .collect();
            out.name = topic.name;
            out
        })
        .collect();
    response
}

fn answer(
    log: &Log,
    topic: Option<&TopicHandle>,
    request: &ListOffsetsPartition,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let mut out = ListOffsetsPartitionResponse::default();
    out.partition_index = request.partition_index;
    let found = match topic.and_then(|t| t.partition(request.partition_index)) {
        None => Err(ResponseError::UnknownTopicOrPartition),
        Some(partition) => lookup(log, partition, request.timestamp),
    };
    match found {
        Ok((offset, timestamp)) => {
            out.offset = offset;
            out.timestamp = timestamp;
            if version >= 4 {
                out.leader_epoch = LEADER_EPOCH;
            }
        }
        Err(code) => {
            out.error_code = code.code();
            out.offset = -1;
            out.timestamp = -1;
        }
    }
    out
}

/// `(offset, timestamp)` for one query.
fn lookup(
    log: &Log,
    partition: &PartitionHandle,
    timestamp: i64,
) -> Result<(i64, i64), ResponseError> {
    match timestamp {
        LATEST => Ok((partition.high_watermark(), -1)),
        EARLIEST => Ok((partition.log_start(), -1)),
        t if t < 0 => Err(ResponseError::UnsupportedVersion),
        t => by_time(log, partition, t).map_err(|e| {
            tracing::warn!(topic = %partition.topic, partition = partition.index, timestamp = t, error = %e, "offset lookup by time failed");
            errors::log_error(&e)
        }),
    }
}

fn by_time(log: &Log, partition: &PartitionHandle, timestamp: i64) -> Result<(i64, i64), LogError> {
    let Some(base) = log.offset_for_timestamp(partition, timestamp)? else {
        return Ok((-1, -1));
    };
    let Some(stored) = log.read(partition, base, 1)?.into_iter().next() else {
        // Removed by retention in the meantime: the base offset is still the answer's lower
        // bound, and there is no record left to take a timestamp from.
        return Ok((base, -1));
    };
    // The batch's newest timestamp is late enough, so one of its records is. If the batch
    // cannot be decoded, its base offset and newest timestamp are still a correct answer, just
    // a coarser one.
    let coarse = (
        base,
        BatchHeader::parse(&stored.bytes).map_or(-1, |h| h.newest_timestamp()),
    );
    match batch::decode(&stored.bytes) {
        Ok(records) => Ok(records
            .iter()
            .find(|r| r.offset >= base && r.timestamp >= timestamp)
            .map_or(coarse, |r| (r.offset, r.timestamp))),
        Err(e) => {
            tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "could not decode a batch for a time lookup");
            Ok(coarse)
        }
    }
}
