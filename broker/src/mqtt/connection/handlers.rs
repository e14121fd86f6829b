//! What the connection does with each client packet. No I/O: answers are queued in the write
//! buffer, publishes in the inbound queue; the loop in [`super`] does the rest.
//!
//! Where MQTT 3.1.1 and 5 differ, the difference is decided here on `wire.version`: a refused
//! publish is a negative PUBACK/PUBREC in MQTT 5 but a closed connection in 3.1.1 (which has no
//! negative acks), and topic aliases, the receive maximum and retain handling exist only in
//! MQTT 5.
//!
//! The `[mqtt.auth]` ACL is checked here too (see `auth`): a PUBLISH without write access is
//! never queued (MQTT 5 QoS 1/2 get 0x87, 3.1.1 the usual ack: it cannot refuse one), a filter
//! without read access gets a failed SUBACK entry.

use crate::mqtt::link::Link;
use rumqttc::mqttbytes::QoS;

use crate::ingest::IngestError;
use crate::log::LogError;
use crate::mqtt::inbound::{Ack, Batch, Inbound};
use crate::mqtt::inflight::{Receipt, MAX_AWAITING_PUBREL};
use crate::mqtt::packet::{reason, ClientPacket, PublishIn, ServerPacket, SubscribeIn, Version};
use crate::mqtt::receipts;
use crate::mqtt::subscriptions::{Added, SubOptions, MAX_SUBSCRIPTIONS};
use crate::mqtt::topic;
use crate::mqtt::wire::Incoming;
use crate::mqtt::{shared, topic::TopicError};

use super::{
    now_ms, AppendDone, Closed, Connection, Done, MAX_APPENDS_IN_FLIGHT, MAX_BYTES_IN_FLIGHT,
    MAX_PUBCOMPS_OWED, MAX_QOS0_APPENDS_IN_FLIGHT, OUT_READ_LIMIT, RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
};

impl<S: Link> Connection<S> {
    /// Decodes and handles the complete packets buffered, while there is room for their effects.
    pub(super) fn process_input(&mut self) -> Result<(), Closed> {
        while !self.input_blocked() && self.out.len() < OUT_READ_LIMIT && !self.disconnect_received
        {
            match self.wire.decode(&mut self.inbuf)? {
                None => break,
                Some(Incoming::Packet(packet)) => self.handle(packet)?,
                Some(Incoming::UnsupportedProtocol { .. }) => {
                    return Err(Closed::Protocol("second CONNECT".into()))
                }
            }
        }
        Ok(())
    }

    /// Whether reading waits for appends or PUBCOMPs to catch up.
    pub(super) fn input_blocked(&self) -> bool {
        self.inbound.is_full() || self.pubcomps_owed >= MAX_PUBCOMPS_OWED
    }

    fn v5(&self) -> bool {
        self.wire.version == Version::V5
    }

