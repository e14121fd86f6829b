//! Kafka-style partition logs in LMDB.
//!
//! Every protocol writes through [`Log`]: topics with N partitions, dense per-partition offsets,
//! batches stored as Kafka v2 record batches (see [`batch`]). Writes are queued for one writer
//! that commits them in groups (`writer`): the writer thread, or a task waiting for its own lone
//! append when nobody else is committing; reads open short read transactions ([`store`]). Readers
//! learn of new data from [`AppendEvent`]s, sent after each commit. Topic administration
//! (delete a topic, add partitions, change its config, delete records) is in `admin`; it too
//! goes through the writer.
//!
//! Idempotent producers' sequence checks ([`producers`]) run in the writer too, atomically with
//! the append they judge, and their state is committed in the same transaction.

mod admin;
pub mod batch;
pub mod producers;
pub mod retention;
mod stats;
pub mod store;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use admin::{validate_config, CLEANUP_DELETE};
pub use batch::{BatchError, BatchHeader, NewRecord, StoredRecord};
pub use stats::CommitCounts;
pub use store::{PartitionState, StoredBatch, TopicConfig, TopicMeta};
pub use writer::Appended;

use producers::ProducerClaim;
use store::Store;
use writer::{Command, Committer, Queued};

/// Depth of the writer's command queue: producers wait (backpressure) once it is full.
const WRITER_QUEUE: usize = 8192;
/// How many append events a slow reader may fall behind before it must re-scan.
const EVENT_BUFFER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("LMDB error: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the log is full: the data directory reached its size limit (max_disk_bytes)")]
    Full,
    #[error("unknown topic or partition: {topic}/{partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("unknown topic: {0}")]
    UnknownTopic(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: &'static str },
    #[error("bad record batch: {0}")]
    Batch(#[from] BatchError),
    #[error("the log writer has stopped")]
    Stopped,
    #[error(
        "offset {offset} of {topic}/{partition} is out of range ({log_start} to {high_watermark})"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error("invalid partition count for {topic}: {reason}")]
    InvalidPartitions { topic: String, reason: String },
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("{0}")]
    Reply(String),
    #[error("idempotent producer {producer_id} on {topic}/{partition}: {reason}")]
    Sequence {
        topic: String,
        partition: i32,
        producer_id: i64,
        reason: producers::SequenceError,
    },
}

impl LogError {
    /// True when the write was refused because the data directory is full.
    pub fn is_full(&self) -> bool {
        matches!(
            self,
            LogError::Full | LogError::Lmdb(heed::Error::Mdb(heed::MdbError::MapFull))
        )
    }

    /// The same error for another waiter of a failed group (heed errors are not `Clone`).
    fn clone_for_reply(&self) -> LogError {
        match self {
            e if e.is_full() => LogError::Full,
            other => LogError::Reply(other.to_string()),
        }
    }
}

/// Broker-wide log settings (see `config::LogSection` for their documentation).
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub data_dir: PathBuf,
    pub max_disk_bytes: u64,
    pub fsync: bool,
    pub defaults: TopicDefaults,
}

impl LogOptions {
    /// Options for unit tests: no fsync, 2 partitions per auto-created topic, no retention.
    #[cfg(test)]
    pub(crate) fn for_tests(dir: &std::path::Path, max_disk_bytes: u64) -> LogOptions {
        LogOptions {
            data_dir: dir.to_path_buf(),
            max_disk_bytes,
            fsync: false,
            defaults: TopicDefaults {
                auto_create: true,
                partitions: 2,
                retention_ms: -1,
                retention_bytes: -1,
            },
        }
    }
}

/// Defaults for topics that do not override them.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    pub auto_create: bool,
    pub partitions: u32,
    /// -1 keeps data forever.
    pub retention_ms: i64,
    /// -1 means no size limit.
    pub retention_bytes: i64,
}

