//! Topic administration: delete a topic, add partitions, change a topic's config, delete
//! records below an offset (Kafka's CreatePartitions, DeleteTopics, IncrementalAlterConfigs and
//! DeleteRecords).
//!
//! Like every write, each is a [`Command`] for the log's writer, staged in the group's
//! transaction and answered after the commit. The `stage_*` functions return
//! `Ok(Err(refusal))` for a request that changes nothing (unknown topic, shrinking partitions,
//! an offset past the high watermark): the writer answers it at once without failing the rest
//! of the group, while `Err` is a store failure that aborts the group as any other would.
//!
//! Topic handles are immutable, so a topic that grows or changes config gets a new
//! [`TopicHandle`] sharing the old partition handles: producers and fetches holding a partition
//! keep working. A deleted topic's partition handles are marked deleted, so their holders get
//! `UnknownPartition` instead of reading ids that no longer exist; partition ids are never
//! reused while the process runs, and a topic recreated under the same name gets fresh ids and
//! starts at offset 0.

use std::ops::Bound::Excluded;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::batch::BatchHeader;
use super::store::{batch_key, key_range, PartitionState, Store, TopicConfig, TopicMeta};
use super::writer::{Command, Staged, TopicChanges};
use super::{Log, LogError, LogInner, PartitionHandle, TopicHandle};

/// The only cleanup policy Headwater implements; compaction does not exist here.
pub const CLEANUP_DELETE: &str = "delete";

impl Log {
    /// Creates a topic, or fails with `TopicExists` if one of that name exists when the writer
    /// gets to it (Kafka's CreateTopics), even if another request created it a moment before.
    pub async fn create_topic_exclusive(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<Arc<TopicHandle>, LogError> {
        self.send_create_topic(name, partitions, config, true).await
    }

    /// Deletes a topic with all its data; resolves once the deletion is durable.
    pub async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let (reply, rx) = oneshot::channel();
        self.ask(
            Command::DeleteTopic {
                name: name.to_string(),
                reply,
            },
            rx,
        )
        .await
    }

    /// Grows a topic to `total` partitions; fewer than it has is `InvalidPartitions`.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: u32,
    ) -> Result<Arc<TopicHandle>, LogError> {
        let (reply, rx) = oneshot::channel();
        self.ask(
            Command::CreatePartitions {
                name: name.to_string(),
                total,
                reply,
            },
            rx,
        )
        .await
    }

    /// Replaces a topic's config; a cleanup policy other than `delete` is `InvalidConfig`.
    pub async fn set_topic_config(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<Arc<TopicHandle>, LogError> {
        validate_config(&config)?;
        let (reply, rx) = oneshot::channel();
        self.ask(
            Command::SetConfig {
                name: name.to_string(),
                config,
                reply,
            },
            rx,
        )
        .await
    }

    /// Moves the partition's log start to `offset` (-1: the high watermark), deleting every batch
    /// wholly below it; returns the new log start. An offset past the high watermark is
    /// `OffsetOutOfRange`; one at or below the current log start changes nothing.
    pub async fn delete_records(
        &self,
        partition: &Arc<PartitionHandle>,
        offset: i64,
    ) -> Result<i64, LogError> {
        let (reply, rx) = oneshot::channel();
        self.ask(
            Command::DeleteRecords {
                partition: partition.clone(),
                offset,
                reply,
            },
            rx,
        )
        .await
    }
}

/// Refuses settings the log cannot honour.
pub fn validate_config(config: &TopicConfig) -> Result<(), LogError> {
    match config.cleanup_policy.as_deref() {
        None | Some(CLEANUP_DELETE) => {}
        Some(other) => {
            return Err(LogError::InvalidConfig(format!(
                "cleanup.policy {other:?} is not supported: Headwater has no log compaction, only \"delete\""
            )))
        }
    }
    for (key, value) in [
        ("retention.ms", config.retention_ms),
        ("retention.bytes", config.retention_bytes),
    ] {
        if let Some(v) = value {
            if v < -1 {
                return Err(LogError::InvalidConfig(format!(
                    "{key} must be -1 (unlimited) or at least 0, not {v}"
                )));
            }
        }
    }
    Ok(())
}

/// Meta key of the partition id counter.
const NEXT_PARTITION_ID: &str = "log/next-partition-id";

/// The stored partition id counter (0 if never stored).
pub(super) fn stored_next_partition_id(store: &Store) -> Result<u32, LogError> {
    Ok(store
        .get_meta(NEXT_PARTITION_ID)?
        .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0))
}

/// Stores the partition id counter in the group's transaction.
pub(super) fn store_next_partition_id(
    store: &Store,
    wtxn: &mut heed::RwTxn,
    next: u32,
) -> Result<(), LogError> {
    store
        .meta
        .put(wtxn, NEXT_PARTITION_ID, &next.to_be_bytes())?;
    Ok(())
}

/// What a staged admin command yields: `Ok(Err(_))` is a refusal that changed nothing.
type Staging<T> = Result<Result<T, LogError>, LogError>;

