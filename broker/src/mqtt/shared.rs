//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 §4.8.2; Mosquitto offers them to
//! 3.1.1 clients too): each message matching the filter goes to one member of the group.
//!
//! The log is the group's queue. A [`ShareGroup`] keeps one cursor per log partition its filter
//! can match; members *claim* records from it when their own outgoing window has room
//! ([`ShareGroup::claim`]), so a busy or slow member simply claims less and the others take the
//! rest: distribution follows each member's capacity, not a fixed rotation. Nothing is copied
//! per member and nothing queues in memory but one decoded read per group.
//!
//! A member whose connection ends with QoS 1 deliveries it has not acknowledged gives them back
//! ([`ShareGroup::give_back`]); the next claim of any member takes those first, so they reach
//! another member (§4.8.2: the server "MAY attempt to send the message to another Client as
//! soon as it loses its connection"). QoS 2 deliveries are never given back (§4.8.2, MQTT-4.8.2-4
//! and -5): one not yet acknowledged stays with the member's session, which sends it again
//! when it resumes ([`super::shared_member`]), or is dropped if the session ends.
//!
//! A new group's cursors start at the high watermark of each partition (partitions created
//! later start at their log start), like a plain subscription. How long a group lives, and how
//! its position survives a restart, is [`super::shared_groups`]'s business: while a persistent
//! member is away the group keeps its place, and messages published meanwhile wait in the log.
//! The group remembers which claims are not yet settled and saves them with its cursors
//! (every [`super::shared_groups::SAVE_INTERVAL`]): after a restart they are claimed again first
//! (a QoS 1 delivery again: at least once), except the QoS 2 ones a stored session holds
//! ([`ShareGroup::hold`]; the session saved them before their PUBLISH went out). What the group
//! settled after its last save before a crash is claimed again: a QoS 2 message completed in
//! that interval may reach a second member.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rumqttc::mqttbytes::QoS;
use tokio::sync::Notify;

use crate::log::{Log, PartitionHandle, StoredRecord};

use super::delivery::{in_turn, read_from, record_topic};
use super::routing::Router;
use super::topic::{self, TopicError};

/// The prefix of a shared subscription's filter.
pub const SHARE_PREFIX: &str = "$share/";

/// Splits `$share/{group}/{filter}` into group and filter; `None` for a plain filter.
pub fn parse(filter: &str) -> Option<Result<(&str, &str), TopicError>> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    let Some((group, inner)) = rest.split_once('/') else {
        return Some(Err(TopicError::BadShare));
    };
    // §4.8.2: the share name is at least one character and holds no '/', '+' or '#'.
    if group.is_empty() || group.contains(['+', '#']) {
        return Some(Err(TopicError::BadShare));
    }
    Some(topic::validate_filter(inner).map(|()| (group, inner)))
}

/// Whether `filter` is a shared subscription.
pub fn is_shared(filter: &str) -> bool {
    filter.starts_with(SHARE_PREFIX)
}

/// A group's saved state, by partition store id (see [`ShareGroup::positions`]).
pub struct SavedGroup {
    pub cursors: HashMap<u32, i64>,
    pub unsettled: Vec<(u32, i64)>,
}

/// A group's state to save: next offsets per partition, and the claims not settled yet.
pub struct GroupPositions {
    pub cursors: Vec<(Arc<PartitionHandle>, i64)>,
    pub unsettled: Vec<(Arc<PartitionHandle>, i64)>,
}

/// A record claimed by a member, with what delivery needs to know of it.
pub struct Claimed {
    pub partition_id: u32,
    pub record: StoredRecord,
    /// The MQTT topic it was published to.
    pub mqtt_topic: String,
    /// The QoS it was published with (its delivery QoS is capped by it).
    pub published: QoS,
}

struct GroupCursor {
    partition: Arc<PartitionHandle>,
    /// Next offset no member has claimed yet.
    next: i64,
}

/// Records of one read not yet claimed.
struct Pending {
    partition_id: u32,
    records: VecDeque<StoredRecord>,
    /// Offset after the read: the cursor moves here once `records` is empty.
    end: i64,
}

struct GroupState {
    cursors: BTreeMap<u32, GroupCursor>,
    pending: Option<Pending>,
    /// Given back by members that left, by log position: claimed first.
    returned: VecDeque<(u32, i64)>,
    /// Partition the next read starts at (round robin over partitions).
    resume: u32,
    /// Members to wake when records are given back.
    members: Vec<Weak<Notify>>,
    /// Claimed records not yet settled by their member (acknowledged, or sent at QoS 0); saved
    /// with the group, so a crash sends them again (a QoS 2 one held by its session aside).
    outstanding: BTreeSet<(u32, i64)>,
    /// Those of them a stored session holds since a restart ([`ShareGroup::hold`]): never
    /// claimed again from `returned`.
    held: BTreeSet<(u32, i64)>,
    /// Records settled ahead of their partition's cursor (a held claim completed after a
    /// restart put the cursor back before it): passed over when the cursor reaches them.
    settled_ahead: BTreeSet<(u32, i64)>,
}

