//! ListGroups (key 16): every group this coordinator knows, with its state.
//!
//! Versions 0–4 (v4 filters by state, KIP-518; v5's type filter belongs to KIP-848 and is
//! honoured if sent, but not advertised). Groups that only have committed offsets are
//! listed as Empty consumer groups, as Kafka lists them.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Coordinator;
use crate::kafka::bounds::{from, Schema, Ty};

/// ListGroupsRequest (flexible from v3).
pub const SCHEMA: Schema = Schema {
    flexible_since: 3,
    fields: &[
        from(4, Ty::Strs), // states_filter
        from(5, Ty::Strs), // types_filter
    ],
};

pub fn handle(groups: &Coordinator, request: ListGroupsRequest) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    // Group id → (protocol type, state).
    let mut listed: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
    match groups.groups_with_offsets() {
        Ok(names) => {
            for name in names {
                listed.insert(name, ("consumer".to_string(), "Empty"));
            }
        }
        Err(e) => {
            response.error_code = e.code();
            return response;
        }
    }
    groups.with(|g, _| {
        for (name, group) in g.iter() {
            let kind = group
                .protocol_type
                .clone()
                .unwrap_or_else(|| "consumer".to_string());
            listed.insert(name.clone(), (kind, group.state.name()));
        }
    });
    response.groups = listed
        .into_iter()
        .filter(|(_, (_, state))| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(state))
        })
        .filter(|(_, (kind, _))| {
            request.types_filter.is_empty()
                || request
                    .types_filter
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case("classic"))
                || request.types_filter.iter().any(|t| t.as_str() == kind)
        })
        .map(|(name, (kind, state))| {
            let mut g = ListedGroup::default();
            g.group_id = GroupId(StrBytes::from_string(name));
            g.protocol_type = StrBytes::from_string(kind);
            g.group_state = StrBytes::from_static_str(state);
            g.group_type = StrBytes::from_static_str("classic");
            g
        })
        .collect();
    response
}
