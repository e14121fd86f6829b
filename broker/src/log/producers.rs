//! Idempotent producers: per partition, who wrote what, so a retried batch is written once.
//!
//! Kafka's idempotence (KIP-98) gives every producer an id and an epoch (InitProducerId) and
//! numbers its records per partition with a sequence. The broker remembers, per partition and
//! producer, the epoch, the last sequence and the last [`RETAINED_BATCHES`] batches, and checks
//! every new batch against them the way Apache Kafka's `ProducerAppendInfo` does:
//!
//! - a batch equal (same epoch, first and last sequence) to one of the retained ones is a retry
//!   of a write that succeeded: it is answered with the original offsets and not written again
//!   (Kafka answers NONE with the cached offsets; librdkafka and the Java client take that as
//!   delivered). Five are kept because clients allow at most five requests in flight per
//!   partition with idempotence on;
//! - an older epoch than the partition has seen is a fenced, zombie producer:
//!   INVALID_PRODUCER_EPOCH (what Kafka 2.7+ answers a Produce with, KIP-588);
//! - a newer epoch must start at sequence 0 (clients bump the epoch and restart their numbering
//!   after an unrecoverable gap, KIP-360);
//! - otherwise the batch must continue the sequence (`last + 1`, wrapping from `i32::MAX` to
//!   0), or it is OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - a producer the partition knows nothing about (never seen, or expired) may start at any
//!   sequence: since KIP-360 (Kafka 2.5) the broker accepts it instead of answering
//!   UNKNOWN_PRODUCER_ID, because state legitimately disappears (expiry, deleted records).
//!
//! The checks run in the log's single writer (one commit at a time), atomically with the
//! append, so no two appends race on one producer's state. A partition's append is all or nothing: every batch is
//! checked (each against the state the ones before it leave) before any is written, so a
//! rejected batch leaves the whole request unapplied, as in Kafka. A request whose batches are all
//! duplicates is answered with their original offsets; one that mixes duplicates with new
//! batches is refused (no client sends more than one batch per partition and request; writing
//! only part of it would leave the answer's offsets meaning nothing).
//!
//! Durability: each producer's entry is written to the `producers` database in the same
//! transaction as the batches it describes, so after `kill -9` the state on disk is exactly in
//! step with the data. Memory and disk stay bounded by expiry: a producer that has not written
//! to a partition for [`PRODUCER_ID_EXPIRATION_MS`] (Kafka's `producer.id.expiration.ms`,
//! one day) is forgotten there, swept with retention; past [`MAX_PRODUCER_ENTRIES`] the least
//! recently active go first. Retention and DeleteRecords leave producer
//! state alone, as Kafka does since KIP-360: a live producer's retry is still recognised even
//! after the batch it repeats was deleted. Deleting a topic deletes its partitions' state.
//!
//! Producer ids come from a counter stored in the `meta` database and advanced in the same
//! transaction that hands an id out, so an id is never given twice, even across restarts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Bound::Excluded;

use std::sync::Arc;

use tokio::sync::oneshot;

use super::batch::{BatchHeader, NewRecord};
use super::store::Store;
use super::writer::{Appended, Command};
use super::{Log, LogError, PartitionHandle};

/// Batches remembered per producer and partition for duplicate detection: clients keep at most
/// five requests in flight per partition when idempotent (`max.in.flight.requests.per.connection`).
pub const RETAINED_BATCHES: usize = 5;
/// How long a producer's state outlives its last write to a partition (Kafka's
/// `producer.id.expiration.ms` default, one day).
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;
/// Most producer entries (one per producer and partition it writes to) kept across all
/// partitions: about 250 bytes of memory each with their five batches, so 25 MB at most. Past it
/// the least recently active are forgotten at the next retention sweep, before their expiry:
/// a client creating producers without end cannot grow the broker's memory without end.
pub const MAX_PRODUCER_ENTRIES: usize = 100_000;
/// The producer id and epoch of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;
/// Meta key of the producer id counter.
const NEXT_PRODUCER_ID: &str = "log/next-producer-id";
/// Version byte of a stored [`ProducerEntry`].
const ENTRY_FORMAT: u8 = 1;

