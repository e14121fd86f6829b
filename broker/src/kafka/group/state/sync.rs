//! SyncGroup: the leader hands out the assignment, followers wait for it.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::{GroupState, Groups, Step};

impl Groups {
    /// Handles a SyncGroup; the leader's carries the assignment of every member.
    pub fn sync(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Step<Bytes> {
        let group = match self.member(group_id, member_id, instance_id, generation, now) {
            Ok(g) => g,
            Err(e) => return Step::Failed(e),
        };
        match group.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                return Step::Failed(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance if group.leader.as_deref() == Some(member_id) => {
                let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
                for member in group.members.values_mut() {
                    member.assignment = assignments.remove(&member.id).unwrap_or_default();
                }
                group.state = GroupState::Stable;
            }
            GroupState::CompletingRebalance | GroupState::Stable => {}
        }
        self.poll_sync(group_id, member_id, generation, now)
    }

    /// The assignment for a member waiting in SyncGroup, once the leader has sent it.
    pub fn poll_sync(
        &mut self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Step<Bytes> {
        let group = match self.member(group_id, member_id, None, generation, now) {
            Ok(g) => g,
            Err(ResponseError::IllegalGeneration) => {
                return Step::Failed(ResponseError::RebalanceInProgress)
            }
            Err(e) => return Step::Failed(e),
        };
        match group.state {
            GroupState::Stable => Step::Done(
                group
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            ),
            GroupState::CompletingRebalance => Step::Wait,
            _ => Step::Failed(ResponseError::RebalanceInProgress),
        }
    }
}
