//! The join phase of a rebalance: starting it, ending it when every member has rejoined or
//! the rebalance timeout passed, and removing members (which starts a new one).
//!
//! **Initial delay** (Kafka's `group.initial.rebalance.delay.ms`): when an Empty group gets a
//! member, the join phase does not end as soon as everyone known has joined, but only once the
//! delay has passed. While the group has never completed a rebalance (generation 0), each
//! new member that joins during a wait earns one more wait of the same length when it ends,
//! and the extra waits together stay within the rebalance timeout. A fleet of consumers that
//! starts together thus forms the group in one rebalance instead of one per member; the cost
//! is that a lone consumer waits the delay before it gets its first assignment.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Group, GroupState, JoinAnswer};

/// The wait of a join phase that started from Empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InitialDelay {
    /// When the current wait ends.
    until: Instant,
    /// Length of one wait (the configured delay).
    step: Duration,
    /// What further waits may still add: the rebalance timeout minus the first wait.
    remaining: Duration,
    /// A new member joined during the current wait (only counted at generation 0, as Kafka).
    new_member: bool,
}

impl Group {
    /// Starts a join phase; `initial_delay` applies if the group is Empty.
    pub(super) fn start_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        let from_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay = (from_empty && !initial_delay.is_zero()).then(|| InitialDelay {
            until: now + initial_delay,
            step: initial_delay,
            remaining: timeout.saturating_sub(initial_delay),
            new_member: false,
        });
        for member in self.members.values_mut() {
            member.awaiting_join = false;
            member.join_answer = None;
        }
    }

    /// Notes that a member new to the group joined the current join phase.
    pub(super) fn member_added(&mut self) {
        if let Some(delay) = &mut self.initial_delay {
            if self.generation == 0 {
                delay.new_member = true;
            }
        }
    }

    /// When the current initial wait ends, if one is under way.
    pub(super) fn initial_delay_until(&self) -> Option<Instant> {
        self.initial_delay.map(|d| d.until)
    }

    /// Ends the join phase if every member has rejoined or the deadline passed; during an
    /// initial delay, only when the delay (with its extensions) is over.
    pub(super) fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if let Some(delay) = &mut self.initial_delay {
            if now < delay.until {
                return;
            }
            if delay.new_member && !delay.remaining.is_zero() {
                // The next wait follows the last one (not `now`, which a late tick may put
                // after it), so all waits together stay within the rebalance timeout.
                let step = delay.step.min(delay.remaining);
                delay.until += step;
                delay.remaining -= step;
                delay.new_member = false;
                if now < delay.until {
                    return;
                }
            }
            self.initial_delay = None;
        } else {
            let all_joined = self.members.values().all(|m| m.awaiting_join);
            let expired = self.rebalance_deadline.is_some_and(|d| now >= d);
            if !all_joined && !expired {
                return;
            }
        }
        self.members.retain(|_, m| m.awaiting_join);
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.emptied_at = Some(now);
            return;
        }
        let protocol = self.choose_protocol().unwrap_or_default();
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            // Not empty: checked above.
            _ => self.members.keys().next().cloned().unwrap_or_default(),
        };
        let listing: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
            .collect();
        let protocol_type = self.protocol_type.clone().unwrap_or_default();
        for member in self.members.values_mut() {
            member.awaiting_join = false;
            member.last_seen = now;
            member.assignment = Bytes::new();
            member.join_answer = Some(JoinAnswer {
                generation: self.generation,
                protocol_type: protocol_type.clone(),
                protocol: protocol.clone(),
                leader: leader.clone(),
                member_id: member.id.clone(),
                members: if member.id == leader {
                    listing.clone()
                } else {
                    Vec::new()
                },
            });
        }
        self.protocol = Some(protocol);
        self.leader = Some(leader);
        self.state = GroupState::CompletingRebalance;
    }

    pub(super) fn current_answer(&self, member_id: &str) -> JoinAnswer {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinAnswer {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            members: if leader == member_id {
                self.members
                    .values()
                    .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
            protocol,
            leader,
            member_id: member_id.to_string(),
        }
    }

    pub(super) fn remove_member(&mut self, id: &str, now: Instant) {
        if self.members.remove(id).is_none() {
            return;
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        // A group with a member to remove is not Empty: no initial delay.
        self.start_rebalance(now, Duration::ZERO);
        self.maybe_complete_join(now);
    }
}
