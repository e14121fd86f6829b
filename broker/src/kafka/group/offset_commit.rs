//! OffsetCommit (key 8): store a group's positions durably.
//!
//! Versions 2–8 (v8 is flexible; v9 belongs to the new consumer protocol of KIP-848, which
//! Headwater does not implement). A member of an active group must name its generation; a
//! consumer that assigns partitions itself commits with generation -1 and no member id, which
//! is accepted while the group has no members (Kafka's rule). Unknown topics or partitions
//! get UNKNOWN_TOPIC_OR_PARTITION, metadata over [`MAX_METADATA_BYTES`]
//! OFFSET_METADATA_TOO_LARGE. The answer goes out after the offsets are on disk.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::offsets::Committed;
use super::{non_empty, Coordinator};
use crate::kafka::bounds::{between, from, Schema, Ty};
use crate::log::Log;

/// Longest metadata string stored with an offset (Kafka's `offset.metadata.max.bytes`).
pub const MAX_METADATA_BYTES: usize = 4096;

/// OffsetCommitRequest (flexible from v8).
pub const SCHEMA: Schema = Schema {
    flexible_since: 8,
    fields: &[
        from(0, Ty::Str),       // group_id
        from(1, Ty::I32),       // generation_id_or_member_epoch
        from(1, Ty::Str),       // member_id
        from(7, Ty::Str),       // group_instance_id
        between(2, 4, Ty::I64), // retention_time_ms
        from(
            0,
            Ty::Structs(&[
                from(0, Ty::Str), // name
                from(
                    0,
                    Ty::Structs(&[
                        from(0, Ty::I32),       // partition_index
                        from(0, Ty::I64),       // committed_offset
                        from(6, Ty::I32),       // committed_leader_epoch
                        between(1, 1, Ty::I64), // commit_timestamp
                        from(0, Ty::Str),       // committed_metadata
                    ]),
                ),
            ]),
        ), // topics
    ],
};

pub async fn handle(
    groups: &Coordinator,
    log: &Log,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    groups.housekeeping().await;
    let allowed = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        groups.with(|g, now| {
            g.check_commit(
                &group,
                &request.member_id,
                non_empty(&request.group_instance_id),
                request.generation_id_or_member_epoch,
                now,
            )
        })
    };
    // Per partition: the error it gets before anything is written, if any.
    let mut codes: Vec<Vec<Option<ResponseError>>> = Vec::new();
    let mut entries = Vec::new();
    for topic in &request.topics {
        let handle = log.topic(&topic.name);
        let mut topic_codes = Vec::new();
        for p in &topic.partitions {
            let metadata_len = p.committed_metadata.as_deref().map_or(0, str::len);
            let code = match (&allowed, &handle) {
                (Err(e), _) => Some(*e),
                _ if metadata_len > MAX_METADATA_BYTES => {
                    Some(ResponseError::OffsetMetadataTooLarge)
                }
                (Ok(()), Some(h)) if h.partition(p.partition_index).is_some() => {
                    entries.push((
                        topic.name.0.to_string(),
                        p.partition_index,
                        Committed {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p
                                .committed_metadata
                                .as_deref()
                                .unwrap_or_default()
                                .to_string(),
                        },
                    ));
                    None
                }
                _ => Some(ResponseError::UnknownTopicOrPartition),
            };
            topic_codes.push(code);
        }
        codes.push(topic_codes);
    }
    let written = if entries.is_empty() {
        Ok(())
    } else {
        groups.commit(&group, entries).await
    };
    let mut response = OffsetCommitResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .zip(codes)
        .map(|(topic, topic_codes)| {
            let mut out = OffsetCommitResponseTopic::default();
            out.partitions = topic
                .partitions
                .iter()
                .zip(topic_codes)
                .map(|(p, code)| {
                    let mut r = OffsetCommitResponsePartition::default();
                    r.partition_index = p.partition_index;
                    r.error_code = match (code, &written) {
                        (Some(e), _) | (None, &Err(e)) => e.code(),
                        (None, Ok(())) => 0,
                    };
                    r
                })
                .collect();
            out.name = topic.name;
            out
        })
        .collect();
    response
}
