//! SyncGroup (key 14): the leader hands in the assignment; every member gets its share.
//!
//! Versions 0–5. Followers wait until the leader's SyncGroup arrives (or the round is
//! abandoned: REBALANCE_IN_PROGRESS). v5 carries protocol type and name, which must match the
//! group's (INCONSISTENT_GROUP_PROTOCOL otherwise) and are echoed back.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tokio_util::sync::CancellationToken;

use super::state::Step;
use super::{non_empty, Coordinator};
use crate::kafka::bounds::{from, Schema, Ty};

/// SyncGroupRequest (flexible from v4).
pub const SCHEMA: Schema = Schema {
    flexible_since: 4,
    fields: &[
        from(0, Ty::Str),                                              // group_id
        from(0, Ty::I32),                                              // generation_id
        from(0, Ty::Str),                                              // member_id
        from(3, Ty::Str),                                              // group_instance_id
        from(5, Ty::Str),                                              // protocol_type
        from(5, Ty::Str),                                              // protocol_name
        from(0, Ty::Structs(&[from(0, Ty::Str), from(0, Ty::Bytes)])), // assignments
    ],
};

pub async fn handle(
    groups: &Coordinator,
    request: SyncGroupRequest,
    shutdown: &CancellationToken,
) -> SyncGroupResponse {
    let group = request.group_id.0.to_string();
    let member = request.member_id.to_string();
    let generation = request.generation_id;
    let instance = non_empty(&request.group_instance_id).map(str::to_string);
    let mut response = SyncGroupResponse::default();
    let current = groups.with(|g, _| {
        g.get(&group)
            .map(|gr| (gr.protocol_type.clone(), gr.protocol.clone()))
    });
    if let Some((group_type, group_protocol)) = current {
        let mismatch = |asked: &Option<StrBytes>, have: &Option<String>| {
            asked
                .as_deref()
                .is_some_and(|a| have.as_deref().is_some_and(|h| h != a))
        };
        if mismatch(&request.protocol_type, &group_type)
            || mismatch(&request.protocol_name, &group_protocol)
        {
            response.error_code = ResponseError::InconsistentGroupProtocol.code();
            return response;
        }
        response.protocol_type = group_type.map(StrBytes::from_string);
        response.protocol_name = group_protocol.map(StrBytes::from_string);
    }
    let assignments: Vec<(String, bytes::Bytes)> = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let first = groups.with(|g, now| {
        g.sync(
            &group,
            &member,
            instance.as_deref(),
            generation,
            assignments,
            now,
        )
    });
    let outcome = match first {
        Step::Done(assignment) => Ok(assignment),
        Step::Failed(e) => Err(e),
        Step::Wait => {
            groups
                .wait(shutdown, |g, now| {
                    g.poll_sync(&group, &member, generation, now)
                })
                .await
        }
    };
    match outcome {
        Ok(assignment) => response.assignment = assignment,
        Err(e) => response.error_code = e.code(),
    }
    response
}
