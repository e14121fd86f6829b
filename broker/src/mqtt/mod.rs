//! MQTT 3.1.1 and 5.0 listener: devices publish into the log and subscribe to it.
//!
//! Layout, outside in:
//! - [`server`]: the TCP accept loop, capped by a semaphore taken *before* `accept`.
//! - [`connection`]: one task per connection over any byte stream (TCP here, a QUIC
//!   bidirectional stream in `quic`), driving everything below from a single `select!` loop,
//!   the same for both protocol versions.
//! - [`wire`]: the version-specific packet layer. It picks the version from the CONNECT's
//!   protocol level and translates between the wire and the broker's own [`packet`] types, with
//!   [`codec`] + [`v4`] (MQTT 3.1.1, `rumqttc::mqttbytes::v4`) or [`v5`] (MQTT 5.0,
//!   `rumqttc::v5::mqttbytes::v5`). No I/O; sizes checked before anything is allocated.
//! - [`inbound`]: received publishes queued and batched towards [`Ingest`] (ack after the durable
//!   append, in order). [`routing`] names the log topic of an MQTT topic.
//! - [`subscriptions`], [`delivery`], [`inflight`]: filters, cursors over the log and the
//!   outgoing window. There is no in-memory fan-out: every subscriber reads the log, so a record
//!   written over Kafka reaches MQTT subscribers the same way as one published over MQTT.
//! - [`retained`]: retained messages, durable in the log's key/value store with an in-memory
//!   index of topics; [`retained_out`]: sending them to new subscriptions within the window.
//! - [`will`]: will messages, published through the same path as a PUBLISH when a connection
//!   ends without a normal DISCONNECT (MQTT 5 will delay included).
//! - [`topic`]: filter validation and matching; [`registry`]: client-id takeover;
//!   [`properties`]: MQTT 5 message properties as record headers.
//! - [`auth`]: username/password and topic ACLs from Mosquitto's `password_file` and
//!   `acl_file` (`[mqtt.auth]`): checked at CONNECT, on PUBLISH and SUBSCRIBE, and per message
//!   delivered.
//!
//! # Record headers
//!
//! A publish becomes one record: key = the MQTT topic, value = the payload, timestamp = receipt
//! time, and these headers (names are a contract with Kafka consumers):
//!
//! | header                | value                                                            |
//! |-----------------------|------------------------------------------------------------------|
//! | `mqtt.topic`          | the full MQTT topic (marks records that came from MQTT)          |
//! | `mqtt.qos`            | `0`, `1` or `2`: the QoS it was published with                    |
//! | `mqtt.client_id`      | the publishing client's id (MQTT 5 no-local)                      |
//! | `mqtt.retain`         | `1` when the retain flag was set (MQTT 5 retain-as-published)     |
//! | `mqtt.payload_format` | MQTT 5 payload format indicator, `0` or `1`                       |
//! | `mqtt.message_expiry` | MQTT 5 message expiry interval in seconds, as published           |
//! | `mqtt.content_type`   | MQTT 5 content type                                               |
//! | `mqtt.response_topic` | MQTT 5 response topic                                             |
//! | `mqtt.correlation_data` | MQTT 5 correlation data (raw bytes)                            |
//! | `mqtt.user.<name>`    | MQTT 5 user property `<name>` (one value per name: the log keeps one header per name) |
//!
//! MQTT 5 subscribers get the properties back (message expiry reduced by the time the record
//! spent in the log; expired records are delivered to nobody), plus the identifiers of their
//! matching subscriptions.
//!
//! # MQTT 5
//!
//! CONNACK says what is offered: an assigned client identifier for an empty one, Receive
//! Maximum [`connection::RECEIVE_MAXIMUM`], Maximum Packet Size (from `mqtt.max_packet_bytes`),
//! Topic Alias Maximum [`connection::TOPIC_ALIAS_MAXIMUM`] (client to server), retain
//! available, wildcard subscriptions, subscription identifiers and shared subscriptions
//! (`$share/{group}/{filter}`, for 3.1.1 clients too, as Mosquitto; see [`shared`]) available.
//! The client's Receive Maximum bounds the
//! deliveries in flight to it and its Maximum Packet Size the packets sent to it (larger
//! deliveries are skipped). Refused publishes get negative PUBACK/PUBREC (0x97 quota exceeded
//! when the log is full); protocol violations, keep-alive timeout (0x8D), takeover (0x8E) and
//! shutdown (0x8B) a DISCONNECT with the reason code. Enhanced authentication is not offered:
//! a CONNECT with an authentication method gets CONNACK 0x8C, an AUTH packet DISCONNECT 0x82.
//!
//! # Retained messages and wills
//!
//! A retained PUBLISH is appended to the log like any other (header `mqtt.retain`) and becomes
//! its topic's retained message in the same commit (an empty payload clears it), before the
//! publisher is acknowledged; a new subscription gets the matching ones with the retain flag
//! set (MQTT 5 retain handling honoured), at most `mqtt.max_retained` topics. A will is
//! published, through the same path, when a connection ends other than by a normal DISCONNECT;
//! see [`retained`] and [`will`].
//!
//! # Persistent sessions
//!
//! A 3.1.1 `clean_session = false` or MQTT 5 session expiry above 0 keeps the session in LMDB
//! ([`session`], [`session_store`]): its filters and, per log partition, the cursor up to
//! which deliveries were acknowledged. A reconnect with the same client id resumes it (CONNACK
//! session present) and delivery continues from the cursors, so what was published meanwhile
//! (it is in the log) arrives and unacknowledged QoS 1/2 messages come again; the exact
//! guarantee after a crash is in [`session`]. A clean start deletes the stored session; MQTT 5
//! sessions expire their interval after the disconnect; at most `mqtt.max_sessions` are kept.
//!
//! MQTT 3.1 clients and unknown protocol levels are refused with CONNACK "unacceptable
//! protocol version".

