//! Delivery from the log to one subscriber: cursors over log partitions, woken by append events.
//!
//! The log is the subscriber's buffer. A connection keeps a cursor per log partition its filters
//! can match ([`Router::may_hold`]), reads forward from it with short LMDB reads and turns
//! matching records into PUBLISH packets. Decoded batches are shared by all subscribers
//! ([`ReadCache`]), and a QoS 0 record goes to every MQTT 3.1.1 subscriber as one shared
//! encoding, so fanning out costs little more per subscriber than copying the packet. It reads
//! only while its outgoing window ([`Outgoing`]) and its socket buffer have room, so a
//! subscriber that stops acknowledging stops the reading, not the broker: no per-subscriber
//! queue grows in memory. At most one partially delivered read is held (one read's batches),
//! and the next pump resumes exactly there.
//!
//! Cursors start at a partition's high watermark when a filter selecting it is subscribed, so a
//! subscriber sees what was appended after it subscribed. A partition that appears later (a new
//! topic, first seen in an append event or a rescan) starts at its log start: everything in it
//! was appended after the subscription.
//!
//! A record's MQTT topic is its `mqtt.topic` header; records without it were written over Kafka
//! and are published under their log topic's name at QoS 1. Each record is delivered once per
//! connection at the highest QoS among the matching filters, capped by the QoS it was published
//! with.
//!
//! MQTT 5: the properties stored in the record's headers go back out (message expiry counted
//! down by the time spent in the log; expired records are skipped for every subscriber),
//! with the identifiers of the matching subscriptions; records the connection's own client
//! published skip its no-local filters (`mqtt.client_id`). A PUBLISH larger than an MQTT 5
//! client's Maximum Packet Size is skipped as if delivered (§3.1.2.11.4).
//!
//! With an ACL file (`[mqtt.auth]`), a record goes out only if the client may read its MQTT
//! topic; others are skipped as if delivered. Without one the check is a single branch.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use tokio::sync::broadcast;

use crate::log::{self, AppendEvent, Log, PartitionHandle, StoredRecord};

use super::auth::Permissions;
use super::codec::CodecError;
use super::inbound::{HEADER_QOS, HEADER_RETAIN, HEADER_TOPIC};
use super::inflight::Outgoing;
use super::packet::{PublishOut, ServerPacket, Version};
use super::properties::{remaining_expiry, MessageProps};
use super::read_cache::{DecodedBatch, Prepared, ReadCache, DECODED_BYTES, READ_BYTES};
use super::routing::Router;
use super::shared::ShareGroup;
use super::shared_member::SharedMember;
use super::subscriptions::{Granted, Subscriptions};
use super::topic;
use super::wire::Wire;

/// Bytes of batches one pump may read before letting the connection serve its socket.
const PUMP_BUDGET: usize = 1024 * 1024;
/// Largest body a PUBLISH can carry (MQTT's remaining-length limit minus the topic and id).
const MAX_REMAINING: usize = 268_435_455;

struct Cursor {
    partition: Arc<PartitionHandle>,
    /// Next offset to look at.
    next: i64,
}

/// Records read but not yet delivered, because the window or the socket buffer filled.
struct Buffered {
    partition_id: u32,
    /// Decoded batches, shared with other subscribers ([`ReadCache`]).
    batches: VecDeque<Arc<DecodedBatch>>,
    /// The next record to deliver in the first batch.
    next: usize,
    /// Offset after the last batch: the cursor moves here once all are delivered.
    end: i64,
}

/// What became of one cursor in a pump.
enum Served {
    /// Nothing to read.
    Idle,
    /// Read and delivered; `bytes` of batches read.
    Progress { bytes: usize },
    /// Stopped for lack of window or buffer space.
    Blocked,
}

/// Why the connection woke up on the log side.
pub enum Wake {
    Append(AppendEvent),
    /// Append events were missed: every partition must be re-checked.
    Lagged,
    /// The log is gone (broker shutting down).
    Closed,
    /// A share group this connection is in has records given back to claim.
    Nudge,
}