/// Why an idempotent batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("epoch {epoch} is older than epoch {current} already written: the producer was fenced by a newer instance")]
    StaleEpoch { epoch: i16, current: i16 },
    #[error("the first batch of epoch {epoch} must have sequence 0, not {sequence}")]
    NewEpochNotAtZero { epoch: i16, sequence: i32 },
    #[error("out of order sequence {sequence}: the next expected is {expected}")]
    OutOfOrder { sequence: i32, expected: i32 },
    #[error("invalid sequence {sequence} or epoch {epoch} in a batch with a producer id")]
    Invalid { sequence: i32, epoch: i16 },
    #[error("the request mixes retried batches with new ones; send one batch per partition")]
    MixedDuplicates,
    #[error("the batches of one request must come from one producer, in sequence")]
    Scattered,
}

/// One batch a producer wrote: its sequences and where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// What one partition remembers of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// The last batches of `epoch`, oldest first; never empty once written.
    pub batches: VecDeque<BatchMeta>,
    /// Broker time of the last write, in ms: the clock of expiry (the batch's own timestamps
    /// are the client's and may be anything).
    pub last_write_ms: i64,
}

/// The outcome of checking one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New and in order: write it.
    Append,
    /// Already written: answer with these offsets.
    Duplicate(BatchMeta),
}

/// The last sequence of a batch starting at `first_seq` holding `last_offset_delta + 1`
/// records; sequences wrap from `i32::MAX` to 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn last_sequence(first_seq: i32, last_offset_delta: i32) -> i32 {
    let wrapped = (i64::from(first_seq) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1);
    // In range: the modulus keeps it within 0..=i32::MAX for non-negative inputs.
    wrapped as i32
}

/// True when `next` follows `last`.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// The sequence that follows `last`.
fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// Checks a batch of `epoch` with sequences `first_seq..=last_seq` against what the partition
/// knows of its producer (`None`: nothing). Pure: the rules of the module docs.
pub fn check(
    entry: Option<&ProducerEntry>,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
) -> Result<Verdict, SequenceError> {
    if first_seq < 0 || epoch < 0 {
        return Err(SequenceError::Invalid {
            sequence: first_seq,
            epoch,
        });
    }
    let Some(entry) = entry else {
        return Ok(Verdict::Append);
    };
    if epoch == entry.epoch {
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(Verdict::Duplicate(*dup));
        }
    }
    if epoch < entry.epoch {
        return Err(SequenceError::StaleEpoch {
            epoch,
            current: entry.epoch,
        });
    }
    if epoch > entry.epoch {
        return if first_seq == 0 {
            Ok(Verdict::Append)
        } else {
            Err(SequenceError::NewEpochNotAtZero {
                epoch,
                sequence: first_seq,
            })
        };
    }
    match entry.last_seq() {
        Some(last) if !in_sequence(last, first_seq) => Err(SequenceError::OutOfOrder {
            sequence: first_seq,
            expected: next_sequence(last),
        }),
        _ => Ok(Verdict::Append),
    }
}

impl ProducerEntry {
    /// The last sequence written in the current epoch.
    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    /// The entry after writing `batch` with `epoch` at time `now_ms` (a new epoch forgets the
    /// old one's batches, which can no longer be retried).
    pub fn record(
        entry: Option<&ProducerEntry>,
        epoch: i16,
        batch: BatchMeta,
        now_ms: i64,
    ) -> Self {
        let mut batches = match entry {
            Some(e) if e.epoch == epoch => e.batches.clone(),
            _ => VecDeque::with_capacity(RETAINED_BATCHES),
        };
        if batches.len() >= RETAINED_BATCHES {
            batches.pop_front();
        }
        batches.push_back(batch);
        ProducerEntry {
            epoch,
            batches,
            last_write_ms: now_ms,
        }
    }