pub mod auth;
pub mod codec;
pub mod connection;
pub mod delivery;
pub mod inbound;
pub mod inflight;
pub mod link;
pub mod out_alias;
pub mod packet;
pub mod parking;
pub mod peer;
pub mod properties;
pub mod read_cache;
pub mod receipts;
pub mod registry;
pub mod retained;
pub mod retained_out;
pub mod routing;
pub mod server;
pub mod session;
pub mod session_store;
pub mod shared;
pub mod shared_groups;
pub mod shared_member;
pub mod subscriptions;
pub mod topic;
pub mod transport;
pub mod v4;
pub mod v5;
pub mod websocket;
pub mod will;
pub mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_transports;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{self, MqttSection};
use crate::ingest::{Ingest, IngestError, Submitted};
use crate::log::{Appended, MetaUpdate, NewRecord};

pub use connection::{serve_connection, Slot};
pub use inbound::{HEADER_CLIENT_ID, HEADER_QOS, HEADER_TOPIC};
pub use peer::Peer;
pub use routing::RouteError;
pub use server::{run, run_transport};
pub use transport::Transport;
pub use wire::fuzz_decode;

/// What `/metrics` shows of the MQTT side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttStats {
    /// Connected client ids.
    pub clients: usize,
    /// Quiet connections waiting in the parking.
    pub parked: usize,
    /// Subscriber reads served by the shared read cache, and from the log.
    pub cache_hits: u64,
    pub cache_misses: u64,
}

/// Everything connections share: the log's door, the settings and the connected clients.
/// Cheap to clone; TCP and QUIC listeners should share one so `max_connections` and client-id
/// takeover span both.
#[derive(Clone)]
pub struct MqttContext {
    inner: Arc<Shared>,
}

