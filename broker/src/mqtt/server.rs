//! The MQTT accept loop, for every TCP-based [`Transport`] (plain, TLS, WebSocket, WebSocket
//! over TLS).
//!
//! A connection slot is taken from the context's semaphore *before* `accept`, so at the cap the
//! broker stops accepting (clients wait in the kernel's backlog) instead of accepting and
//! dropping. On shutdown the loop stops accepting, tells every connection to finish (they ack
//! what is already being appended, flush and close) and returns once they have. Upgrades (TLS,
//! WebSocket) run in the connection's task, holding its slot: see [`super::transport`].

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::transport::{self, Transport};
use super::{MqttContext, Slot};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again, so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves plain MQTT on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, ctx: MqttContext, shutdown: CancellationToken) {
    run_transport(listener, Transport::Tcp, ctx, shutdown).await
}

/// Serves MQTT over `transport` on `listener` until `shutdown` is cancelled.
pub async fn run_transport(
    listener: TcpListener,
    transport: Transport,
    ctx: MqttContext,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let name = transport.name();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, transport = name, "mqtt listener started");
    }
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = ctx.admit() => match permit {
                Some(p) => p,
                None => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, transport = name, "mqtt accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Acks and PINGRESPs are small and latency-sensitive.
        let _ = stream.set_nodelay(true);
        // The slot goes with the connection, parked or not (see `super::parking`).
        let slot = Slot::new(Some(permit), Some(tracker.token()));
        let served = transport::serve(
            stream,
            peer,
            transport.clone(),
            ctx.clone(),
            shutdown.clone(),
            slot,
        );
        tracker.spawn(served);
    }
    // Parked connections have no task to see the shutdown.
    ctx.wake_parked();
    tracker.close();
    tracker.wait().await;
    tracing::info!(transport = name, "mqtt listener stopped");
}
