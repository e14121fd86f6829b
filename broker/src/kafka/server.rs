//! The accept loop.
//!
//! A semaphore permit is taken *before* `accept`, so at most `kafka.max_connections`
//! connections exist at once and further clients wait in the kernel's listen backlog instead
//! of costing memory here. Accept errors (for example running out of file descriptors) are
//! logged and retried after a growing pause rather than ending the listener.
//!
//! Shutdown: stop accepting, let every connection finish the request it is handling (idle ones
//! close at once, waiting fetches return early), and after [`DRAIN_TIMEOUT`] abort whatever
//! is still running, for example a write to a client that stopped reading.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::connection::{self, ConnInfo};
use super::KafkaContext;

/// How long connections get to finish in-flight requests at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Serves Kafka clients on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, ctx: KafkaContext, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(ctx.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "Kafka listener ready");
    }
    loop {
        // Finished connections leave their result in the set until collected.
        while let Some(done) = connections.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a Kafka connection task failed");
            }
        }
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "Kafka accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        backoff = ACCEPT_BACKOFF.0;
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "Kafka connection gone before it was served");
                continue;
            }
        };
        tracing::debug!(%peer, "Kafka connection accepted");
        let info = ConnInfo { peer, local };
        let ctx = ctx.clone();
        let token = shutdown.child_token();
        connections.spawn(async move {
            connection::serve(stream, info, ctx, token).await;
            drop(permit);
        });
    }
    drop(listener);
    let busy = connections.len();
    if busy > 0 {
        tracing::info!(
            connections = busy,
            "Kafka listener stopping; draining connections"
        );
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "Kafka connections still busy after the drain timeout; aborting them"
        );
        connections.shutdown().await;
    }
}
