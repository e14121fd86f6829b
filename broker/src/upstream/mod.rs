//! Upstream replication: store-and-forward of local topics to a central Kafka-protocol cluster.
//!
//! For each configured topic and partition, the replicator reads the local log from a cursor kept
//! in LMDB, produces the records upstream with acks=all, and moves the cursor only after the
//! upstream acked. A crash, a power cut or a dead link therefore resends at most what was in
//! flight; nothing is skipped. Records keep their order per partition: local partition `i` goes to
//! upstream partition `i mod n`, one request in flight per partition. While the upstream is away the
//! data simply waits in the local log (within retention), and drains in order when it returns,
//! reading at most `max_batch_bytes` per partition at a time, so memory stays bounded.
//!
//! Each forwarded record carries its origin in headers (`hw.origin.gateway`, `.topic`,
//! `.partition`, and `.offset` unless an upstream plugin made it). Upstream plugins run on the
//! records as read, before they are forwarded (see `transform`); the local log stays raw.

pub mod client;
mod cursor;
mod forward;
mod transform;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::config::UpstreamSection;
use crate::log::Log;
use crate::plugin::UpstreamPlugins;

pub use cursor::{cursor_key, load_cursor};
use forward::Session;

/// Records not yet forwarded, per (topic, local partition); read by `/metrics`.
pub type LagMap = Arc<std::sync::Mutex<HashMap<(String, u32), i64>>>;

/// Everything the replicator needs.
#[derive(Clone)]
pub struct UpstreamContext {
    pub log: Log,
    pub config: UpstreamSection,
    /// Named in the `hw.origin.gateway` header.
    pub gateway_id: Arc<str>,
    /// Per-partition lag, for metrics.
    pub lag: LagMap,
    /// The `attach = "upstream"` plugin chains, run on records before they are forwarded.
    pub plugins: Arc<UpstreamPlugins>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    #[error("upstream refused topic {topic}: error code {code}")]
    Topic { topic: String, code: i16 },
    #[error("upstream refused a produce to {topic}/{partition}: error code {code}")]
    Produce {
        topic: String,
        partition: i32,
        code: i16,
    },
    #[error("upstream metadata names no reachable leader for {topic}/{partition}")]
    NoLeader { topic: String, partition: i32 },
    #[error("re-encoding records for upstream: {0}")]
    Encode(#[from] crate::log::BatchError),
    #[error("upstream plugins: {0}")]
    Plugin(String),
}

/// Forwards until `shutdown`; reconnects with a backoff after every failure.
pub async fn run(ctx: UpstreamContext, shutdown: CancellationToken) {
    let backoff = Duration::from_millis(ctx.config.retry_backoff_ms.max(10));
    tracing::info!(bootstrap = %ctx.config.bootstrap, topics = ?ctx.config.topics, "upstream replication started");
    let mut events = ctx.log.subscribe();
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = forward_session(&ctx, &mut events, &shutdown) => r,
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "upstream link down; data waits in the local log")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// One connected session: forward everything pending, then wait for new appends.
async fn forward_session(
    ctx: &UpstreamContext,
    events: &mut tokio::sync::broadcast::Receiver<crate::log::AppendEvent>,
    shutdown: &CancellationToken,
) -> Result<(), UpstreamError> {
    let mut session = Session::open(ctx).await?;
    tracing::info!(bootstrap = %ctx.config.bootstrap, "upstream connected");
    loop {
        let progressed = session.forward_pending(ctx).await?;
        if progressed {
            continue;
        }
        // Caught up: sleep until one of our topics gets new data (or a periodic re-check, which
        // also notices topics created after start).
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(e) if ctx.config.topics.iter().any(|t| **t == *e.topic) => return,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = wait => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
