//! Packet-identifier bookkeeping of one connection, in both directions. No I/O.
//!
//! Outgoing: QoS 1/2 deliveries hold a packet id until the client's PUBACK (or PUBCOMP); at most
//! `window` of them are open, which is the per-connection flow control (when it is full the
//! connection stops reading the log). Ids are handed out round-robin and never reused while open.
//!
//! Incoming: QoS 2 publishes are remembered by id from receipt until the client's PUBREL, so a
//! resent PUBLISH with the same id is acknowledged but not stored twice (a persistent session
//! also stores them, see [`super::receipts`]). The set is bounded; a client exceeding it is
//! misbehaving and is disconnected.

use std::collections::{BTreeSet, HashMap};

use rumqttc::mqttbytes::QoS;

/// Most incoming QoS 2 publishes awaiting PUBREL per connection. Clients keep far fewer in flight
/// (rumqttc: 100); the bound keeps a misbehaving one from growing the set without end.
pub const MAX_AWAITING_PUBREL: usize = 1024;

/// Most completed QoS 2 deliveries kept ahead of a persistent session's saved cursor (a
/// client that never acknowledges one delivery holds the cursor back while it acknowledges
/// the rest): about 40 bytes each.
const MAX_DONE: usize = 10_000;

/// Where an outgoing QoS > 0 delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1, sent, waiting for PUBACK.
    Qos1Sent,
    /// QoS 2, sent, waiting for PUBREC.
    Qos2Sent,
    /// QoS 2, PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// Open outgoing deliveries.
#[derive(Debug)]
pub struct Outgoing {
    /// Most open deliveries (`mqtt.max_inflight`, clamped to 1..=65535).
    window: usize,
    /// Next id to try; ids run 1..=65535 and wrap.
    next: u16,
    open: HashMap<u16, Stage>,
    /// Log position (partition store id, offset) of each open delivery read from the log, so a
    /// persistent session saves a cursor no later than its oldest unacknowledged delivery.
    origin: HashMap<u16, (u32, i64)>,
    /// Deliveries a resumed session's previous connection left open, by log position: the
    /// packet id to re-send the record with (DUP = 1), and whether it is a QoS 2 delivery
    /// already released (PUBREL sent again at resume; the record itself is not sent again).
    resend: HashMap<(u32, i64), (u16, bool)>,
    /// A persistent session's QoS 2 deliveries completed (PUBCOMP, or refused at PUBREC), by
    /// log position, while its saved cursor may still be before them (it stays before the
    /// oldest open delivery, and a resumed session starts there): saved too and skipped when
    /// it resumes (sent again they would be a second delivery). Dropped once a save's cursor
    /// passed them ([`Outgoing::prune_done`]).
    done: BTreeSet<(u32, i64)>,
    /// Whether completions are kept in `done` (a persistent session's).
    keep_done: bool,
    /// QoS 2 deliveries opened so far (see [`Outgoing::qos2_opened`]).
    qos2_opened: u64,
}

/// An open delivery as a persistent session saves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenDelivery {
    pub partition_id: u32,
    pub offset: i64,
    pub pkid: u16,
    pub qos: QoS,
    /// QoS 2, PUBREC received and PUBREL sent.
    pub released: bool,
}

