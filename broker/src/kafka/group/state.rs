//! The group membership state machine, with no I/O and no clock of its own.
//!
//! Every operation takes `now` as an argument, so the unit tests drive joins, syncs,
//! heartbeats, timeouts and rebalances with a virtual clock and never sleep. The async layer
//! ([`super::Coordinator`]) calls these functions under a mutex and waits (on a `Notify`)
//! whenever an operation answers [`Step::Wait`], polling again after each change.
//!
//! States and transitions follow Apache Kafka's classic group coordinator:
//! - **Empty**: no members (possibly committed offsets). A join starts a rebalance.
//! - **PreparingRebalance**: waiting for every known member to (re)send JoinGroup. It ends when
//!   all have, or when the rebalance timeout (the largest `rebalance_timeout_ms` of the members)
//!   passes; members that did not rejoin by then are removed. The generation then goes up by
//!   one, a protocol supported by every member is chosen, and every waiting JoinGroup is
//!   answered (the leader's answer lists the members and their metadata).
//! - **CompletingRebalance**: waiting for the leader's SyncGroup with the assignment; followers'
//!   SyncGroups wait for it.
//! - **Stable**: assignments handed out; heartbeats keep members alive.
//!
//! A member whose session timeout passes without a heartbeat (or any other request naming it)
//! is removed and, if others remain, a rebalance starts; the others learn about it from
//! REBALANCE_IN_PROGRESS in their next heartbeat and rejoin. Members waiting in JoinGroup or
//! SyncGroup are alive (their request is in flight) and are not expired. The cooperative
//! protocol (KIP-429, librdkafka's `cooperative-sticky`) needs nothing special here: members
//! rejoin with the partitions they own in their metadata and the leader computes the
//! incremental assignment; the broker runs the same join/sync rounds.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms` defaults.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(6_000);
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_millis(1_800_000);
/// Most members (joined or holding a member id from MEMBER_ID_REQUIRED) one group may have;
/// more get GROUP_MAX_SIZE_REACHED. Kafka's `group.max.size` is unbounded by default; an edge
/// broker bounds it so a client looping on JoinGroup cannot grow memory without end.
pub const MAX_GROUP_SIZE: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// The outcome of an operation that may have to wait for other members.
#[derive(Debug, PartialEq)]
pub enum Step<T> {
    Done(T),
    Failed(ResponseError),
    /// Not decided yet: poll again after the next change or deadline.
    Wait,
}

/// What a JoinGroup asks for.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+ (KIP-394): a member without an id is first given one and asked to rejoin with it.
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup once the rebalance is done.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinAnswer {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: (member id, instance id, metadata for the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// A JoinGroup's first answer: done or refused, a member id to rejoin with, or wait.
#[derive(Debug, PartialEq)]
pub enum Joined {
    Step(Step<JoinAnswer>),
    /// KIP-394: rejoin with this member id (error MEMBER_ID_REQUIRED).
    MemberIdRequired(String),
    /// The member (with this id) waits for the rebalance: poll with [`Groups::poll_join`].
    Wait(String),
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_seen: Instant,
    /// Has sent JoinGroup in the current rebalance and waits for its answer.
    awaiting_join: bool,
    /// Set when the rebalance completes, taken by the waiting JoinGroup.
    join_answer: Option<JoinAnswer>,
}

impl Member {
    /// This member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they lapse.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
        }
    }

    fn by_instance(&self, instance: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.clone())
    }

    /// Protocols every member supports, each counted by how many members prefer it most.
    fn choose_protocol(&self) -> Option<String> {
        let mut members = self.members.values();
        let first = members.next()?;
        let common: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect();
        let mut votes: Vec<(usize, &str)> = common.iter().map(|n| (0, *n)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(p, _)| common.contains(&p.as_str()))
            {
                if let Some(v) = votes.iter_mut().find(|(_, n)| n == name) {
                    v.0 += 1;
                }
            }
        }
        // Most votes wins; on a tie, the first in the first member's order.
        let best = votes.iter().map(|(v, _)| *v).max()?;
        votes
            .iter()
            .find(|(v, _)| *v == best)
            .map(|(_, n)| n.to_string())
    }

    /// Whether a joining member with these protocols could coexist with the current members.
    fn compatible(&self, params: &JoinParams) -> bool {
        if params.protocols.is_empty() || params.protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(params.protocol_type.as_str()) {
            return false;
        }
        params.protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.id != params.member_id)
                .all(|m| m.protocols.iter().any(|(p, _)| p == name))
        })
    }

    fn start_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        for member in self.members.values_mut() {
            member.awaiting_join = false;
            member.join_answer = None;
        }
    }

    /// Ends the join phase if every member has rejoined or the deadline passed.
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join);
        let expired = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !all_joined && !expired {
            return;
        }
        self.members.retain(|_, m| m.awaiting_join);
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
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

    fn current_answer(&self, member_id: &str) -> JoinAnswer {
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

    fn remove_member(&mut self, id: &str, now: Instant) {
        if self.members.remove(id).is_none() {
            return;
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.start_rebalance(now);
        self.maybe_complete_join(now);
    }
}

/// All groups of this coordinator.
#[derive(Debug, Default)]
pub struct Groups {
    groups: HashMap<String, Group>,
    /// Feeds generated member ids, with `salt` making them differ between broker runs.
    next_member: u64,
    salt: u64,
}

impl Groups {
    pub fn new(salt: u64) -> Groups {
        Groups {
            groups: HashMap::new(),
            next_member: 0,
            salt,
        }
    }

    pub fn get(&self, group: &str) -> Option<&Group> {
        self.groups.get(group)
    }

    /// Groups with live state (members or a generation), for ListGroups.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Group)> {
        self.groups.iter()
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        format!("{client_id}-{:016x}-{:08x}", self.salt, self.next_member)
    }

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
            GroupState::PreparingRebalance => {}
            _ => group.start_rebalance(now),
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

    /// Checks that `member_id` of `generation` is a current member; refreshes its session.
    fn member<'a>(
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

    /// Forgets a group without members (DeleteGroups). Returns false if it has members.
    pub fn delete(&mut self, group_id: &str) -> bool {
        match self.groups.get(group_id) {
            Some(g) if !g.members.is_empty() => false,
            _ => {
                self.groups.remove(group_id);
                true
            }
        }
    }

    /// Applies the passage of time: expires sessions and lapsed member ids, ends join phases
    /// whose rebalance timeout has passed.
    pub fn tick(&mut self, now: Instant) {
        for group in self.groups.values_mut() {
            group.pending.retain(|_, lapses| *lapses > now);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| !m.awaiting_join && m.last_seen + m.session_timeout <= now)
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                group.remove_member(&id, now);
            }
            group.maybe_complete_join(now);
        }
        // Groups that are empty, never rebalanced and hold no pending ids carry no state.
        self.groups.retain(|_, g| {
            !(g.members.is_empty() && g.pending.is_empty() && g.state == GroupState::Empty)
                || g.generation > 0
        });
    }

    /// The next moment at which [`Groups::tick`] would change something.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|g| {
                let sessions = g
                    .members
                    .values()
                    .filter(|m| !m.awaiting_join)
                    .map(|m| m.last_seen + m.session_timeout);
                sessions.chain(g.rebalance_deadline)
            })
            .min()
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