pub struct Delivery {
    log: Log,
    /// Reads shared with the other subscribers.
    reads: Arc<ReadCache>,
    /// Append announcements; only held while subscribed, so publish-only connections are not
    /// woken by every commit.
    events: Option<broadcast::Receiver<AppendEvent>>,
    /// By partition store id.
    cursors: BTreeMap<u32, Cursor>,
    buffered: Option<Buffered>,
    /// Cursor the next pump starts at: where the last one stopped, for fairness and so the
    /// buffered read is finished first.
    resume: u32,
    /// Whether the current filters select a log topic; cleared when the filters change.
    selected: HashMap<Arc<str>, bool>,
    /// This connection's client id, to recognise its own publishes (no-local).
    pub client_id: String,
    /// Topics this client may read (set at CONNECT).
    pub permissions: Permissions,
    /// The share groups of this connection's shared subscriptions.
    pub shared: SharedMember,
}

impl Delivery {
    pub fn new(log: Log, reads: Arc<ReadCache>) -> Delivery {
        Delivery {
            log,
            reads,
            events: None,
            cursors: BTreeMap::new(),
            buffered: None,
            resume: 0,
            selected: HashMap::new(),
            client_id: String::new(),
            permissions: Permissions::all(),
            shared: SharedMember::default(),
        }
    }

    /// Waits for the next append event (forever while not subscribed). Cancel-safe.
    pub async fn wake(&mut self) -> Wake {
        let Some(rx) = self.events.as_mut() else {
            return std::future::pending().await;
        };
        let wake = tokio::select! {
            event = rx.recv() => match event {
                Ok(ev) => Wake::Append(ev),
                Err(broadcast::error::RecvError::Lagged(_)) => Wake::Lagged,
                Err(broadcast::error::RecvError::Closed) => Wake::Closed,
            },
            () = self.shared.nudged() => Wake::Nudge,
        };
        if matches!(wake, Wake::Closed) {
            self.events = None;
        }
        wake
    }

    /// Further append events already queued, without waiting (at most `max`).
    pub fn ready_events(&mut self, max: usize) -> Vec<Wake> {
        let mut out = Vec::new();
        while let Some(rx) = self.events.as_mut() {
            if out.len() >= max {
                break;
            }
            match rx.try_recv() {
                Ok(ev) => out.push(Wake::Append(ev)),
                Err(broadcast::error::TryRecvError::Lagged(_)) => out.push(Wake::Lagged),
                Err(_) => break,
            }
        }
        out
    }

    /// Prepares cursors for a new filter (call before adding it to `subs`) and returns the
    /// high watermarks it starts from.
    pub fn start(
        &mut self,
        filter: &str,
        subs: &Subscriptions,
        router: &Router,
    ) -> HashMap<u32, i64> {
        // Subscribe to events before looking at the partitions, so no append is missed between.
        if self.events.is_none() {
            self.events = Some(self.log.subscribe());
        }
        self.selected.clear();
        let mut since = HashMap::new();
        for t in self.log.topics() {
            if !router.may_hold(filter, &t.name) {
                continue;
            }
            // A topic the existing filters select but that has no cursor yet appeared after they
            // were made: they want all of it.
            let late_for_others = subs.selects(router, &t.name);
            for p in &t.partitions {
                let hw = p.high_watermark();
                since.insert(p.id, hw);
                self.cursors.entry(p.id).or_insert_with(|| Cursor {
                    partition: p.clone(),
                    next: if late_for_others { p.log_start() } else { hw },
                });
            }
        }
        since
    }

    /// Joins the share group of shared subscription `filter` (already in `subs`).
    pub fn join_shared(&mut self, filter: &str, group: Arc<ShareGroup>) {
        if self.events.is_none() {
            self.events = Some(self.log.subscribe());
        }
        self.shared.join(filter, group);
    }

