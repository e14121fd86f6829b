//! LeaveGroup (key 13): members leave at once instead of waiting for their session to lapse.
//!
//! Versions 0–5. Up to v2 one member id; from v3 a batch of members, each named by member id
//! and/or instance id (KIP-345), each with its own error code. The group rebalances if
//! members remain.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{non_empty, Coordinator};
use crate::kafka::bounds::{between, from, Schema, Ty};

/// LeaveGroupRequest (flexible from v4).
pub const SCHEMA: Schema = Schema {
    flexible_since: 4,
    fields: &[
        from(0, Ty::Str),       // group_id
        between(0, 2, Ty::Str), // member_id
        from(
            3,
            Ty::Structs(&[
                from(3, Ty::Str), // member_id
                from(3, Ty::Str), // group_instance_id
                from(5, Ty::Str), // reason
            ]),
        ), // members
    ],
};

pub fn handle(
    groups: &Coordinator,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = request.group_id.0.to_string();
    let mut response = LeaveGroupResponse::default();
    if version <= 2 {
        if let Err(e) = groups.with(|g, now| g.leave(&group, &request.member_id, None, now)) {
            response.error_code = e.code();
        }
        return response;
    }
    response.members = request
        .members
        .into_iter()
        .map(|m| {
            if let Some(reason) = &m.reason {
                tracing::debug!(group, member = %m.member_id, %reason, "LeaveGroup");
            }
            let result = groups
                .with(|g, now| g.leave(&group, &m.member_id, non_empty(&m.group_instance_id), now));
            let mut out = MemberResponse::default();
            out.error_code = result.err().map(|e| e.code()).unwrap_or(0);
            out.member_id = m.member_id;
            out.group_instance_id = m.group_instance_id;
            out
        })
        .collect();
    response
}
