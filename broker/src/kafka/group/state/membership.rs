//! Who may speak for a group: the identity and generation checks behind Heartbeat,
//! LeaveGroup and OffsetCommit.

use std::time::Instant;

use kafka_protocol::error::ResponseError;

use super::{Group, GroupState, Groups};

impl Groups {
    /// Checks that `member_id` of `generation` is a current member; refreshes its session.
    pub(super) fn member<'a>(
        &'a mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<&'a mut Group, ResponseError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if let Some(instance) = instance_id {
            if let Some(owner) = group.by_instance(instance) {
                if owner != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        let member = group
            .members
            .get_mut(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        member.last_seen = now;
        if generation != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(group)
    }

    /// Handles a Heartbeat: keeps the session alive and tells the member to rejoin when a
    /// rebalance is under way.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let group = self.member(group_id, member_id, instance_id, generation, now)?;
        match group.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Empty => Err(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// Handles one member of a LeaveGroup (a static member may be named by instance id only).
    pub fn leave(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        let id = match instance_id {
            Some(instance) => {
                let owner = group
                    .by_instance(instance)
                    .ok_or(ResponseError::UnknownMemberId)?;
                if !member_id.is_empty() && owner != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
                owner
            }
            None => member_id.to_string(),
        };
        if !group.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        group.remove_member(&id, now);
        Ok(())
    }

    /// Whether an OffsetCommit may be applied. A commit with generation -1 and no member id
    /// (a consumer that assigns partitions itself) is allowed while the group has no members.
    pub fn check_commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let active = self
            .groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty());
        if generation < 0 && member_id.is_empty() {
            return if active {
                Err(ResponseError::UnknownMemberId)
            } else {
                Ok(())
            };
        }
        let group = self.member(group_id, member_id, instance_id, generation, now)?;
        match group.state {
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }
}