struct Shared {
    ingest: Ingest,
    router: routing::Router,
    /// `mqtt.max_packet_bytes`.
    max_packet_bytes: usize,
    /// `mqtt.max_inflight`.
    max_inflight: usize,
    /// One permit per open connection (`mqtt.max_connections`).
    connections: Arc<Semaphore>,
    clients: registry::Registry,
    retained: retained::RetainedStore,
    /// Wills waiting out their MQTT 5 delay.
    wills: will::PendingWills,
    /// Persistent sessions (`mqtt.max_sessions`).
    sessions: session_store::SessionStore,
    /// `mqtt.session_expiry_max_secs` (0: no cap).
    session_expiry_max_secs: u32,
    /// `mqtt.max_queued_messages` (0: no limit).
    max_queued_messages: u64,
    /// `[mqtt.auth]`: passwords and ACLs, loaded at startup.
    auth: auth::Auth,
    /// Share groups of `$share/...` subscriptions, with their saved positions.
    share_groups: Arc<shared_groups::ShareGroups>,
    /// `mqtt.max_connections`: the slots of `connections`.
    max_connections: usize,
    /// Quiet publish-only TCP connections, waiting without a task each.
    parking: parking::Parking,
    /// The latest decoded read of each partition, shared by subscribers.
    reads: Arc<read_cache::ReadCache>,
}

/// Why the MQTT context cannot be built; the broker does not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Routes(#[from] RouteError),
    #[error("mqtt.auth: {0}")]
    Auth(#[from] auth::AuthError),
}