    fn handle(&mut self, packet: ClientPacket) -> Result<(), Closed> {
        match packet {
            ClientPacket::Publish(p) => self.on_publish(p)?,
            ClientPacket::PubAck { pkid } => {
                let known = self.outbound.as_deref_mut().is_some_and(|o| {
                    o.delivery.shared.settled(pkid);
                    o.outgoing.puback(pkid)
                });
                if !known {
                    tracing::debug!(client_id = %self.client_id, pkid, "mqtt: PUBACK for no open delivery");
                }
            }
            ClientPacket::PubRec { pkid, reason } => {
                let release = self.outbound.as_deref_mut().is_some_and(|o| {
                    // The client has the message (or refused it): a shared delivery is settled.
                    let shared = o.delivery.shared.settled(pkid);
                    if reason >= 0x80 {
                        // MQTT 5: the client refused the message; the exchange ends here
                        // (§4.3.3).
                        o.outgoing.pubrec_refused(pkid);
                        false
                    } else {
                        let release = o.outgoing.pubrec(pkid);
                        if release && shared {
                            o.delivery.shared.mark_released(pkid);
                        }
                        release
                    }
                });
                if release {
                    // The released stage is saved before the PUBREL goes (see `fence`).
                    self.fence_from(self.out.len());
                    self.send(&ServerPacket::PubRel { pkid });
                }
            }
            ClientPacket::PubRel { pkid } => {
                // Answered even for unknown ids (§4.3.3): the client may be resending after
                // we already completed it. MQTT 5 says so with a reason code.
                let known = self.awaiting_rel.release(pkid);
                let reason = if known || !self.v5() {
                    reason::SUCCESS
                } else {
                    reason::PACKET_ID_NOT_FOUND
                };
                if self.receipts_stored {
                    // PUBCOMP once the stored receipt is gone (see `receipts`); unknown ids
                    // wait their turn too, so PUBCOMPs keep the order of the PUBRELs (§4.6).
                    self.releasing.push((pkid, reason, known));
                    self.pubcomps_owed += 1;
                } else {
                    self.send(&ServerPacket::PubComp { pkid, reason });
                }
            }
            ClientPacket::PubComp { pkid } => {
                if let Some(o) = self.outbound.as_deref_mut() {
                    if o.outgoing.pubcomp(pkid) {
                        o.delivery.shared.completed(pkid);
                    }
                }
            }
            ClientPacket::Subscribe(s) => self.on_subscribe(s)?,
            ClientPacket::Unsubscribe { pkid, filters } => self.on_unsubscribe(pkid, filters),
            ClientPacket::PingReq => self.send(&ServerPacket::PingResp),
            ClientPacket::Disconnect {
                reason,
                session_expiry,
            } => {
                if let Some(expiry) = session_expiry {
                    self.change_session_expiry(expiry)?;
                }
                // Any reason but "disconnect with will message" discards the will (§3.14.4).
                if reason != reason::DISCONNECT_WITH_WILL {
                    self.will = None;
                }
                if reason >= 0x80 {
                    tracing::info!(client_id = %self.client_id, peer = %self.peer, reason, "mqtt: client disconnected with an error reason");
                }
                self.disconnect_received = true;
            }
            ClientPacket::Auth => {
                return Err(Closed::Protocol(
                    "AUTH without an authentication method in CONNECT (enhanced authentication is not supported)".into(),
                ))
            }
            ClientPacket::Connect(_) => return Err(Closed::Protocol("second CONNECT".into())),
            ClientPacket::ServerOnly(name) => {
                return Err(Closed::Protocol(format!(
                    "{name} is sent by servers, not clients"
                )))
            }
        }
        Ok(())
    }

    /// The topic of a publish, resolving and recording MQTT 5 topic aliases (§3.3.2.3.4).
    fn publish_topic(&mut self, p: &mut PublishIn) -> Result<String, Closed> {
        let Some(alias) = p.topic_alias else {
            if p.topic.is_empty() && self.v5() {
                return Err(Closed::Protocol(
                    "PUBLISH with an empty topic and no topic alias".into(),
                ));
            }
            return Ok(std::mem::take(&mut p.topic));
        };
        if alias == 0 || alias > TOPIC_ALIAS_MAXIMUM {
            return Err(Closed::Rejected {
                reason: reason::TOPIC_ALIAS_INVALID,
                message: format!("topic alias {alias} outside 1..={TOPIC_ALIAS_MAXIMUM}"),
            });
        }
        if p.topic.is_empty() {
            let known = self.aliases.iter().find(|(a, _)| *a == alias);
            return known.map(|(_, t)| t.clone()).ok_or_else(|| {
                Closed::Protocol(format!("PUBLISH with unknown topic alias {alias}"))
            });
        }
        if let Err(e) = topic::validate_topic_name(&p.topic) {
            return Err(self.invalid_topic(e));
        }
        match self.aliases.iter_mut().find(|(a, _)| *a == alias) {
            Some((_, topic)) => *topic = p.topic.clone(),
            None => self.aliases.push((alias, p.topic.clone())),
        }
        Ok(std::mem::take(&mut p.topic))
    }

    fn invalid_topic(&self, e: topic::TopicError) -> Closed {
        if self.v5() {
            Closed::Rejected {
                reason: reason::TOPIC_NAME_INVALID,
                message: format!("PUBLISH: {e}"),
            }
        } else {
            Closed::Protocol(format!("PUBLISH: {e}"))
        }
    }

