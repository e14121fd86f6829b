//! What the connection does with each client packet. No I/O: answers are queued in the write
//! buffer, publishes in the inbound queue; the loop in [`super`] does the rest.

use rumqttc::mqttbytes::v4::{
    Packet, PubAck, PubComp, PubRec, PubRel, Publish, SubAck, Subscribe, SubscribeReasonCode,
    UnsubAck, Unsubscribe,
};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::mqtt::codec::{packet_name, Frame};
use crate::mqtt::inbound::{Batch, Inbound};
use crate::mqtt::inflight::{Receipt, MAX_AWAITING_PUBREL};
use crate::mqtt::subscriptions::{Added, MAX_SUBSCRIPTIONS};
use crate::mqtt::topic;

use super::{now_ms, AppendDone, Closed, Connection, OUT_READ_LIMIT};

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    /// Decodes and handles the complete packets buffered, while there is room for their effects.
    pub(super) fn process_input(&mut self) -> Result<(), Closed> {
        while !self.inbound.is_full()
            && self.out.len() < OUT_READ_LIMIT
            && !self.disconnect_received
        {
            match self.codec.decode(&mut self.inbuf)? {
                None => break,
                Some(Frame::Packet(packet)) => self.handle(packet)?,
                Some(Frame::UnsupportedProtocol { .. }) => {
                    return Err(Closed::Protocol("second CONNECT".into()))
                }
            }
        }
        Ok(())
    }

    fn handle(&mut self, packet: Packet) -> Result<(), Closed> {
        match packet {
            Packet::Publish(p) => self.on_publish(p)?,
            Packet::PubAck(a) => {
                if !self.outgoing.puback(a.pkid) {
                    tracing::debug!(client_id = %self.client_id, pkid = a.pkid, "mqtt: PUBACK for no open delivery");
                }
            }
            Packet::PubRec(r) => {
                if self.outgoing.pubrec(r.pkid) {
                    self.send(&Packet::PubRel(PubRel::new(r.pkid)));
                }
            }
            Packet::PubRel(r) => {
                // Answered even for unknown ids (§4.3.3): the client may be resending after
                // we already completed it.
                self.awaiting_rel.release(r.pkid);
                self.send(&Packet::PubComp(PubComp::new(r.pkid)));
            }
            Packet::PubComp(c) => {
                self.outgoing.pubcomp(c.pkid);
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => self.send(&Packet::PingResp),
            Packet::Disconnect => self.disconnect_received = true,
            Packet::Connect(_) => return Err(Closed::Protocol("second CONNECT".into())),
            other => {
                return Err(Closed::Protocol(format!(
                    "{} is sent by servers, not clients",
                    packet_name(&other)
                )))
            }
        }
        Ok(())
    }

    fn on_publish(&mut self, p: Publish) -> Result<(), Closed> {
        if let Err(e) = topic::validate_topic_name(&p.topic) {
            return Err(Closed::Protocol(format!("PUBLISH: {e}")));
        }
        let store = match p.qos {
            QoS::ExactlyOnce => match self.awaiting_rel.receive(p.pkid) {
                Receipt::New => true,
                Receipt::Duplicate => false,
                Receipt::Overflow => {
                    return Err(Closed::Protocol(format!(
                        "more than {} QoS 2 publishes awaiting PUBREL",
                        MAX_AWAITING_PUBREL
                    )))
                }
            },
            _ => true,
        };
        // The retain flag is accepted and ignored: retained messages are a later issue.
        self.inbound.push(Inbound {
            topic: p.topic,
            qos: p.qos,
            pkid: p.pkid,
            payload: p.payload,
            store,
            timestamp: now_ms(),
        });
        Ok(())
    }

    fn on_subscribe(&mut self, s: Subscribe) {
        let router = &self.ctx.inner.router;
        let mut codes = Vec::with_capacity(s.filters.len());
        for f in s.filters {
            let code = if let Err(e) = topic::validate_filter(&f.path) {
                tracing::warn!(client_id = %self.client_id, peer = %self.peer, filter = %f.path, reason = %e, "mqtt: refusing subscription");
                SubscribeReasonCode::Failure
            } else if self.subs.contains(&f.path) {
                self.subs.subscribe(&f.path, f.qos, Default::default());
                SubscribeReasonCode::Success(f.qos)
            } else if self.subs.len() >= MAX_SUBSCRIPTIONS {
                tracing::warn!(client_id = %self.client_id, peer = %self.peer, filter = %f.path, "mqtt: refusing subscription: {MAX_SUBSCRIPTIONS} filters already");
                SubscribeReasonCode::Failure
            } else {
                let since = self.delivery.start(&f.path, &self.subs, router);
                match self.subs.subscribe(&f.path, f.qos, since) {
                    Added::Full => {
                        self.delivery.forget_unselected(&self.subs, router);
                        SubscribeReasonCode::Failure
                    }
                    Added::New | Added::Replaced => SubscribeReasonCode::Success(f.qos),
                }
            };
            codes.push(code);
        }
        self.send(&Packet::SubAck(SubAck::new(s.pkid, codes)));
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        for filter in &u.topics {
            self.subs.unsubscribe(filter);
        }
        self.delivery
            .forget_unselected(&self.subs, &self.ctx.inner.router);
        self.send(&Packet::UnsubAck(UnsubAck::new(u.pkid)));
    }

    pub(super) fn start_append(&mut self, batch: Batch) {
        let ingest = self.ctx.inner.ingest.clone();
        let log_topic = self.ctx.inner.router.log_topic(&batch.mqtt_topic);
        let Batch {
            mqtt_topic,
            records,
            acks,
        } = batch;
        self.pending = Some(Box::pin(async move {
            let result = if records.is_empty() {
                Ok(None) // only resent QoS 2 messages, already stored
            } else {
                ingest.publish(&log_topic, records).await.map(Some)
            };
            AppendDone {
                acks,
                mqtt_topic,
                log_topic,
                result,
            }
        }));
    }

    /// Acks a durable batch, or ends the connection without acking (MQTT 3.1.1 has no negative
    /// PUBACK: the client resends after reconnecting).
    pub(super) fn finish_append(&mut self, done: AppendDone) -> Result<(), Closed> {
        if let Err(error) = done.result {
            return Err(Closed::Ingest {
                mqtt_topic: done.mqtt_topic,
                log_topic: done.log_topic,
                error,
            });
        }
        for ack in done.acks {
            let packet = match ack.qos {
                QoS::ExactlyOnce => Packet::PubRec(PubRec::new(ack.pkid)),
                _ => Packet::PubAck(PubAck::new(ack.pkid)),
            };
            self.send(&packet);
        }
        Ok(())
    }

    /// Queues a packet for writing.
    pub(super) fn send(&mut self, packet: &Packet) {
        let before = self.out.len();
        if let Err(e) = self.codec.encode(packet, &mut self.out) {
            self.out.truncate(before);
            tracing::warn!(client_id = %self.client_id, peer = %self.peer, error = %e, "mqtt: cannot encode answer");
        }
    }
}
