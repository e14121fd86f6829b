//! The single writer thread: every change to the environment goes through here.
//!
//! LMDB allows one write transaction at a time, so rather than have tasks queue on a lock, one
//! thread takes commands from a bounded channel, applies as many as are waiting in one
//! transaction and commits them together: one fsync per group, however many producers. Replies go
//! out only after the commit, so an ack always means "on disk".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::batch::{self, BatchHeader};
use std::ops::Bound::Excluded;

use super::admin;
use super::store::{batch_key, key_range, PartitionState, Store, TopicConfig, TopicMeta};
use super::{AppendEvent, LogError, LogInner, PartitionHandle, TopicHandle};

/// Most commands folded into one transaction; bounds commit latency under heavy load.
const MAX_GROUP_COMMANDS: usize = 4096;
/// Most batch bytes folded into one transaction.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Most batches one retention sweep deletes per partition, to keep the transaction short.
const MAX_RETENTION_DELETES: usize = 10_000;

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start: i64,
}

pub enum Command {
    Append {
        partition: Arc<PartitionHandle>,
        batches: Vec<(BatchHeader, Bytes)>,
        reply: oneshot::Sender<Result<Appended, LogError>>,
    },
    CreateTopic {
        name: String,
        partitions: u32,
        config: TopicConfig,
        reply: oneshot::Sender<Result<Arc<TopicHandle>, LogError>>,
    },
    PutMeta {
        entries: Vec<(String, Option<Vec<u8>>)>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    Retention {
        now_ms: i64,
        reply: oneshot::Sender<Result<u64, LogError>>,
    },
    /// Remove a topic: its batches, partition states and metadata.
    DeleteTopic {
        name: String,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Grow a topic to `total` partitions.
    CreatePartitions {
        name: String,
        total: u32,
        reply: oneshot::Sender<Result<Arc<TopicHandle>, LogError>>,
    },
    /// Replace a topic's config.
    SetConfig {
        name: String,
        config: TopicConfig,
        reply: oneshot::Sender<Result<Arc<TopicHandle>, LogError>>,
    },
    /// Move a partition's log start to `offset` (-1: the high watermark).
    DeleteRecords {
        partition: Arc<PartitionHandle>,
        offset: i64,
        reply: oneshot::Sender<Result<i64, LogError>>,
    },
    /// Commit what is queued with it, answer, and end the thread.
    Stop { reply: oneshot::Sender<()> },
}

impl Command {
    fn weight(&self) -> usize {
        match self {
            Command::Append { batches, .. } => batches.iter().map(|(_, b)| b.len()).sum(),
            _ => 0,
        }
    }
}

/// Replies held back until the group commits; the outcome is `None` for a command that was not
/// staged (the group failed first).
enum Pending {
    Append(
        oneshot::Sender<Result<Appended, LogError>>,
        Option<Appended>,
    ),
    Topic(
        oneshot::Sender<Result<Arc<TopicHandle>, LogError>>,
        Option<Arc<TopicHandle>>,
    ),
    Meta(oneshot::Sender<Result<(), LogError>>),
    Retention(oneshot::Sender<Result<u64, LogError>>, Option<u64>),
    Offset(oneshot::Sender<Result<i64, LogError>>, Option<i64>),
    Stop(oneshot::Sender<()>),
}

impl Pending {
    /// The reply of a command that will not be staged.
    fn unstaged(cmd: Command) -> Pending {
        match cmd {
            Command::Append { reply, .. } => Pending::Append(reply, None),
            Command::CreateTopic { reply, .. } => Pending::Topic(reply, None),
            Command::PutMeta { reply, .. } => Pending::Meta(reply),
            Command::Retention { reply, .. } => Pending::Retention(reply, None),
            Command::DeleteTopic { reply, .. } => Pending::Meta(reply),
            Command::CreatePartitions { reply, .. } | Command::SetConfig { reply, .. } => {
                Pending::Topic(reply, None)
            }
            Command::DeleteRecords { reply, .. } => Pending::Offset(reply, None),
            Command::Stop { reply } => Pending::Stop(reply),
        }
    }

    fn fail(self, err: &LogError) {
        let err = err.clone_for_reply();
        match self {
            Pending::Append(tx, _) => drop(tx.send(Err(err))),
            Pending::Topic(tx, _) => drop(tx.send(Err(err))),
            Pending::Meta(tx) => drop(tx.send(Err(err))),
            Pending::Retention(tx, _) => drop(tx.send(Err(err))),
            Pending::Offset(tx, _) => drop(tx.send(Err(err))),
            Pending::Stop(tx) => drop(tx.send(())),
        }
    }

    /// Sends the outcome; only called after a successful commit, when every outcome is set.
    fn succeed(self) {
        fn outcome<T>(value: Option<T>) -> Result<T, LogError> {
            value.ok_or_else(|| LogError::Reply("internal: outcome missing after commit".into()))
        }
        match self {
            Pending::Append(tx, a) => drop(tx.send(outcome(a))),
            Pending::Topic(tx, t) => drop(tx.send(outcome(t))),
            Pending::Meta(tx) => drop(tx.send(Ok(()))),
            Pending::Retention(tx, n) => drop(tx.send(outcome(n))),
            Pending::Offset(tx, o) => drop(tx.send(outcome(o))),
            Pending::Stop(tx) => drop(tx.send(())),
        }
    }
}

pub fn spawn(inner: Arc<LogInner>, rx: mpsc::Receiver<Command>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || run(inner, rx))
        .expect("spawning the log writer thread at startup")
}

fn run(inner: Arc<LogInner>, mut rx: mpsc::Receiver<Command>) {
    let mut group = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.weight();
        group.push(first);
        while group.len() < MAX_GROUP_COMMANDS && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(cmd) => {
                    bytes += cmd.weight();
                    group.push(cmd);
                }
                Err(_) => break,
            }
        }
        let stop = group.iter().any(|c| matches!(c, Command::Stop { .. }));
        commit_group(&inner, std::mem::take(&mut group));
        if stop {
            tracing::debug!("log writer stopped on request");
            return;
        }
    }
    tracing::debug!("log writer stopped: all senders gone");
}

