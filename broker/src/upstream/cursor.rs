//! Replication cursors: per local partition, the next offset to forward, kept in the log's meta
//! database so it survives restarts and moves in the same durable way as the data. The upstream
//! plugins' states of a partition move with its cursor, in the same commit.

use std::sync::Arc;

use crate::log::{topic_meta_prefix, Log, LogError, MetaUpdate, PartitionHandle};
use crate::plugin::PluginStates;

/// Meta key of a partition's cursor (deleted with its topic: `log::TOPIC_META_NAMESPACES`).
pub fn cursor_key(topic: &str, partition: u32) -> String {
    format!("{}{partition}", topic_meta_prefix("upstream/cursor", topic))
}

/// The stored cursor, or 0 for a partition never forwarded.
pub fn load_cursor(log: &Log, topic: &str, partition: u32) -> Result<i64, LogError> {
    Ok(log
        .get_meta(&cursor_key(topic, partition))?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(i64::from_be_bytes)
        .unwrap_or(0))
}

/// Meta key prefix of a partition's upstream plugin states; the plugin name follows.
fn states_prefix(topic: &str, partition: u32) -> String {
    format!("{}{partition}/", topic_meta_prefix("upstream/state", topic))
}

/// The upstream plugins' states of a partition as last committed.
pub fn load_states(log: &Log, topic: &str, partition: u32) -> Result<PluginStates, LogError> {
    let prefix = states_prefix(topic, partition);
    Ok(log
        .scan_meta(&prefix)?
        .into_iter()
        .filter_map(|(key, state)| Some((key.strip_prefix(&prefix)?.to_string(), state)))
        .collect())
}

/// Durably moves a cursor, and with it the plugin states from `before` to `after` (in one
/// commit); called only after the upstream acked everything below `next`. Written with an
/// empty append to the partition, so that a topic deleted meanwhile refuses it (its cursor
/// went with it) instead of getting the old cursor back.
pub async fn store_cursor(
    log: &Log,
    handle: &Arc<PartitionHandle>,
    next: i64,
    (before, after): (&PluginStates, &PluginStates),
) -> Result<(), LogError> {
    let (topic, partition) = (&*handle.topic, handle.index);
    let prefix = states_prefix(topic, partition);
    let mut entries = vec![(
        cursor_key(topic, partition),
        Some(next.to_be_bytes().to_vec()),
    )];
    for (plugin, state) in after {
        if before.get(plugin) != Some(state) {
            entries.push((format!("{prefix}{plugin}"), Some(state.clone())));
        }
    }
    for plugin in before.keys().filter(|p| !after.contains_key(*p)) {
        entries.push((format!("{prefix}{plugin}"), None));
    }
    log.submit_append(handle, &[], None, Some(MetaUpdate::new(entries)))
        .await?
        .durable()
        .await
        .map(|_| ())
}
