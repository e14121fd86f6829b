//! The LMDB environment and its databases, and the read side of the log.
//!
//! Layout (all keys big-endian so LMDB's byte order is numeric order):
//! - `topics`: topic name → [`TopicMeta`] (JSON: small, rarely written, easy to evolve);
//! - `partitions`: partition id (u32) → [`PartitionState`] (24 bytes, rewritten every group commit);
//! - `log`: partition id (u32) ‖ base offset (u64) → one Kafka v2 record batch;
//! - `meta`: string key → bytes (replication cursors, group offsets, anything small);
//! - `producers`: partition id (u32) ‖ producer id (i64) → idempotent producer state
//!   (see `producers`), written in the same transaction as the batches it describes.
//!
//! Reads open a short read transaction, copy what they need out and close it before returning, so no
//! transaction is ever held across an `.await` or a slow client.

use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::path::Path;

use bytes::Bytes;
use heed::types::{Bytes as RawBytes, SerdeJson, Str};
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;
use super::LogError;

/// What the log remembers about a topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    /// Partition ids in partition order: `partition_ids[i]` holds partition `i`.
    pub partition_ids: Vec<u32>,
    /// Per-topic overrides of the broker-wide retention defaults.
    #[serde(default)]
    pub config: TopicConfig,
}

/// Per-topic settings; `None` means "use the broker default".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    /// Kafka's `cleanup.policy`; only `"delete"` exists here (there is no compaction), so it is
    /// stored for clients that set and read it back. `None` means the default, `"delete"`.
    #[serde(default)]
    pub cleanup_policy: Option<String>,
}

/// The mutable state of one partition, persisted with every commit that changes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// First offset still readable (Kafka's log start offset).
    pub log_start: i64,
    /// Offset the next record will get (Kafka's log end offset / high watermark on one node).
    pub next_offset: i64,
    /// Bytes of batches currently stored.
    pub bytes: u64,
}

impl PartitionState {
    pub fn to_bytes(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[0..8].copy_from_slice(&self.log_start.to_be_bytes());
        out[8..16].copy_from_slice(&self.next_offset.to_be_bytes());
        out[16..24].copy_from_slice(&self.bytes.to_be_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 24 {
            return None;
        }
        let i = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            a
        };
        Some(PartitionState {
            log_start: i64::from_be_bytes(i(0)),
            next_offset: i64::from_be_bytes(i(8)),
            bytes: u64::from_be_bytes(i(16)),
        })
    }
}

/// Key of a batch in the `log` database.
pub fn batch_key(partition_id: u32, base_offset: i64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[0..4].copy_from_slice(&partition_id.to_be_bytes());
    key[4..12].copy_from_slice(&(base_offset.max(0) as u64).to_be_bytes());
    key
}

fn key_offset(key: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&key[4..12]);
    u64::from_be_bytes(a) as i64
}

/// A key range for LMDB, from `lo` (included) to `hi`.
pub fn key_range<'a>(lo: &'a [u8], hi: Bound<&'a [u8; 12]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let hi = match hi {
        Included(k) => Included(&k[..]),
        Excluded(k) => Excluded(&k[..]),
        Unbounded => Unbounded,
    };
    (Included(lo), hi)
}

/// A batch read back from the log.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: Bytes,
}

/// The opened environment and its databases.
pub struct Store {
    pub env: Env<WithoutTls>,
    pub topics: Database<'static, Str, SerdeJson<TopicMeta>>,
    pub partitions: Database<'static, RawBytes, RawBytes>,
    pub log: Database<'static, RawBytes, RawBytes>,
    pub meta: Database<'static, Str, RawBytes>,
    pub producers: Database<'static, RawBytes, RawBytes>,
}

