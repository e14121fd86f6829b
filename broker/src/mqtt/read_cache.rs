//! Decoded log batches shared by subscribers.
//!
//! Every subscriber delivers from the log with its own cursor. Each reading and decoding the
//! same batches, and finding each record's MQTT topic again, was most of the broker's work when
//! fanning out to many subscribers (BENCHMARKS.md). So batches read by more than one
//! subscriber are kept here, decoded, with every record's MQTT topic, for every other to use.
//! A batch is cached at its second read, not its first: with a single subscriber, the common
//! case, caching would only cost (holding megabytes of records it never reads again), so a
//! batch read once is only remembered by its offset.
//!
//! A stored batch never changes at an offset, so a decoded one stays true. The cache holds at
//! most [`CACHE_BYTES`] of decoded records, dropping the batches cached longest ago first, and
//! checks each batch against the partition handle itself, so a deleted topic's batches never
//! serve a new topic that reuses its partition id.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;

use crate::log::{self, Log, PartitionHandle, StoredBatch, StoredRecord};

use super::delivery::{header, record_bytes, record_topic};
use super::inbound::{HEADER_CLIENT_ID, HEADER_RETAIN};
use super::properties::message_expiry;

/// Decoded bytes the cache holds at most (besides batches subscribers are still delivering).
pub const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Stored bytes read from the log at a time: what one partially delivered read can hold (at
/// least one batch is always read).
pub const READ_BYTES: usize = 64 * 1024;
/// Most decoded bytes one read hands a subscriber (past its first batch): compressed batches
/// can be far bigger decoded.
pub const DECODED_BYTES: usize = 1024 * 1024;

/// One stored batch, decoded.
pub struct DecodedBatch {
    pub records: Vec<Prepared>,
    /// Offset after the batch: where the next one starts.
    pub end: i64,
    /// Stored bytes.
    pub bytes: usize,
    /// Decoded bytes held (what the cache counts).
    decoded: usize,
    /// Cached, so read by several subscribers: worth preparing shared encodings for.
    pub shared: bool,
}

/// A record with what every subscriber would work out from it alike.
pub struct Prepared {
    pub rec: StoredRecord,
    /// Its MQTT topic and the QoS it was published with; `None` if its topic header is invalid.
    pub topic: Option<(String, QoS)>,
    /// The client id of its publisher (`mqtt.client_id`), for no-local.
    pub publisher: Option<Bytes>,
    /// Whether it was published retained (`mqtt.retain`).
    pub retained: bool,
    /// Its MQTT 5 message expiry interval in seconds (`mqtt.message_expiry`).
    pub expiry: Option<u32>,
    /// The record as a QoS 0 PUBLISH to an MQTT 3.1.1 client (the same bytes for every such
    /// subscriber), encoded by the first such delivery; `None` inside if it cannot be sent.
    pub v4_qos0: OnceLock<Option<Bytes>>,
}

impl Prepared {
    fn new(rec: StoredRecord, log_topic: &str) -> Prepared {
        let text = |name| header(&rec, name).and_then(|v| v.as_deref());
        Prepared {
            topic: record_topic(&rec, log_topic),
            publisher: header(&rec, HEADER_CLIENT_ID).cloned().flatten(),
            retained: text(HEADER_RETAIN) == Some(b"1"),
            expiry: message_expiry(&rec.headers),
            v4_qos0: OnceLock::new(),
            rec,
        }
    }
}

impl DecodedBatch {
    /// The position of the first record at or after `offset`.
    pub fn index_of(&self, offset: i64) -> usize {
        self.records.partition_point(|p| p.rec.offset < offset)
    }
}

/// Consecutive decoded batches of one partition from some offset on.
pub struct Read {
    pub batches: VecDeque<Arc<DecodedBatch>>,
    /// Offset after the last batch.
    pub end: i64,
}

/// The cached batches of one partition, by base offset.
struct Cached {
    partition: Arc<PartitionHandle>,
    batches: BTreeMap<i64, Arc<DecodedBatch>>,
    /// Base offsets of the batches read once lately (at most [`SEEN`]): read again, they are
    /// cached.
    seen: VecDeque<i64>,
}

/// Batches remembered per partition as read once.
const SEEN: usize = 64;

pub struct ReadCache {
    entries: Mutex<Entries>,
    /// Decoded bytes held at most.
    budget: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Entries {
    by_partition: HashMap<u32, Cached>,
    /// (partition id, base offset) in the order cached, for dropping the oldest.
    order: VecDeque<(u32, i64)>,
    decoded: usize,
}

impl Entries {
    /// The entry of `p`, emptied first if its id belonged to another partition before.
    fn partition(&mut self, p: &Arc<PartitionHandle>) -> &mut Cached {
        let cached = self.by_partition.entry(p.id).or_insert_with(|| Cached {
            partition: p.clone(),
            batches: BTreeMap::new(),
            seen: VecDeque::new(),
        });
        if !Arc::ptr_eq(&cached.partition, p) {
            for old in cached.batches.values() {
                self.decoded -= old.decoded;
            }
            cached.batches.clear();
            cached.seen.clear();
            cached.partition = p.clone();
        }
        cached
    }
}

impl Default for ReadCache {
    fn default() -> ReadCache {
        ReadCache::with_budget(CACHE_BYTES)
    }
}

impl ReadCache {
    pub fn with_budget(budget: usize) -> ReadCache {
        ReadCache {
            entries: Mutex::default(),
            budget,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The batches of `p` from the one holding offset `from` on: cached ones if the cache has
    /// that one, else a read of the log (whose batches are then cached). `None` if there is
    /// nothing to read or the read failed (logged).
    pub fn read(&self, log: &Log, p: &Arc<PartitionHandle>, from: i64) -> Option<Read> {
        if let Some(read) = self.cached(p, from) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(read);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let stored = match log.read(p, from, READ_BYTES) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.index, offset = from, error = %e, "mqtt delivery: log read failed");
                return None;
            }
        };
        let mut read = Read {
            batches: VecDeque::new(),
            end: stored.first()?.base_offset,
        };
        let mut decoded = 0;
        for b in stored {
            if decoded >= DECODED_BYTES {
                break;
            }
            let batch = self.get_or_decode(p, b);
            decoded += batch.decoded;
            read.end = batch.end;
            read.batches.push_back(batch);
        }
        Some(read)
    }

    /// Reads served from the cache and from the log, since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// The cached batch holding `from` and the cached ones right after it; `None` below the log
    /// start (retention or DeleteRecords removed those batches: the log read skips them).
    fn cached(&self, p: &Arc<PartitionHandle>, from: i64) -> Option<Read> {
        if from < p.log_start() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let cached = entries.by_partition.get(&p.id)?;
        if !Arc::ptr_eq(&cached.partition, p) {
            return None;
        }
        let (_, first) = cached.batches.range(..=from).next_back()?;
        if first.end <= from {
            return None;
        }
        let mut read = Read {
            batches: VecDeque::new(),
            end: from,
        };
        let mut decoded = 0;
        let mut next = Some(first);
        while let Some(batch) = next {
            if decoded >= DECODED_BYTES {
                break;
            }
            decoded += batch.decoded;
            read.end = batch.end;
            read.batches.push_back(batch.clone());
            next = cached.batches.get(&batch.end);
        }
        Some(read)
    }

    /// The decoded form of stored batch `b`, from the cache or decoded now (and cached).
    fn get_or_decode(&self, p: &Arc<PartitionHandle>, b: StoredBatch) -> Arc<DecodedBatch> {
        let read_before = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let cached = entries.partition(p);
            if let Some(hit) = cached.batches.get(&b.base_offset) {
                return hit.clone();
            }
            let read_before = cached.seen.contains(&b.base_offset);
            if !read_before {
                if cached.seen.len() == SEEN {
                    cached.seen.pop_front();
                }
                cached.seen.push_back(b.base_offset);
            }
            read_before
        };
        let mut batch = decode(p, &b);
        batch.shared = read_before;
        let batch = Arc::new(batch);
        if read_before {
            self.insert(p, b.base_offset, &batch);
        }
        batch
    }

    fn insert(&self, p: &Arc<PartitionHandle>, base: i64, batch: &Arc<DecodedBatch>) {
        if batch.decoded > self.budget {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entries = &mut *entries;
        let cached = entries.partition(p);
        let replaced = cached.batches.insert(base, batch.clone());
        if let Some(old) = replaced {
            entries.decoded -= old.decoded;
        }
        entries.decoded += batch.decoded;
        entries.order.push_back((p.id, base));
        while entries.decoded > self.budget {
            let Some((id, base)) = entries.order.pop_front() else {
                break;
            };
            let Some(cached) = entries.by_partition.get_mut(&id) else {
                continue;
            };
            if let Some(old) = cached.batches.remove(&base) {
                entries.decoded -= old.decoded;
            }
        }
        // Keys of batches replaced or dropped with their partition stay behind; bounded by
        // the batches cached since, and cleared when they outnumber the live ones.
        let live: usize = entries.by_partition.values().map(|c| c.batches.len()).sum();
        if entries.order.len() > 2 * live + 64 {
            // Deleted partitions go too (their entries would otherwise stay until an id reuse).
            let mut freed = 0;
            entries.by_partition.retain(|_, c| {
                let deleted = c.partition.is_deleted();
                if deleted {
                    freed += c.batches.values().map(|b| b.decoded).sum::<usize>();
                }
                !deleted
            });
            entries.decoded -= freed;
            let by_partition = &entries.by_partition;
            entries.order.retain(|(id, base)| {
                by_partition
                    .get(id)
                    .is_some_and(|c| c.batches.contains_key(base))
            });
        }
    }
}

/// Decodes a stored batch (an undecodable one, logged, becomes a batch of no records).
fn decode(p: &PartitionHandle, b: &StoredBatch) -> DecodedBatch {
    let records = match log::batch::decode(&b.bytes) {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(topic = %p.topic, partition = p.index, offset = b.base_offset, error = %e, "mqtt delivery: skipping undecodable batch");
            Vec::new()
        }
    };
    let mut decoded = 0;
    let records = records
        .into_iter()
        .map(|rec| {
            decoded += record_bytes(&rec);
            Prepared::new(rec, &p.topic)
        })
        .collect();
    DecodedBatch {
        records,
        end: b.last_offset + 1,
        bytes: b.bytes.len(),
        decoded,
        shared: false,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::log::{LogOptions, NewRecord, TopicConfig};

    /// Appends records `from..to` (100-byte values, MQTT topic `plant/temp`) as one batch.
    async fn append(log: &Log, p: &Arc<PartitionHandle>, from: u8, to: u8) {
        let record = |i| NewRecord {
            timestamp: 1,
            key: None,
            value: Some(Bytes::from(vec![i; 100])),
            headers: vec![(
                crate::mqtt::HEADER_TOPIC.into(),
                Some(Bytes::from_static(b"plant/temp")),
            )],
        };
        let records: Vec<NewRecord> = (from..to).map(record).collect();
        log.append_records(p, &records).await.unwrap();
    }

    fn open_log(dir: &tempfile::TempDir) -> Log {
        Log::open(&LogOptions::for_tests(dir.path(), 64 << 20)).unwrap()
    }

    /// The one partition of a new topic `name`.
    async fn partition(log: &Log, name: &str) -> Arc<PartitionHandle> {
        let topic = log.create_topic(name, 1, TopicConfig::default()).await;
        topic.unwrap().partitions[0].clone()
    }

    /// A log whose topic `plant` holds records 0..10 and 10..20 as two batches.
    async fn plant_with_two_batches(dir: &tempfile::TempDir) -> (Log, Arc<PartitionHandle>) {
        let log = open_log(dir);
        let p = partition(&log, "plant").await;
        append(&log, &p, 0, 10).await;
        append(&log, &p, 10, 20).await;
        (log, p)
    }

    /// The offsets a read hands out from offset `from` on.
    fn offsets(read: &Read, from: i64) -> Vec<i64> {
        let records = read.batches.iter().flat_map(|b| b.records.iter());
        records
            .map(|p| p.rec.offset)
            .filter(|&o| o >= from)
            .collect()
    }

    fn same(a: &Read, b: &Read) -> bool {
        a.batches.len() == b.batches.len()
            && a.batches
                .iter()
                .zip(&b.batches)
                .all(|(x, y)| Arc::ptr_eq(x, y))
    }

    #[tokio::test]
    async fn batches_read_twice_are_shared_wherever_subscribers_are() {
        let dir = tempfile::tempdir().unwrap();
        let (log, p) = plant_with_two_batches(&dir).await;
        let cache = ReadCache::default();

        // A single reader's batches are not kept.
        let first = cache.read(&log, &p, 0).unwrap();
        assert_eq!(cache.counts(), (0, 1), "read from the log");
        assert_eq!((first.batches.len(), first.end), (2, 20));
        assert!(first.batches.iter().all(|b| !b.shared));
        assert_eq!(offsets(&first, 0), (0..20).collect::<Vec<_>>());
        let t = first.batches[0].records[0].topic.as_ref().unwrap();
        assert_eq!((t.0.as_str(), t.1), ("plant/temp", QoS::AtLeastOnce));
        // A second reader's are, and serve every later one wherever it is.
        let second = cache.read(&log, &p, 4).unwrap();
        assert_eq!(cache.counts(), (0, 2), "read from the log again");
        assert!(second.batches.iter().all(|b| b.shared));
        assert_eq!(offsets(&second, 4), (4..20).collect::<Vec<_>>());
        let third = cache.read(&log, &p, 4).unwrap();
        assert!(same(&second, &third));
        assert_eq!(cache.counts(), (1, 2), "served from the cache");
        assert_eq!(third.batches[0].index_of(4), 4);
        let fourth = cache.read(&log, &p, 15).unwrap();
        assert!(Arc::ptr_eq(&fourth.batches[0], &second.batches[1]));
        assert_eq!((fourth.batches.len(), fourth.end), (1, 20));
        assert_eq!(cache.counts(), (2, 2));

        // A new batch read twice joins them: a lagging reader gets all three from the cache.
        append(&log, &p, 20, 30).await;
        let newer = cache.read(&log, &p, 20).unwrap();
        assert_eq!(offsets(&newer, 20), (20..30).collect::<Vec<_>>());
        cache.read(&log, &p, 25).unwrap();
        let lagging = cache.read(&log, &p, 3).unwrap();
        assert_eq!(
            cache.counts(),
            (3, 4),
            "the lagging read came from the cache"
        );
        assert_eq!(
            offsets(&lagging, 3),
            (3..30).collect::<Vec<_>>(),
            "cached batches chain"
        );
        drop((first, second, third, fourth, newer, lagging, p));
        log.close().await;
    }

    #[tokio::test]
    async fn batches_below_the_log_start_are_not_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (log, p) = plant_with_two_batches(&dir).await;
        let cache = ReadCache::default();
        for _ in 0..3 {
            cache.read(&log, &p, 0).unwrap();
        }
        assert_eq!(cache.counts(), (1, 2), "cached at the second read");
        // DeleteRecords drops the first batch: a reader behind it gets what the log has.
        assert_eq!(log.delete_records(&p, 10).await.unwrap(), 10);
        let read = cache.read(&log, &p, 3).unwrap();
        assert_eq!(offsets(&read, 0), (10..20).collect::<Vec<_>>());
        assert_eq!(cache.counts(), (1, 3), "from the log");
        drop((read, p));
        log.close().await;
    }

    #[tokio::test]
    async fn the_cache_keeps_its_budget_dropping_the_oldest_batches() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(&dir);
        let (pa, pb) = (partition(&log, "a").await, partition(&log, "b").await);
        append(&log, &pa, 0, 10).await;
        append(&log, &pb, 0, 10).await;
        // Room for one batch of ten 100-byte records (and their topic headers), not two.
        let cache = ReadCache::with_budget(1500);
        for p in [&pa, &pa, &pb, &pb] {
            cache.read(&log, p, 0).unwrap();
        }
        assert_eq!(cache.counts(), (0, 4));
        cache.read(&log, &pb, 0).unwrap();
        assert_eq!(cache.counts(), (1, 4), "b stays cached");
        cache.read(&log, &pa, 0).unwrap();
        assert_eq!(cache.counts(), (1, 5), "a was dropped to make room for b");
        drop((pa, pb));
        log.close().await;
    }
}
