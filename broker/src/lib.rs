//! Headwater: an edge broker for IoT gateways.
//!
//! The crate follows the data path (see `ARCHITECTURE.md`): protocols ([`kafka`], [`mqtt`],
//! [`quic`]) hand records to [`ingest`], which runs ingest [`plugin`]s and appends to the
//! partition [`log`]; readers (Kafka fetch, MQTT subscribers, the [`upstream`] replicator) read
//! the log back. [`server`] wires the stages together; [`admin`] serves health and metrics.

pub mod admin;
pub mod blocking;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod mqtt;
pub mod plugin;
pub mod quic;
pub mod server;
pub mod tls;
pub mod upstream;
