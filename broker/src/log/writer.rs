//! The single writer: every change to the environment goes through here.
//!
//! LMDB allows one write transaction at a time, so rather than have tasks queue on a lock, every
//! change is a command on one bounded channel; whoever commits ([`Committer`]: the writer thread,
//! or a task waiting for its own command) applies as many as are waiting in one transaction and
//! commits them together: one fsync per group, however many producers. Replies go out only after
//! the commit, so an ack always means "on disk".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::batch::BatchHeader;

mod append;
mod committer;
mod followers;
mod sweep;

use append::{stage_append, AppendOutcome};
pub use committer::Committer;
use sweep::stage_retention;

use super::admin;
use super::producers::{self, ProducerClaim, Producers};
use super::retention;
use super::store::{PartitionState, Store, TopicConfig, TopicMeta};
use super::{AppendEvent, LogError, LogInner, MetaUpdate, PartitionHandle, TopicHandle};

/// Most commands folded into one transaction; bounds commit latency under heavy load.
const MAX_GROUP_COMMANDS: usize = 4096;
/// Most batch bytes folded into one transaction.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start: i64,
}

/// Run by whoever committed the group, right after the commit and before readers are told (see
/// [`MetaUpdate`]).
pub type CommitHook = Box<dyn FnOnce() + Send>;

/// A command on the writer's queue with the task that queued it (`None` outside a task): the
/// group commit counts callers, not commands, when it waits for them (see `followers`).
pub struct Queued {
    pub cmd: Command,
    pub caller: Option<tokio::task::Id>,
}

impl From<Command> for Queued {
    fn from(cmd: Command) -> Queued {
        Queued {
            cmd,
            caller: tokio::task::try_id(),
        }
    }
}

pub enum Command {
    Append {
        partition: Arc<PartitionHandle>,
        batches: Vec<(BatchHeader, Bytes)>,
        /// For batches that are not the producer's own (an ingest plugin's output): the
        /// sequence range of the request they stand for, checked instead of the batches'.
        claim: Option<ProducerClaim>,
        /// Written in the same transaction when the batches are appended (not for a repeat or
        /// a refusal).
        meta: Option<MetaUpdate>,
        reply: oneshot::Sender<Result<Appended, LogError>>,
    },
    CreateTopic {
        name: String,
        partitions: u32,
        config: TopicConfig,
        /// Refuse with `TopicExists` instead of answering with the existing topic (CreateTopics);
        /// decided here, in commit order, so a racing auto-create cannot be mistaken for ours.
        exclusive: bool,
        reply: oneshot::Sender<Result<Arc<TopicHandle>, LogError>>,
    },
    PutMeta {
        entries: Vec<(String, Option<Vec<u8>>)>,
        on_commit: Option<CommitHook>,
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
    /// Hand out a fresh producer id with epoch 0 (InitProducerId).
    InitProducerId {
        reply: oneshot::Sender<Result<(i64, i16), LogError>>,
    },
    /// Commit what is queued with it, answer, and stop the log: later writes get `Stopped`.
    Stop { reply: oneshot::Sender<()> },
}

impl Command {
    fn weight(&self) -> usize {
        match self {
            Command::Append { batches, .. } => batches.iter().map(|(_, b)| b.len()).sum(),
            _ => 0,
        }
    }