    /// Restores a persistent session's cursors (after its filters are in `subs`): each saved
    /// position is clamped to what the log still holds (records deleted by retention before the
    /// session read them are lost, with a warning) and partitions the filters select that have
    /// no saved position (created while the session was away) start at their log start.
    /// With `max_queued` above 0 no cursor starts more than that many records before its
    /// partition's end (`mqtt.max_queued_messages`; the skipped ones are logged).
    pub fn resume(
        &mut self,
        saved: Vec<(Arc<PartitionHandle>, i64)>,
        subs: &Subscriptions,
        router: &Router,
        max_queued: u64,
    ) {
        if subs.is_empty() {
            return;
        }
        if self.events.is_none() {
            self.events = Some(self.log.subscribe());
        }
        self.selected.clear();
        for (p, next) in saved {
            if !subs.selects(router, &p.topic) {
                continue;
            }
            let start = p.log_start();
            let next = if next < start {
                tracing::warn!(client_id = %self.client_id, topic = %p.topic, partition = p.index, lost = start - next, "mqtt session: records deleted by log retention before this offline session read them");
                start
            } else {
                next.min(p.high_watermark())
            };
            self.cursors.insert(
                p.id,
                Cursor {
                    partition: p.clone(),
                    next,
                },
            );
        }
        self.rescan(subs, router);
        if max_queued == 0 {
            return;
        }
        for c in self.cursors.values_mut() {
            let p = &c.partition;
            let floor = p.high_watermark().saturating_sub(max_queued as i64);
            if c.next < floor {
                tracing::warn!(client_id = %self.client_id, topic = %p.topic, partition = p.index, skipped = floor - c.next, "mqtt session: more records queued than mqtt.max_queued_messages; the oldest are skipped");
                c.next = floor;
            }
        }
    }

    /// Each cursor's partition and next offset to read.
    pub fn positions(&self) -> impl Iterator<Item = (&Arc<PartitionHandle>, i64)> {
        self.cursors.values().map(|c| (&c.partition, c.next))
    }

    /// Drops cursors no remaining filter needs (after UNSUBSCRIBE).
    pub fn forget_unselected(&mut self, subs: &Subscriptions, router: &Router) {
        self.selected.clear();
        if subs.is_empty() {
            self.events = None;
            self.cursors.clear();
        } else {
            self.cursors
                .retain(|_, c| subs.selects(router, &c.partition.topic));
        }
        if let Some(b) = &self.buffered {
            if !self.cursors.contains_key(&b.partition_id) {
                self.buffered = None;
            }
        }
    }

    /// Takes note of an append; starts a cursor on partitions of topics created since.
    pub fn on_wake(&mut self, wake: Wake, subs: &Subscriptions, router: &Router) {
        if subs.is_empty() {
            return;
        }
        match wake {
            Wake::Append(ev) => {
                let Some(t) = self.log.topic(&ev.topic) else {
                    return;
                };
                let Some(p) = t.partition(ev.partition as i32) else {
                    return;
                };
                if !self.shared.is_empty() {
                    self.shared.observe(p, router);
                }
                if !self.cursors.contains_key(&p.id) && self.is_selected(&t.name, subs, router) {
                    self.cursors.insert(
                        p.id,
                        Cursor {
                            partition: p.clone(),
                            next: p.log_start(),
                        },
                    );
                }
            }
            Wake::Lagged => {
                self.rescan(subs, router);
                for t in self.log.topics() {
                    for p in &t.partitions {
                        self.shared.observe(p, router);
                    }
                }
            }
            Wake::Closed | Wake::Nudge => {}
        }
    }

    /// Re-checks every topic: new partitions get cursors, deleted ones lose theirs.
    fn rescan(&mut self, subs: &Subscriptions, router: &Router) {
        let mut live = HashSet::new();
        for t in self.log.topics() {
            let selected = self.is_selected(&t.name, subs, router);
            for p in &t.partitions {
                live.insert(p.id);
                if selected && !self.cursors.contains_key(&p.id) {
                    self.cursors.insert(
                        p.id,
                        Cursor {
                            partition: p.clone(),
                            next: p.log_start(),
                        },
                    );
                }
            }
        }
        self.cursors.retain(|id, _| live.contains(id));
    }

    fn is_selected(&mut self, name: &Arc<str>, subs: &Subscriptions, router: &Router) -> bool {
        *self
            .selected
            .entry(name.clone())
            .or_insert_with(|| subs.selects(router, name))
    }

