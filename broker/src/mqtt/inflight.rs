//! Packet-identifier bookkeeping of one connection, in both directions. No I/O.
//!
//! Outgoing: QoS 1/2 deliveries hold a packet id until the client's PUBACK (or PUBCOMP); at most
//! `window` of them are open, which is the per-connection flow control (when it is full the
//! connection stops reading the log). Ids are handed out round-robin and never reused while open.
//!
//! Incoming: QoS 2 publishes are remembered by id from receipt until the client's PUBREL, so a
//! resent PUBLISH with the same id is acknowledged but not stored twice (exactly once within a
//! connection). The set is bounded; a client exceeding it is misbehaving and is disconnected.

use std::collections::{HashMap, HashSet};

use rumqttc::mqttbytes::QoS;

/// Most incoming QoS 2 publishes awaiting PUBREL per connection. Clients keep far fewer in flight
/// (rumqttc: 100); the bound keeps a misbehaving one from growing the set without end.
pub const MAX_AWAITING_PUBREL: usize = 1024;

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
}

impl Outgoing {
    pub fn new(max_inflight: usize) -> Outgoing {
        Outgoing {
            window: max_inflight.clamp(1, u16::MAX as usize),
            next: 1,
            open: HashMap::new(),
        }
    }

    pub fn is_full(&self) -> bool {
        self.open.len() >= self.window
    }

    pub fn len(&self) -> usize {
        self.open.len()
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

    /// Frees an id whose PUBLISH was never sent.
    pub fn cancel(&mut self, id: u16) {
        self.open.remove(&id);
    }

    fn finish(&mut self, id: u16, expected: Stage) -> bool {
        if self.open.get(&id) == Some(&expected) {
            self.open.remove(&id);
            true
        } else {
            false
        }
    }
}

/// Incoming QoS 2 ids between PUBLISH and PUBREL.
#[derive(Debug, Default)]
pub struct AwaitingRelease {
    ids: HashSet<u16>,
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
    pub fn receive(&mut self, id: u16) -> Receipt {
        if self.ids.contains(&id) {
            Receipt::Duplicate
        } else if self.ids.len() >= MAX_AWAITING_PUBREL {
            Receipt::Overflow
        } else {
            self.ids.insert(id);
            Receipt::New
        }
    }

    /// PUBREL: the client will not resend this id; forget it. False if it was not known.
    pub fn release(&mut self, id: u16) -> bool {
        self.ids.remove(&id)
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