impl Outgoing {
    pub fn new(max_inflight: usize) -> Outgoing {
        Outgoing {
            window: max_inflight.clamp(1, u16::MAX as usize),
            next: 1,
            open: HashMap::new(),
            origin: HashMap::new(),
            resend: HashMap::new(),
            done: BTreeSet::new(),
            keep_done: false,
            qos2_opened: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.open.len() >= self.window
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Deliveries that can still be opened before the window is full.
    pub fn room(&self) -> usize {
        self.window.saturating_sub(self.open.len())
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// A fresh packet id for a delivery at `qos` (1 or 2), or `None` when the window is full.
    pub fn allocate(&mut self, qos: QoS) -> Option<u16> {
        if self.is_full() {
            return None;
        }
        // The window is below 65535, so a free id exists and this loop ends.
        loop {
            let id = self.next;
            self.next = if self.next == u16::MAX {
                1
            } else {
                self.next + 1
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = self.open.entry(id) {
                slot.insert(match qos {
                    QoS::ExactlyOnce => Stage::Qos2Sent,
                    _ => Stage::Qos1Sent,
                });
                if qos == QoS::ExactlyOnce {
                    self.qos2_opened += 1;
                }
                return Some(id);
            }
        }
    }

    /// PUBACK: frees the id if it was an open QoS 1 delivery.
    pub fn puback(&mut self, id: u16) -> bool {
        self.finish(id, Stage::Qos1Sent)
    }

    /// PUBREC: true if the id was an open QoS 2 delivery (now waiting for PUBCOMP); the caller
    /// answers with PUBREL.
    pub fn pubrec(&mut self, id: u16) -> bool {
        match self.open.get_mut(&id) {
            Some(stage @ (Stage::Qos2Sent | Stage::Released)) => {
                *stage = Stage::Released;
                true
            }
            _ => false,
        }
    }

    /// MQTT 5 PUBREC with a failure reason: the client refused the message, so the QoS 2
    /// delivery ends without PUBREL (§4.3.3).
    pub fn pubrec_refused(&mut self, id: u16) -> bool {
        self.finish(id, Stage::Qos2Sent)
    }

    /// PUBCOMP: frees the id of a QoS 2 delivery.
    pub fn pubcomp(&mut self, id: u16) -> bool {
        self.finish(id, Stage::Released)
    }

    /// Opens `id` again for a QoS 2 delivery a resumed session held (a shared subscription's,
    /// whose log position the window does not track); false if the id is taken.
    pub fn reopen(&mut self, id: u16, qos: QoS) -> bool {
        if id == 0 || self.open.contains_key(&id) {
            return false;
        }
        let stage = match qos {
            QoS::ExactlyOnce => Stage::Qos2Sent,
            _ => Stage::Qos1Sent,
        };
        self.open.insert(id, stage);
        true
    }

    /// Opens `id` again as a released QoS 2 delivery (PUBREL sent, PUBCOMP awaited) a resumed
    /// session held; false if the id is taken.
    pub fn reopen_released(&mut self, id: u16) -> bool {
        if id == 0 || self.open.contains_key(&id) {
            return false;
        }
        self.open.insert(id, Stage::Released);
        true
    }

    /// Frees an id whose PUBLISH was never sent.
    pub fn cancel(&mut self, id: u16) {
        self.open.remove(&id);
        self.origin.remove(&id);
    }

    /// How many QoS 2 deliveries were opened so far: a persistent session saves them before
    /// their PUBLISH goes out when this moved (see `connection`'s fence).
    pub fn qos2_opened(&self) -> u64 {
        self.qos2_opened
    }

    /// Keeps completed QoS 2 deliveries for a persistent session's saves (see `done`).
    pub fn keep_done(&mut self) {
        self.keep_done = true;
    }

    /// Whether the record at `offset` of `partition_id` is a QoS 2 delivery completed already
    /// (see `done`): not to be sent again.
    pub fn is_done(&self, partition_id: u32, offset: i64) -> bool {
        !self.done.is_empty() && self.done.contains(&(partition_id, offset))
    }

    /// The completed QoS 2 deliveries a persistent session saves with its cursors.
    pub fn done_deliveries(&self) -> impl Iterator<Item = &(u32, i64)> {
        self.done.iter()
    }

    /// Puts back the completed deliveries a resumed session saved.
    pub fn restore_done(&mut self, done: &[(u32, i64)]) {
        self.done.extend(done.iter().copied());
    }

    /// Drops the completed deliveries a save's cursors passed: `saved_at` gives a partition's
    /// saved cursor (`None`: the session no longer reads it).
    pub fn prune_done(&mut self, saved_at: impl Fn(u32) -> Option<i64>) {
        self.done
            .retain(|&(p, offset)| saved_at(p).is_some_and(|at| offset >= at));
    }

    /// Records that open delivery `id` is the record at `offset` of partition `partition_id`.
    pub fn set_origin(&mut self, id: u16, partition_id: u32, offset: i64) {
        if self.open.contains_key(&id) {
            self.origin.insert(id, (partition_id, offset));
        }
    }

    /// Per partition store id, the lowest offset of an open (unacknowledged) delivery.
    pub fn unacked_from(&self) -> HashMap<u32, i64> {
        let mut low: HashMap<u32, i64> = HashMap::new();
        for &(partition, offset) in self.origin.values() {
            let e = low.entry(partition).or_insert(offset);
            *e = (*e).min(offset);
        }
        low
    }

    /// The open deliveries read from the log, for a persistent session to save.
    pub fn open_deliveries(&self) -> Vec<OpenDelivery> {
        let mut out: Vec<OpenDelivery> = self
            .origin
            .iter()
            .filter_map(|(&pkid, &(partition_id, offset))| {
                let stage = *self.open.get(&pkid)?;
                Some(OpenDelivery {
                    partition_id,
                    offset,
                    pkid,
                    qos: if stage == Stage::Qos1Sent {
                        QoS::AtLeastOnce
                    } else {
                        QoS::ExactlyOnce
                    },
                    released: stage == Stage::Released,
                })
            })
            .collect();
        out.sort_by_key(|d| (d.partition_id, d.offset));
        out
    }

    /// Re-opens the deliveries a resumed session's previous connection left open (at most the
    /// window; ids already open are skipped). Returns the ids to send PUBREL for again.
    pub fn restore(&mut self, deliveries: &[OpenDelivery]) -> Vec<u16> {
        let mut release = Vec::new();
        for d in deliveries {
            if self.is_full() || d.pkid == 0 || self.open.contains_key(&d.pkid) {
                continue;
            }
            let stage = match (d.qos, d.released) {
                (QoS::ExactlyOnce, true) => Stage::Released,
                (QoS::ExactlyOnce, false) => Stage::Qos2Sent,
                _ => Stage::Qos1Sent,
            };
            self.open.insert(d.pkid, stage);
            self.origin.insert(d.pkid, (d.partition_id, d.offset));
            self.resend
                .insert((d.partition_id, d.offset), (d.pkid, d.released));
            if d.released {
                release.push(d.pkid);
            }
        }
        release
    }

    /// Whether the record at `offset` of `partition_id` is a restored delivery (sent again
    /// with its id, outside the window, or not at all if released).
    pub fn is_restored(&self, partition_id: u32, offset: i64) -> bool {
        self.resend.contains_key(&(partition_id, offset))
    }

    /// Takes the restored delivery of the record at `offset`, if any: its packet id and
    /// whether it was released already.
    pub fn take_restored(&mut self, partition_id: u32, offset: i64) -> Option<(u16, bool)> {
        self.resend.remove(&(partition_id, offset))
    }

    /// The delivery cursor passed a restored record without sending it (no longer wanted, e.g.
    /// expired): its id is freed unless it awaits PUBCOMP.
    pub fn drop_restored(&mut self, partition_id: u32, offset: i64) {
        if let Some((pkid, released)) = self.resend.remove(&(partition_id, offset)) {
            if !released {
                self.cancel(pkid);
            }
        }
    }

    fn finish(&mut self, id: u16, expected: Stage) -> bool {
        if self.open.get(&id) != Some(&expected) {
            return false;
        }
        self.open.remove(&id);
        if let Some(at) = self.origin.remove(&id) {
            if self.keep_done && expected != Stage::Qos1Sent {
                if self.done.len() < MAX_DONE {
                    self.done.insert(at);
                } else {
                    tracing::warn!(
                        "mqtt: {MAX_DONE} completed QoS 2 deliveries behind an open one; \
                         later ones may be delivered again if the session resumes"
                    );
                }
            }
        }
        true
    }
}

/// Incoming QoS 2 ids between PUBLISH and PUBREL. A vector, not a set: at most
/// [`MAX_AWAITING_PUBREL`] ids (a scan is cheap) and, unlike an empty set, 24 bytes in each
/// connection that never uses QoS 2.
#[derive(Debug, Default)]
pub struct AwaitingRelease {
    ids: Vec<u16>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Receipt {
    /// First time this id is seen: store the message.
    New,
    /// A resend of a message already stored: acknowledge only.
    Duplicate,
    /// Too many open QoS 2 messages: a protocol abuse.
    Overflow,
}

impl AwaitingRelease {
    /// The ids a resumed session's stored receipts hold (see [`super::receipts`]).
    pub fn restored(mut ids: Vec<u16>) -> AwaitingRelease {
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(MAX_AWAITING_PUBREL);
        AwaitingRelease { ids }
    }

    pub fn receive(&mut self, id: u16) -> Receipt {
        if self.ids.contains(&id) {
            Receipt::Duplicate
        } else if self.ids.len() >= MAX_AWAITING_PUBREL {
            Receipt::Overflow
        } else {
            self.ids.push(id);
            Receipt::New
        }
    }

    /// PUBREL: the client will not resend this id; forget it. False if it was not known.
    pub fn release(&mut self, id: u16) -> bool {
        match self.ids.iter().position(|&known| known == id) {
            Some(i) => {
                self.ids.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// QoS 2 publishes between PUBLISH and PUBREL.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_bounds_deliveries_and_acks_reopen_it() {
        let mut out = Outgoing::new(2);
        let a = out.allocate(QoS::AtLeastOnce).unwrap();
        let b = out.allocate(QoS::ExactlyOnce).unwrap();
        assert_ne!(a, b);
        assert!(out.is_full());
        assert_eq!(out.allocate(QoS::AtLeastOnce), None);
        assert!(!out.puback(b), "a QoS 2 id is not freed by PUBACK");
        assert!(!out.pubcomp(b), "nor by PUBCOMP before PUBREC");
        assert!(out.pubrec(b));
        assert!(out.pubcomp(b));
        assert!(out.puback(a));
        assert!(!out.puback(a));
        assert_eq!(out.len(), 0);
    }

    #[test]
    fn unacked_origins_give_the_lowest_open_offset_per_partition() {
        let mut out = Outgoing::new(8);
        let a = out.allocate(QoS::AtLeastOnce).unwrap();
        let b = out.allocate(QoS::AtLeastOnce).unwrap();
        let c = out.allocate(QoS::ExactlyOnce).unwrap();
        out.set_origin(a, 1, 10);
        out.set_origin(b, 1, 7);
        out.set_origin(c, 2, 3);
        assert_eq!(out.unacked_from(), HashMap::from([(1, 7), (2, 3)]));
        assert!(out.puback(b));
        assert!(out.pubrec(c));
        assert_eq!(out.unacked_from(), HashMap::from([(1, 10), (2, 3)]));
        assert!(out.pubcomp(c));
        out.cancel(a);
        assert!(out.unacked_from().is_empty());
    }

    #[test]
    fn restored_deliveries_keep_their_ids_and_stages() {
        let mut out = Outgoing::new(2);
        let d = |offset, pkid, qos, released| OpenDelivery {
            partition_id: 1,
            offset,
            pkid,
            qos,
            released,
        };
        let saved = [
            d(5, 9, QoS::ExactlyOnce, true),
            d(6, 3, QoS::AtLeastOnce, false),
            d(7, 4, QoS::AtLeastOnce, false),
        ];
        assert_eq!(out.restore(&saved), vec![9], "PUBREL for the released one");
        assert!(out.is_full(), "the third does not fit the window");
        assert_eq!(out.open_deliveries(), saved[..2].to_vec());
        assert!(out.is_restored(1, 6) && !out.is_restored(1, 7));
        assert_eq!(out.take_restored(1, 6), Some((3, false)));
        assert!(out.puback(3));
        assert!(out.pubcomp(9), "the released one completes with PUBCOMP");
        out.drop_restored(1, 5);
        assert!(out.is_empty());
        assert_eq!(out.allocate(QoS::AtLeastOnce), Some(1));
    }

    #[test]
    fn completed_qos2_deliveries_are_kept_until_a_saved_cursor_passes_them() {
        let mut out = Outgoing::new(8);
        out.keep_done();
        let old = out.allocate(QoS::AtLeastOnce).unwrap();
        let q2 = out.allocate(QoS::ExactlyOnce).unwrap();
        let refused = out.allocate(QoS::ExactlyOnce).unwrap();
        out.set_origin(old, 1, 10);
        out.set_origin(q2, 1, 11);
        out.set_origin(refused, 2, 5);
        assert_eq!(out.qos2_opened(), 2);
        assert!(out.pubrec(q2) && out.pubcomp(q2));
        assert!(out.pubrec_refused(refused));
        assert!(out.puback(old));
        assert!(out.is_done(1, 11) && out.is_done(2, 5));
        // A save whose cursor is at 10 on partition 1 keeps 11; partition 2 is past 5.
        out.prune_done(|p| Some(if p == 1 { 10 } else { 6 }));
        assert_eq!(
            out.done_deliveries().copied().collect::<Vec<_>>(),
            [(1, 11)]
        );
        out.prune_done(|_| None);
        assert!(
            !out.is_done(1, 11),
            "a partition no longer read keeps nothing"
        );

        // A clean session keeps none.
        let mut clean = Outgoing::new(8);
        let id = clean.allocate(QoS::ExactlyOnce).unwrap();
        clean.set_origin(id, 1, 3);
        assert!(clean.pubrec(id) && clean.pubcomp(id));
        assert!(!clean.is_done(1, 3));
    }

    #[test]
    fn ids_wrap_and_skip_zero() {
        let mut out = Outgoing::new(1);
        out.next = u16::MAX;
        assert_eq!(out.allocate(QoS::AtLeastOnce), Some(u16::MAX));
        assert!(out.puback(u16::MAX));
        assert_eq!(out.allocate(QoS::AtLeastOnce), Some(1));
    }

    #[test]
    fn qos2_receipts_are_remembered_until_pubrel() {
        let mut rel = AwaitingRelease::default();
        assert_eq!(rel.receive(5), Receipt::New);
        assert_eq!(rel.receive(5), Receipt::Duplicate);
        rel.release(5);
        assert_eq!(rel.receive(5), Receipt::New);
        for id in 100..(100 + MAX_AWAITING_PUBREL as u16 - 1) {
            assert_eq!(rel.receive(id), Receipt::New);
        }
        assert_eq!(rel.receive(7), Receipt::Overflow);
    }

    proptest! {
        #[test]
        fn open_ids_never_collide(ops in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>()), 1..400)) {
            let mut out = Outgoing::new(50);
            let mut open: Vec<u16> = Vec::new();
            for (alloc, pick) in ops {
                if alloc || open.is_empty() {
                    match out.allocate(QoS::AtLeastOnce) {
                        Some(id) => {
                            prop_assert!(id != 0);
                            prop_assert!(!open.contains(&id), "id {} reused while open", id);
                            open.push(id);
                        }
                        None => prop_assert_eq!(open.len(), 50),
                    }
                } else {
                    let id = open.swap_remove(pick.index(open.len()));
                    prop_assert!(out.puback(id));
                }
            }
        }
    }
}
