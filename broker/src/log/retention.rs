//! The periodic retention sweep: asks the writer to drop batches past their topic's age or size
//! limit. The deletion rule itself lives with the writer (`writer::sweep_partition`), which owns
//! the write transaction.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Log;

/// Runs a sweep every `interval` until `shutdown` is cancelled.
pub async fn run(log: Log, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match log.apply_retention(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(batches = n, "retention deleted old batches"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