impl MqttContext {
    /// Fails if a route's filter is not a valid MQTT topic filter or a file of `[mqtt.auth]`
    /// cannot be read or has a malformed line. Loads the index of retained messages from the
    /// log (a failed load is logged and starts with none).
    pub fn new(ingest: Ingest, section: &MqttSection) -> Result<MqttContext, SetupError> {
        let auth = match &section.auth {
            Some(config) => auth::Auth::load(config)?,
            None => auth::Auth::open(),
        };
        let router = routing::Router::new(&section.routes)?;
        let log = ingest.log().clone();
        let sessions = session_store::SessionStore::load(
            log.clone(),
            section.max_sessions,
            now_ms(),
        )
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "mqtt: cannot load stored sessions; starting without them");
            session_store::SessionStore::empty(log.clone(), section.max_sessions)
        });
        let share_groups = Arc::new(shared_groups::ShareGroups::default());
        sessions.park_share_groups(&share_groups, &router);
        let retained = retained::RetainedStore::load(log.clone(), section.max_retained, now_ms())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "mqtt: cannot load retained messages; starting without them");
                retained::RetainedStore::empty(log, section.max_retained)
            });
        Ok(MqttContext {
            inner: Arc::new(Shared {
                sessions,
                session_expiry_max_secs: section.session_expiry_max_secs,
                max_queued_messages: section.max_queued_messages,
                retained,
                wills: will::PendingWills::new(section.max_connections.max(1)),
                ingest,
                router,
                auth,
                share_groups,
                max_connections: section.max_connections.max(1),
                max_packet_bytes: section.max_packet_bytes,
                max_inflight: section.max_inflight,
                connections: Arc::new(Semaphore::new(section.max_connections.max(1))),
                clients: registry::Registry::default(),
                parking: parking::Parking::default(),
                reads: Arc::default(),
            }),
        })
    }

    /// Saves the share groups' positions every [`shared_groups::SAVE_INTERVAL`] until
    /// `shutdown`, then once more when every connection has ended (the broker waits for this
    /// before it closes the log).
    pub async fn run_share_saver(self, shutdown: CancellationToken) {
        let (groups, log) = (&self.inner.share_groups, self.inner.ingest.log());
        groups.clone().run_saver(log.clone(), shutdown).await;
        let slots = u32::try_from(self.inner.max_connections).unwrap_or(u32::MAX);
        let _all = self.inner.connections.acquire_many(slots).await;
        if let Err(e) = groups.save(log, now_ms()).await {
            tracing::warn!(error = %e, "mqtt: cannot save shared subscription positions at shutdown");
        }
    }

    /// Resumes every parked connection; call once `shutdown` is cancelled, so they end (a
    /// listener does before it waits for its connections).
    pub fn wake_parked(&self) {
        self.inner.parking.wake_all();
    }

    /// Connections parked now (quiet publish-only TCP connections; see [`parking`]).
    pub fn parked_connections(&self) -> usize {
        self.inner.parking.len()
    }

    /// Figures for `/metrics`.
    pub fn stats(&self) -> MqttStats {
        let (cache_hits, cache_misses) = self.inner.reads.counts();
        MqttStats {
            clients: self.inner.clients.len(),
            parked: self.parked_connections(),
            cache_hits,
            cache_misses,
        }
    }

    /// Waits for a free connection slot; hold the permit for the connection's lifetime. The
    /// QUIC listener calls this before [`serve_connection`] so both listeners share the cap.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.connections.clone().acquire_owned().await.ok()
    }

    /// Appends the records of one MQTT topic through the ingest path and, if one of them was a
    /// retained publish, makes the last such one the topic's retained message in the same
    /// commit. Both are durable when this resolves (see [`retained`]). `Ok(None)` when there was
    /// nothing to append.
    /// `meta` (a session's QoS 2 receipts) is written in the same commit.
    pub(crate) async fn append(
        &self,
        mqtt_topic: &str,
        log_topic: &str,
        records: Vec<NewRecord>,
        retained: Option<NewRecord>,
        meta: receipts::Entries,
    ) -> Result<Option<Appended>, IngestError> {
        if records.is_empty() {
            return Ok(None); // only resent QoS 2 messages, already stored
        }
        let mut records = records;
        let mut retained = retained;
        self.set_keys(mqtt_topic, &mut records, retained.as_mut());
        let ingest = &self.inner.ingest;
        let appended = match retained {
            None => {
                let meta = MetaUpdate::with_entries(None, meta);
                ingest.publish_with_meta(log_topic, records, meta).await?
            }
            Some(record) => {
                let store = &self.inner.retained;
                let guard = store.lock_writes().await;
                let (_, update) = store.prepare(&guard, mqtt_topic, &record)?;
                let meta = MetaUpdate::with_entries(update, meta);
                ingest.publish_with_meta(log_topic, records, meta).await?
            }
        };
        Ok(Some(appended))
    }

    /// [`MqttContext::append`] for records with no retained message, in two steps: this
    /// returns once the append is queued with the log writer (so a connection can queue its
    /// next batch behind it and both share commits), and the [`Submitted`] says when it is
    /// durable. `None` when there is nothing to append.
    pub(crate) async fn submit(
        &self,
        mqtt_topic: &str,
        log_topic: &str,
        mut records: Vec<NewRecord>,
        meta: receipts::Entries,
    ) -> Option<Submitted> {
        if records.is_empty() {
            return None; // only resent QoS 2 messages, already stored
        }
        self.set_keys(mqtt_topic, &mut records, None);
        let meta = MetaUpdate::with_entries(None, meta);
        let ingest = &self.inner.ingest;
        Some(
            ingest
                .submit_publish_with_meta(log_topic, records, meta)
                .await,
        )
    }

    /// Gives the records (one MQTT topic, one client) the key their route asks for. Records
    /// are made keyed by their MQTT topic ([`inbound::record`]), so the default costs nothing.
    fn set_keys(
        &self,
        mqtt_topic: &str,
        records: &mut [NewRecord],
        retained: Option<&mut NewRecord>,
    ) {
        let router = &self.inner.router;
        if router.key_choice(mqtt_topic) == config::RouteKey::Topic {
            return;
        }
        let client_id = records
            .first()
            .into_iter()
            .flat_map(|r| r.headers.iter())
            .find(|(name, _)| name == HEADER_CLIENT_ID)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("");
        let key = router.record_key(mqtt_topic, client_id);
        for r in records.iter_mut().chain(retained) {
            r.key = Some(key.clone());
        }
    }

    /// Number of retained messages kept.
    pub fn retained_count(&self) -> usize {
        self.inner.retained.len()
    }

    /// Number of stored persistent sessions.
    pub fn stored_sessions(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Number of clients currently connected (past CONNECT).
    pub fn connected_clients(&self) -> usize {
        self.inner.clients.len()
    }

    /// The certificate identity ([`Peer::cert_identity`]) of the connected client `client_id`:
    /// `None` when no such client is connected, `Some(None)` when it presented no certificate.
    pub fn client_cert_identity(&self, client_id: &str) -> Option<Option<String>> {
        self.inner.clients.cert_identity(client_id)
    }
}

/// Wall-clock milliseconds since the epoch: record timestamps and message expiry.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