    /// Delivers what the window and `out` (up to `out_limit` bytes) allow, at `now_ms` (for
    /// message expiry). Returns true when it stopped only because of its read budget, so the
    /// caller should call again soon.
    pub fn pump(
        &mut self,
        subs: &Subscriptions,
        outgoing: &mut Outgoing,
        wire: &Wire,
        out: &mut BytesMut,
        out_limit: usize,
        now_ms: i64,
    ) -> bool {
        let more = self.pump_cursors(subs, outgoing, wire, out, out_limit, now_ms);
        if self.shared.has_work() {
            let (log, perms) = (&self.log, &self.permissions);
            self.shared
                .pump(log, subs, perms, outgoing, wire, out, out_limit, now_ms);
        }
        more
    }

    /// [`Delivery::pump`] for the plain subscriptions' cursors.
    fn pump_cursors(
        &mut self,
        subs: &Subscriptions,
        outgoing: &mut Outgoing,
        wire: &Wire,
        out: &mut BytesMut,
        out_limit: usize,
        now_ms: i64,
    ) -> bool {
        let to = To {
            wire,
            out_limit,
            now_ms,
        };
        if subs.is_empty() || self.cursors.is_empty() {
            return false;
        }
        let mut budget = PUMP_BUDGET;
        loop {
            let ids = in_turn(&self.cursors, self.resume);
            let mut progressed = false;
            for id in ids {
                match self.serve(id, subs, outgoing, &to, out) {
                    Served::Idle => {}
                    Served::Blocked => {
                        self.resume = id;
                        return false;
                    }
                    Served::Progress { bytes } => {
                        progressed = true;
                        budget = budget.saturating_sub(bytes);
                        if budget == 0 {
                            self.resume = id.wrapping_add(1);
                            return true;
                        }
                    }
                }
            }
            if !progressed {
                return false;
            }
        }
    }

    /// One read (or the buffered one) of one cursor, delivered as far as possible.
    fn serve(
        &mut self,
        id: u32,
        subs: &Subscriptions,
        outgoing: &mut Outgoing,
        to: &To,
        out: &mut BytesMut,
    ) -> Served {
        let Some(cursor) = self.cursors.get_mut(&id) else {
            return Served::Idle;
        };
        let mut read_bytes = 0;
        let mut buf = match self.buffered.take() {
            Some(b) if b.partition_id == id => b,
            Some(other) => {
                // Only one partial read at a time; it is served first (see `resume`).
                self.buffered = Some(other);
                return Served::Idle;
            }
            None => {
                // A deleted topic's partitions stay idle (no warning per wake-up).
                if cursor.next >= cursor.partition.high_watermark() || cursor.partition.is_deleted()
                {
                    return Served::Idle;
                }
                match self.reads.read(&self.log, &cursor.partition, cursor.next) {
                    Some(read) => {
                        // Cached batches count too: the budget bounds the work of one pump.
                        read_bytes = read.batches.iter().map(|b| b.bytes).sum();
                        let next = read.batches.front().map_or(0, |b| b.index_of(cursor.next));
                        Buffered {
                            partition_id: id,
                            batches: read.batches,
                            next,
                            end: read.end,
                        }
                    }
                    None => return Served::Idle,
                }
            }
        };
        while let Some(batch) = buf.batches.front().cloned() {
            let Some(prepared) = batch.records.get(buf.next) else {
                buf.batches.pop_front();
                buf.next = 0;
                continue;
            };
            let rec = &prepared.rec;
            if outgoing.is_done(id, rec.offset) {
                // A QoS 2 delivery a resumed session completed already.
                cursor.next = rec.offset + 1;
                buf.next += 1;
                continue;
            }
            let own = &self.client_id;
            // A delivery restored from a resumed session already holds its window slot.
            let restored = outgoing.is_restored(id, rec.offset);
            let perms = &self.permissions;
            let wanted = wanted(prepared, subs, id, own, perms, to.now_ms);
            // The common fan-out case: the same bytes for every MQTT 3.1.1 subscriber of a
            // batch several read (a resumed session's restored delivery takes the general
            // path, with its packet id).
            let shared = wanted
                .as_ref()
                .filter(|_| batch.shared && !restored)
                .and_then(|w| v4_qos0(prepared, w, to.wire));
            if let Some(bytes) = shared {
                if out.len() >= to.out_limit {
                    self.buffered = Some(buf);
                    return Served::Blocked;
                }
                if let Some(bytes) = bytes {
                    out.extend_from_slice(bytes);
                }
            } else if let Some(packet) = wanted.and_then(|w| w.packet(prepared, to.now_ms)) {
                let room = out.len() < to.out_limit;
                if !room || (packet.qos != QoS::AtMostOnce && !restored && outgoing.is_full()) {
                    self.buffered = Some(buf);
                    return Served::Blocked;
                }
                let origin = |restored| Origin {
                    partition_id: id,
                    offset: rec.offset,
                    restored,
                    tracked: true,
                };
                match outgoing.take_restored(id, rec.offset) {
                    // Released QoS 2: the client has it; its PUBREL went out at resume.
                    Some((_, true)) => {}
                    Some((pkid, false)) => {
                        publish(origin(Some(pkid)), packet, outgoing, to.wire, out);
                    }
                    None => {
                        publish(origin(None), packet, outgoing, to.wire, out);
                    }
                }
            } else if restored {
                outgoing.drop_restored(id, rec.offset);
            }
            cursor.next = rec.offset + 1;
            buf.next += 1;
        }
        cursor.next = cursor.next.max(buf.end);
        Served::Progress {
            bytes: read_bytes.max(1),
        }
    }
}

