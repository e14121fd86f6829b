//! One connection's side of its shared subscriptions ([`super::shared`]): the groups it joined,
//! claiming from them while its window has room, and its unacknowledged deliveries, which go
//! back to their group if the connection ends first.

use std::collections::HashMap;
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

#[derive(Default)]
pub struct SharedMember {
    joined: Vec<Joined>,
    /// Open QoS 1/2 deliveries by packet id: (group, partition store id, offset), given back
    /// to the group if the connection ends before the client acknowledged them.
    open: HashMap<u16, (Arc<ShareGroup>, u32, i64)>,
    /// Woken when a group has records given back by a member that left.
    nudge: Arc<Notify>,
    /// Group the next pump starts with, so every group gets its turn.
    resume: usize,
}

impl SharedMember {
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
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

    /// The client acknowledged delivery `pkid` (PUBACK, or PUBREC: a QoS 2 message it has).
    pub fn settled(&mut self, pkid: u16) {
        if let Some((group, partition_id, offset)) = self.open.remove(&pkid) {
            group.settle(partition_id, offset);
        }
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
                    self.send(
                        &group,
                        c,
                        &options,
                        permissions,
                        outgoing,
                        wire,
                        out,
                        now_ms,
                    );
                }
            }
        }
        self.resume = (self.resume + 1) % n.max(1);
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        group: &Arc<ShareGroup>,
        c: Claimed,
        options: &SubOptions,
        permissions: &Permissions,
        outgoing: &mut Outgoing,
        wire: &Wire,
        out: &mut BytesMut,
        now_ms: i64,
    ) {
        let (partition_id, offset) = (c.partition_id, c.record.offset);
        // A topic this client may not read is skipped, as for a plain subscription.
        if !permissions.may_read(&c.mqtt_topic) {
            group.settle(partition_id, offset);
            return;
        }
        let granted = Granted {
            qos: options.qos,
            ids: options.id.into_iter().collect(),
            retain_as_published: options.retain_as_published,
        };
        let Some(packet) = packet_for(&c.record, c.mqtt_topic, c.published, granted, now_ms) else {
            group.settle(partition_id, offset); // expired
            return;
        };
        let origin = Origin {
            partition_id,
            offset,
            restored: None,
            tracked: false,
        };
        match publish(origin, packet, outgoing, wire, out) {
            // QoS 0, or not sendable: nothing to wait for.
            0 => group.settle(partition_id, offset),
            pkid => drop(
                self.open
                    .insert(pkid, (group.clone(), partition_id, offset)),
            ),
        }
    }
}

impl Drop for SharedMember {
    /// Whatever the client did not acknowledge goes back to its group for another member.
    fn drop(&mut self) {
        let mut open: Vec<_> = self.open.drain().map(|(_, open)| open).collect();
        open.sort_by_key(|(group, partition_id, offset)| {
            (Arc::as_ptr(group), *partition_id, *offset)
        });
        for same in open.chunk_by(|a, b| Arc::ptr_eq(&a.0, &b.0)) {
            if let Some((group, _, _)) = same.first() {
                group.give_back(same.iter().map(|(_, p, offset)| (*p, *offset)));
            }
        }
    }
}