    /// True once the producer has been idle for `expiration_ms` at `now_ms`.
    pub fn is_expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        now_ms.saturating_sub(self.last_write_ms) >= expiration_ms
    }

    /// Stored form: format byte, epoch, last write time, batch count, then per batch first and
    /// last sequence, base and last offset; all big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 24 * self.batches.len());
        out.push(ENTRY_FORMAT);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.last_write_ms.to_be_bytes());
        out.push(self.batches.len() as u8);
        for b in &self.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
        out
    }

    /// Reads [`encode`](Self::encode)'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<ProducerEntry> {
        let (&format, rest) = bytes.split_first()?;
        if format != ENTRY_FORMAT {
            return None;
        }
        let (epoch, rest) = rest.split_first_chunk::<2>()?;
        let (last_write, rest) = rest.split_first_chunk::<8>()?;
        let (&count, mut rest) = rest.split_first()?;
        let count = usize::from(count);
        if count == 0 || count > RETAINED_BATCHES || rest.len() != count * 24 {
            return None;
        }
        let mut batches = VecDeque::with_capacity(count);
        while let Some((b, tail)) = rest.split_first_chunk::<24>() {
            let i32_at = |at: usize| i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let i64_at = |at: usize| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[at..at + 8]);
                i64::from_be_bytes(a)
            };
            batches.push_back(BatchMeta {
                first_seq: i32_at(0),
                last_seq: i32_at(4),
                base_offset: i64_at(8),
                last_offset: i64_at(16),
            });
            rest = tail;
        }
        Some(ProducerEntry {
            epoch: i16::from_be_bytes(*epoch),
            batches,
            last_write_ms: i64::from_be_bytes(*last_write),
        })
    }
}

/// The sequence range one producer's request covers on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerClaim {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

impl ProducerClaim {
    /// The claim of one batch as its producer sent it; `None` for a non-idempotent batch.
    pub fn of_batch(h: &BatchHeader) -> Option<ProducerClaim> {
        (h.producer_id >= 0).then(|| ProducerClaim {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq: h.base_sequence,
            last_seq: last_sequence(h.base_sequence.max(0), h.last_offset_delta),
        })
    }

    /// The claim of a whole produce request's batches for one partition, for appends whose
    /// stored records are not the producer's batches (an ingest plugin rewrote them): `None`
    /// when no batch is idempotent; refused unless every batch is one producer's, same epoch,
    /// sequences contiguous.
    pub fn of_request(headers: &[&BatchHeader]) -> Result<Option<ProducerClaim>, SequenceError> {
        let mut claims = headers.iter().map(|h| ProducerClaim::of_batch(h));
        let Some(first) = claims.next() else {
            return Ok(None);
        };
        let mut whole = first;
        for next in claims {
            match (whole, next) {
                (None, None) => {}
                (Some(w), Some(n))
                    if w.producer_id == n.producer_id
                        && w.epoch == n.epoch
                        && in_sequence(w.last_seq, n.first_seq) =>
                {
                    whole = Some(ProducerClaim {
                        last_seq: n.last_seq,
                        ..w
                    });
                }
                _ => return Err(SequenceError::Scattered),
            }
        }
        Ok(whole)
    }
}

/// One unit the sequence checks judge: a batch as its producer sent it, or the whole output of
/// an ingest plugin standing for a claimed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// `None`: not idempotent, no checks.
    pub producer: Option<ProducerClaim>,
    /// Offsets the unit takes in the log (0 when a plugin dropped every record).
    pub offsets: i64,
}

impl Judged {
    pub fn batch(h: &BatchHeader) -> Judged {
        Judged {
            producer: ProducerClaim::of_batch(h),
            offsets: h.offset_count() as i64,
        }
    }
}

