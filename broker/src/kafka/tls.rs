//! TLS on the Kafka listener: the shared [`crate::tls`] module, configured by `[kafka.tls]`.
//!
//! With `[kafka.tls]` configured the listener speaks TLS only, like a Kafka `SSL` or
//! `SASL_SSL` listener: a client that starts in plaintext fails the handshake and is closed.
//! The handshake runs inside the connection's task, so it holds one of the
//! `kafka.max_connections` permits, and it must finish within [`HANDSHAKE_TIMEOUT`] (or the idle
//! timeout if shorter), so a client that connects and says nothing cannot keep a permit. With
//! `client_ca` set, clients must present a certificate signed by one of those authorities
//! (mutual TLS, Kafka's `ssl.client.auth=required`).

pub use crate::tls::{
    acceptor, load_certificates, load_key, server_config, TlsAcceptor, TlsError, HANDSHAKE_TIMEOUT,
};