impl Store {
    pub fn open(dir: &Path, map_size: usize, fsync: bool) -> Result<Store, LogError> {
        std::fs::create_dir_all(dir).map_err(|e| LogError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(map_size).max_dbs(8).max_readers(512);
        if !fsync {
            // SAFETY: NO_SYNC only weakens durability (the documented "relaxed" mode); it cannot
            // corrupt the environment beyond losing the last commits on power loss.
            unsafe {
                options.flags(EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: heed requires the caller to ensure the environment is not opened twice in one
        // process or with different flags; `Log::open` is the only caller and the broker opens
        // one data directory once.
        let env = unsafe { options.open(dir) }?;
        let wtxn = env.write_txn()?;
        let (topics, partitions, log, meta, producers) = env
            .create_databases_and_commit(wtxn, |dbs, wtxn| -> Result<_, heed::Error> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbs.create_database(wtxn, Some("topics"))?,
                    dbs.create_database(wtxn, Some("partitions"))?,
                    dbs.create_database(wtxn, Some("log"))?,
                    dbs.create_database(wtxn, Some("meta"))?,
                    dbs.create_database(wtxn, Some("producers"))?,
                )))
            })?
            // The closure never aborts, so this is always `Commit`.
            .unwrap_commit();
        Ok(Store {
            env,
            topics,
            partitions,
            log,
            meta,
            producers,
        })
    }

    /// Every topic with its partitions' persisted state.
    pub fn load_topics(&self) -> Result<Vec<(String, TopicMeta, Vec<PartitionState>)>, LogError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.topics.iter(&rtxn)? {
            let (name, meta) = item?;
            let mut states = Vec::with_capacity(meta.partition_ids.len());
            for id in &meta.partition_ids {
                let state = self
                    .partitions
                    .get(&rtxn, &id.to_be_bytes())?
                    .and_then(PartitionState::from_bytes)
                    .unwrap_or_default();
                states.push(state);
            }
            out.push((name.to_string(), meta, states));
        }
        Ok(out)
    }

    /// Highest partition id in use, so new partitions get fresh ids.
    pub fn max_partition_id(&self) -> Result<Option<u32>, LogError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.partitions.last(&rtxn)?.map(|(k, _)| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&k[0..4]);
            u32::from_be_bytes(a)
        }))
    }

    /// Batches of a partition starting with the one that holds `from_offset`, up to about
    /// `max_bytes` (at least one batch is returned when any exists, as Kafka does).
    pub fn read(
        &self,
        partition_id: u32,
        from_offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<StoredBatch>, LogError> {
        let rtxn = self.env.read_txn()?;
        let lo = batch_key(partition_id, 0);
        let at = batch_key(partition_id, from_offset);
        let hi = batch_key(partition_id + 1, 0);
        // The batch holding `from_offset` starts at or before it.
        let mut start = at;
        if let Some(item) = self
            .log
            .rev_range(&rtxn, &key_range(&lo, Included(&at)))?
            .next()
            .transpose()?
        {
            let (key, value) = item;
            let header = BatchHeader::parse(value)?;
            if header.last_offset() >= from_offset {
                start.copy_from_slice(key);
            }
        }
        let mut out = Vec::new();
        let mut total = 0usize;
        for item in self.log.range(&rtxn, &key_range(&start, Excluded(&hi)))? {
            let (key, value) = item?;
            if !out.is_empty() && total + value.len() > max_bytes {
                break;
            }
            let header = BatchHeader::parse(value)?;
            total += value.len();
            out.push(StoredBatch {
                base_offset: key_offset(key),
                last_offset: header.last_offset(),
                bytes: Bytes::copy_from_slice(value),
            });
            if total >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// First offset whose batch's newest timestamp is at or after `timestamp` (ListOffsets by time).
    pub fn offset_for_timestamp(
        &self,
        partition_id: u32,
        timestamp: i64,
    ) -> Result<Option<i64>, LogError> {
        let rtxn = self.env.read_txn()?;
        let lo = batch_key(partition_id, 0);
        let hi = batch_key(partition_id + 1, 0);
        for item in self.log.range(&rtxn, &key_range(&lo, Excluded(&hi)))? {
            let (key, value) = item?;
            let header = BatchHeader::parse(value)?;
            if header.newest_timestamp() >= timestamp {
                return Ok(Some(key_offset(key)));
            }
        }
        Ok(None)
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, LogError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.meta.get(&rtxn, key)?.map(<[u8]>::to_vec))
    }

    /// Meta entries whose key starts with `prefix`.
    pub fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.meta.prefix_iter(&rtxn, prefix)? {
            let (k, v) = item?;
            out.push((k.to_string(), v.to_vec()));
        }
        Ok(out)
    }
}
