//! DescribeGroups (key 15): state, protocol and members of groups.
//!
//! Versions 0–5 (v6 adds KIP-848's "not a classic group" error, which cannot happen here).
//! A group this coordinator has never seen is described as "Dead" with no
//! error, as Kafka does; one with only committed offsets as "Empty".

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Coordinator;
use crate::kafka::bounds::{from, Schema, Ty};

/// DescribeGroupsRequest (flexible from v5).
pub const SCHEMA: Schema = Schema {
    flexible_since: 5,
    fields: &[
        from(0, Ty::Strs), // groups
        from(3, Ty::I8),   // include_authorized_operations
    ],
};

/// "No operations known" (the answer when authorized operations were not asked for).
const NO_OPERATIONS: i32 = i32::MIN;

pub fn handle(groups: &Coordinator, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    response.groups = request
        .groups
        .into_iter()
        .map(|id| {
            let mut out = DescribedGroup::default();
            out.authorized_operations = NO_OPERATIONS;
            let live = groups.with(|g, _| {
                g.get(&id).map(|group| {
                    out.group_state = StrBytes::from_static_str(group.state.name());
                    out.protocol_type =
                        StrBytes::from_string(group.protocol_type.clone().unwrap_or_default());
                    let protocol = group.protocol.clone().unwrap_or_default();
                    // Kafka names the protocol only once it is settled.
                    if matches!(
                        group.state,
                        super::state::GroupState::Stable
                            | super::state::GroupState::CompletingRebalance
                    ) {
                        out.protocol_data = StrBytes::from_string(protocol.clone());
                    }
                    out.members = group
                        .members
                        .values()
                        .map(|m| {
                            let mut d = DescribedGroupMember::default();
                            d.member_id = StrBytes::from_string(m.id.clone());
                            d.group_instance_id = m.instance_id.clone().map(StrBytes::from_string);
                            d.client_id = StrBytes::from_string(m.client_id.clone());
                            d.client_host = StrBytes::from_string(m.client_host.clone());
                            d.member_metadata = m.metadata(&protocol);
                            d.member_assignment = m.assignment.clone();
                            d
                        })
                        .collect();
                })
            });
            if live.is_none() {
                match groups.committed(&id) {
                    Ok(c) if !c.is_empty() => {
                        out.group_state = StrBytes::from_static_str("Empty");
                        out.protocol_type = StrBytes::from_static_str("consumer");
                    }
                    Ok(_) => out.group_state = StrBytes::from_static_str("Dead"),
                    Err(e) => out.error_code = e.code(),
                }
            }
            out.group_id = id;
            out
        })
        .collect();
    response
}