/// Key of an entry in the `producers` database: partition id ‖ producer id, big-endian, so a
/// partition's producers are one key range.
fn entry_key(partition_id: u32, producer_id: i64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[0..4].copy_from_slice(&partition_id.to_be_bytes());
    key[4..12].copy_from_slice(&producer_id.to_be_bytes());
    key
}

fn key_parts(key: &[u8]) -> Option<(u32, i64)> {
    let (id, rest) = key.split_first_chunk::<4>()?;
    let producer: [u8; 8] = rest.try_into().ok()?;
    Some((u32::from_be_bytes(*id), i64::from_be_bytes(producer)))
}

/// Every partition's producer state and the producer id counter; owned by the log's writer
/// (held under its commit lock).
#[derive(Debug, Default)]
pub struct Producers {
    entries: HashMap<(u32, i64), ProducerEntry>,
    next_producer_id: i64,
}

/// Changes of one group commit, applied to [`Producers`] only once the group has committed.
#[derive(Debug, Default)]
pub struct Staging {
    /// `None`: the entry was deleted (expired, or its topic deleted).
    entries: HashMap<(u32, i64), Option<ProducerEntry>>,
    next_producer_id: Option<i64>,
}

/// What to do with one partition append, decided before anything is written.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Write every batch; then store these entries (producer id → state after the append).
    Append(Vec<(i64, ProducerEntry)>),
    /// Every batch was written before: answer with these offsets, write nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

impl Producers {
    /// Loads every stored entry and the id counter.
    pub fn load(store: &Store) -> Result<Producers, LogError> {
        let rtxn = store.env.read_txn()?;
        let mut entries = HashMap::new();
        for item in store.producers.iter(&rtxn)? {
            let (key, value) = item?;
            match (key_parts(key), ProducerEntry::decode(value)) {
                (Some(k), Some(entry)) => {
                    entries.insert(k, entry);
                }
                // Unreadable state is dropped: the producer is then unknown, which Kafka's
                // rules accept, at the cost of not recognising one of its retries.
                _ => tracing::warn!("ignoring an unreadable producer state entry"),
            }
        }
        let next_producer_id = store
            .meta
            .get(&rtxn, NEXT_PRODUCER_ID)?
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(i64::from_be_bytes)
            .unwrap_or(0);
        Ok(Producers {
            entries,
            next_producer_id,
        })
    }

    fn get<'a>(&'a self, staging: &'a Staging, key: (u32, i64)) -> Option<&'a ProducerEntry> {
        match staging.entries.get(&key) {
            Some(staged) => staged.as_ref(),
            None => self.entries.get(&key),
        }
    }

    /// Checks an append of `items` to partition `partition_id`, whose next offset is
    /// `next_offset`, against the state as `staging` has left it. `Err` names the producer.
    pub fn plan(
        &self,
        staging: &Staging,
        partition_id: u32,
        next_offset: i64,
        items: &[Judged],
        now_ms: i64,
    ) -> Result<Plan, (i64, SequenceError)> {
        let mut updated: Vec<(i64, ProducerEntry)> = Vec::new();
        let mut duplicates: Vec<BatchMeta> = Vec::new();
        let mut offset = next_offset;
        let mut appended = 0usize;
        for item in items {
            let Some(claim) = item.producer else {
                offset += item.offsets;
                appended += 1;
                continue;
            };
            let pid = claim.producer_id;
            let current = match updated.iter().find(|(p, _)| *p == pid) {
                Some((_, e)) => Some(e),
                None => self.get(staging, (partition_id, pid)),
            };
            match check(current, claim.epoch, claim.first_seq, claim.last_seq)
                .map_err(|e| (pid, e))?
            {
                Verdict::Duplicate(meta) => duplicates.push(meta),
                Verdict::Append => {
                    let meta = BatchMeta {
                        first_seq: claim.first_seq,
                        last_seq: claim.last_seq,
                        base_offset: offset,
                        last_offset: offset + item.offsets - 1,
                    };
                    let entry = ProducerEntry::record(current, claim.epoch, meta, now_ms);
                    match updated.iter_mut().find(|(p, _)| *p == pid) {
                        Some(slot) => slot.1 = entry,
                        None => updated.push((pid, entry)),
                    }
                    offset += item.offsets;
                    appended += 1;
                }
            }
        }
        match (duplicates.first(), duplicates.last()) {
            (Some(first), Some(last)) if appended == 0 => Ok(Plan::Duplicate {
                base_offset: first.base_offset,
                last_offset: last.last_offset,
            }),
            (Some(_), _) => {
                let pid = items
                    .iter()
                    .find_map(|i| i.producer)
                    .map_or(NO_PRODUCER_ID, |c| c.producer_id);
                Err((pid, SequenceError::MixedDuplicates))
            }
            _ => Ok(Plan::Append(updated)),
        }
    }

