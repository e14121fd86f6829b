//! Heartbeat (key 12): keeps a member's session alive; REBALANCE_IN_PROGRESS asks it to
//! rejoin. Versions 0–4 (v3 adds the instance id, v4 is flexible).

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{non_empty, Coordinator};
use crate::kafka::bounds::{from, Schema, Ty};

/// HeartbeatRequest (flexible from v4).
pub const SCHEMA: Schema = Schema {
    flexible_since: 4,
    fields: &[
        from(0, Ty::Str), // group_id
        from(0, Ty::I32), // generation_id
        from(0, Ty::Str), // member_id
        from(3, Ty::Str), // group_instance_id
    ],
};

pub fn handle(groups: &Coordinator, request: HeartbeatRequest) -> HeartbeatResponse {
    let result = groups.with(|g, now| {
        g.heartbeat(
            &request.group_id,
            &request.member_id,
            non_empty(&request.group_instance_id),
            request.generation_id,
            now,
        )
    });
    let mut response = HeartbeatResponse::default();
    if let Err(e) = result {
        response.error_code = e.code();
    }
    response
}
