//! MQTT over QUIC (quinn + rustls, ALPN `mqtt`).
//!
//! Each bidirectional stream of a QUIC connection carries one MQTT connection and is served by
//! the same session code as MQTT over TCP ([`crate::mqtt::serve_connection`]), so both transports
//! behave identically. QUIC suits gateways on lossy links: streams survive address changes and a
//! lost packet stalls only its own stream.
//!
//! Without a configured certificate the listener makes a self-signed one at startup; clients must
//! then trust it explicitly (tests do).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_util::sync::CancellationToken;

use crate::mqtt::{serve_connection, MqttContext, Peer, Slot};

/// The ALPN protocol id of MQTT over QUIC.
pub const ALPN_MQTT: &[u8] = b"mqtt";

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("making a self-signed certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Config(String),
    #[error("binding QUIC on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A certificate chain and key for the QUIC listener.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// A fresh self-signed certificate for `localhost` and the listener's IP.
    pub fn self_signed(addr: SocketAddr) -> Result<Identity, QuicError> {
        let names = vec!["localhost".to_string(), addr.ip().to_string()];
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(Identity {
            chain: vec![certified.cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()).into(),
        })
    }
}

/// Binds the QUIC endpoint; the bound address is `endpoint.local_addr()`.
pub fn bind(addr: SocketAddr, identity: Identity) -> Result<quinn::Endpoint, QuicError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)?;
    tls.alpn_protocols = vec![ALPN_MQTT.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| QuicError::Config(e.to_string()))?;
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    quinn::Endpoint::server(config, addr).map_err(|source| QuicError::Bind { addr, source })
}

/// Accepts QUIC connections until `shutdown`, serving MQTT on each bidirectional stream.
pub async fn run(endpoint: quinn::Endpoint, ctx: MqttContext, shutdown: CancellationToken) {
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            i = endpoint.accept() => i,
        };
        let Some(incoming) = incoming else { break };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            match incoming.await {
                Ok(conn) => serve_quic_connection(conn, ctx, shutdown).await,
                Err(e) => tracing::debug!(%peer, error = %e, "QUIC handshake failed"),
            }
        });
    }
    endpoint.close(0u32.into(), b"broker shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

async fn serve_quic_connection(
    conn: quinn::Connection,
    ctx: MqttContext,
    shutdown: CancellationToken,
) {
    let peer = conn.remote_address();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = conn.accept_bi() => s,
        };
        match stream {
            Ok((send, recv)) => {
                // QUIC and TCP connections share `mqtt.max_connections`.
                let Some(permit) = ctx.admit().await else {
                    return;
                };
                let stream = tokio::io::join(recv, send);
                let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
                let peer = Peer::new(format!("quic://{peer}"));
                let slot = Slot::new(Some(permit), None);
                tokio::spawn(serve_connection(stream, peer, ctx, shutdown, slot));
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "QUIC connection ended");
                return;
            }
        }
    }
}