/// What a record holds in memory, roughly: key, value and headers.
pub(super) fn record_bytes(r: &log::StoredRecord) -> usize {
    let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, |b| b.len());
    len(&r.key)
        + len(&r.value)
        + r.headers
            .iter()
            .map(|(k, v)| k.len() + len(v))
            .sum::<usize>()
}

/// The keys of `cursors` from `from` on, then the ones before: partitions served in turn.
pub(super) fn in_turn<V>(cursors: &BTreeMap<u32, V>, from: u32) -> Vec<u32> {
    let after = cursors.range(from..);
    after
        .chain(cursors.range(..from))
        .map(|(id, _)| *id)
        .collect()
}

/// What one read of a partition gave.
pub(super) struct Read {
    /// Decoded records from the offset asked for on.
    pub records: VecDeque<StoredRecord>,
    /// Offset after the last batch read.
    pub end: i64,
}

/// Reads and decodes batches of `p` from offset `from` on: about [`READ_BYTES`] of them and at
/// most [`DECODED_BYTES`] decoded (past the first batch). `None` if there is nothing (or the
/// read failed, which is logged). Shared subscriptions' groups read the same way.
pub(super) fn read_from(log: &Log, p: &PartitionHandle, from: i64) -> Option<Read> {
    let batches = match log.read(p, from, READ_BYTES) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(topic = %p.topic, partition = p.index, offset = from, error = %e, "mqtt delivery: log read failed");
            return None;
        }
    };
    let mut end = batches.first()?.base_offset;
    let mut decoded = 0;
    let mut records = VecDeque::new();
    for b in batches {
        // Compressed batches can be far bigger decoded: stop once this read holds
        // DECODED_BYTES of records (the first batch always goes, or a big one would stall).
        if decoded >= DECODED_BYTES {
            break;
        }
        end = b.last_offset + 1;
        match log::batch::decode(&b.bytes) {
            Ok(rs) => {
                decoded += rs.iter().map(record_bytes).sum::<usize>();
                records.extend(rs.into_iter().filter(|r| r.offset >= from));
            }
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.index, offset = b.base_offset, error = %e, "mqtt delivery: skipping undecodable batch")
            }
        }
    }
    Some(Read { records, end })
}

/// Where a pump writes to.
struct To<'a> {
    wire: &'a Wire,
    out_limit: usize,
    now_ms: i64,
}

/// A record this connection is to get: a filter matches, its ACL allows, it has not expired.
struct Wanted {
    granted: Granted,
    /// The QoS it goes out with.
    qos: QoS,
}

impl Wanted {
    /// The PUBLISH (without packet id) it goes out as.
    fn packet(self, prepared: &Prepared, now_ms: i64) -> Option<PublishOut> {
        let (topic, published) = prepared.topic.as_ref()?;
        packet_for(
            &prepared.rec,
            topic.clone(),
            *published,
            self.granted,
            now_ms,
        )
    }
}

