//! JoinGroup: admitting a member (KIP-394 member ids, static members of KIP-345) and its
//! answer once the rebalance is done.

use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::{
    Group, GroupState, Groups, JoinAnswer, JoinParams, Joined, Member, Step, MAX_GROUPS,
    MAX_GROUP_SIZE, MAX_SESSION_TIMEOUT, MIN_SESSION_TIMEOUT,
};

impl Groups {
    /// Handles a JoinGroup.
    pub fn join(&mut self, group_id: &str, mut params: JoinParams, now: Instant) -> Joined {
        let fail = |e| Joined::Step(Step::Failed(e));
        if params.session_timeout < MIN_SESSION_TIMEOUT
            || params.session_timeout > MAX_SESSION_TIMEOUT
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        let new_id = if params.member_id.is_empty() {
            Some(self.new_member_id(&params.client_id))
        } else {
            None
        };
        let initial_delay = self.initial_rebalance_delay;
        if self.groups.len() >= MAX_GROUPS && !self.groups.contains_key(group_id) {
            tracing::warn!(
                group = group_id,
                max = MAX_GROUPS,
                "refusing a new consumer group: the coordinator holds its maximum"
            );
            // Kafka has no limit on groups; GROUP_MAX_SIZE_REACHED is the fatal, self-explaining
            // code closest to "no room": a retriable one would have the client retry forever.
            return fail(ResponseError::GroupMaxSizeReached);
        }
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(Group::new);
        if !group.compatible(&params) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let generated = new_id.is_some();
        if new_id.is_some()
            && params.instance_id.is_none()
            && group.members.len() + group.pending.len() >= MAX_GROUP_SIZE
        {
            return fail(ResponseError::GroupMaxSizeReached);
        }
        if let Some(id) = new_id {
            match params.instance_id.as_deref().map(|i| group.by_instance(i)) {
                // A static member coming back under a new member id takes over its old
                // membership (KIP-345); the old id is fenced from now on.
                Some(Some(old)) => {
                    if let Some(mut member) = group.members.remove(&old) {
                        member.id = id.clone();
                        group.members.insert(id.clone(), member);
                    }
                    if group.leader.as_deref() == Some(old.as_str()) {
                        group.leader = Some(id.clone());
                    }
                }
                Some(None) => {}
                None if params.require_known_member_id => {
                    group
                        .pending
                        .insert(id.clone(), now + params.session_timeout);
                    return Joined::MemberIdRequired(id);
                }
                None => {}
            }
            params.member_id = id;
        } else if let Some(instance) = params.instance_id.as_deref() {
            if let Some(owner) = group.by_instance(instance) {
                if owner != params.member_id {
                    return fail(ResponseError::FencedInstanceId);
                }
            }
        }
        let id = params.member_id.clone();
        let known = group.members.contains_key(&id);
        if !known && group.pending.remove(&id).is_none() && !generated {
            return fail(ResponseError::UnknownMemberId);
        }
        let changed = match group.members.get(&id) {
            Some(m) => m.protocols != params.protocols,
            None => true,
        };
        let member = group.members.entry(id.clone()).or_insert_with(|| Member {
            id: id.clone(),
            instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            session_timeout: params.session_timeout,
            rebalance_timeout: params.rebalance_timeout,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen: now,
            awaiting_join: false,
            join_answer: None,
        });
        member.instance_id = params.instance_id;
        member.client_id = params.client_id;
        member.client_host = params.client_host;
        member.session_timeout = params.session_timeout;
        member.rebalance_timeout = params.rebalance_timeout;
        member.protocols = params.protocols;
        member.last_seen = now;
        if group.members.len() == 1 {
            group.protocol_type = Some(params.protocol_type);
        }
        let is_leader = group.leader.as_deref() == Some(id.as_str());
        match group.state {
            // An unchanged follower rejoining a settled group gets the current generation back,
            // as Kafka answers; anything else needs a new round.
            GroupState::Stable | GroupState::CompletingRebalance if !changed && !is_leader => {
                return Joined::Step(Step::Done(group.current_answer(&id)));
            }
            GroupState::PreparingRebalance if !known => group.member_added(),
            GroupState::PreparingRebalance => {}
            _ => group.start_rebalance(now, initial_delay),
        }
        if let Some(member) = group.members.get_mut(&id) {
            member.awaiting_join = true;
            member.join_answer = None;
        }
        group.maybe_complete_join(now);
        match self.poll_join(group_id, &id, now) {
            Step::Wait => Joined::Wait(id),
            step => Joined::Step(step),
        }
    }

    /// The answer for a member waiting in JoinGroup, once there is one.
    pub fn poll_join(&mut self, group_id: &str, member_id: &str, now: Instant) -> Step<JoinAnswer> {
        let Some(member) = self
            .groups
            .get_mut(group_id)
            .and_then(|g| g.members.get_mut(member_id))
        else {
            return Step::Failed(ResponseError::UnknownMemberId);
        };
        member.last_seen = now;
        match member.join_answer.take() {
            Some(answer) => Step::Done(answer),
            None if member.awaiting_join => Step::Wait,
            // Neither waiting nor answered: a newer JoinGroup of the same member took over.
            None => Step::Failed(ResponseError::RebalanceInProgress),
        }
    }
}