/// One share group of one filter; members hold it in an `Arc`.
pub struct ShareGroup {
    /// The filter inside `$share/{name}/`.
    pub filter: String,
    state: Mutex<GroupState>,
}

impl ShareGroup {
    /// A group starting at the high watermarks, or where `saved` says (by partition store id;
    /// partitions it does not name were created since and start at their log start). The
    /// claims `saved` names as unsettled are claimed again first (their members are gone;
    /// a session holding one of its QoS 2 deliveries takes it back with [`ShareGroup::hold`]).
    pub(super) fn new(
        filter: &str,
        log: &Log,
        router: &Router,
        saved: Option<SavedGroup>,
    ) -> ShareGroup {
        let (saved, unsettled) = match saved {
            Some(s) => (Some(s.cursors), s.unsettled),
            None => (None, Vec::new()),
        };
        let mut cursors = BTreeMap::new();
        for t in log.topics() {
            if !router.may_hold(filter, &t.name) {
                continue;
            }
            for p in &t.partitions {
                let next = match &saved {
                    None => p.high_watermark(),
                    Some(saved) => saved.get(&p.id).map_or(p.log_start(), |&at| {
                        at.clamp(p.log_start(), p.high_watermark())
                    }),
                };
                let partition = p.clone();
                cursors.insert(p.id, GroupCursor { partition, next });
            }
        }
        ShareGroup {
            filter: filter.to_string(),
            state: Mutex::new(GroupState {
                cursors,
                pending: None,
                returned: unsettled.iter().copied().collect(),
                resume: 0,
                members: Vec::new(),
                outstanding: unsettled.into_iter().collect(),
                held: BTreeSet::new(),
                settled_ahead: BTreeSet::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // A panic while holding the lock leaves plain data, still consistent enough to go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a member to be woken when records are given back.
    pub fn add_member(&self, nudge: &Arc<Notify>) {
        let mut state = self.lock();
        state.members.retain(|m| m.strong_count() > 0);
        state.members.push(Arc::downgrade(nudge));
    }

    /// Takes note of partitions created while no member was there to hear of them (a member
    /// joining calls this).
    pub fn refresh(&self, log: &Log, router: &Router) {
        for t in log.topics() {
            for p in &t.partitions {
                self.observe(p, router);
            }
        }
    }

    /// Takes note of a partition a member heard an append on: a partition of a topic created
    /// after the group (its filter's routes allow it) gets a cursor at its log start.
    pub fn observe(&self, partition: &Arc<PartitionHandle>, router: &Router) {
        let mut state = self.lock();
        if state.cursors.contains_key(&partition.id)
            || !router.may_hold(&self.filter, &partition.topic)
        {
            return;
        }
        state.cursors.insert(
            partition.id,
            GroupCursor {
                partition: partition.clone(),
                next: partition.log_start(),
            },
        );
    }

    /// Up to `max` records matching the filter that no member has claimed: given-back ones
    /// first, then new ones, partitions in turn. Records that do not match are passed over.
    pub fn claim(&self, log: &Log, max: usize) -> Vec<Claimed> {
        let mut state = self.lock();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((partition_id, offset)) = state.returned.pop_front() else {
                break;
            };
            let at = (partition_id, offset);
            if state.held.contains(&at) || !state.outstanding.contains(&at) {
                continue; // its session's since a restart, or settled by it meanwhile
            }
            match state.reread(log, partition_id, offset, &self.filter) {
                Some(c) => out.push(c),
                // Gone (retention) or no longer matching: nothing to send again.
                None => drop(state.outstanding.remove(&(partition_id, offset))),
            }
        }
        let fresh = out.len();
        while out.len() < max {
            if state.pending.is_none() && !state.read_next(log) {
                break;
            }
            state.take_pending(&self.filter, max, &mut out);
        }
        for c in &out[fresh..] {
            state.outstanding.insert((c.partition_id, c.record.offset));
        }
        out
    }

    /// Marks a record as claimed by a member already: a stored session's QoS 2 delivery,
    /// loaded at startup. No member claims it again until it is settled.
    pub fn hold(&self, partition_id: u32, offset: i64) {
        let mut state = self.lock();
        state.outstanding.insert((partition_id, offset));
        state.held.insert((partition_id, offset));
    }

    /// The record of a held claim (see [`ShareGroup::hold`]), read again for its member; `None`
    /// if it is gone (retention) or no longer matches.
    pub fn reread(&self, log: &Log, partition_id: u32, offset: i64) -> Option<Claimed> {
        self.lock().reread(log, partition_id, offset, &self.filter)
    }

    /// A claimed record is done with: acknowledged by its member's client, or sent at QoS 0,
    /// or skipped by the member.
    pub fn settle(&self, partition_id: u32, offset: i64) {
        let mut state = self.lock();
        let at = (partition_id, offset);
        state.outstanding.remove(&at);
        if state.held.remove(&at) {
            let ahead = (state.cursors.get(&partition_id)).is_some_and(|c| c.next <= offset);
            if ahead {
                state.settled_ahead.insert(at);
            }
        }
    }

    /// Where the group stands, for saving: per partition the next offset nobody claimed, and
    /// the claims not settled yet.
    pub fn positions(&self) -> GroupPositions {
        let state = self.lock();
        let cursors = (state.cursors.values())
            .map(|c| (c.partition.clone(), c.next))
            .collect();
        let unsettled = (state.outstanding.iter())
            .filter_map(|&(id, offset)| Some((state.cursors.get(&id)?.partition.clone(), offset)))
            .collect();
        GroupPositions { cursors, unsettled }
    }

    /// Returns claimed records no member has delivered for good; they are claimed again first.
    pub fn give_back(&self, positions: impl IntoIterator<Item = (u32, i64)>) {
        let mut state = self.lock();
        let mut back: Vec<(u32, i64)> = positions.into_iter().collect();
        back.sort_unstable();
        for position in back.into_iter().rev() {
            state.returned.push_front(position);
        }
        state.members.retain(|m| m.strong_count() > 0);
        for member in state.members.iter().filter_map(Weak::upgrade) {
            member.notify_one();
        }
    }
}

impl GroupState {
    /// Claims from the pending read into `out` (up to `max` in all).
    fn take_pending(&mut self, filter: &str, max: usize, out: &mut Vec<Claimed>) {
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        let id = pending.partition_id;
        let Some(cursor) = self.cursors.get_mut(&id) else {
            return;
        };
        while out.len() < max {
            let Some(record) = pending.records.pop_front() else {
                break;
            };
            cursor.next = record.offset + 1;
            let at = (id, record.offset);
            if self.outstanding.contains(&at) || self.settled_ahead.remove(&at) {
                continue; // a session's since a restart (see `hold`), or completed already
            }
            if let Some(c) = matching(id, record, &cursor.partition.topic, filter) {
                out.push(c);
            }
        }
        if pending.records.is_empty() {
            cursor.next = cursor.next.max(pending.end);
        } else {
            self.pending = Some(pending);
        }
    }

    /// Reads the next partition with unclaimed records into `pending`; false if there is none.
    fn read_next(&mut self, log: &Log) -> bool {
        for id in in_turn(&self.cursors, self.resume) {
            let Some(cursor) = self.cursors.get_mut(&id) else {
                continue;
            };
            let p = &cursor.partition;
            if p.is_deleted() {
                continue;
            }
            // Retention may have deleted what the group had not claimed yet.
            cursor.next = cursor.next.max(p.log_start());
            if !self.settled_ahead.is_empty() {
                let next = cursor.next;
                (self.settled_ahead)
                    .retain(|&(partition, offset)| partition != id || offset >= next);
            }
            if cursor.next >= p.high_watermark() {
                continue;
            }
            if let Some((records, end)) = read(log, p, cursor.next) {
                self.resume = id.wrapping_add(1);
                if records.is_empty() {
                    cursor.next = cursor.next.max(end);
                    continue;
                }
                self.pending = Some(Pending {
                    partition_id: id,
                    records,
                    end,
                });
                return true;
            }
        }
        false
    }

    /// The record at `offset` of a partition, again (it was given back).
    fn reread(&self, log: &Log, id: u32, offset: i64, filter: &str) -> Option<Claimed> {
        let p = &self.cursors.get(&id)?.partition;
        let (records, _) = read(log, p, offset)?;
        let record = records.into_iter().find(|r| r.offset == offset)?;
        matching(id, record, &p.topic, filter)
    }
}

/// The record as a claim, if its MQTT topic matches `filter`.
fn matching(id: u32, record: StoredRecord, log_topic: &str, filter: &str) -> Option<Claimed> {
    let (mqtt_topic, published) = record_topic(&record, log_topic)?;
    topic::matches(&mqtt_topic, filter).then_some(Claimed {
        partition_id: id,
        record,
        mqtt_topic,
        published,
    })
}

/// Decoded records from `from` on (one bounded read, as a subscriber's), and the offset after.
fn read(log: &Log, p: &PartitionHandle, from: i64) -> Option<(VecDeque<StoredRecord>, i64)> {
    read_from(log, p, from).map(|r| (r.records, r.end))
}
