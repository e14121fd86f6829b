//! OffsetForLeaderEpoch (key 23): where a leader epoch ends (KIP-320 position validation).
//!
//! Versions 2–4. Every partition has had one leader, this node, with epoch 0 forever, so
//! epoch 0 ends at the high watermark. A client that asks about epoch 0 (the epoch Metadata
//! and Fetch report) hears "epoch 0 ends at the high watermark" and keeps its position. A
//! newer epoch than 0 as the current epoch is UNKNOWN_LEADER_EPOCH, as Kafka answers a
//! client ahead of it; an epoch we never had is answered with -1/-1 (UNDEFINED), as Kafka
//! does for epochs before its first.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::kafka::bounds::{from, Schema, Ty};
use crate::kafka::metadata::LEADER_EPOCH;
use crate::log::Log;

/// OffsetForLeaderEpochRequest (flexible from v4).
pub const SCHEMA: Schema = Schema {
    flexible_since: 4,
    fields: &[
        from(3, Ty::I32), // replica_id
        from(
            0,
            Ty::Structs(&[
                from(0, Ty::Str), // topic
                from(
                    0,
                    Ty::Structs(&[
                        from(0, Ty::I32), // partition
                        from(2, Ty::I32), // current_leader_epoch
                        from(0, Ty::I32), // leader_epoch
                    ]),
                ),
            ]),
        ), // topics
    ],
};

pub fn handle(log: &Log, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let handle = log.topic(&topic.topic);
            let mut out = OffsetForLeaderTopicResult::default();
            out.partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut r = EpochEndOffset::default();
                    r.partition = p.partition;
                    r.leader_epoch = -1;
                    r.end_offset = -1;
                    let partition = handle.as_ref().and_then(|h| h.partition(p.partition));
                    match partition {
                        None => r.error_code = ResponseError::UnknownTopicOrPartition.code(),
                        Some(_) if p.current_leader_epoch > LEADER_EPOCH => {
                            r.error_code = ResponseError::UnknownLeaderEpoch.code()
                        }
                        Some(part) if p.leader_epoch == LEADER_EPOCH => {
                            r.leader_epoch = LEADER_EPOCH;
                            r.end_offset = part.high_watermark();
                        }
                        Some(_) => {}
                    }
                    r
                })
                .collect();
            out.topic = topic.topic;
            out
        })
        .collect();
    response
}
