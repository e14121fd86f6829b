//! JoinGroup (key 11): enter or re-enter a group and wait for the rebalance to finish.
//!
//! Versions 0–9. From v4 a member without an id gets one with MEMBER_ID_REQUIRED and rejoins
//! with it (KIP-394), so a client that times out and retries cannot leave ghost members
//! behind. v5 adds static membership (group.instance.id), v7 the protocol type in the answer,
//! v8 a reason (logged), v9 `skip_assignment` (always false: the leader assigns).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tokio_util::sync::CancellationToken;

use super::state::{JoinParams, Joined, Step};
use super::{non_empty, Coordinator};
use crate::kafka::bounds::{from, Schema, Ty};

/// JoinGroupRequest (flexible from v6).
pub const SCHEMA: Schema = Schema {
    flexible_since: 6,
    fields: &[
        from(0, Ty::Str),                                              // group_id
        from(0, Ty::I32),                                              // session_timeout_ms
        from(1, Ty::I32),                                              // rebalance_timeout_ms
        from(0, Ty::Str),                                              // member_id
        from(5, Ty::Str),                                              // group_instance_id
        from(0, Ty::Str),                                              // protocol_type
        from(0, Ty::Structs(&[from(0, Ty::Str), from(0, Ty::Bytes)])), // protocols
        from(8, Ty::Str),                                              // reason
    ],
};

pub async fn handle(
    groups: &Coordinator,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
    shutdown: &CancellationToken,
) -> JoinGroupResponse {
    let group = request.group_id.0.to_string();
    if let Some(reason) = &request.reason {
        tracing::debug!(group, member = %request.member_id, %reason, "JoinGroup");
    }
    let session = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
    // v0 has no rebalance timeout; Kafka uses the session timeout then.
    let rebalance = if version >= 1 {
        Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64)
    } else {
        session
    };
    let params = JoinParams {
        member_id: request.member_id.to_string(),
        instance_id: non_empty(&request.group_instance_id).map(str::to_string),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout: session,
        rebalance_timeout: rebalance,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let mut response = JoinGroupResponse::default();
    response.generation_id = -1;
    if group.is_empty() {
        response.error_code = ResponseError::InvalidGroupId.code();
        return response;
    }
    groups.housekeeping().await;
    let first = groups.with(|g, now| g.join(&group, params, now));
    let outcome = match first {
        Joined::MemberIdRequired(id) => {
            response.error_code = ResponseError::MemberIdRequired.code();
            response.member_id = StrBytes::from_string(id);
            return response;
        }
        Joined::Step(Step::Done(answer)) => Ok(answer),
        Joined::Step(Step::Failed(e)) => Err(e),
        // `join` reports waiting as `Joined::Wait`, with the member id to poll for.
        Joined::Step(Step::Wait) => Err(ResponseError::RebalanceInProgress),
        Joined::Wait(member) => {
            groups
                .wait(shutdown, |g, now| g.poll_join(&group, &member, now))
                .await
        }
    };
    match outcome {
        Ok(answer) => {
            response.generation_id = answer.generation;
            response.protocol_type = Some(StrBytes::from_string(answer.protocol_type));
            response.protocol_name = Some(StrBytes::from_string(answer.protocol));
            response.leader = StrBytes::from_string(answer.leader);
            response.member_id = StrBytes::from_string(answer.member_id);
            response.members = answer
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    let mut m = JoinGroupResponseMember::default();
                    m.member_id = StrBytes::from_string(id);
                    m.group_instance_id = instance.map(StrBytes::from_string);
                    m.metadata = metadata;
                    m
                })
                .collect();
        }
        Err(e) => {
            response.error_code = e.code();
            // Kafka echoes the id the member sent, so it knows which of its ids was refused.
            response.member_id = request.member_id;
        }
    }
    response
}