/// Metadata entries to write in the same transaction as an append (or alone), with a hook the
/// writer runs once that transaction has committed and before readers hear of it. The
/// MQTT retained store uses it so a retained message, its log record and the in-memory index
/// change together: a subscriber that saw the record can never miss it as retained.
pub struct MetaUpdate {
    /// Key and value; `None` deletes the key.
    pub entries: Vec<(String, Option<Vec<u8>>)>,
    /// Runs after the commit, on whichever thread committed (the writer thread or a runtime
    /// worker): keep it short and non-blocking.
    pub on_commit: Box<dyn FnOnce() + Send>,
}

/// Namespaces of meta keys that belong to one topic, each key `{namespace}/{topic}/...`: they
/// are deleted with the topic, in the same transaction, so a topic created again under the same
/// name starts afresh (not from an old replication cursor or plugin state).
pub const TOPIC_META_NAMESPACES: [&str; 3] = ["ingest/state", "upstream/cursor", "upstream/state"];

/// The prefix of `topic`'s meta keys in `namespace` (one of [`TOPIC_META_NAMESPACES`]).
pub fn topic_meta_prefix(namespace: &str, topic: &str) -> String {
    debug_assert!(TOPIC_META_NAMESPACES.contains(&namespace));
    format!("{namespace}/{topic}/")
}

impl MetaUpdate {
    /// Entries to write, with no hook.
    pub fn new(entries: Vec<(String, Option<Vec<u8>>)>) -> MetaUpdate {
        MetaUpdate {
            entries,
            on_commit: Box::new(|| {}),
        }
    }

    /// `update` with `entries` written after its own (`None` when there is nothing to write).
    pub fn with_entries(
        update: Option<MetaUpdate>,
        entries: Vec<(String, Option<Vec<u8>>)>,
    ) -> Option<MetaUpdate> {
        match update {
            Some(mut update) => {
                update.entries.extend(entries);
                Some(update)
            }
            None if entries.is_empty() => None,
            None => Some(MetaUpdate::new(entries)),
        }
    }
}

/// A committed append, announced to readers.
#[derive(Debug, Clone)]
pub struct AppendEvent {
    pub topic: Arc<str>,
    pub partition: u32,
    pub next_offset: i64,
}

/// One partition: its id in the store and its committed state, readable without a transaction.
#[derive(Debug)]
pub struct PartitionHandle {
    pub id: u32,
    pub topic: Arc<str>,
    pub index: u32,
    next_offset: AtomicI64,
    log_start: AtomicI64,
    bytes: AtomicU64,
    /// Set once the partition's topic is deleted: holders of this handle (a fetch in progress,
    /// a producer's cache) then get `UnknownPartition` instead of reading or writing a
    /// partition that no longer exists.
    deleted: AtomicBool,
}

impl PartitionHandle {
    pub fn state(&self) -> PartitionState {
        PartitionState {
            log_start: self.log_start.load(Ordering::Acquire),
            next_offset: self.next_offset.load(Ordering::Acquire),
            bytes: self.bytes.load(Ordering::Acquire),
        }
    }

    fn set_state(&self, state: PartitionState) {
        self.bytes.store(state.bytes, Ordering::Release);
        self.log_start.store(state.log_start, Ordering::Release);
        self.next_offset.store(state.next_offset, Ordering::Release);
    }

