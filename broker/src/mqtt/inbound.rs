//! Publishes received from one client, on their way to the log. No I/O.
//!
//! The connection queues each PUBLISH here and keeps reading; one append is in flight at a time
//! and takes the leading run of queued publishes to the *same* MQTT topic as one batch. Taking
//! them in order keeps the log in the order the client sent (MQTT's ordered-topic rule) and acks
//! in order (§4.6); batching consecutive publishes of a topic turns a fast sensor's stream into
//! one durable commit per batch instead of one per message. A run never mixes topics because the
//! record key (the MQTT topic) picks the partition of the whole batch.
//!
//! The queue is bounded by count and bytes: when it is full the connection stops reading the
//! socket, so a producer faster than the disk is slowed by TCP instead of growing memory.

use std::collections::VecDeque;

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;

use crate::log::NewRecord;

use super::packet::reason;
use super::properties::MessageProps;

/// Header holding the full MQTT topic of a record; it marks records that came from MQTT.
pub const HEADER_TOPIC: &str = "mqtt.topic";
/// Header holding the QoS ("0", "1" or "2") a record was published with.
pub const HEADER_QOS: &str = "mqtt.qos";
/// Header holding the client id of the publisher (for MQTT 5 no-local subscriptions).
pub const HEADER_CLIENT_ID: &str = "mqtt.client_id";
/// Header present ("1") when the publish had the retain flag (for retain-as-published).
pub const HEADER_RETAIN: &str = "mqtt.retain";

/// Most publishes queued per connection before it stops reading.
const MAX_QUEUED: usize = 256;
/// Most payload bytes queued per connection before it stops reading (plus one packet).
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Most records in one append.
const MAX_BATCH_RECORDS: usize = 256;
/// Most payload bytes in one append (at least one record is always taken).
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// One received PUBLISH.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub topic: String,
    pub qos: QoS,
    pub pkid: u16,
    pub payload: Bytes,
    /// False for a resent QoS 2 message already stored: it only needs its PUBREC.
    pub store: bool,
    /// MQTT 5: refused with this reason code (e.g. topic name invalid); not stored, but
    /// acknowledged negatively in its turn, so acks stay in order.
    pub refused: Option<u8>,
    /// Receipt time (ms since the epoch), the record's timestamp.
    pub timestamp: i64,
    pub retain: bool,
    /// MQTT 5 application properties, stored as headers.
    pub props: MessageProps,
}

/// An acknowledgement owed once a batch is durable: PUBACK for QoS 1, PUBREC for QoS 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub qos: QoS,
    pub pkid: u16,
    /// Reason code of a refused publish; `None` when it is acked with the append's outcome.
    pub refused: Option<u8>,
}

/// Publishes of one MQTT topic to append together.
#[derive(Debug)]
pub struct Batch {
    pub mqtt_topic: String,
    pub records: Vec<NewRecord>,
    /// In the order the publishes arrived.
    pub acks: Vec<Ack>,
    /// The last retained publish of the batch, which becomes the topic's retained message (an
    /// empty payload clears it).
    pub retained: Option<NewRecord>,
    /// Packet ids of the QoS 2 publishes whose records are in the batch (first receipts).
    pub new_qos2: Vec<u16>,
}

#[derive(Debug, Default)]
pub struct InboundQueue {
    queue: VecDeque<Inbound>,
    bytes: usize,
    /// The publishing client, recorded in every record (set once connected); shared by the
    /// records rather than copied into each.
    client_id: Bytes,
}

impl InboundQueue {
    pub fn set_client_id(&mut self, client_id: &str) {
        self.client_id = Bytes::copy_from_slice(client_id.as_bytes());
    }

    pub fn push(&mut self, m: Inbound) {
        self.bytes += m.payload.len();
        self.queue.push_back(m);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the connection should stop reading until appends catch up.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= MAX_QUEUED || self.bytes >= MAX_QUEUED_BYTES
    }

