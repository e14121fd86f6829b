//! Retained messages owed to one connection after its SUBSCRIBEs. No I/O.
//!
//! A subscription that wants retained messages (MQTT 5 retain handling 0, or 1 for a new
//! subscription; always in 3.1.1) becomes a scan: its filter and the last retained topic sent
//! for it. The scan walks the retained index in topic order, one message at a time, only while
//! the outgoing window ([`Outgoing`], i.e. `mqtt.max_inflight` and the client's Receive Maximum)
//! and the write buffer have room, exactly like deliveries from the log. So nothing is queued
//! per message: a connection holds at most [`MAX_SCANS`] filters and topic names.
//!
//! Messages go out with the retain flag set (§3.3.1.3), at the lower of the subscription's and
//! the published QoS, with the subscription's identifier (MQTT 5).

use std::collections::VecDeque;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;

use super::inflight::Outgoing;
use super::packet::{PublishOut, ServerPacket};
use super::retained::RetainedStore;
use super::subscriptions::MAX_SUBSCRIPTIONS;
use super::wire::Wire;

/// Most retained messages sent per pump, so a long scan does not starve the socket.
const PER_PUMP: usize = 64;
/// Most scans one connection has open: one per filter at most.
pub const MAX_SCANS: usize = MAX_SUBSCRIPTIONS;

#[derive(Debug)]
struct Scan {
    filter: String,
    qos: QoS,
    id: Option<usize>,
    /// Last topic sent (or skipped); the scan resumes after it.
    after: Option<String>,
}

#[derive(Debug, Default)]
pub struct RetainedOut {
    scans: VecDeque<Scan>,
}

impl RetainedOut {
    /// Starts sending the retained messages matching `filter` (restarting a scan already open
    /// for it: the SUBSCRIBE was repeated).
    pub fn start(&mut self, filter: &str, qos: QoS, id: Option<usize>) {
        self.scans.retain(|s| s.filter != filter);
        if self.scans.len() >= MAX_SCANS {
            tracing::warn!(%filter, "mqtt: too many retained scans open; retained messages not sent");
            return;
        }
        self.scans.push_back(Scan {
            filter: filter.to_string(),
            qos,
            id,
            after: None,
        });
    }

    /// Stops the scan of an unsubscribed filter.
    pub fn stop(&mut self, filter: &str) {
        self.scans.retain(|s| s.filter != filter);
    }

    pub fn is_empty(&self) -> bool {
        self.scans.is_empty()
    }

    /// Sends what the window and `out` (up to `out_limit` bytes) allow, at most [`PER_PUMP`]
    /// messages. Returns true when it stopped only because of that count.
    pub fn pump(
        &mut self,
        store: &RetainedStore,
        outgoing: &mut Outgoing,
        wire: &Wire,
        out: &mut BytesMut,
        out_limit: usize,
        now_ms: i64,
    ) -> bool {
        let mut sent = 0;
        while let Some(scan) = self.scans.front_mut() {
            if out.len() >= out_limit {
                return false;
            }
            if sent >= PER_PUMP {
                return true;
            }
            let Some(topic) = store.next_match(&scan.filter, scan.after.as_deref(), now_ms) else {
                self.scans.pop_front();
                continue;
            };
            let Some(msg) = store.get(&topic, now_ms) else {
                scan.after = Some(topic); // cleared or expired meanwhile
                continue;
            };
            let qos = if (scan.qos as u8) < (msg.qos as u8) {
                scan.qos
            } else {
                msg.qos
            };
            let mut packet = PublishOut {
                qos,
                retain: true,
                topic: msg.topic,
                pkid: 0,
                payload: msg.payload,
                props: msg.props,
                subscription_ids: scan.id.into_iter().collect(),
                dup: false,
            };
            if qos != QoS::AtMostOnce {
                match outgoing.allocate(qos) {
                    Some(id) => packet.pkid = id,
                    None => return false, // the window is full: resume on the next ack
                }
            }
            let pkid = packet.pkid;
            let before = out.len();
            if let Err(e) = wire.encode(&ServerPacket::Publish(packet), out) {
                out.truncate(before);
                tracing::debug!(%topic, error = %e, "mqtt: retained message not sent");
                if pkid != 0 {
                    outgoing.cancel(pkid);
                }
            }
            scan.after = Some(topic);
            sent += 1;
        }
        false
    }
}