fn wanted(
    prepared: &Prepared,
    subs: &Subscriptions,
    partition_id: u32,
    client_id: &str,
    permissions: &Permissions,
    now_ms: i64,
) -> Option<Wanted> {
    let rec = &prepared.rec;
    let (mqtt_topic, published) = prepared.topic.as_ref()?;
    let own = !client_id.is_empty() && prepared.publisher.as_deref() == Some(client_id.as_bytes());
    let granted = subs.granted(mqtt_topic, partition_id, rec.offset, own)?;
    if !permissions.may_read(mqtt_topic) {
        return None;
    }
    if let Some(interval) = prepared.expiry {
        remaining_expiry(interval, rec.timestamp, now_ms)?;
    }
    let qos = granted.qos.min_with(*published);
    Some(Wanted { granted, qos })
}

/// The shared encoding of `prepared` if it goes out as the same QoS 0 PUBLISH to every MQTT
/// 3.1.1 subscriber (no packet id, no retain flag, no properties): `Some(None)` if that
/// PUBLISH cannot be sent (skipped as delivered, as [`publish`] does).
fn v4_qos0<'a>(prepared: &'a Prepared, w: &Wanted, wire: &Wire) -> Option<Option<&'a [u8]>> {
    let plain = wire.version == Version::V311
        && w.qos == QoS::AtMostOnce
        && !(prepared.retained && w.granted.retain_as_published);
    if !plain {
        return None;
    }
    let encoded = prepared.v4_qos0.get_or_init(|| {
        let (topic, _) = prepared.topic.as_ref()?;
        let packet = PublishOut {
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.clone(),
            pkid: 0,
            payload: prepared.rec.value.clone().unwrap_or_default(),
            props: MessageProps::default(),
            subscription_ids: Vec::new(),
            dup: false,
        };
        let mut out = BytesMut::new();
        let origin = Origin {
            partition_id: 0,
            offset: prepared.rec.offset,
            restored: None,
            tracked: false,
        };
        // QoS 0 takes nothing from the window: a scratch one will do.
        publish(origin, packet, &mut Outgoing::new(0), wire, &mut out);
        (!out.is_empty()).then(|| out.freeze())
    });
    Some(encoded.as_deref())
}

pub(super) fn header<'a>(rec: &'a StoredRecord, name: &str) -> Option<&'a Option<bytes::Bytes>> {
    rec.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A record's MQTT topic and the QoS it was published with: its `mqtt.topic` and `mqtt.qos`
/// headers, or for records written over Kafka the log topic's name at QoS 1. `None` if the
/// header is not a valid topic name.
pub(super) fn record_topic(rec: &StoredRecord, log_topic: &str) -> Option<(String, QoS)> {
    match header(rec, HEADER_TOPIC) {
        // Written over Kafka: the log topic's name, at least once.
        None => Some((log_topic.to_string(), QoS::AtLeastOnce)),
        Some(value) => {
            let name = std::str::from_utf8(value.as_deref()?).ok()?;
            topic::validate_topic_name(name).ok()?;
            let qos = match header(rec, HEADER_QOS).and_then(|v| v.as_deref()) {
                Some(b"0") => QoS::AtMostOnce,
                Some(b"2") => QoS::ExactlyOnce,
                _ => QoS::AtLeastOnce,
            };
            Some((name.to_string(), qos))
        }
    }
}

/// The PUBLISH of `rec` under `mqtt_topic` as `granted` says; `None` if it has expired.
pub(super) fn packet_for(
    rec: &StoredRecord,
    mqtt_topic: String,
    published: QoS,
    granted: Granted,
    now_ms: i64,
) -> Option<PublishOut> {
    let mut props = MessageProps::from_headers(&rec.headers);
    if let Some(interval) = props.message_expiry {
        props.message_expiry = Some(remaining_expiry(interval, rec.timestamp, now_ms)?);
    }
    let retained = header(rec, HEADER_RETAIN).and_then(|v| v.as_deref()) == Some(b"1");
    Some(PublishOut {
        qos: granted.qos.min_with(published),
        retain: retained && granted.retain_as_published,
        topic: mqtt_topic,
        pkid: 0,
        payload: rec.value.clone().unwrap_or_default(),
        props,
        subscription_ids: granted.ids,
        dup: false,
    })
}