    /// Offset the next record will get; everything below it is committed.
    pub fn high_watermark(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn log_start(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// True once the topic this partition belonged to was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    fn unknown(&self) -> LogError {
        LogError::UnknownPartition {
            topic: self.topic.to_string(),
            partition: self.index as i32,
        }
    }

    /// A fresh handle for a partition with persisted `state`.
    fn new(id: u32, topic: Arc<str>, index: u32, state: PartitionState) -> Arc<PartitionHandle> {
        Arc::new(PartitionHandle {
            id,
            topic,
            index,
            next_offset: AtomicI64::new(state.next_offset),
            log_start: AtomicI64::new(state.log_start),
            bytes: AtomicU64::new(state.bytes),
            deleted: AtomicBool::new(false),
        })
    }
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct TopicHandle {
    pub name: Arc<str>,
    pub partitions: Vec<Arc<PartitionHandle>>,
    pub config: TopicConfig,
}

impl TopicHandle {
    fn new(name: &str, meta: &TopicMeta, states: &[PartitionState]) -> Arc<TopicHandle> {
        let name: Arc<str> = Arc::from(name);
        let partitions = meta
            .partition_ids
            .iter()
            .zip(states)
            .enumerate()
            .map(|(index, (id, state))| {
                PartitionHandle::new(*id, name.clone(), index as u32, *state)
            })
            .collect();
        Arc::new(TopicHandle {
            name,
            partitions,
            config: meta.config.clone(),
        })
    }

    pub fn partition(&self, index: i32) -> Option<&Arc<PartitionHandle>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

struct LogInner {
    store: Store,
    topics: RwLock<HashMap<String, Arc<TopicHandle>>>,
    next_partition_id: Mutex<u32>,
    defaults: TopicDefaults,
    events: broadcast::Sender<AppendEvent>,
    /// What has been committed so far, for metrics.
    stats: stats::CommitStats,
    /// Who commits the queued commands (the writer thread, or a waiting task).
    committer: Committer,
}

impl LogInner {
    fn topic(&self, name: &str) -> Option<Arc<TopicHandle>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

/// Handle to the log; cheap to clone.
#[derive(Clone)]
pub struct Log {
    inner: Arc<LogInner>,
    commands: mpsc::Sender<Queued>,
    /// The writer thread, joined by [`Log::close`].
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// Wakes the writer thread when the last handle goes (declared after `commands`, so the
    /// last sender is gone by then and the thread sees the queue closed and ends).
    _last_out: Arc<WakeWriterOnDrop>,
}

struct WakeWriterOnDrop(Weak<LogInner>);

impl Drop for WakeWriterOnDrop {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.committer.wake_writer();
        }
    }
}

impl Log {
    /// Opens (or creates) the log under `options.data_dir` and starts its writer thread.
    pub fn open(options: &LogOptions) -> Result<Log, LogError> {
        let map_size = usize::try_from(options.max_disk_bytes).unwrap_or(usize::MAX);
        let store = Store::open(&options.data_dir, map_size, options.fsync)?;
        let mut topics = HashMap::new();
        for (name, meta, states) in store.load_topics()? {
            topics.insert(name.clone(), TopicHandle::new(&name, &meta, &states));
        }
        // Ids of deleted topics are never reused, even after a restart: the counter is stored.
        let next_id = store
            .max_partition_id()?
            .map(|m| m + 1)
            .unwrap_or(0)
            .max(admin::stored_next_partition_id(&store)?);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let producers = producers::Producers::load(&store)?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let inner = Arc::new(LogInner {
            store,
            topics: RwLock::new(topics),
            next_partition_id: Mutex::new(next_id),
            defaults: options.defaults.clone(),
            events,
            stats: Default::default(),
            committer: Committer::new(rx, producers),
        });
        let writer = Committer::start_writer(inner.clone());
        Ok(Log {
            _last_out: Arc::new(WakeWriterOnDrop(Arc::downgrade(&inner))),
            inner,
            commands: tx,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    pub fn defaults(&self) -> &TopicDefaults {
        &self.inner.defaults
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicHandle>> {
        self.inner.topic(name)
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<TopicHandle>> {
        let mut all: Vec<_> = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The topic, created with the default partition count if it is missing and auto-creation
    /// is on.
    pub async fn topic_for_write(&self, name: &str) -> Result<Arc<TopicHandle>, LogError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        if !self.inner.defaults.auto_create {
            return Err(LogError::UnknownTopic(name.to_string()));
        }
        self.create_topic(name, self.inner.defaults.partitions, TopicConfig::default())
            .await
    }

    /// Creates a topic (or returns the existing one of that name).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<Arc<TopicHandle>, LogError> {
        self.send_create_topic(name, partitions, config, false)
            .await
    }

    /// Checks a new topic's name and size and has the writer create it; `exclusive` refuses an
    /// existing topic instead of returning it.
    async fn send_create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        exclusive: bool,
    ) -> Result<Arc<TopicHandle>, LogError> {
        validate_topic_name(name)?;
        if partitions == 0 {
            return Err(LogError::InvalidTopic {
                name: name.to_string(),
                reason: "a topic needs at least one partition",
            });
        }
        let (reply, rx) = oneshot::channel();
        self.ask(
            Command::CreateTopic {
                name: name.to_string(),
                partitions,
                config,
                exclusive,
                reply,
            },
            rx,
        )
        .await
    }

    /// Appends already-validated Kafka batches to one partition; resolves once they are durable.
    pub async fn append_batches(
        &self,
        partition: &Arc<PartitionHandle>,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Result<Appended, LogError> {
        self.submit_batches(partition, batches)
            .await?
            .durable()
            .await
    }

    /// Queues an append with the writer and returns without waiting for it to be durable, so a
    /// connection can queue its next request meanwhile. Appends are applied in the order they
    /// are queued.
    pub async fn submit_batches(
        &self,
        partition: &Arc<PartitionHandle>,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Result<AppendTicket, LogError> {
        self.submit(partition, batches, None).await
    }

    /// Queues an append (with `meta` in its transaction) with the writer.
    async fn submit(
        &self,
        partition: &Arc<PartitionHandle>,
        batches: Vec<(BatchHeader, Bytes)>,
        meta: Option<MetaUpdate>,
    ) -> Result<AppendTicket, LogError> {
        self.submit_claimed(partition, batches, None, meta).await
    }

    async fn submit_claimed(
        &self,
        partition: &Arc<PartitionHandle>,
        batches: Vec<(BatchHeader, Bytes)>,
        claim: Option<ProducerClaim>,
        meta: Option<MetaUpdate>,
    ) -> Result<AppendTicket, LogError> {
        let (reply, rx) = oneshot::channel();
        self.queue(Command::Append {
            partition: partition.clone(),
            batches,
            claim,
            meta,
            reply,
        })
        .await?;
        Ok(self.ticket(rx))
    }

    fn ticket<T>(&self, reply: oneshot::Receiver<Result<T, LogError>>) -> Ticket<T> {
        Ticket {
            reply,
            log: Some(Arc::downgrade(&self.inner)),
        }
    }

    /// Encodes `records` into one batch and queues its append, with the producer's `claim`
    /// checked and recorded and `meta` written in the same transaction. No records still
    /// records the claim and writes `meta`. Appends keep the order of the calls.
    pub async fn submit_append(
        &self,
        partition: &Arc<PartitionHandle>,
        records: &[NewRecord],
        claim: Option<ProducerClaim>,
        meta: Option<MetaUpdate>,
    ) -> Result<AppendTicket, LogError> {
        let batches = if records.is_empty() {
            Vec::new()
        } else {
            let bytes = batch::encode(records)?;
            vec![(BatchHeader::parse(&bytes)?, bytes)]
        };
        self.submit_claimed(partition, batches, claim, meta).await
    }

    /// Encodes records into one batch and appends it; resolves once durable.
    pub async fn append_records(
        &self,
        partition: &Arc<PartitionHandle>,
        records: &[NewRecord],
    ) -> Result<Appended, LogError> {
        self.append_records_with_meta(partition, records, None)
            .await
    }

    /// [`Log::append_records`], with `meta` written in the same transaction (and its hook run
    /// after the commit, before readers are told of the append).
    pub async fn append_records_with_meta(
        &self,
        partition: &Arc<PartitionHandle>,
        records: &[NewRecord],
        meta: Option<MetaUpdate>,
    ) -> Result<Appended, LogError> {
        self.submit_records(partition, records, meta)
            .await?
            .durable()
            .await
    }

    /// [`Log::append_records_with_meta`] in two steps: this returns once the batch is queued
    /// with the writer (appends keep the order of the calls), the ticket resolves once durable.
    pub async fn submit_records(
        &self,
        partition: &Arc<PartitionHandle>,
        records: &[NewRecord],
        meta: Option<MetaUpdate>,
    ) -> Result<AppendTicket, LogError> {
        let bytes = batch::encode(records)?;
        let header = BatchHeader::parse(&bytes)?;
        self.submit(partition, vec![(header, bytes)], meta).await
    }

    /// Batches from `offset` on, about `max_bytes` of them. Blocking but short: an LMDB read.
    pub fn read(
        &self,
        partition: &PartitionHandle,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, LogError> {
        if partition.is_deleted() {
            return Err(partition.unknown());
        }
        if offset >= partition.high_watermark() {
            return Ok(Vec::new());
        }
        self.inner.store.read(partition.id, offset, max_bytes)
    }

    /// Decoded records from `offset` on (at most about `max_bytes` of batches), skipping records
    /// before `offset` in the first batch.
    pub fn read_records(
        &self,
        partition: &PartitionHandle,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let mut out = Vec::new();
        for stored in self.read(partition, offset, max_bytes)? {
            out.extend(
                batch::decode(&stored.bytes)?
                    .into_iter()
                    .filter(|r| r.offset >= offset.max(partition.log_start())),
            );
        }
        Ok(out)
    }

    pub fn offset_for_timestamp(
        &self,
        partition: &PartitionHandle,
        timestamp: i64,
    ) -> Result<Option<i64>, LogError> {
        // The first batch may start below the log start (after DeleteRecords); nothing below
        // the log start is readable, so it is not an answer either.
        Ok(self
            .inner
            .store
            .offset_for_timestamp(partition.id, timestamp)?
            .map(|offset| offset.max(partition.log_start())))
    }

    /// Announcements of committed appends.
    pub fn subscribe(&self) -> broadcast::Receiver<AppendEvent> {
        self.inner.events.subscribe()
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, LogError> {
        self.inner.store.get_meta(key)
    }

    pub fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        self.inner.store.scan_meta(prefix)
    }

    /// Writes (or with `None`, deletes) small metadata entries durably, all in one commit.
    pub async fn put_meta(&self, entries: Vec<(String, Option<Vec<u8>>)>) -> Result<(), LogError> {
        let (reply, rx) = oneshot::channel();
        self.ask(
            Command::PutMeta {
                entries,
                on_commit: None,
                reply,
            },
            rx,
        )
        .await
    }

    /// [`Log::put_meta`] in two steps: this returns once the entries are queued with the
    /// writer (so they commit after everything the caller queued before), the ticket resolves
    /// once they are durable.
    pub async fn submit_meta(
        &self,
        entries: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<Ticket<()>, LogError> {
        self.submit_meta_then(MetaUpdate::new(entries)).await
    }

    /// [`Log::submit_meta`] with a hook run right after the commit.
    pub async fn submit_meta_then(&self, update: MetaUpdate) -> Result<Ticket<()>, LogError> {
        let (reply, rx) = oneshot::channel();
        self.queue(Command::PutMeta {
            entries: update.entries,
            on_commit: Some(update.on_commit),
            reply,
        })
        .await?;
        Ok(self.ticket(rx))
    }

    /// [`Log::put_meta`] with a hook run right after the commit, by whoever committed it.
    pub async fn put_meta_then(&self, update: MetaUpdate) -> Result<(), LogError> {
        let (reply, rx) = oneshot::channel();
        self.ask(
            Command::PutMeta {
                entries: update.entries,
                on_commit: Some(update.on_commit),
                reply,
            },
            rx,
        )
        .await
    }

    /// Applies retention at time `now_ms`; returns how many batches were deleted.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<u64, LogError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Command::Retention { now_ms, reply }, rx).await
    }

    /// Group commits made so far and the records they carried.
    pub fn commit_counts(&self) -> CommitCounts {
        self.inner.stats.read()
    }

    /// Bytes the environment occupies on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.store.env.real_disk_size().unwrap_or(0)
    }

    /// Commits what is queued, stops the writer and, when this is the last handle, closes the
    /// environment so the same directory can be opened again in this process.
    pub async fn close(self) {
        let (reply, rx) = oneshot::channel();
        if self.queue(Command::Stop { reply }).await.is_ok() {
            self.inner.committer.commit_or_wake(&self.inner);
            let _ = rx.await;
        }
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let env = self.inner.store.env.clone();
        let last = Arc::strong_count(&self.inner) == 1;
        drop(self);
        if last {
            let _ = tokio::task::spawn_blocking(move || env.prepare_for_closing().wait()).await;
        } else {
            tracing::warn!("log closed while other handles remain; the environment stays open");
        }
    }

    /// Queues `cmd` and waits for its reply, committing it on this thread when nobody else is
    /// committing (see [`Committer`]).
    async fn ask<T>(
        &self,
        cmd: Command,
        reply: oneshot::Receiver<Result<T, LogError>>,
    ) -> Result<T, LogError> {
        self.queue(cmd).await?;
        self.inner.committer.commit_or_wake(&self.inner);
        reply.await.map_err(|_| LogError::Stopped)?
    }

    /// Queues `cmd` for the next commit, waking nobody: the caller will
    /// [`Committer::commit_or_wake`] when it waits for the reply (or wake the writer if it drops
    /// its ticket). A full queue always wakes the writer thread, so queued commands never wait on
    /// a caller that is itself waiting for room.
    async fn queue(&self, cmd: Command) -> Result<(), LogError> {
        use mpsc::error::TrySendError;
        let committer = &self.inner.committer;
        match self.commands.try_send(Queued::from(cmd)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(LogError::Stopped),
            Err(TrySendError::Full(cmd)) => {
                committer.wake_writer();
                self.commands.send(cmd).await.map_err(|_| LogError::Stopped)
            }
        }
    }
}

/// A command queued with the writer; [`Ticket::durable`] waits for its commit.
#[must_use = "the outcome is only known by awaiting `durable`"]
pub struct Ticket<T> {
    reply: oneshot::Receiver<Result<T, LogError>>,
    /// Until [`Ticket::durable`] runs: the log whose queue to commit (or whose writer to
    /// wake when the ticket is dropped unawaited). Weak: a ticket is not a handle on the log.
    log: Option<Weak<LogInner>>,
}

/// An append queued with the writer.
pub type AppendTicket = Ticket<Appended>;

impl<T> Ticket<T> {
    /// Has the writer thread commit this command now instead of the task that will wait for
    /// it: for a caller with more work to do meanwhile (a connection with other requests in
    /// flight keeps reading while the writer commits, rather than stopping for each commit).
    pub fn commit_in_background(&mut self) {
        if let Some(log) = self.log.take().and_then(|l| l.upgrade()) {
            log.committer.wake_writer();
        }
    }

    /// The command's outcome (for an append, where it landed), once it is on disk. Commits
    /// it on this thread when nobody else is committing (see [`Committer`]).
    pub async fn durable(mut self) -> Result<T, LogError> {
        if let Some(log) = self.log.take().and_then(|l| l.upgrade()) {
            log.committer.commit_or_wake(&log);
        }
        (&mut self.reply).await.map_err(|_| LogError::Stopped)?
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        if let Some(log) = self.log.take().and_then(|l| l.upgrade()) {
            log.committer.wake_writer();
        }
    }
}

/// Kafka's rules for topic names: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let bad = |reason| LogError::InvalidTopic {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 249 {
        return Err(bad("length must be 1 to 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(bad("'.' and '..' are not allowed"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(bad(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod committer_tests;
#[cfg(test)]
mod tests;