    /// Whether the producers, with this group's changes, may be more than a tenth over
    /// [`MAX_PRODUCER_ENTRIES`] (counting every staged change as a new entry), so that expiry
    /// must run now rather than at the next retention sweep.
    pub fn over_cap(&self, staging: &Staging) -> bool {
        self.entries.len() + staging.entries.len()
            > MAX_PRODUCER_ENTRIES + MAX_PRODUCER_ENTRIES / 10
    }

    /// Writes a planned append's entries in the group's transaction and stages them.
    pub fn stage_entries(
        &self,
        store: &Store,
        wtxn: &mut heed::RwTxn,
        staging: &mut Staging,
        partition_id: u32,
        entries: Vec<(i64, ProducerEntry)>,
    ) -> Result<(), LogError> {
        for (pid, entry) in entries {
            store
                .producers
                .put(wtxn, &entry_key(partition_id, pid), &entry.encode())?;
            staging.entries.insert((partition_id, pid), Some(entry));
        }
        Ok(())
    }

    /// Forgets producers idle for `expiration_ms` at `now_ms`, then, while more than
    /// `max_entries` remain, the least recently written; returns how many were forgotten.
    pub fn stage_expiry(
        &self,
        store: &Store,
        wtxn: &mut heed::RwTxn,
        staging: &mut Staging,
        now_ms: i64,
        expiration_ms: i64,
        max_entries: usize,
    ) -> Result<usize, LogError> {
        let mut live: Vec<(i64, (u32, i64))> = self
            .entries
            .keys()
            .chain(staging.entries.keys())
            .filter_map(|k| self.get(staging, *k).map(|e| (e.last_write_ms, *k)))
            .collect();
        live.sort_unstable();
        live.dedup();
        let idle = live
            .iter()
            .take_while(|(_, k)| {
                self.get(staging, *k)
                    .is_some_and(|e| e.is_expired(now_ms, expiration_ms))
            })
            .count();
        let doomed = idle.max(live.len().saturating_sub(max_entries));
        if doomed > idle {
            tracing::warn!(
                producers = live.len(),
                max_entries,
                "too many idempotent producers: forgetting the least recently active early"
            );
        }
        for (_, key) in &live[..doomed] {
            store.producers.delete(wtxn, &entry_key(key.0, key.1))?;
            staging.entries.insert(*key, None);
        }
        Ok(doomed)
    }

    /// Forgets every producer of these (deleted) partitions.
    pub fn stage_delete_partitions(
        &self,
        store: &Store,
        wtxn: &mut heed::RwTxn,
        staging: &mut Staging,
        partition_ids: &HashSet<u32>,
    ) -> Result<(), LogError> {
        for id in partition_ids {
            let lo = entry_key(*id, 0);
            let hi = entry_key(id.saturating_add(1), 0);
            store.producers.delete_range(
                wtxn,
                &(std::ops::Bound::Included(&lo[..]), Excluded(&hi[..])),
            )?;
        }
        let doomed: Vec<(u32, i64)> = self
            .entries
            .keys()
            .chain(staging.entries.keys())
            .filter(|(p, _)| partition_ids.contains(p))
            .copied()
            .collect();
        for key in doomed {
            staging.entries.insert(key, None);
        }
        Ok(())
    }

