//! Certificate files of a TLS listener, shared by `[kafka.tls]` and `[mqtt.tls]`.

use std::path::PathBuf;

use serde::Deserialize;

/// A TLS listener's certificate, key and optional client CA. When present for a listener, that
/// listener speaks TLS only. Costs a TLS handshake per connection (a few ms of CPU) and about
/// 40 KiB of buffers per connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file of the authorities client certificates must chain to; when set, clients
    /// without such a certificate are refused (mutual TLS). Default: none (no client
    /// certificate asked for).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}
