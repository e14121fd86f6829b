//! One connection's side of its shared subscriptions ([`super::shared`]): the groups it joined,
//! claiming from them while its window has room, and its unacknowledged deliveries. If the
//! connection ends first, QoS 1 ones go back to their group for another member; QoS 2 ones
//! stay with a persistent session ([`Held`], sent again under their packet ids when it
//! resumes, MQTT-4.8.2-4) or are dropped with a session that ends (never sent to another
//! member, MQTT-4.8.2-5).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use tokio::sync::Notify;

use crate::log::{Log, PartitionHandle};

use super::auth::Permissions;
use super::delivery::{packet_for, publish, Origin};
use super::inflight::Outgoing;
use super::routing::Router;
use super::shared::{Claimed, ShareGroup};
use super::subscriptions::{Granted, SubOptions, Subscriptions};
use super::wire::Wire;

/// Most records claimed at once: what one member may hold back from the others while it
/// writes them out.
const CLAIM_MAX: usize = 32;

struct Joined {
    /// The whole `$share/{group}/{filter}` as subscribed.
    filter: String,
    group: Arc<ShareGroup>,
}

/// An open delivery of a claimed record.
struct Open {
    group: Arc<ShareGroup>,
    /// The whole `$share/{group}/{filter}` it was delivered for.
    filter: String,
    partition_id: u32,
    offset: i64,
    qos2: bool,
}

/// A QoS 2 delivery sent to a member and not yet acknowledged, kept by its persistent session
/// while it is away (and in its saved state): sent again, under the same packet id, when the
/// session resumes.
pub struct Held {
    pub group: Arc<ShareGroup>,
    /// The whole `$share/{group}/{filter}`.
    pub filter: String,
    pub partition_id: u32,
    pub offset: i64,
    pub pkid: u16,
}

impl Held {
    /// A session that ends drops it: the group goes on without it (MQTT-4.8.2-5).
    pub fn drop_delivery(self) {
        self.group.settle(self.partition_id, self.offset);
    }
}

/// Where a held delivery stands, for saving: (filter, partition store id, offset, packet id).
pub type HeldPosition = (String, u32, i64, u16);

/// What a persistent member's session keeps of its shared deliveries while it is away: QoS 2
/// deliveries not acknowledged yet, and the packet ids of those released (PUBREL sent, PUBCOMP
/// awaited; the PUBREL is sent again when it resumes).
#[derive(Default)]
pub struct Away {
    pub held: Vec<Held>,
    pub released: Vec<u16>,
}

impl Away {
    /// A session that ends drops its deliveries (MQTT-4.8.2-5).
    pub fn drop_deliveries(&mut self) {
        self.held.drain(..).for_each(Held::drop_delivery);
        self.released.clear();
    }
}

#[derive(Default)]
pub struct SharedMember {
    joined: Vec<Joined>,
    /// Open QoS 1/2 deliveries by packet id.
    open: HashMap<u16, Open>,
    /// QoS 2 deliveries of the resumed session to send again first (their ids taken).
    resend: VecDeque<Held>,
    /// Packet ids of QoS 2 deliveries released (settled in their group, PUBCOMP awaited).
    released: BTreeSet<u16>,
    /// Woken when a group has records given back by a member that left.
    nudge: Arc<Notify>,
    /// Group the next pump starts with, so every group gets its turn.
    resume: usize,
}

impl SharedMember {
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    /// Whether [`SharedMember::pump`] has anything to do: groups joined, or held deliveries
    /// to send again (also after their subscription is gone: a started QoS 2 delivery is
    /// completed, MQTT-3.10.4-3).
    pub fn has_work(&self) -> bool {
        !self.joined.is_empty() || !self.resend.is_empty()
    }

    /// Joins `group` for the subscription `filter` (already joined: nothing changes).
    pub fn join(&mut self, filter: &str, group: Arc<ShareGroup>) {
        if self.joined.iter().any(|j| j.filter == filter) {
            return;
        }
        group.add_member(&self.nudge);
        self.joined.push(Joined {
            filter: filter.to_string(),
            group,
        });
    }

    /// Leaves the group of `filter`; deliveries already sent stay open until acknowledged.
    pub fn leave(&mut self, filter: &str) {
        self.joined.retain(|j| j.filter != filter);
    }

    /// The client acknowledged delivery `pkid` (PUBACK, or PUBREC: a QoS 2 message it has);
    /// true if it was a QoS 2 delivery of a share group.
    pub fn settled(&mut self, pkid: u16) -> bool {
        let Some(o) = self.open.remove(&pkid) else {
            return false;
        };
        o.group.settle(o.partition_id, o.offset);
        o.qos2
    }

