//! MQTT 3.1.1 listener: devices publish into the log and subscribe to it.
//!
//! Layout, outside in:
//! - [`server`]: the TCP accept loop, capped by a semaphore taken *before* `accept`.
//! - [`connection`]: one task per connection over any byte stream (TCP here, a QUIC
//!   bidirectional stream in `quic`), driving everything below from a single `select!` loop.
//! - [`codec`]: framing on `rumqttc::mqttbytes::v4`, no I/O, with the broker-side checks.
//! - [`inbound`]: received publishes queued and batched towards [`Ingest`] (ack after the durable
//!   append, in order). [`routing`] names the log topic of an MQTT topic.
//! - [`subscriptions`], [`delivery`], [`inflight`]: filters, cursors over the log and the
//!   outgoing window. There is no in-memory fan-out: every subscriber reads the log, so a record
//!   written over Kafka reaches MQTT subscribers the same way as one published over MQTT.
//! - [`topic`]: filter validation and matching; [`registry`]: client-id takeover.
//!
//! Not yet: persistent sessions (`clean_session = false` is accepted and treated as a clean
//! session: CONNACK says no session is present), retained messages (the retain flag is accepted
//! and the message stored as any other) and wills (parsed, never published). MQTT 5 and 3.1
//! clients are refused with CONNACK "unacceptable protocol version".

pub mod codec;
pub mod connection;
pub mod delivery;
pub mod inbound;
pub mod inflight;
pub mod registry;
pub mod routing;
pub mod server;
pub mod subscriptions;
pub mod topic;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::MqttSection;
use crate::ingest::Ingest;

pub use codec::fuzz_decode;
pub use connection::serve_connection;
pub use inbound::{HEADER_QOS, HEADER_TOPIC};
pub use routing::RouteError;
pub use server::run;

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
}

impl MqttContext {
    /// Fails only if a route's filter is not a valid MQTT topic filter.
    pub fn new(ingest: Ingest, section: &MqttSection) -> Result<MqttContext, RouteError> {
        Ok(MqttContext {
            inner: Arc::new(Shared {
                ingest,
                router: routing::Router::new(&section.routes)?,
                max_packet_bytes: section.max_packet_bytes,
                max_inflight: section.max_inflight,
                connections: Arc::new(Semaphore::new(section.max_connections.max(1))),
                clients: registry::Registry::default(),
            }),
        })
    }

    /// Waits for a free connection slot; hold the permit for the connection's lifetime. The
    /// QUIC listener calls this before [`serve_connection`] so both listeners share the cap.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.connections.clone().acquire_owned().await.ok()
    }

    /// Number of clients currently connected (past CONNECT).
    pub fn connected_clients(&self) -> usize {
        self.inner.clients.len()
    }
}