/// Partition state as it will be once this group commits.
pub(super) type Staged = HashMap<u32, (Arc<PartitionHandle>, PartitionState)>;

/// Topic-level changes of one group, published after its commit.
#[derive(Default)]
pub(super) struct TopicChanges {
    /// In order: a new or replaced handle (`Some`) or a deleted topic (`None`).
    pub topics: Vec<(String, Option<Arc<TopicHandle>>)>,
    /// Partitions of deleted topics: their state must not be written back, and appends to them
    /// are refused.
    pub deleted: Vec<Arc<PartitionHandle>>,
    pub deleted_ids: HashSet<u32>,
}

impl TopicChanges {
    /// The topic as this group has left it so far.
    pub fn current(&self, inner: &LogInner, name: &str) -> Option<Arc<TopicHandle>> {
        match self.topics.iter().rev().find(|(n, _)| n == name) {
            Some((_, handle)) => handle.clone(),
            None => inner.topic(name),
        }
    }
}

/// Sends a refusal at once: the command changed nothing, so it need not wait for the commit
/// and must not fail the rest of the group.
fn refuse<T>(reply: oneshot::Sender<Result<T, LogError>>, err: LogError) {
    let _ = reply.send(Err(err));
}

fn commit_group(inner: &LogInner, group: Vec<Command>) {
    let mut pending = Vec::with_capacity(group.len());
    let mut staged: Staged = HashMap::new();
    let mut changes = TopicChanges::default();
    let result = (|| -> Result<(), LogError> {
        let store = &inner.store;
        let mut wtxn = store.env.write_txn()?;
        let mut failure = None;
        for cmd in group {
            if failure.is_some() {
                pending.push(Pending::unstaged(cmd));
                continue;
            }
            match cmd {
                Command::Append {
                    partition, reply, ..
                } if partition.is_deleted() || changes.deleted_ids.contains(&partition.id) => {
                    refuse(reply, partition.unknown());
                }
                Command::Append {
                    partition,
                    batches,
                    reply,
                } => match stage_append(store, &mut wtxn, &mut staged, partition, batches) {
                    Ok(a) => pending.push(Pending::Append(reply, Some(a))),
                    Err(e) => {
                        pending.push(Pending::Append(reply, None));
                        failure = Some(e);
                    }
                },
                Command::CreateTopic {
                    name,
                    partitions,
                    config,
                    reply,
                } => match stage_topic(inner, &mut wtxn, &changes, name, partitions, config) {
                    Ok(topic) => {
                        changes
                            .topics
                            .push((topic.name.to_string(), Some(topic.clone())));
                        pending.push(Pending::Topic(reply, Some(topic)));
                    }
                    Err(e) => {
                        pending.push(Pending::Topic(reply, None));
                        failure = Some(e);
                    }
                },
                Command::PutMeta { entries, reply } => {
                    pending.push(Pending::Meta(reply));
                    if let Err(e) = stage_meta(store, &mut wtxn, &entries) {
                        failure = Some(e);
                    }
                }
                Command::Retention { now_ms, reply } => {
                    match stage_retention(inner, &mut wtxn, &mut staged, now_ms) {
                        Ok(n) => pending.push(Pending::Retention(reply, Some(n))),
                        Err(e) => {
                            pending.push(Pending::Retention(reply, None));
                            failure = Some(e);
                        }
                    }
                }
                Command::DeleteTopic { name, reply } => {
                    match admin::stage_delete_topic(
                        inner,
                        &mut wtxn,
                        &mut staged,
                        &mut changes,
                        &name,
                    ) {
                        Ok(Ok(())) => pending.push(Pending::Meta(reply)),
                        Ok(Err(refusal)) => refuse(reply, refusal),
                        Err(e) => {
                            pending.push(Pending::Meta(reply));
                            failure = Some(e);
                        }
                    }
                }
                Command::CreatePartitions { name, total, reply } => {
                    let staged_topic = admin::stage_create_partitions(
                        inner,
                        &mut wtxn,
                        &mut changes,
                        &name,
                        total,
                    );
                    topic_outcome(&mut pending, &mut failure, reply, staged_topic);
                }
                Command::SetConfig {
                    name,
                    config,
                    reply,
                } => {
                    let staged_topic =
                        admin::stage_set_config(inner, &mut wtxn, &mut changes, &name, config);
                    topic_outcome(&mut pending, &mut failure, reply, staged_topic);
                }
                Command::DeleteRecords {
                    partition,
                    offset,
                    reply,
                } => {
                    match admin::stage_delete_records(
                        store,
                        &mut wtxn,
                        &mut staged,
                        &changes,
                        partition,
                        offset,
                    ) {
                        Ok(Ok(start)) => pending.push(Pending::Offset(reply, Some(start))),
                        Ok(Err(refusal)) => refuse(reply, refusal),
                        Err(e) => {
                            pending.push(Pending::Offset(reply, None));
                            failure = Some(e);
                        }
                    }
                }
                Command::Stop { reply } => pending.push(Pending::Stop(reply)),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        for (id, (_, state)) in &staged {
            if changes.deleted_ids.contains(id) {
                continue;
            }
            store
                .partitions
                .put(&mut wtxn, &id.to_be_bytes(), &state.to_bytes())?;
        }
        wtxn.commit()?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            publish(inner, &staged, changes);
            pending.into_iter().for_each(Pending::succeed);
        }
        Err(err) => {
            if err.is_full() {
                tracing::warn!(
                    "log is full (max_disk_bytes reached); refusing this group of writes"
                );
            } else {
                tracing::error!(error = %err, "group commit failed");
            }
            pending.into_iter().for_each(|p| p.fail(&err));
        }
    }
}

fn stage_meta(
    store: &Store,
    wtxn: &mut heed::RwTxn,
    entries: &[(String, Option<Vec<u8>>)],
) -> Result<(), LogError> {
    for (key, value) in entries {
        match value {
            Some(v) => store.meta.put(wtxn, key, v)?,
            None => {
                store.meta.delete(wtxn, key)?;
            }
        }
    }
    Ok(())
}

/// Makes committed changes visible to readers and wakes whoever waits for new data.
fn publish(inner: &LogInner, staged: &Staged, changes: TopicChanges) {
    if !changes.topics.is_empty() {
        let mut topics = inner.topics.write().unwrap_or_else(|p| p.into_inner());
        for (name, change) in changes.topics {
            match change {
                Some(topic) => topics.insert(name, topic),
                None => topics.remove(&name),
            };
        }
    }
    for partition in &changes.deleted {
        partition.mark_deleted();
    }
    for (partition, state) in staged.values() {
        if changes.deleted_ids.contains(&partition.id) {
            continue;
        }
        partition.set_state(*state);
        // No receivers is normal (nobody listening); lagging receivers re-scan.
        let _ = inner.events.send(AppendEvent {
            topic: partition.topic.clone(),
            partition: partition.index,
            next_offset: state.next_offset,
        });
    }
}

fn stage_append(
    store: &Store,
    wtxn: &mut heed::RwTxn,
    staged: &mut Staged,
    partition: Arc<PartitionHandle>,
    batches: Vec<(BatchHeader, Bytes)>,
) -> Result<Appended, LogError> {
    let entry = staged
        .entry(partition.id)
        .or_insert_with(|| (partition.clone(), partition.state()));
    let state = &mut entry.1;
    let base_offset = state.next_offset;
    let mut scratch = Vec::new();
    for (header, bytes) in batches {
        scratch.clear();
        scratch.extend_from_slice(&bytes);
        batch::set_base_offset(&mut scratch, state.next_offset);
        let key = batch_key(partition.id, state.next_offset);
        store.log.put(wtxn, &key, &scratch)?;
        state.next_offset += header.offset_count() as i64;
        state.bytes += scratch.len() as u64;
    }
    Ok(Appended {
        base_offset,
        last_offset: state.next_offset - 1,
        log_start: state.log_start,
    })
}

fn stage_topic(
    inner: &LogInner,
    wtxn: &mut heed::RwTxn,
    changes: &TopicChanges,
    name: String,
    partitions: u32,
    config: TopicConfig,
) -> Result<Arc<TopicHandle>, LogError> {
    // Two producers may race to auto-create the same topic: the second gets the first's.
    if let Some(existing) = changes.current(inner, &name) {
        return Ok(existing);
    }
    let mut next_id = inner
        .next_partition_id
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let ids: Vec<u32> = (0..partitions).map(|i| *next_id + i).collect();
    let meta = TopicMeta {
        partition_ids: ids.clone(),
        config: config.clone(),
    };
    inner.store.topics.put(wtxn, &name, &meta)?;
    for id in &ids {
        inner.store.partitions.put(
            wtxn,
            &id.to_be_bytes(),
            &PartitionState::default().to_bytes(),
        )?;
    }
    *next_id += partitions;
    admin::store_next_partition_id(&inner.store, wtxn, *next_id)?;
    Ok(TopicHandle::new(
        &name,
        &meta,
        &vec![PartitionState::default(); ids.len()],
    ))
}

fn stage_retention(
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

/// Files the outcome of a command that answers with a topic handle.
fn topic_outcome(
    pending: &mut Vec<Pending>,
    failure: &mut Option<LogError>,
    reply: oneshot::Sender<Result<Arc<TopicHandle>, LogError>>,
    staged: Result<Result<Arc<TopicHandle>, LogError>, LogError>,
) {
    match staged {
        Ok(Ok(topic)) => pending.push(Pending::Topic(reply, Some(topic))),
        Ok(Err(refusal)) => refuse(reply, refusal),
        Err(e) => {
            pending.push(Pending::Topic(reply, None));
            *failure = Some(e);
        }
    }
}