    /// PUBREL went out for QoS 2 delivery `pkid`: kept (and saved) until PUBCOMP.
    pub fn mark_released(&mut self, pkid: u16) {
        self.released.insert(pkid);
    }

    /// PUBCOMP for `pkid`.
    pub fn completed(&mut self, pkid: u16) {
        self.released.remove(&pkid);
    }

    /// Released QoS 2 deliveries awaiting PUBCOMP, for the session's saved state.
    pub fn released_ids(&self) -> Vec<u16> {
        self.released.iter().copied().collect()
    }

    /// The QoS 2 deliveries not acknowledged yet, for the session's saved state.
    pub fn held_positions(&self) -> Vec<HeldPosition> {
        let open = self.open.iter().filter(|(_, o)| o.qos2);
        let open = open.map(|(&pkid, o)| (o.filter.clone(), o.partition_id, o.offset, pkid));
        let resend =
            (self.resend.iter()).map(|h| (h.filter.clone(), h.partition_id, h.offset, h.pkid));
        let mut all: Vec<HeldPosition> = open.chain(resend).collect();
        all.sort();
        all
    }

    /// Takes what a persistent session keeps while it is away (see [`Away`]).
    pub fn take_away(&mut self) -> Away {
        Away {
            held: self.take_held(),
            released: std::mem::take(&mut self.released).into_iter().collect(),
        }
    }

    /// Takes the QoS 2 deliveries not acknowledged yet.
    fn take_held(&mut self) -> Vec<Held> {
        let ids: Vec<u16> = (self.open.iter())
            .filter(|(_, o)| o.qos2)
            .map(|(&pkid, _)| pkid)
            .collect();
        let mut held: Vec<Held> = std::mem::take(&mut self.resend).into();
        for pkid in ids {
            if let Some(o) = self.open.remove(&pkid) {
                held.push(Held {
                    group: o.group,
                    filter: o.filter,
                    partition_id: o.partition_id,
                    offset: o.offset,
                    pkid,
                });
            }
        }
        held
    }

    /// A resumed session's held deliveries: sent again, in log order, before anything is
    /// claimed, under their packet ids (taken in `outgoing` now, before any other delivery can
    /// take them; one already taken is dropped). Its released ones (whose PUBREL the caller
    /// sends again) await PUBCOMP.
    pub fn resume(
        &mut self,
        mut held: Vec<Held>,
        released: impl IntoIterator<Item = u16>,
        outgoing: &mut Outgoing,
    ) {
        held.sort_by_key(|h| (h.partition_id, h.offset));
        for h in held {
            if outgoing.reopen(h.pkid, QoS::ExactlyOnce) {
                self.resend.push_back(h);
            } else {
                h.drop_delivery();
            }
        }
        self.released.extend(released);
    }

    /// The groups joined, for a persistent session to hold while it is away.
    pub fn groups(&self) -> Vec<Arc<ShareGroup>> {
        self.joined.iter().map(|j| j.group.clone()).collect()
    }

    /// Tells the joined groups of a partition an append was heard on (see
    /// [`ShareGroup::observe`]).
    pub fn observe(&self, partition: &Arc<PartitionHandle>, router: &Router) {
        for j in &self.joined {
            j.group.observe(partition, router);
        }
    }

    /// Completes when a group this member joined has records given back. Cancel-safe.
    pub async fn nudged(&self) {
        self.nudge.notified().await
    }

    /// Claims and sends what the window and `out` (up to `out_limit` bytes) allow.
    #[allow(clippy::too_many_arguments)]
    pub fn pump(
        &mut self,
        log: &Log,
        subs: &Subscriptions,
        permissions: &Permissions,
        outgoing: &mut Outgoing,
        wire: &Wire,
        out: &mut BytesMut,
        out_limit: usize,
        now_ms: i64,
    ) {
        self.send_held(
            log,
            subs,
            permissions,
            outgoing,
            wire,
            out,
            out_limit,
            now_ms,
        );
        let n = self.joined.len();
        for k in 0..n {
            let i = (self.resume + k) % n;
            let group = self.joined[i].group.clone();
            let Some(options) = subs.options(&self.joined[i].filter) else {
                continue;
            };
            loop {
                let room = match options.qos {
                    QoS::AtMostOnce => CLAIM_MAX,
                    _ => outgoing.room().min(CLAIM_MAX),
                };
                if room == 0 || out.len() >= out_limit {
                    break;
                }
                let claimed = group.claim(log, room);
                if claimed.is_empty() {
                    break;
                }
                let mut rest = claimed.into_iter();
                while let Some(c) = rest.next() {
                    if out.len() >= out_limit {
                        let back = std::iter::once(&c).chain(rest.as_slice());
                        group.give_back(back.map(|c| (c.partition_id, c.record.offset)));
                        self.resume = i;
                        return;
                    }
                    let filter = &self.joined[i].filter;
                    let (group, filter) = (group.clone(), filter.clone());
                    self.send(
                        (group, filter),
                        c,
                        &options,
                        permissions,
                        (outgoing, None),
                        wire,
                        out,
                        now_ms,
                    );
                }
            }
        }
        self.resume = (self.resume + 1) % n.max(1);
    }