pub(super) fn stage_delete_topic(
    inner: &LogInner,
    wtxn: &mut heed::RwTxn,
    staged: &mut Staged,
    changes: &mut TopicChanges,
    name: &str,
) -> Staging<()> {
    let Some(topic) = changes.current(inner, name) else {
        return Ok(Err(LogError::UnknownTopic(name.to_string())));
    };
    let store = &inner.store;
    for partition in &topic.partitions {
        let lo = batch_key(partition.id, 0);
        let hi = batch_key(partition.id + 1, 0);
        store
            .log
            .delete_range(wtxn, &key_range(&lo, Excluded(&hi)))?;
        store.partitions.delete(wtxn, &partition.id.to_be_bytes())?;
        staged.remove(&partition.id);
        changes.deleted_ids.insert(partition.id);
        changes.deleted.push(partition.clone());
    }
    for namespace in super::TOPIC_META_NAMESPACES {
        let prefix = super::topic_meta_prefix(namespace, name);
        let mut owned = store.meta.prefix_iter_mut(wtxn, &prefix)?;
        while owned.next().transpose()?.is_some() {
            // SAFETY: neither the key nor the value is held past this deletion.
            unsafe { owned.del_current()? };
        }
    }
    store.topics.delete(wtxn, name)?;
    changes.topics.push((name.to_string(), None));
    Ok(Ok(()))
}

pub(super) fn stage_create_partitions(
    inner: &LogInner,
    wtxn: &mut heed::RwTxn,
    changes: &mut TopicChanges,
    name: &str,
    total: u32,
) -> Staging<Arc<TopicHandle>> {
    let Some(topic) = changes.current(inner, name) else {
        return Ok(Err(LogError::UnknownTopic(name.to_string())));
    };
    let have = topic.partitions.len() as u32;
    if total <= have {
        return Ok(Err(LogError::InvalidPartitions {
            topic: name.to_string(),
            reason: format!(
                "the topic has {have} partitions; it can only grow, and {total} is not more"
            ),
        }));
    }
    let mut next_id = inner
        .next_partition_id
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut partitions = topic.partitions.clone();
    for index in have..total {
        let id = *next_id + (index - have);
        inner.store.partitions.put(
            wtxn,
            &id.to_be_bytes(),
            &PartitionState::default().to_bytes(),
        )?;
        partitions.push(PartitionHandle::new(
            id,
            topic.name.clone(),
            index,
            PartitionState::default(),
        ));
    }
    let handle = replace(
        inner,
        wtxn,
        changes,
        &topic,
        partitions,
        topic.config.clone(),
    )?;
    *next_id += total - have;
    store_next_partition_id(&inner.store, wtxn, *next_id)?;
    Ok(Ok(handle))
}

pub(super) fn stage_set_config(
    inner: &LogInner,
    wtxn: &mut heed::RwTxn,
    changes: &mut TopicChanges,
    name: &str,
    config: TopicConfig,
) -> Staging<Arc<TopicHandle>> {
    let Some(topic) = changes.current(inner, name) else {
        return Ok(Err(LogError::UnknownTopic(name.to_string())));
    };
    let partitions = topic.partitions.clone();
    Ok(Ok(replace(
        inner, wtxn, changes, &topic, partitions, config,
    )?))
}

/// Persists and stages a new handle for `topic` with these partitions and config.
fn replace(
    inner: &LogInner,
    wtxn: &mut heed::RwTxn,
    changes: &mut TopicChanges,
    topic: &TopicHandle,
    partitions: Vec<Arc<PartitionHandle>>,
    config: TopicConfig,
) -> Result<Arc<TopicHandle>, LogError> {
    let meta = TopicMeta {
        partition_ids: partitions.iter().map(|p| p.id).collect(),
        config: config.clone(),
    };
    inner.store.topics.put(wtxn, &topic.name, &meta)?;
    let handle = Arc::new(TopicHandle {
        name: topic.name.clone(),
        partitions,
        config,
    });
    changes
        .topics
        .push((topic.name.to_string(), Some(handle.clone())));
    Ok(handle)
}

pub(super) fn stage_delete_records(
    store: &Store,
    wtxn: &mut heed::RwTxn,
    staged: &mut Staged,
    changes: &TopicChanges,
    partition: Arc<PartitionHandle>,
    offset: i64,
) -> Staging<i64> {
    if partition.is_deleted() || changes.deleted_ids.contains(&partition.id) {
        return Ok(Err(partition.unknown()));
    }
    let id = partition.id;
    let entry = staged
        .entry(id)
        .or_insert_with(|| (partition.clone(), partition.state()));
    let state = &mut entry.1;
    let target = if offset == -1 {
        state.next_offset
    } else {
        offset
    };
    if target < 0 || target > state.next_offset {
        return Ok(Err(LogError::OffsetOutOfRange {
            topic: partition.topic.to_string(),
            partition: partition.index as i32,
            offset,
            log_start: state.log_start,
            high_watermark: state.next_offset,
        }));
    }
    if target <= state.log_start {
        return Ok(Ok(state.log_start));
    }
    let lo = batch_key(id, 0);
    let hi = batch_key(id + 1, 0);
    let mut doomed = Vec::new();
    for item in store.log.range(wtxn, &key_range(&lo, Excluded(&hi)))? {
        let (key, value) = item?;
        if BatchHeader::parse(value)?.last_offset() >= target {
            break;
        }
        doomed.push((key.to_vec(), value.len() as u64));
    }
    for (key, len) in doomed {
        store.log.delete(wtxn, &key)?;
        state.bytes = state.bytes.saturating_sub(len);
    }
    state.log_start = target;
    Ok(Ok(target))
}