    /// Takes the leading run of publishes to one topic.
    pub fn next_batch(&mut self) -> Option<Batch> {
        let topic = self.queue.front()?.topic.clone();
        let mut batch = Batch {
            mqtt_topic: topic,
            records: Vec::new(),
            acks: Vec::new(),
            retained: None,
            new_qos2: Vec::new(),
        };
        let mut bytes = 0;
        while let Some(m) = self.queue.front() {
            let taken = batch.acks.len() + batch.records.len();
            if m.topic != batch.mqtt_topic
                || batch.records.len() >= MAX_BATCH_RECORDS
                || (taken > 0 && bytes + m.payload.len() > MAX_BATCH_BYTES)
            {
                break;
            }
            let Some(m) = self.queue.pop_front() else {
                break;
            };
            self.bytes -= m.payload.len();
            bytes += m.payload.len();
            if m.qos != QoS::AtMostOnce {
                // A resent QoS 2 message is stored already: its PUBREC says so whatever
                // becomes of this batch (a failure would end the exchange, and the client
                // could reuse the id while the stored receipt holds it).
                let resent = m.qos == QoS::ExactlyOnce && !m.store;
                batch.acks.push(Ack {
                    qos: m.qos,
                    pkid: m.pkid,
                    refused: if resent {
                        Some(reason::SUCCESS)
                    } else {
                        m.refused
                    },
                });
            }
            if m.store && m.refused.is_none() {
                let rec = record(&m, &self.client_id);
                if m.retain {
                    batch.retained = Some(rec.clone());
                }
                if m.qos == QoS::ExactlyOnce {
                    batch.new_qos2.push(m.pkid);
                }
                batch.records.push(rec);
            }
        }
        Some(batch)
    }
}

/// The log record of a publish: key and `mqtt.topic` header are the full MQTT topic.
pub fn record(m: &Inbound, client_id: &Bytes) -> NewRecord {
    let qos = match m.qos {
        QoS::AtMostOnce => "0",
        QoS::AtLeastOnce => "1",
        QoS::ExactlyOnce => "2",
    };
    // The key and the topic header are the same bytes: one copy, shared.
    let topic = Bytes::copy_from_slice(m.topic.as_bytes());
    let mut headers = vec![
        (HEADER_TOPIC.to_string(), Some(topic.clone())),
        (
            HEADER_QOS.to_string(),
            Some(Bytes::from_static(qos.as_bytes())),
        ),
        (HEADER_CLIENT_ID.to_string(), Some(client_id.clone())),
    ];
    if m.retain {
        headers.push((HEADER_RETAIN.to_string(), Some(Bytes::from_static(b"1"))));
    }
    m.props.to_headers(&mut headers);
    NewRecord {
        timestamp: m.timestamp,
        key: Some(topic),
        value: Some(m.payload.clone()),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str, qos: QoS, pkid: u16, store: bool) -> Inbound {
        Inbound {
            topic: topic.into(),
            qos,
            pkid,
            payload: Bytes::from_static(b"p"),
            store,
            refused: None,
            timestamp: 7,
            retain: false,
            props: MessageProps::default(),
        }
    }

    #[test]
    fn batches_are_runs_of_one_topic_in_order() {
        let mut q = InboundQueue::default();
        q.push(publish("a/1", QoS::AtLeastOnce, 1, true));
        q.push(publish("a/1", QoS::AtMostOnce, 0, true));
        q.push(publish("a/1", QoS::ExactlyOnce, 2, false));
        q.push(publish("a/2", QoS::AtLeastOnce, 3, true));
        q.push(publish("a/1", QoS::AtLeastOnce, 4, true));

        let b = q.next_batch().unwrap();
        assert_eq!(b.mqtt_topic, "a/1");
        assert_eq!(b.records.len(), 2, "the QoS 2 resend is acked, not stored");
        assert_eq!(
            b.acks,
            vec![
                Ack {
                    qos: QoS::AtLeastOnce,
                    pkid: 1,
                    refused: None
                },
                Ack {
                    qos: QoS::ExactlyOnce,
                    pkid: 2,
                    refused: Some(reason::SUCCESS),
                }
            ]
        );
        assert!(b.new_qos2.is_empty(), "a resend adds no receipt");
        let r = &b.records[0];
        assert_eq!(r.key.as_deref(), Some(&b"a/1"[..]));
        assert_eq!(r.timestamp, 7);
        assert_eq!(
            r.headers[0],
            ("mqtt.topic".into(), Some(Bytes::from("a/1")))
        );
        assert_eq!(r.headers[1], ("mqtt.qos".into(), Some(Bytes::from("1"))));
        assert_eq!(b.records[1].headers[1].1.as_deref(), Some(&b"0"[..]));

        assert_eq!(q.next_batch().unwrap().mqtt_topic, "a/2");
        assert_eq!(q.next_batch().unwrap().acks[0].pkid, 4);
        assert!(q.next_batch().is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn queue_fills_by_count() {
        let mut q = InboundQueue::default();
        for i in 0..MAX_QUEUED {
            assert!(!q.is_full());
            q.push(publish("t", QoS::AtMostOnce, i as u16, true));
        }
        assert!(q.is_full());
        let b = q.next_batch().unwrap();
        assert_eq!(b.records.len(), MAX_BATCH_RECORDS);
        assert!(!q.is_full());
    }
}