    /// Whether the command may take long to stage (it deletes a whole topic or many batches):
    /// such commands are left to the writer thread rather than run by a task committing inline.
    fn is_heavy(&self) -> bool {
        matches!(
            self,
            Command::Retention { .. } | Command::DeleteTopic { .. } | Command::DeleteRecords { .. }
        )
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
    /// An idempotent producer's retry of batches already written: the original offsets, sent
    /// once the group (which may hold the original) commits. Not counted as appended.
    Repeat(oneshot::Sender<Result<Appended, LogError>>, Appended),
    /// A batch refused by the sequence checks. The refusal may rest on state staged earlier in
    /// this group, so it waits for the commit: if the group fails, the producer gets the
    /// group's (retriable) failure instead.
    Refused(oneshot::Sender<Result<Appended, LogError>>, LogError),
    ProducerId(
        oneshot::Sender<Result<(i64, i16), LogError>>,
        Option<(i64, i16)>,
    ),
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
            Command::InitProducerId { reply, .. } => Pending::ProducerId(reply, None),
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
            Pending::Repeat(tx, _) | Pending::Refused(tx, _) => drop(tx.send(Err(err))),
            Pending::ProducerId(tx, _) => drop(tx.send(Err(err))),
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
            Pending::Repeat(tx, a) => drop(tx.send(Ok(a))),
            Pending::Refused(tx, e) => drop(tx.send(Err(e))),
            Pending::ProducerId(tx, p) => drop(tx.send(outcome(p))),
            Pending::Stop(tx) => drop(tx.send(())),
        }
    }
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

fn commit_group(inner: &LogInner, producers: &mut Producers, group: Vec<Command>) {
    let mut pending = Vec::with_capacity(group.len());
    let mut staged: Staged = HashMap::new();
    let mut changes = TopicChanges::default();
    let mut staged_producers = producers::Staging::default();
    let mut hooks: Vec<CommitHook> = Vec::new();
    let now_ms = retention::now_ms();
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
                    claim,
                    meta,
                    reply,
                } => match stage_append(
                    store,
                    &mut wtxn,
                    &mut staged,
                    (producers, &mut staged_producers, now_ms),
                    partition,
                    (batches, claim),
                ) {
                    Ok(AppendOutcome::Appended(a)) => {
                        pending.push(Pending::Append(reply, Some(a)));
                        if let Some(meta) = meta {
                            match stage_meta(store, &mut wtxn, &meta.entries) {
                                Ok(()) => hooks.push(meta.on_commit),
                                Err(e) => failure = Some(e),
                            }
                        }
                    }
                    Ok(AppendOutcome::Repeat(a)) => pending.push(Pending::Repeat(reply, a)),
                    Ok(AppendOutcome::Refused(e)) => pending.push(Pending::Refused(reply, e)),
                    Err(e) => {
                        pending.push(Pending::Append(reply, None));
                        failure = Some(e);
                    }
                },
                Command::CreateTopic {
                    name,
                    exclusive: true,
                    reply,
                    ..
                } if changes.current(inner, &name).is_some() => {
                    refuse(reply, LogError::TopicExists(name));
                }
                Command::CreateTopic {
                    name,
                    partitions,
                    config,
                    reply,
                    ..
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
                Command::PutMeta {
                    entries,
                    on_commit,
                    reply,
                } => {
                    pending.push(Pending::Meta(reply));
                    match stage_meta(store, &mut wtxn, &entries) {
                        Ok(()) => hooks.extend(on_commit),
                        Err(e) => failure = Some(e),
                    }
                }
                Command::Retention { now_ms, reply } => {
                    let swept =
                        stage_retention(inner, &mut wtxn, &mut staged, now_ms).and_then(|n| {
                            producers.stage_expiry(
                                store,
                                &mut wtxn,
                                &mut staged_producers,
                                now_ms,
                                producers::PRODUCER_ID_EXPIRATION_MS,
                                producers::MAX_PRODUCER_ENTRIES,
                            )?;
                            Ok(n)
                        });
                    match swept {
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
                    )
                    .and_then(|staged_delete| {
                        producers.stage_delete_partitions(
                            store,
                            &mut wtxn,
                            &mut staged_producers,
                            &changes.deleted_ids,
                        )?;
                        Ok(staged_delete)
                    }) {
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
                Command::InitProducerId { reply } => {
                    match producers.stage_init(store, &mut wtxn, &mut staged_producers) {
                        Ok(p) => pending.push(Pending::ProducerId(reply, Some(p))),
                        Err(e) => {
                            pending.push(Pending::ProducerId(reply, None));
                            failure = Some(e);
                        }
                    }
                }
                Command::Stop { reply } => pending.push(Pending::Stop(reply)),
            }
        }
        // The sweep with retention keeps the producer count in bounds over time; a burst of new
        // producer ids between two sweeps is bounded here.
        if failure.is_none() && producers.over_cap(&staged_producers) {
            if let Err(e) = producers.stage_expiry(
                store,
                &mut wtxn,
                &mut staged_producers,
                now_ms,
                producers::PRODUCER_ID_EXPIRATION_MS,
                producers::MAX_PRODUCER_ENTRIES,
            ) {
                failure = Some(e);
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
        let started = std::time::Instant::now();
        wtxn.commit()?;
        inner
            .stats
            .record(appended_records(&pending), started.elapsed());
        Ok(())
    })();
    match result {
        Ok(()) => {
            producers.apply(staged_producers);
            hooks.into_iter().for_each(|hook| hook());
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

/// Records the appends of a group added to the log.
fn appended_records(pending: &[Pending]) -> u64 {
    pending
        .iter()
        .map(|p| match p {
            Pending::Append(_, Some(a)) => (a.last_offset - a.base_offset + 1).max(0) as u64,
            _ => 0,
        })
        .sum()
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