trait MinQos {
    fn min_with(self, other: QoS) -> QoS;
}

impl MinQos for QoS {
    fn min_with(self, other: QoS) -> QoS {
        if (self as u8) < (other as u8) {
            self
        } else {
            other
        }
    }
}

/// Where a PUBLISH comes from and how its delivery is tracked.
pub(super) struct Origin {
    pub partition_id: u32,
    pub offset: i64,
    /// The packet id a resumed session's earlier connection sent it under.
    pub restored: Option<u16>,
    /// Whether the window records its log position for a persistent session (false for shared
    /// subscriptions, whose group tracks their deliveries instead).
    pub tracked: bool,
}

/// Appends the PUBLISH of a record to `out` (the caller checked the window); returns the packet
/// id it went out with (0 for QoS 0, or when it could not be sent).
pub(super) fn publish(
    origin: Origin,
    mut packet: PublishOut,
    outgoing: &mut Outgoing,
    wire: &Wire,
    out: &mut BytesMut,
) -> u16 {
    let Origin {
        partition_id,
        offset,
        restored,
        tracked,
    } = origin;
    if 4 + packet.topic.len() + packet.payload.len() > MAX_REMAINING {
        if let Some(pkid) = restored {
            outgoing.cancel(pkid);
        }
        tracing::warn!(
            topic = packet.topic,
            offset,
            "mqtt delivery: record too large for MQTT, skipped"
        );
        return 0;
    }
    if let Some(pkid) = restored {
        if packet.qos == QoS::AtMostOnce {
            outgoing.cancel(pkid);
        } else {
            // Sent again with the id the client may have seen it under (§4.4).
            packet.pkid = pkid;
            packet.dup = true;
        }
    } else if packet.qos != QoS::AtMostOnce {
        match outgoing.allocate(packet.qos) {
            Some(id) => packet.pkid = id,
            None => return 0, // not reached: the caller checked the window
        }
        if tracked {
            outgoing.set_origin(packet.pkid, partition_id, offset);
        }
    }
    let pkid = packet.pkid;
    let before = out.len();
    if let Err(e) = wire.encode(&ServerPacket::Publish(packet), out) {
        out.truncate(before); // never leave half a packet on the wire
        if matches!(e, CodecError::TooLargeForClient { .. }) {
            tracing::debug!(offset, error = %e, "mqtt delivery: skipped, larger than the client accepts");
        } else {
            tracing::warn!(offset, error = %e, "mqtt delivery: cannot encode PUBLISH");
        }
        if pkid != 0 {
            outgoing.cancel(pkid);
        }
        return 0;
    }
    pkid
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::records::Compression;

    use super::*;
    use crate::log::{batch, BatchHeader, LogOptions, NewRecord, TopicConfig};

    #[tokio::test]
    async fn a_read_buffers_a_bounded_amount_of_decompressed_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&LogOptions::for_tests(dir.path(), 256 << 20)).unwrap();
        let topic = log
            .create_topic("zeros", 1, TopicConfig::default())
            .await
            .unwrap();
        let p = topic.partitions[0].clone();
        // Batches of 1,000 x 1,100 bytes of zeros: over 1 MiB each decoded, a few KiB compressed,
        // so one 64 KiB read of stored batches would decode to over 10 MiB.
        let records: Vec<NewRecord> = (0..1000)
            .map(|_| NewRecord {
                timestamp: 1,
                key: None,
                value: Some(Bytes::from(vec![0u8; 1100])),
                headers: vec![],
            })
            .collect();
        let compressed = batch::encode_with(&records, Compression::Gzip).unwrap();
        assert!(compressed.len() * 10 < READ_BYTES);
        for _ in 0..10 {
            let header = BatchHeader::parse(&compressed).unwrap();
            log.append_batches(&p, vec![(header, compressed.clone())])
                .await
                .unwrap();
        }
        let got = read_from(&log, &p, 0).unwrap();
        assert_eq!(got.records.len(), 1000, "one batch's worth, not ten");
        assert_eq!(got.end, 1000, "the next read starts after it");
        drop((got, p, topic));
        log.close().await;
    }
}