    /// Sends a resumed session's held QoS 2 deliveries again, under their packet ids (DUP).
    #[allow(clippy::too_many_arguments)]
    fn send_held(
        &mut self,
        log: &Log,
        subs: &Subscriptions,
        permissions: &Permissions,
        outgoing: &mut Outgoing,
        wire: &Wire,
        out: &mut BytesMut,
        out_limit: usize,
        now_ms: i64,
    ) {
        while out.len() < out_limit {
            let Some(h) = self.resend.pop_front() else {
                return;
            };
            let Some(c) = h.group.reread(log, h.partition_id, h.offset) else {
                outgoing.cancel(h.pkid);
                h.drop_delivery(); // the record is gone (retention, topic deleted)
                continue;
            };
            // Sent at QoS 2 as first, with the subscription's options while it lasts.
            let options = SubOptions {
                qos: QoS::ExactlyOnce,
                ..(subs.options(&h.filter)).unwrap_or(SubOptions::qos(QoS::ExactlyOnce))
            };
            let route = (h.group, h.filter);
            self.send(
                route,
                c,
                &options,
                permissions,
                (outgoing, Some(h.pkid)),
                wire,
                out,
                now_ms,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        (group, filter): (Arc<ShareGroup>, String),
        c: Claimed,
        options: &SubOptions,
        permissions: &Permissions,
        (outgoing, restored): (&mut Outgoing, Option<u16>),
        wire: &Wire,
        out: &mut BytesMut,
        now_ms: i64,
    ) {
        let (partition_id, offset) = (c.partition_id, c.record.offset);
        // A topic this client may not read is skipped, as for a plain subscription.
        if !permissions.may_read(&c.mqtt_topic) {
            if let Some(pkid) = restored {
                outgoing.cancel(pkid);
            }
            group.settle(partition_id, offset);
            return;
        }
        let granted = Granted {
            qos: options.qos,
            ids: options.id.into_iter().collect(),
            retain_as_published: options.retain_as_published,
        };
        let Some(packet) = packet_for(&c.record, c.mqtt_topic, c.published, granted, now_ms) else {
            if let Some(pkid) = restored {
                outgoing.cancel(pkid);
            }
            group.settle(partition_id, offset); // expired
            return;
        };
        let qos2 = packet.qos == QoS::ExactlyOnce;
        let origin = Origin {
            partition_id,
            offset,
            restored,
            tracked: false,
        };
        match publish(origin, packet, outgoing, wire, out) {
            // QoS 0, or not sendable: nothing to wait for.
            0 => group.settle(partition_id, offset),
            pkid => drop(self.open.insert(
                pkid,
                Open {
                    group,
                    filter,
                    partition_id,
                    offset,
                    qos2,
                },
            )),
        }
    }
}

impl Drop for SharedMember {
    /// QoS 1 deliveries the client did not acknowledge go back to their group for another
    /// member; QoS 2 ones still here (a persistent session took its own, see
    /// [`SharedMember::take_held`]) end with the session.
    fn drop(&mut self) {
        let mut open: Vec<Open> = self.open.drain().map(|(_, open)| open).collect();
        for o in open.iter().filter(|o| o.qos2) {
            o.group.settle(o.partition_id, o.offset);
        }
        for h in self.resend.drain(..) {
            h.drop_delivery();
        }
        open.retain(|o| !o.qos2);
        open.sort_by_key(|o| (Arc::as_ptr(&o.group), o.partition_id, o.offset));
        for same in open.chunk_by(|a, b| Arc::ptr_eq(&a.group, &b.group)) {
            if let Some(first) = same.first() {
                first
                    .group
                    .give_back(same.iter().map(|o| (o.partition_id, o.offset)));
            }
        }
    }
}
