//! The byte streams MQTT runs over on TCP: plain (1883), TLS (8883), WebSocket and WebSocket
//! over TLS. Each accepted TCP connection is upgraded here, inside its own task (so a slow or
//! silent client never holds up the accept loop, and holds its connection slot while it
//! handshakes), then served by [`serve_connection`] like any other stream.
//!
//! Each transport's future is boxed on its own, so a plain TCP connection holds only its own
//! state and not room for the largest transport's TLS and WebSocket state (over 20 KiB): with
//! 10,000 idle sensors that is a difference of 200 MB.
//!
//! The whole upgrade (TLS handshake and WebSocket upgrade together) must finish within
//! [`HANDSHAKE_TIMEOUT`]. A failed upgrade (garbage instead of a ClientHello or an HTTP
//! request, a missing or untrusted client certificate, a refused subprotocol) closes only that
//! connection and is logged with the peer and the reason.
//!
//! With `[mqtt.tls] client_ca`, the verified client certificate's subject common name becomes
//! the connection's [`Peer::cert_identity`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::{serve_connection, Slot};
use super::link::TcpLink;
use super::peer::Peer;
use super::websocket;
use super::MqttContext;
use crate::tls::{client_common_name, TlsAcceptor, HANDSHAKE_TIMEOUT};

/// How a listener's connections carry MQTT.
#[derive(Clone)]
pub enum Transport {
    /// MQTT bytes straight on TCP.
    Tcp,
    /// MQTT over TLS.
    Tls(TlsAcceptor),
    /// MQTT in binary WebSocket frames.
    Ws,
    /// MQTT in binary WebSocket frames over TLS.
    Wss(TlsAcceptor),
}

impl Transport {
    /// Names the transport in logs.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "mqtt",
            Transport::Tls(_) => "mqtt+tls",
            Transport::Ws => "mqtt+ws",
            Transport::Wss(_) => "mqtt+wss",
        }
    }
}

/// Why a connection never got to MQTT.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("no completed handshake within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("the broker is shutting down")]
    Shutdown,
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("WebSocket upgrade failed: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Upgrades `tcp` as `transport` says and serves MQTT on it until the connection ends; never
/// fails (a failed upgrade is logged). The connection holds `slot` until it ends.
///
/// Built eagerly, each arm boxed: the connection's future is then as large as its own
/// transport needs, and holds none of the arguments (plain TCP goes straight to
/// [`serve_connection`]).
pub fn serve(
    tcp: TcpStream,
    addr: SocketAddr,
    transport: Transport,
    ctx: MqttContext,
    shutdown: CancellationToken,
    slot: Slot,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let max_packet = ctx.inner.max_packet_bytes;
    type Upgraded = Pin<Box<dyn Future<Output = Result<(), UpgradeError>> + Send>>;
    let upgraded: Upgraded = match transport {
        Transport::Tcp => {
            return Box::pin(serve_connection(
                TcpLink::Live(tcp),
                Peer::new(addr.to_string()),
                ctx,
                shutdown,
                slot,
            ))
        }
        Transport::Tls(acceptor) => Box::pin(async move {
            let (tls, cert_identity) = bounded(deadline, &shutdown, tls(&acceptor, tcp)).await?;
            let peer = Peer {
                addr: format!("tls://{addr}"),
                cert_identity,
            };
            serve_connection(tls, peer, ctx, shutdown, slot).await;
            Ok(())
        }),
        Transport::Ws => Box::pin(async move {
            let ws = bounded(deadline, &shutdown, ws(tcp, max_packet)).await?;
            let peer = Peer::new(format!("ws://{addr}"));
            serve_connection(ws, peer, ctx, shutdown, slot).await;
            Ok(())
        }),
        Transport::Wss(acceptor) => Box::pin(async move {
            let (ws, cert_identity) = bounded(deadline, &shutdown, async {
                let (tls, cert_identity) = tls(&acceptor, tcp).await?;
                Ok((ws(tls, max_packet).await?, cert_identity))
            })
            .await?;
            let peer = Peer {
                addr: format!("wss://{addr}"),
                cert_identity,
            };
            serve_connection(ws, peer, ctx, shutdown, slot).await;
            Ok(())
        }),
    };
    Box::pin(async move {
        if let Err(e) = upgraded.await {
            match e {
                UpgradeError::Shutdown => {
                    tracing::debug!(%addr, reason = %e, "mqtt: connection closed before MQTT")
                }
                _ => tracing::info!(%addr, reason = %e, "mqtt: connection closed before MQTT"),
            }
        }
    })
}

/// Runs an upgrade step until `deadline` or shutdown.
async fn bounded<T>(
    deadline: Instant,
    shutdown: &CancellationToken,
    step: impl std::future::Future<Output = Result<T, UpgradeError>>,
) -> Result<T, UpgradeError> {
    tokio::select! {
        r = step => r,
        _ = tokio::time::sleep_until(deadline) => Err(UpgradeError::Timeout),
        _ = shutdown.cancelled() => Err(UpgradeError::Shutdown),
    }
}

/// The TLS handshake; returns the stream and the client certificate's common name, if any.
async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &TlsAcceptor,
    stream: S,
) -> Result<(tokio_rustls::server::TlsStream<S>, Option<String>), UpgradeError> {
    let tls = acceptor.accept(stream).await.map_err(UpgradeError::Tls)?;
    let identity = client_common_name(tls.get_ref().1);
    Ok((tls, identity))
}

async fn ws<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    max_packet: usize,
) -> Result<websocket::WsStream<S>, UpgradeError> {
    Ok(websocket::accept(stream, max_packet).await?)
}
