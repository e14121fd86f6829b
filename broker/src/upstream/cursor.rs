//! Replication cursors: per local partition, the next offset to forward, kept in the log's meta
//! database so it survives restarts and moves in the same durable way as the data.

use crate::log::{Log, LogError};

/// Meta key of a partition's cursor.
pub fn cursor_key(topic: &str, partition: u32) -> String {
    format!("upstream/cursor/{topic}/{partition}")
}

/// The stored cursor, or 0 for a partition never forwarded.
pub fn load_cursor(log: &Log, topic: &str, partition: u32) -> Result<i64, LogError> {
    Ok(log
        .get_meta(&cursor_key(topic, partition))?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(i64::from_be_bytes)
        .unwrap_or(0))
}

/// Durably moves a cursor; called only after the upstream acked everything below `next`.
pub async fn store_cursor(
    log: &Log,
    topic: &str,
    partition: u32,
    next: i64,
) -> Result<(), LogError> {
    log.put_meta(vec![(
        cursor_key(topic, partition),
        Some(next.to_be_bytes().to_vec()),
    )])
    .await
}
