//! Persistent sessions (MQTT 3.1.1 `clean_session = false`, MQTT 5 session expiry > 0): what is
//! kept of a session and how it is taken from, and put back into, a connection. No I/O; the
//! LMDB side is [`super::session_store`].
//!
//! # What a session is here
//!
//! Because every subscriber reads the log, a session is small: its filters (with QoS, MQTT 5
//! options and subscription identifier, and the offsets each filter started from) and, per log
//! partition its filters select, the offset up to which messages were delivered *and
//! acknowledged*. Messages "queued" for an offline session are simply the log's records after
//! those cursors, so an offline session costs no memory and nothing but these two entries on
//! disk. When the session resumes, delivery continues from the saved cursors: what was published
//! meanwhile arrives, and QoS 1/2 deliveries that were not acknowledged are sent again.
//!
//! Positions are saved by log topic name and partition index (not the store's partition id), so
//! a topic deleted and re-created while the session was away is read from its start.
//!
//! # Guarantee
//!
//! The cursor saved for a partition is the lowest of the delivery cursor and the offset of the
//! oldest unacknowledged QoS 1/2 delivery on it. It is saved at most every
//! [`SAVE_INTERVAL`] while connected (only when it changed: a busy subscriber costs one LMDB
//! commit per interval, not one per ack) and when the connection ends, whatever the reason.
//! Subscription changes are saved the same way. So:
//! - A session that ended normally (DISCONNECT, network loss, takeover, broker shutdown with
//!   SIGTERM) resumes exactly where it was acknowledged: no message is lost; unacknowledged
//!   QoS 1/2 messages are delivered again (see below), and so may be QoS 1/2 messages acknowledged out of
//!   order behind an unacknowledged one.
//! - After a crash (`kill -9`, power loss) the session resumes from its last save: QoS 0/1
//!   messages delivered or acknowledged since then (at most [`SAVE_INTERVAL`] of traffic) are
//!   delivered again (at least once), never lost; QoS 2 ones are not (see below); a SUBSCRIBE
//!   acknowledged within the last interval may be missing.
//! - QoS 0 messages follow the cursor like the rest and may likewise be repeated after a crash.
//! - Log retention can delete records an offline session has not read yet: delivery then
//!   resumes at the log start and a warning names the number of records lost.
//!
//! Open QoS 1/2 deliveries are saved with the cursors (position, packet id, QoS 2 stage), so a
//! resumed session gets them as MQTT asks (§4.4): the PUBLISH again with its original packet id
//! and DUP = 1, or, for a QoS 2 delivery whose PUBREC had arrived, the PUBREL again (and not the
//! message). QoS 2 is exactly once, a crash included: a QoS 2 PUBLISH or PUBREL goes out only
//! once a save records it (`connection`'s fence), and QoS 2 deliveries completed behind an
//! open one are saved and skipped at resume. QoS 1 deliveries opened since the last save go
//! out again after a crash as new deliveries (fresh ids, DUP = 0), as do QoS 1 messages
//! acknowledged out of order behind an open one (at least once).
//!
//! The session's QoS 2 deliveries of shared subscriptions not acknowledged yet are saved too
//! (`shared`): their group leaves them to this session, which sends them again at resume.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use serde::{Deserialize, Serialize};

use crate::log::{Log, PartitionHandle};

use super::inflight::{OpenDelivery, Outgoing};
use super::shared_member::SharedMember;
use super::subscriptions::{SubOptions, Subscriptions};

/// Longest interval between two saves of a connected persistent session's cursors: the most
/// traffic a crash can make it receive twice.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(500);

/// A log position: topic name, partition index, offset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
}

/// One saved subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSub {
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub id: Option<usize>,
    /// Where the filter started, per partition (see [`Subscriptions`]).
    pub since: Vec<Position>,
}

/// An open QoS 1/2 delivery, saved so a resumed session sends it again with its packet id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDelivery {
    pub at: Position,
    pub pkid: u16,
    pub qos: u8,
    /// QoS 2 with PUBREL sent: PUBREL is sent again, not the message.
    pub released: bool,
}

