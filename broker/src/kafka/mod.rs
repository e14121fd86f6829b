//! Kafka wire protocol listener.
//!
//! Stock Kafka clients (librdkafka and the clients built on it, kcat, the Java client) produce
//! to and fetch from Headwater's log unchanged. `kafka-protocol` is the codec; this module is
//! the thin layer around it:
//!
//! - [`server`]: the accept loop. A semaphore caps connections *before* `accept`, so a flood
//!   of clients waits in the kernel's backlog instead of costing memory here.
//! - [`connection`]: one task per connection: read a frame, decode, handle, write the answer,
//!   next. Requests on one connection are answered strictly in order, one at a time, as Kafka
//!   does (it mutes a channel while a request is in flight), which also bounds each
//!   connection's memory to one request and one response.
//! - [`frame`] (length-prefixed framing), [`bounds`] (a pre-decode walk that keeps hostile
//!   array lengths away from the codec's eager allocations) and [`request`]/[`response`] do
//!   no I/O; [`fuzz_decode_request`] drives them on arbitrary bytes.
//! - One file per API: [`api_versions`], [`metadata`], [`produce`], [`fetch`],
//!   [`list_offsets`]. [`errors`] maps log errors to Kafka error codes.
//! - [`admin`]: the admin API (CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//!   AlterConfigs, IncrementalAlterConfigs, DescribeCluster, DeleteRecords), one file per API.
//! - [`tls`] and [`sasl`]: optional TLS on the listener and SASL authentication (PLAIN,
//!   SCRAM-SHA-256/512); each connection holds a SASL session that admits nothing but
//!   ApiVersions and the SASL exchange until the client has authenticated.
//! - [`group`]: consumer groups (this node coordinates every group), committed offsets that
//!   survive restarts, and OffsetForLeaderEpoch.
//!
//! Headwater is a single-node cluster and says so: Metadata lists one broker (node 0), which is
//! the controller and the leader of every partition, with leader epoch 0 and itself as the only
//! replica. Fetch sessions (KIP-227) are never created; every fetch is a full, sessionless one,
//! which clients accept as a clean fallback. Idempotent producers are supported
//! ([`init_producer_id`] hands out ids; the log checks sequences, see `log::producers`);
//! transactions are not: a transactional InitProducerId and transactional batches are refused
//! with errors that make clients fail clearly.
//!
//! A malformed or oversized frame closes only the connection that sent it, with a warning
//! naming the peer and the reason.

pub mod admin;
pub mod api_versions;
pub mod bounds;
pub mod connection;
mod dispatch;
pub mod errors;
pub mod fetch;
pub mod frame;
mod fuzz;
pub mod group;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
mod pipeline;
pub mod produce;
pub mod request;
pub mod response;
pub mod sasl;
pub mod server;
pub mod tls;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use crate::config::KafkaSection;
use crate::ingest::Ingest;
use crate::log::Log;

pub use fuzz::fuzz_decode_request;
pub use server::run;

/// Everything the Kafka listener needs; cheap to clone (one clone per connection).
#[derive(Clone)]
pub struct KafkaContext {
    /// The door into the log: produced batches go through it (ingest plugins, durable append);
    /// reads go straight to `ingest.log()`.
    ingest: Ingest,
    /// Largest request frame accepted; a bigger one closes the connection before anything is
    /// allocated for it. It also caps the bytes one Fetch response carries.
    max_frame_bytes: usize,
    /// Most simultaneous connections; more wait in the listen backlog.
    max_connections: usize,
    /// Host given to clients in Metadata; `None` means the address the client connected to,
    /// which is right for a listener on a specific address and for `0.0.0.0` alike.
    advertised_host: Option<String>,
    /// Port given to clients in Metadata; `None` means the port the client connected to.
    advertised_port: Option<u16>,
    /// The consumer group coordinator (every group's, on a single node) and committed offsets.
    groups: group::Coordinator,
    /// TLS, SASL and the idle timeout: what a connection must pass to be served.
    security: server::Security,
}

impl KafkaContext {
    /// Loads the TLS and credentials files the section names; a file that cannot be loaded is
    /// an error, never a listener with less security than configured.
    pub fn new(
        ingest: Ingest,
        section: &KafkaSection,
    ) -> Result<KafkaContext, server::SecurityError> {
        Ok(KafkaContext {
            max_frame_bytes: section.max_frame_bytes,
            max_connections: section.max_connections,
            advertised_host: section.advertised_host.clone(),
            advertised_port: None,
            groups: group::Coordinator::with_config(ingest.log().clone(), &section.groups),
            security: server::Security::load(section)?,
            ingest,
        })
    }

    /// Advertises this port instead of the local one (for port forwarding or NAT).
    pub fn with_advertised_port(mut self, port: u16) -> KafkaContext {
        self.advertised_port = Some(port);
        self
    }

    fn log(&self) -> &Log {
        self.ingest.log()
    }

    /// The broker address Metadata gives to a client that reached us at `local`.
    fn advertised(&self, local: SocketAddr) -> (String, u16) {
        let host = match &self.advertised_host {
            Some(host) => host.clone(),
            // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
            None => local.ip().to_canonical().to_string(),
        };
        (host, self.advertised_port.unwrap_or(local.port()))
    }
}
