//! The MQTT-over-TCP accept loop.
//!
//! A connection slot is taken from the context's semaphore *before* `accept`, so at the cap the
//! broker stops accepting (clients wait in the kernel's backlog) instead of accepting and
//! dropping. On shutdown the loop stops accepting, tells every connection to finish (they ack
//! what is already being appended, flush and close) and returns once they have.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::serve_connection;
use super::MqttContext;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again, so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves MQTT on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, ctx: MqttContext, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "mqtt listener started");
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
                    tracing::warn!(error = %e, "mqtt accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Acks and PINGRESPs are small and latency-sensitive.
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            serve_connection(stream, peer.to_string(), ctx, shutdown).await;
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
    tracing::info!("mqtt listener stopped");
}