/// The fast-moving part of a session, saved at most every [`SAVE_INTERVAL`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCursors {
    pub cursors: Vec<Position>,
    #[serde(default)]
    pub inflight: Vec<StoredDelivery>,
    /// QoS 2 deliveries completed above an open one (the cursor is before them): skipped at
    /// resume, not delivered twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<Position>,
    /// QoS 2 deliveries of shared subscriptions not acknowledged yet: the session holds them
    /// (their group does not give them to another member) and sends them again at resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<StoredShared>,
    /// Packet ids of released QoS 2 deliveries of shared subscriptions (PUBCOMP awaited): the
    /// PUBREL is sent again at resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_released: Vec<u16>,
}

/// A held QoS 2 delivery of a shared subscription (see [`super::shared_member::Held`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StoredShared {
    /// The whole `$share/{group}/{filter}`.
    pub filter: String,
    pub at: Position,
    pub pkid: u16,
}

/// The slowly changing part of a session: its filters and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Seconds the session outlives its connection; `None` never expires.
    pub expiry_secs: Option<u32>,
    /// When its last connection ended (ms since the epoch); `None` while connected or if the
    /// broker stopped without saving it (it then counts from the broker's start).
    pub disconnected_ms: Option<i64>,
    pub subs: Vec<StoredSub>,
}

impl SessionRecord {
    /// When the session expires (ms since the epoch), if it is disconnected and can expire.
    pub fn expires_at(&self) -> Option<i64> {
        let secs = self.expiry_secs?;
        Some(
            self.disconnected_ms?
                .saturating_add(i64::from(secs).saturating_mul(1000)),
        )
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at().is_some_and(|at| at <= now_ms)
    }
}

fn position(p: &PartitionHandle, offset: i64) -> Position {
    Position {
        topic: p.topic.to_string(),
        partition: p.index,
        offset,
    }
}