    /// Answers InitProducerId: a fresh id with epoch 0 from the stored counter. As in Kafka, an
    /// idempotent (non-transactional) producer that presents the id it holds (KIP-360, after an
    /// unrecoverable sequence error) gets a fresh id too, not a bumped epoch: nothing ties an id
    /// to one client, so bumping whatever a client presents would let it fence another's.
    pub fn stage_init(
        &self,
        store: &Store,
        wtxn: &mut heed::RwTxn,
        staging: &mut Staging,
    ) -> Result<(i64, i16), LogError> {
        let next = staging.next_producer_id.unwrap_or(self.next_producer_id);
        store
            .meta
            .put(wtxn, NEXT_PRODUCER_ID, &(next + 1).to_be_bytes())?;
        staging.next_producer_id = Some(next + 1);
        Ok((next, 0))
    }

    /// Makes a committed group's changes the current state.
    pub fn apply(&mut self, staging: Staging) {
        for (key, entry) in staging.entries {
            match entry {
                Some(e) => self.entries.insert(key, e),
                None => self.entries.remove(&key),
            };
        }
        if let Some(next) = staging.next_producer_id {
            self.next_producer_id = next;
        }
    }
}

impl Log {
    /// A fresh producer id and epoch 0 for an idempotent producer (Kafka's InitProducerId, see
    /// [`Producers::stage_init`]). Resolves once the id counter is durable.
    pub async fn init_producer_id(&self) -> Result<(i64, i16), LogError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Command::InitProducerId { reply }, rx).await
    }

    /// Appends records that stand for an idempotent producer's request without being its own
    /// (an ingest plugin's output, possibly none), encoded into one batch: `claim` (see
    /// [`ProducerClaim::of_request`]) is checked and recorded instead of the batch's producer
    /// fields, atomically with the append. A retry of a claim already written is answered with
    /// the original offsets; no records still records the claim (the plugin dropped them, and
    /// the producer's next request must follow on).
    pub async fn append_records_claimed(
        &self,
        partition: &Arc<PartitionHandle>,
        records: &[NewRecord],
        claim: ProducerClaim,
    ) -> Result<Appended, LogError> {
        self.submit_append(partition, records, Some(claim), None)
            .await?
            .durable()
            .await
    }

    /// What the committed producer state says of `claim` before any work is done for it:
    /// `Some(original offsets)` for a retry of a request already written, `None` for a new one
    /// in order, a `Sequence` error for one that would be refused. It lets a caller skip the
    /// ingest plugins (and their side effects on other topics) for a retry; the append checks
    /// again, atomically, so a race between the two cannot write twice.
    pub fn check_claim(
        &self,
        partition: &PartitionHandle,
        claim: ProducerClaim,
    ) -> Result<Option<Appended>, LogError> {
        let store = &self.inner.store;
        let rtxn = store.env.read_txn()?;
        let entry = store
            .producers
            .get(&rtxn, &entry_key(partition.id, claim.producer_id))?
            .and_then(ProducerEntry::decode);
        drop(rtxn);
        match check(entry.as_ref(), claim.epoch, claim.first_seq, claim.last_seq) {
            Ok(Verdict::Append) => Ok(None),
            Ok(Verdict::Duplicate(meta)) => Ok(Some(Appended {
                base_offset: meta.base_offset,
                last_offset: meta.last_offset,
                log_start: partition.log_start(),
            })),
            Err(reason) => Err(LogError::Sequence {
                topic: partition.topic.to_string(),
                partition: partition.index as i32,
                producer_id: claim.producer_id,
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