    fn on_publish(&mut self, mut p: PublishIn) -> Result<(), Closed> {
        let topic = self.publish_topic(&mut p)?;
        let mut refused = None;
        if let Err(e) = topic::validate_topic_name(&topic) {
            if !self.v5() || p.qos == QoS::AtMostOnce {
                return Err(self.invalid_topic(e));
            }
            // MQTT 5 QoS 1/2: a negative PUBACK/PUBREC, the connection goes on.
            tracing::warn!(client_id = %self.client_id, peer = %self.peer, reason = %e, "mqtt: refusing publish");
            refused = Some(reason::TOPIC_NAME_INVALID);
        }
        if refused.is_none() && !self.permissions.may_publish(&topic) {
            tracing::debug!(client_id = %self.client_id, peer = %self.peer, %topic, qos = p.qos as u8, "mqtt: publish dropped: no write access (acl_file)");
            if p.qos == QoS::AtMostOnce {
                return Ok(());
            }
            // Acked in its turn, never stored; as Mosquitto, 3.1.1 gets a positive ack.
            refused = Some(if self.v5() {
                reason::NOT_AUTHORIZED
            } else {
                reason::SUCCESS
            });
        }
        if self.v5() {
            let unacked = self.qos1_unacked + self.awaiting_rel.len();
            if p.qos != QoS::AtMostOnce && unacked >= usize::from(RECEIVE_MAXIMUM) {
                return Err(Closed::Rejected {
                    reason: reason::RECEIVE_MAXIMUM_EXCEEDED,
                    message: format!(
                        "more than {RECEIVE_MAXIMUM} unacknowledged QoS 1/2 publishes"
                    ),
                });
            }
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
            QoS::AtLeastOnce => {
                self.qos1_unacked += 1;
                true
            }
            QoS::AtMostOnce => true,
        };
        // A retained publish is appended like any other (with `mqtt.retain`) and becomes the
        // topic's retained message once durable (see `retained`).
        self.inbound.push(Inbound {
            topic,
            qos: p.qos,
            pkid: p.pkid,
            payload: p.payload,
            store,
            refused,
            timestamp: now_ms(),
            retain: p.retain,
            props: p.props,
        });
        Ok(())
    }

    fn on_subscribe(&mut self, s: SubscribeIn) -> Result<(), Closed> {
        let ctx = self.ctx.clone();
        let router = &ctx.inner.router;
        let mut codes = Vec::with_capacity(s.filters.len());
        for f in s.filters {
            let options = SubOptions {
                qos: f.qos,
                no_local: f.no_local,
                retain_as_published: f.retain_as_published,
                id: s.id,
            };
            if let Some(share) = shared::parse(&f.path) {
                codes.push(self.subscribe_shared(&f.path, share, options)?);
                continue;
            }
            let code = if let Err(e) = topic::validate_filter(&f.path) {
                tracing::warn!(client_id = %self.client_id, peer = %self.peer, filter = %f.path, reason = %e, "mqtt: refusing subscription");
                reason::TOPIC_FILTER_INVALID
            } else if !self.permissions.may_subscribe(&f.path) {
                tracing::debug!(client_id = %self.client_id, peer = %self.peer, filter = %f.path, "mqtt: subscription refused: no read access (acl_file)");
                reason::NOT_AUTHORIZED
            } else if self.outbound().subs.contains(&f.path) {
                self.outbound()
                    .subs
                    .subscribe(&f.path, options, Default::default());
                // Retain handling 1: retained messages only for a new subscription (§3.8.3.1).
                if f.retain_handling == 0 && self.retained_allowed(&f.path) {
                    self.outbound().retained_out.start(&f.path, f.qos, s.id);
                }
                f.qos as u8
            } else if self.outbound().subs.len() >= MAX_SUBSCRIPTIONS {
                tracing::warn!(client_id = %self.client_id, peer = %self.peer, filter = %f.path, "mqtt: refusing subscription: {MAX_SUBSCRIPTIONS} filters already");
                reason::QUOTA_EXCEEDED
            } else {
                let o = self.outbound();
                let since = o.delivery.start(&f.path, &o.subs, router);
                match o.subs.subscribe(&f.path, options, since) {
                    Added::Full => {
                        o.delivery.forget_unselected(&o.subs, router);
                        reason::QUOTA_EXCEEDED
                    }
                    Added::New | Added::Replaced => {
                        if f.retain_handling < 2 && self.retained_allowed(&f.path) {
                            self.outbound().retained_out.start(&f.path, f.qos, s.id);
                        }
                        f.qos as u8
                    }
                }
            };
            codes.push(code);
        }
        self.send(&ServerPacket::SubAck {
            pkid: s.pkid,
            codes,
        });
        Ok(())
    }

