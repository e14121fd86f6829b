//! Who is at the other end of an MQTT connection, as far as the transport knows it.

use std::fmt;

/// The transport's view of a client, handed to [`super::serve_connection`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// The remote address, with a scheme for transports other than plain TCP
    /// (`tls://`, `ws://`, `wss://`, `quic://`): it names the client in logs.
    pub addr: String,
    /// Subject common name of the client certificate verified in the TLS handshake (only asked
    /// for with `[mqtt.tls] client_ca`); the basis of Mosquitto's `use_identity_as_username`.
    pub cert_identity: Option<String>,
}

impl Peer {
    /// A peer known by its address only (plain TCP, WebSocket, QUIC).
    pub fn new(addr: impl Into<String>) -> Peer {
        Peer {
            addr: addr.into(),
            cert_identity: None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}
