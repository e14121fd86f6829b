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
//!   answered (the leader's answer lists the members and their metadata). Started from Empty,
//!   it instead ends when the initial rebalance delay is over (see `rebalance`).
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
//!
//! One concern per file: this file holds the types; `join` the JoinGroup entry
//! and its answer; `rebalance` the join phase (start, completion, removal of members);
//! `protocol` the choice of a protocol every member supports; `sync` SyncGroup and the
//! assignment; `membership` the checks of a member's identity and generation (Heartbeat,
//! LeaveGroup, OffsetCommit); `timers` the passage of time (sessions, rebalance timeouts).

mod join;
mod membership;
mod protocol;
mod rebalance;
mod sync;
mod timers;

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
/// Most groups held at once (members and metadata live in memory). Groups with neither members
/// nor offsets are forgotten by the offset retention sweep, so the cap is only met by that many
/// live groups, or a client inventing group ids.
pub const MAX_GROUPS: usize = 10_000;

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
    /// The initial wait of a join phase that started from Empty.
    initial_delay: Option<rebalance::InitialDelay>,
    /// When the group last became Empty: offset retention counts from there.
    emptied_at: Option<Instant>,
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
            initial_delay: None,
            emptied_at: None,
        }
    }

    /// No members, and no member ids handed out that may still join.
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// When the group last became Empty (after having members), if it did in this process.
    pub fn emptied_at(&self) -> Option<Instant> {
        self.emptied_at
    }

    fn by_instance(&self, instance: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.clone())
    }
}

/// All groups of this coordinator.
#[derive(Debug, Default)]
pub struct Groups {
    groups: HashMap<String, Group>,
    /// Feeds generated member ids, with `salt` making them differ between broker runs.
    next_member: u64,
    salt: u64,
    /// How long a join phase that starts from Empty waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`); zero unless set.
    initial_rebalance_delay: Duration,
}

impl Groups {
    pub fn new(salt: u64) -> Groups {
        Groups {
            groups: HashMap::new(),
            next_member: 0,
            salt,
            initial_rebalance_delay: Duration::ZERO,
        }
    }

    /// Sets the initial rebalance delay (see `rebalance`).
    pub fn with_initial_rebalance_delay(mut self, delay: Duration) -> Groups {
        self.initial_rebalance_delay = delay;
        self
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
}

#[cfg(test)]
mod tests;
