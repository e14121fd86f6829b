//! OffsetFetch (key 9): a group's committed positions; -1 for partitions never committed.
//!
//! Versions 1–8. Up to v7 one group per request with an optional topic list (null means every
//! committed partition of the group); v8 batches groups (KIP-709). `require_stable` (v7) needs
//! no wait here: offsets are visible only once durable, and there are no transactions.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::offsets::{Committed, GroupOffsets};
use super::Coordinator;
use crate::kafka::bounds::{between, from, Schema, Ty};

/// OffsetFetchRequest (flexible from v6).
pub const SCHEMA: Schema = Schema {
    flexible_since: 6,
    fields: &[
        between(0, 7, Ty::Str), // group_id
        between(0, 7, Ty::Structs(&[from(0, Ty::Str), from(0, Ty::Int32s)])), // topics
        from(
            8,
            Ty::Structs(&[
                from(8, Ty::Str),                                               // group_id
                from(9, Ty::Str),                                               // member_id
                from(9, Ty::I32),                                               // member_epoch
                from(8, Ty::Structs(&[from(8, Ty::Str), from(8, Ty::Int32s)])), // topics
            ]),
        ), // groups
        from(7, Ty::I8),        // require_stable
    ],
};

/// One topic's answer: (topic, [(partition, committed)]).
type TopicAnswer = (TopicName, Vec<(i32, Option<Committed>)>);
/// One group's answer, or its error code.
type Answer = Result<Vec<TopicAnswer>, i16>;

fn lookup(groups: &Coordinator, group: &str, topics: Option<Vec<(TopicName, Vec<i32>)>>) -> Answer {
    let committed: GroupOffsets = groups.committed(group).map_err(|e| e.code())?;
    Ok(match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| (p, committed.get(&(name.0.to_string(), p)).cloned()))
                    .collect();
                (name, found)
            })
            .collect(),
        None => {
            let mut out: Vec<TopicAnswer> = Vec::new();
            for ((topic, p), c) in committed {
                match out.last_mut() {
                    Some((name, ps)) if name.0.as_str() == topic => ps.push((p, Some(c))),
                    _ => out.push((TopicName(StrBytes::from_string(topic)), vec![(p, Some(c))])),
                }
            }
            out
        }
    })
}

fn fields(c: Option<Committed>) -> (i64, i32, Option<StrBytes>) {
    match c {
        Some(c) => (
            c.offset,
            c.leader_epoch,
            Some(StrBytes::from_string(c.metadata)),
        ),
        None => (-1, -1, Some(StrBytes::default())),
    }
}

/// Builds the answer's topic list from a lookup. Up to v7 and from v8 the response nests
/// different generated types with the same fields and no trait in common, so a macro writes
/// the field mapping once for both.
macro_rules! answer_topics {
    ($found:expr, $topic:ty, $partition:ty) => {
        $found
            .into_iter()
            .map(|(name, ps)| {
                let mut t = <$topic>::default();
                t.name = name;
                t.partitions = ps
                    .into_iter()
                    .map(|(p, c)| {
                        let (offset, epoch, metadata) = fields(c);
                        let mut r = <$partition>::default();
                        r.partition_index = p;
                        r.committed_offset = offset;
                        r.committed_leader_epoch = epoch;
                        r.metadata = metadata;
                        r
                    })
                    .collect();
                t
            })
            .collect()
    };
}

pub fn handle(
    groups: &Coordinator,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version <= 7 {
        let topics = request.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        match lookup(groups, &request.group_id, topics) {
            Ok(found) => {
                response.topics = answer_topics!(
                    found,
                    OffsetFetchResponseTopic,
                    OffsetFetchResponsePartition
                )
            }
            Err(code) => response.error_code = code,
        }
        return response;
    }
    response.groups = request
        .groups
        .into_iter()
        .map(|g| {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let mut out = OffsetFetchResponseGroup::default();
            match lookup(groups, &g.group_id, topics) {
                Ok(found) => {
                    out.topics = answer_topics!(
                        found,
                        OffsetFetchResponseTopics,
                        OffsetFetchResponsePartitions
                    )
                }
                Err(code) => out.error_code = code,
            }
            out.group_id = g.group_id;
            out
        })
        .collect();
    response
}