    /// SUBSCRIBE to `$share/{group}/{filter}`: the connection joins the group (see
    /// [`shared`]); no retained messages are sent for a shared subscription (§4.8.2).
    fn subscribe_shared(
        &mut self,
        path: &str,
        share: Result<(&str, &str), TopicError>,
        options: SubOptions,
    ) -> Result<u8, Closed> {
        let (group, filter) = match share {
            Ok(parts) => parts,
            Err(e) => {
                tracing::warn!(client_id = %self.client_id, peer = %self.peer, filter = %path, reason = %e, "mqtt: refusing subscription");
                return Ok(reason::TOPIC_FILTER_INVALID);
            }
        };
        if options.no_local {
            // §3.8.3.1: a Protocol Error.
            return Err(Closed::Protocol(format!(
                "no-local set on shared subscription {path:?}"
            )));
        }
        if !self.permissions.may_subscribe(filter) {
            tracing::debug!(client_id = %self.client_id, peer = %self.peer, filter = %path, "mqtt: subscription refused: no read access (acl_file)");
            return Ok(reason::NOT_AUTHORIZED);
        }
        let subs = &mut self.outbound().subs;
        if !subs.contains(path) && subs.len() >= MAX_SUBSCRIPTIONS {
            tracing::warn!(client_id = %self.client_id, peer = %self.peer, filter = %path, "mqtt: refusing subscription: {MAX_SUBSCRIPTIONS} filters already");
            return Ok(reason::QUOTA_EXCEEDED);
        }
        subs.subscribe(path, options, Default::default());
        self.join_share_group(path, group, filter);
        Ok(options.qos as u8)
    }

    /// Joins the groups of the shared subscriptions a resumed session brought back.
    pub(super) fn rejoin_share_groups(&mut self) {
        let paths: Vec<String> = self
            .outbound()
            .subs
            .iter()
            .map(|(path, _, _)| path.to_string())
            .filter(|path| shared::is_shared(path))
            .collect();
        for path in paths {
            if let Some(Ok((group, filter))) = shared::parse(&path) {
                self.join_share_group(&path, group, filter);
            }
        }
    }

    /// Joins the group of a shared subscription in `subs` (on SUBSCRIBE and session resume).
    pub(super) fn join_share_group(&mut self, path: &str, group: &str, filter: &str) {
        let ctx = self.ctx.clone();
        let (log, router) = (ctx.inner.ingest.log(), &ctx.inner.router);
        let joined = ctx.inner.share_groups.join(group, filter, log, router);
        self.outbound().delivery.join_shared(path, joined);
    }

    /// Retained messages go out without the per-message ACL check, so only for a filter whose
    /// every topic the client may read.
    fn retained_allowed(&self, filter: &str) -> bool {
        let ok = self.permissions.may_read_all(filter);
        if !ok {
            tracing::debug!(client_id = %self.client_id, %filter, "mqtt: no retained messages for this filter: the ACL does not let the client read all of it");
        }
        ok
    }

