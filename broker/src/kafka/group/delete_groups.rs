//! DeleteGroups (key 42): forget groups without members, committed offsets included.
//!
//! Versions 0–2. A group with members is NON_EMPTY_GROUP; one this coordinator has never
//! seen (no state, no offsets) is GROUP_ID_NOT_FOUND.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::Coordinator;
use crate::kafka::bounds::{from, Schema, Ty};

/// DeleteGroupsRequest (flexible from v2).
pub const SCHEMA: Schema = Schema {
    flexible_since: 2,
    fields: &[from(0, Ty::Strs)], // groups_names
};

pub async fn handle(groups: &Coordinator, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for id in request.groups_names {
        let mut result = DeletableGroupResult::default();
        result.error_code = match delete(groups, &id).await {
            Ok(()) => 0,
            Err(e) => e.code(),
        };
        result.group_id = id;
        response.results.push(result);
    }
    response
}

async fn delete(groups: &Coordinator, id: &str) -> Result<(), ResponseError> {
    let has_offsets = !groups.committed(id)?.is_empty();
    let known = groups.with(|g, _| g.get(id).map(|group| group.members.is_empty()));
    match known {
        Some(false) => return Err(ResponseError::NonEmptyGroup),
        None if !has_offsets => return Err(ResponseError::GroupIdNotFound),
        _ => {}
    }
    groups.delete_offsets(id).await?;
    if !groups.with(|g, _| g.delete(id)) {
        // A member joined while the offsets were being deleted.
        return Err(ResponseError::NonEmptyGroup);
    }
    Ok(())
}