fn qos_of(v: u8) -> QoS {
    match v {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// The store ids of the log's partitions, by (topic, index).
fn partition_ids(log: &Log) -> HashMap<(Arc<str>, u32), Arc<PartitionHandle>> {
    let mut out = HashMap::new();
    for t in log.topics() {
        for p in &t.partitions {
            out.insert((t.name.clone(), p.index), p.clone());
        }
    }
    out
}

/// The subscriptions as saved.
pub fn save_subs(subs: &Subscriptions, log: &Log) -> Vec<StoredSub> {
    let by_id: HashMap<u32, Arc<PartitionHandle>> = partition_ids(log)
        .into_values()
        .map(|p| (p.id, p))
        .collect();
    subs.iter()
        .map(|(filter, o, since)| {
            let mut since: Vec<Position> = since
                .iter()
                .filter_map(|(id, off)| by_id.get(id).map(|p| position(p, *off)))
                .collect();
            since.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            StoredSub {
                filter: filter.to_string(),
                qos: o.qos as u8,
                no_local: o.no_local,
                retain_as_published: o.retain_as_published,
                id: o.id,
                since,
            }
        })
        .collect()
}

/// The cursors as saved: per partition, the delivery cursor or the oldest unacknowledged
/// delivery, whichever is lower; and the open deliveries with their packet ids. Sorted, so
/// equal states compare equal.
pub fn save_cursors<'a>(
    cursors: impl Iterator<Item = (&'a Arc<PartitionHandle>, i64)>,
    outgoing: &mut Outgoing,
    shared_member: &SharedMember,
    log: &Log,
) -> SavedCursors {
    let unacked = outgoing.unacked_from();
    let cursors: Vec<(&Arc<PartitionHandle>, i64)> = cursors.collect();
    let mut out: Vec<Position> = cursors
        .iter()
        .map(|(p, next)| {
            let at = unacked.get(&p.id).map_or(*next, |u| (*next).min(*u));
            position(p, at)
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let by_id: HashMap<u32, &Arc<PartitionHandle>> =
        cursors.iter().map(|(p, _)| (p.id, *p)).collect();
    let inflight = outgoing
        .open_deliveries()
        .into_iter()
        .filter_map(|d| {
            Some(StoredDelivery {
                at: position(by_id.get(&d.partition_id)?, d.offset),
                pkid: d.pkid,
                qos: d.qos as u8,
                released: d.released,
            })
        })
        .collect();
    // Completed deliveries the saved cursors passed are not needed any more.
    let saved_at: HashMap<u32, i64> = (cursors.iter())
        .map(|(p, next)| (p.id, unacked.get(&p.id).map_or(*next, |u| (*next).min(*u))))
        .collect();
    outgoing.prune_done(|id| saved_at.get(&id).copied());
    let mut done: Vec<Position> = (outgoing.done_deliveries())
        .filter_map(|(id, offset)| Some(position(by_id.get(id)?, *offset)))
        .collect();
    done.sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    let held = shared_member.held_positions();
    let shared = if held.is_empty() {
        Vec::new()
    } else {
        let by_id: HashMap<u32, Arc<PartitionHandle>> = (partition_ids(log).into_values())
            .map(|p| (p.id, p))
            .collect();
        (held.into_iter())
            .filter_map(|(filter, id, offset, pkid)| {
                let at = position(by_id.get(&id)?, offset);
                Some(StoredShared { filter, at, pkid })
            })
            .collect()
    };
    SavedCursors {
        cursors: out,
        inflight,
        done,
        shared,
        shared_released: shared_member.released_ids(),
    }
}

/// Saved completed deliveries resolved to the log's current partitions.
pub fn resolve_done(saved: &[Position], log: &Log) -> Vec<(u32, i64)> {
    let parts = partition_ids(log);
    saved
        .iter()
        .filter_map(|pos| {
            let p = parts.get(&(Arc::from(pos.topic.as_str()), pos.partition))?;
            Some((p.id, pos.offset))
        })
        .collect()
}

/// Saved open deliveries resolved to the log's current partitions.
pub fn resolve_inflight(saved: &[StoredDelivery], log: &Log) -> Vec<OpenDelivery> {
    let parts = partition_ids(log);
    saved
        .iter()
        .filter_map(|d| {
            let p = parts.get(&(Arc::from(d.at.topic.as_str()), d.at.partition))?;
            // Deleted by retention since: delivery resumes after it, so it is never re-sent.
            if d.at.offset < p.log_start() {
                return None;
            }
            Some(OpenDelivery {
                partition_id: p.id,
                offset: d.at.offset,
                pkid: d.pkid,
                qos: qos_of(d.qos),
                released: d.released,
            })
        })
        .collect()
}

/// Puts saved filters back into `subs` (partitions that no longer exist are dropped from their
/// start offsets, so the filter takes all of a re-created topic).
pub fn restore_subs(saved: &[StoredSub], subs: &mut Subscriptions, log: &Log) {
    let parts = partition_ids(log);
    for s in saved {
        let since = s
            .since
            .iter()
            .filter_map(|pos| {
                let p = parts.get(&(Arc::from(pos.topic.as_str()), pos.partition))?;
                Some((p.id, pos.offset.min(p.high_watermark())))
            })
            .collect();
        let options = SubOptions {
            qos: qos_of(s.qos),
            no_local: s.no_local,
            retain_as_published: s.retain_as_published,
            id: s.id,
        };
        subs.subscribe(&s.filter, options, since);
    }
}

/// Saved cursors resolved to the log's current partitions.
pub fn resolve_cursors(saved: &[Position], log: &Log) -> Vec<(Arc<PartitionHandle>, i64)> {
    let parts = partition_ids(log);
    saved
        .iter()
        .filter_map(|pos| {
            let p = parts.get(&(Arc::from(pos.topic.as_str()), pos.partition))?;
            Some((p.clone(), pos.offset))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_counts_from_the_disconnect() {
        let mut r = SessionRecord {
            expiry_secs: Some(10),
            disconnected_ms: None,
            subs: vec![],
        };
        assert!(!r.expired(i64::MAX), "connected sessions do not expire");
        r.disconnected_ms = Some(1_000);
        assert!(!r.expired(10_999));
        assert!(r.expired(11_000));
        r.expiry_secs = None;
        assert!(!r.expired(i64::MAX), "never");
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = SessionRecord {
            expiry_secs: Some(u32::MAX),
            disconnected_ms: Some(5),
            subs: vec![StoredSub {
                filter: "a/#".into(),
                qos: 2,
                no_local: true,
                retain_as_published: false,
                id: Some(7),
                since: vec![Position {
                    topic: "a".into(),
                    partition: 1,
                    offset: 42,
                }],
            }],
        };
        let bytes = serde_json::to_vec(&r).unwrap();
        assert_eq!(serde_json::from_slice::<SessionRecord>(&bytes).unwrap(), r);
    }
}