    fn on_unsubscribe(&mut self, pkid: u16, filters: Vec<String>) {
        let ctx = self.ctx.clone();
        let o = self.outbound();
        let reasons = filters
            .iter()
            .map(|f| {
                o.retained_out.stop(f);
                o.delivery.shared.leave(f);
                if o.subs.unsubscribe(f) {
                    reason::SUCCESS
                } else {
                    reason::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        o.delivery.forget_unselected(&o.subs, &ctx.inner.router);
        self.send(&ServerPacket::UnsubAck { pkid, reasons });
    }

    /// Whether [`Self::start_appends`] may have something to start.
    pub(super) fn appends_to_start(&self) -> bool {
        let next_acked = match &self.held {
            Some(batch) => !batch.acks.is_empty(),
            None if self.inbound.is_empty() => return false,
            None => false,
        };
        self.room_for_append()
            && !self.retained_in_flight
            && (!next_acked || self.acked_in_flight < MAX_APPENDS_IN_FLIGHT)
    }

    /// Whether the appends in flight leave room for one more (see [`MAX_BYTES_IN_FLIGHT`]).
    fn room_for_append(&self) -> bool {
        self.pending.is_empty()
            || (self.pending.len() < MAX_QOS0_APPENDS_IN_FLIGHT
                && self.bytes_in_flight < MAX_BYTES_IN_FLIGHT)
    }

    /// Queues inbound batches with the log writer: up to [`MAX_APPENDS_IN_FLIGHT`] that owe
    /// acks, up to [`MAX_QOS0_APPENDS_IN_FLIGHT`] in all. A batch with a retained message
    /// waits until the ones before it are done and then goes alone.
    pub(super) async fn start_appends(&mut self) {
        while self.room_for_append() && !self.retained_in_flight {
            let Some(batch) = self
                .held
                .take()
                .map(|b| *b)
                .or_else(|| self.inbound.next_batch())
            else {
                return;
            };
            let waits = if batch.retained.is_some() {
                !self.pending.is_empty()
            } else {
                !batch.acks.is_empty() && self.acked_in_flight >= MAX_APPENDS_IN_FLIGHT
            };
            if waits {
                self.held = Some(Box::new(batch));
                return;
            }
            if !batch.acks.is_empty() {
                self.acked_in_flight += 1;
            }
            let bytes = batch_bytes(&batch);
            self.bytes_in_flight += bytes;
            if batch.retained.is_none() {
                self.submit_append(batch, bytes).await;
            } else {
                self.start_retained_append(batch, bytes);
            }
        }
    }

    /// Queues a batch without a retained message (of `bytes` payload bytes); returns once the
    /// writer has it (so the next batch is queued behind it).
    async fn submit_append(&mut self, batch: Batch, bytes: usize) {
        let log_topic = self.ctx.inner.router.log_topic(&batch.mqtt_topic);
        let receipts = self.receipts_of(&batch);
        let Batch {
            mqtt_topic,
            records,
            acks,
            new_qos2,
            ..
        } = batch;
        let receipt_ids = if receipts.is_empty() {
            Vec::new()
        } else {
            new_qos2
        };
        let submitted = self.ctx.submit(&mqtt_topic, &log_topic, records, receipts);
        let mut submitted = submitted.await;
        // Only a lone append is committed by this task when it waits; behind another, the
        // writer commits it while the connection reads on.
        if let (Some(s), false) = (&mut submitted, self.pending.is_empty()) {
            s.commit_in_background();
        }
        self.pending.push_back(Box::pin(async move {
            let result = match submitted {
                Some(submitted) => submitted.outcome().await.map(Some),
                None => Ok(None),
            };
            Done::Append(AppendDone {
                acks,
                receipts: receipt_ids,
                bytes,
                mqtt_topic,
                log_topic,
                result,
            })
        }));
    }

    /// The stored receipts a batch's first QoS 2 receipts add, to write with its records.
    fn receipts_of(&self, batch: &Batch) -> receipts::Entries {
        if !self.receipts_stored {
            return Vec::new();
        }
        receipts::received(&self.client_id, &batch.new_qos2)
    }

    /// Queues the deletion of the receipts the PUBRELs read so far released; their PUBCOMPs
    /// go out once it is durable, behind the appends queued before (see `receipts`).
    pub(super) async fn start_release(&mut self) {
        let releasing = std::mem::take(&mut self.releasing);
        let known: Vec<u16> = releasing.iter().filter(|r| r.2).map(|r| r.0).collect();
        let pubcomps = releasing
            .into_iter()
            .map(|(pkid, reason, _)| (pkid, reason));
        let pubcomps: Vec<(u16, u8)> = pubcomps.collect();
        let ticket = if known.is_empty() {
            None
        } else {
            let entries = receipts::released(&self.client_id, &known);
            Some(self.ctx.inner.ingest.log().submit_meta(entries).await)
        };
        let background = !self.pending.is_empty();
        let (log, client_id) = (self.ctx.inner.ingest.log().clone(), self.client_id.clone());
        let closing = self.closing.clone();
        self.pending.push_back(Box::pin(async move {
            let mut ticket = ticket;
            let result = loop {
                let result = match ticket {
                    None => Ok(()),
                    Some(Err(e)) => Err(e),
                    Some(Ok(mut ticket)) => {
                        if background {
                            ticket.commit_in_background();
                        }
                        ticket.durable().await
                    }
                };
                match result {
                    // A full log fails whole groups of writes, this one with another's append:
                    // tried again (in its turn, so PUBCOMPs keep their order) until retention
                    // makes room; PUBREL has no negative answer.
                    Err(e) if e.is_full() => {
                        tokio::select! {
                            () = tokio::time::sleep(FULL_RETRY) => {}
                            // Abandoned: no PUBCOMP, the client sends PUBREL again later.
                            () = closing.cancelled() => break Err(e),
                        }
                        let entries = receipts::released(&client_id, &known);
                        ticket = Some(log.submit_meta(entries).await);
                    }
                    result => break result,
                }
            };
            Done::Released { pubcomps, result }
        }));
    }

    /// Sends the PUBCOMPs of released receipts now durably deleted. A failed deletion ends the
    /// connection without them: the client sends PUBREL again after reconnecting.
    pub(super) fn finish_release(
        &mut self,
        pubcomps: Vec<(u16, u8)>,
        result: Result<(), LogError>,
    ) -> Result<(), Closed> {
        self.pubcomps_owed -= pubcomps.len();
        result.map_err(Closed::Receipts)?;
        for (pkid, reason) in pubcomps {
            self.send(&ServerPacket::PubComp { pkid, reason });
        }
        Ok(())
    }

    /// Appends a batch carrying a retained message, alone.
    fn start_retained_append(&mut self, batch: Batch, bytes: usize) {
        let ctx = self.ctx.clone();
        let log_topic = self.ctx.inner.router.log_topic(&batch.mqtt_topic);
        let receipts = self.receipts_of(&batch);
        let Batch {
            mqtt_topic,
            records,
            acks,
            retained,
            new_qos2,
        } = batch;
        let receipt_ids = if receipts.is_empty() {
            Vec::new()
        } else {
            new_qos2
        };
        self.retained_in_flight = true;
        self.pending.push_back(Box::pin(async move {
            let appended = ctx.append(&mqtt_topic, &log_topic, records, retained, receipts);
            let result = appended.await;
            Done::Append(AppendDone {
                acks,
                receipts: receipt_ids,
                bytes,
                mqtt_topic,
                log_topic,
                result,
            })
        }));
    }

    /// Acks a durable batch. A failed append ends a 3.1.1 connection without acking (it has no
    /// negative PUBACK: the client resends after reconnecting); an MQTT 5 client gets negative
    /// acks instead (0x97 quota exceeded when the log is full) and the connection goes on.
    pub(super) async fn finish_append(&mut self, done: AppendDone) -> Result<(), Closed> {
        if !done.acks.is_empty() {
            self.acked_in_flight -= 1;
        }
        self.bytes_in_flight -= done.bytes;
        let mut code = reason::SUCCESS;
        let failed_with_receipts = done.result.is_err() && !done.receipts.is_empty();
        if failed_with_receipts && self.ctx.inner.ingest.has_plugins(&done.log_topic) {
            // Not stored, so not received: through ingest plugins the receipts may have
            // committed while the records of another append failed (without plugins they
            // share the records' transaction). They go before any ack does (a resend must be
            // stored, not taken for a duplicate); if that fails too, the connection ends.
            let entries = receipts::released(&self.client_id, &done.receipts);
            let log = self.ctx.inner.ingest.log();
            log.put_meta(entries).await.map_err(Closed::Receipts)?;
        }
        if let Err(error) = done.result {
            if !self.v5() {
                return Err(Closed::Ingest {
                    mqtt_topic: done.mqtt_topic,
                    log_topic: done.log_topic,
                    error,
                });
            }
            code = match &error {
                IngestError::Log(e) if e.is_full() => reason::QUOTA_EXCEEDED,
                IngestError::Log(LogError::InvalidTopic { .. }) => reason::TOPIC_NAME_INVALID,
                _ => reason::UNSPECIFIED,
            };
            tracing::warn!(client_id = %self.client_id, peer = %self.peer, mqtt_topic = %done.mqtt_topic, log_topic = %done.log_topic, %error, "mqtt: append failed; publishes refused (QoS 0 ones are lost)");
        }
        for Ack { qos, pkid, refused } in done.acks {
            let code = refused.unwrap_or(code);
            let packet = match qos {
                QoS::ExactlyOnce => {
                    if code != reason::SUCCESS {
                        // A refused QoS 2 message ends with the PUBREC (§4.3.3).
                        self.awaiting_rel.release(pkid);
                    }
                    ServerPacket::PubRec { pkid, reason: code }
                }
                _ => {
                    self.qos1_unacked = self.qos1_unacked.saturating_sub(1);
                    ServerPacket::PubAck { pkid, reason: code }
                }
            };
            self.send(&packet);
        }
        Ok(())
    }

    /// Queues a packet for writing.
    pub(super) fn send(&mut self, packet: &ServerPacket) {
        let before = self.out.len();
        if let Err(e) = self.wire.encode(packet, &mut self.out) {
            self.out.truncate(before);
            tracing::warn!(client_id = %self.client_id, peer = %self.peer, error = %e, "mqtt: cannot encode answer");
        }
    }
}

/// How long a write refused by a full log (a receipt deletion, a session save for the fence)
/// waits before it is tried again.
pub(super) const FULL_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// Payload bytes of a batch's records.
fn batch_bytes(batch: &Batch) -> usize {
    let values = batch.records.iter().filter_map(|r| r.value.as_ref());
    values.map(|v| v.len()).sum()
}
