//! The retention sweep: deletes batches past a topic's retention by age or size, a bounded
//! number per partition per group so the transaction stays short.

use std::ops::Bound::Excluded;
use std::sync::Arc;

use super::Staged;
use crate::log::batch::BatchHeader;
use crate::log::store::{batch_key, key_range, PartitionState, Store};
use crate::log::{LogError, LogInner, TopicHandle};

/// Most batches one retention sweep deletes per partition, to keep the transaction short.
const MAX_RETENTION_DELETES: usize = 10_000;

pub(super) fn stage_retention(
    inner: &LogInner,
    wtxn: &mut heed::RwTxn,
    staged: &mut Staged,
    now_ms: i64,
) -> Result<u64, LogError> {
    let topics: Vec<Arc<TopicHandle>> = inner
        .topics
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    let mut deleted = 0u64;
    for topic in topics {
        let retention_ms = topic
            .config
            .retention_ms
            .unwrap_or(inner.defaults.retention_ms);
        let retention_bytes = topic
            .config
            .retention_bytes
            .unwrap_or(inner.defaults.retention_bytes);
        if retention_ms < 0 && retention_bytes < 0 {
            continue;
        }
        for partition in &topic.partitions {
            let entry = staged
                .entry(partition.id)
                .or_insert_with(|| (partition.clone(), partition.state()));
            deleted += sweep_partition(
                &inner.store,
                wtxn,
                partition.id,
                &mut entry.1,
                now_ms,
                retention_ms,
                retention_bytes,
            )?;
        }
    }
    Ok(deleted)
}

/// Deletes a partition's oldest batches while they are older than `retention_ms` or while the
/// partition would still hold at least `retention_bytes` without them (Kafka's rule for segments).
fn sweep_partition(
    store: &Store,
    wtxn: &mut heed::RwTxn,
    partition_id: u32,
    state: &mut PartitionState,
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
) -> Result<u64, LogError> {
    let lo = batch_key(partition_id, 0);
    let hi = batch_key(partition_id + 1, 0);
    let mut doomed = Vec::new();
    let mut bytes_left = state.bytes as i64;
    for item in store.log.range(wtxn, &key_range(&lo, Excluded(&hi)))? {
        if doomed.len() >= MAX_RETENTION_DELETES {
            break;
        }
        let (key, value) = item?;
        let header = BatchHeader::parse(value)?;
        let too_old = retention_ms >= 0 && header.newest_timestamp() < now_ms - retention_ms;
        let too_big = retention_bytes >= 0 && bytes_left - value.len() as i64 >= retention_bytes;
        if !(too_old || too_big) {
            break;
        }
        bytes_left -= value.len() as i64;
        doomed.push((key.to_vec(), header.last_offset() + 1));
    }
    let count = doomed.len() as u64;
    if let Some((_, new_start)) = doomed.last() {
        // DeleteRecords may have put the start inside the batch after the deleted ones.
        state.log_start = state.log_start.max(*new_start);
    }
    for (key, _) in doomed {
        store.log.delete(wtxn, &key)?;
    }
    state.bytes = bytes_left.max(0) as u64;
    Ok(count)
}
