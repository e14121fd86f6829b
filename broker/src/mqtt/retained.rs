//! Retained messages (MQTT §3.3.1.3): the last retained PUBLISH of each MQTT topic, kept durably
//! in the log's key/value store and sent to new subscriptions.
//!
//! # Storage
//!
//! One metadata entry per topic, key `mqtt/retained/<topic>` ([`KEY_PREFIX`]), value the record
//! exactly as it was appended to the log, encoded as a one-record Kafka v2 batch (so the QoS,
//! the publisher and the MQTT 5 properties travel as the same headers a Kafka consumer sees, and
//! the timestamp is the time it was stored, for message expiry). An empty payload deletes the
//! entry. LMDB keys are at most 511 bytes, so topics longer than [`MAX_TOPIC_BYTES`] are appended
//! but not retained (logged).
//!
//! # Ordering and durability
//!
//! A retained PUBLISH is appended to the log (as any other) and its retained entry is written in
//! the same LMDB transaction ([`RetainedStore::prepare`] builds a `log::MetaUpdate` that rides
//! on the append). The update's hook changes the in-memory index, on the committing thread, right after
//! the commit and before subscribers are told of the record, so log, LMDB and index change
//! together: a client that has seen the record delivered and then subscribes gets it as retained,
//! and a crash keeps both or neither. The publisher is acked after that commit. Retained writes
//! are serialised by an async lock held until they are durable (one retained publish per commit;
//! a queue-order lock would let them share commits, see the report of issue 4).
//!
//! # Index
//!
//! Loaded once at startup ([`RetainedStore::load`]): a wildcard SUBSCRIBE must be matched
//! against every retained topic, and doing that against LMDB on every SUBSCRIBE would walk the
//! whole prefix each time. The index holds only topic names and expiry data; payloads stay in
//! LMDB and are read one at a time as they are sent. Its size is capped by `mqtt.max_retained`
//! (a new topic beyond the cap is appended but not retained, with a warning).
//!
//! Expired messages (MQTT 5 message expiry counted from the time stored) are never sent; they
//! leave the index when seen and their entries are deleted with the next retained write.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;

use crate::log::{self, Log, LogError, MetaUpdate, NewRecord};

use super::inbound::HEADER_QOS;
use super::properties::{remaining_expiry, MessageProps};
use super::topic;

/// Key prefix of retained messages in the log's metadata store.
pub const KEY_PREFIX: &str = "mqtt/retained/";
/// Longest topic (bytes) that can be retained: LMDB's 511-byte key limit minus the prefix.
pub const MAX_TOPIC_BYTES: usize = 480;

/// What the index keeps of one retained message.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When it was stored (ms since the epoch).
    stored_ms: i64,
    /// MQTT 5 message expiry interval in seconds, as published.
    expiry: Option<u32>,
}

impl Entry {
    fn expired(&self, now_ms: i64) -> bool {
        self.expiry
            .is_some_and(|e| remaining_expiry(e, self.stored_ms, now_ms).is_none())
    }
}

#[derive(Debug, Default)]
struct Index {
    topics: BTreeMap<String, Entry>,
    /// Expired topics taken out of the index whose entries are still in LMDB.
    expired: Vec<String>,
}

/// A retained message ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedMessage {
    pub topic: String,
    pub qos: QoS,
    pub payload: Bytes,
    /// With the message expiry already reduced by the time it was retained.
    pub props: MessageProps,
}

/// What became of a retained write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    Stored,
    Cleared,
    /// Not retained: `mqtt.max_retained` topics are retained already, or the topic is too long.
    Refused,
}

pub struct RetainedStore {
    log: Log,
    /// `mqtt.max_retained`.
    max: usize,
    /// Shared with the commit hooks of pending writes.
    index: Arc<Mutex<Index>>,
    write: tokio::sync::Mutex<()>,
}

/// Proof that the retained store's write lock is held (see [`RetainedStore::lock_writes`]).
pub struct WriteGuard<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

impl RetainedStore {
    /// Loads the index of retained messages from the log's metadata store. Entries that do not
    /// decode are skipped with a warning; expired ones are deleted with the next write.
    pub fn load(log: Log, max: usize, now_ms: i64) -> Result<RetainedStore, LogError> {
        let mut index = Index::default();
        for (key, value) in log.scan_meta(KEY_PREFIX)? {
            let Some(topic) = key.strip_prefix(KEY_PREFIX) else {
                continue;
            };
            let Some(rec) = decode(&value) else {
                tracing::warn!(%topic, "mqtt: undecodable retained message skipped");
                continue;
            };
            let entry = Entry {
                stored_ms: rec.timestamp,
                expiry: MessageProps::from_headers(&rec.headers).message_expiry,
            };
            if entry.expired(now_ms) {
                index.expired.push(topic.to_string());
            } else {
                index.topics.insert(topic.to_string(), entry);
            }
        }
        if index.topics.len() > max {
            tracing::warn!(
                retained = index.topics.len(),
                max,
                "mqtt: more retained messages stored than mqtt.max_retained; no new topics are retained until some are cleared"
            );
        }
        Ok(RetainedStore {
            log,
            max,
            index: Arc::new(Mutex::new(index)),
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// A store with no retained messages (when loading failed).
    pub fn empty(log: Log, max: usize) -> RetainedStore {
        RetainedStore {
            log,
            max,
            index: Arc::new(Mutex::new(Index::default())),
            write: tokio::sync::Mutex::new(()),
        }
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    /// Number of retained messages (expired ones not yet seen included).
    pub fn len(&self) -> usize {
        self.index().topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the write lock: hold it from [`RetainedStore::prepare`] until its update is
    /// durable, so retained writes apply one at a time (and the expired entries one deletes
    /// cannot be a newer message written meanwhile).
    pub async fn lock_writes(&self) -> WriteGuard<'_> {
        WriteGuard(self.write.lock().await)
    }

    /// Makes `record` (as appended to the log; its timestamp is the time stored) the retained
    /// message of `topic`, or clears it when the payload is empty. Durable when it returns.
    /// MQTT publishes use [`RetainedStore::prepare`] to write it with the record's append.
    pub async fn set(&self, topic: &str, record: &NewRecord) -> Result<Retained, LogError> {
        let guard = self.lock_writes().await;
        let (outcome, update) = self.prepare(&guard, topic, record)?;
        if let Some(update) = update {
            self.log.put_meta_then(update).await?;
        }
        Ok(outcome)
    }

    /// What making `record` the retained message of `topic` will do, and the metadata update
    /// that does it (`None`: nothing to write). Write the update in the transaction that appends
    /// `record` while holding `_guard`; its hook updates the index once that commits, before
    /// subscribers hear of the record.
    pub fn prepare(
        &self,
        _guard: &WriteGuard<'_>,
        topic: &str,
        record: &NewRecord,
    ) -> Result<(Retained, Option<MetaUpdate>), LogError> {
        let clear = record.value.as_ref().is_none_or(|v| v.is_empty());
        let mut index = self.index();
        if clear && !index.topics.contains_key(topic) && !index.expired.iter().any(|t| t == topic) {
            return Ok((Retained::Cleared, None)); // nothing retained: no write needed
        }
        if !clear && !index.topics.contains_key(topic) {
            if topic.len() > MAX_TOPIC_BYTES {
                tracing::warn!(%topic, "mqtt: topic longer than {MAX_TOPIC_BYTES} bytes is not retained");
                return Ok((Retained::Refused, None));
            }
            if index.topics.len() >= self.max {
                sweep(&mut index, record.timestamp);
            }
            if index.topics.len() >= self.max {
                tracing::warn!(%topic, max = self.max, "mqtt: retained message not kept: mqtt.max_retained reached");
                return Ok((Retained::Refused, None));
            }
        }
        let value = if clear {
            None
        } else {
            Some(log::batch::encode(std::slice::from_ref(record))?.to_vec())
        };
        // Expired entries still in LMDB are deleted with this write.
        let deleted: HashSet<String> = index
            .expired
            .iter()
            .filter(|t| t.as_str() != topic)
            .cloned()
            .collect();
        drop(index);
        let mut entries: Vec<(String, Option<Vec<u8>>)> = deleted
            .iter()
            .map(|t| (format!("{KEY_PREFIX}{t}"), None))
            .collect();
        entries.push((format!("{KEY_PREFIX}{topic}"), value));
        let entry = (!clear).then(|| Entry {
            stored_ms: record.timestamp,
            expiry: MessageProps::from_headers(&record.headers).message_expiry,
        });
        let shared = self.index.clone();
        let topic = topic.to_string();
        let on_commit = Box::new(move || {
            let mut index = lock(&shared);
            // Topics that expired meanwhile stay listed for the next write.
            index
                .expired
                .retain(|t| *t != topic && !deleted.contains(t));
            match entry {
                Some(entry) => index.topics.insert(topic, entry),
                None => index.topics.remove(&topic),
            };
        });
        let outcome = if clear {
            Retained::Cleared
        } else {
            Retained::Stored
        };
        Ok((outcome, Some(MetaUpdate { entries, on_commit })))
    }

    /// The first retained topic after `after` (all when `None`), in name order, that `filter`
    /// matches and has not expired at `now_ms`. Expired topics met on the way are dropped.
    pub fn next_match(&self, filter: &str, after: Option<&str>, now_ms: i64) -> Option<String> {
        let mut index = self.index();
        // Only names starting with the filter's literal levels can match: start there and stop
        // past them, so `site/7/#` does not walk every retained topic.
        // (Without the slash before the wildcard: `a/#` matches `a` too.)
        let literal = filter.find(['+', '#']).map_or(filter, |wild| {
            let head = &filter[..wild];
            head.strip_suffix('/').unwrap_or(head)
        });
        let start = match after {
            Some(a) if a >= literal => Bound::Excluded(a),
            _ => Bound::Included(literal),
        };
        let mut found = None;
        let mut expired = Vec::new();
        for (name, entry) in index.topics.range::<str, _>((start, Bound::Unbounded)) {
            if !name.starts_with(literal) {
                break;
            }
            if !topic::matches(name, filter) {
                continue;
            }
            if entry.expired(now_ms) {
                expired.push(name.clone());
                continue;
            }
            found = Some(name.clone());
            break;
        }
        for name in expired {
            index.topics.remove(&name);
            index.expired.push(name);
        }
        found
    }

    /// The retained message of `topic` if it has one that has not expired at `now_ms`. A short
    /// LMDB read.
    pub fn get(&self, topic: &str, now_ms: i64) -> Option<RetainedMessage> {
        let value = match self.log.get_meta(&format!("{KEY_PREFIX}{topic}")) {
            Ok(v) => v?,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "mqtt: cannot read retained message");
                return None;
            }
        };
        let rec = decode(&value)?;
        let mut props = MessageProps::from_headers(&rec.headers);
        if let Some(interval) = props.message_expiry {
            props.message_expiry = Some(remaining_expiry(interval, rec.timestamp, now_ms)?);
        }
        let header = |name: &str| {
            rec.headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
        };
        let qos = match header(HEADER_QOS) {
            Some(b"0") => QoS::AtMostOnce,
            Some(b"2") => QoS::ExactlyOnce,
            _ => QoS::AtLeastOnce,
        };
        Some(RetainedMessage {
            topic: topic.to_string(),
            qos,
            payload: rec.value.unwrap_or_default(),
            props,
        })
    }
}

fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(|p| p.into_inner())
}

/// Moves expired topics out of the index (when it is full: this is a walk over all of it).
fn sweep(index: &mut Index, now_ms: i64) {
    let expired: Vec<String> = index
        .topics
        .iter()
        .filter(|(_, e)| e.expired(now_ms))
        .map(|(t, _)| t.clone())
        .collect();
    for t in expired {
        index.topics.remove(&t);
        index.expired.push(t);
    }
}

fn decode(value: &[u8]) -> Option<log::StoredRecord> {
    log::batch::decode(&Bytes::copy_from_slice(value))
        .ok()?
        .into_iter()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogOptions;

    fn record(payload: &'static [u8], ts: i64, expiry: Option<u32>) -> NewRecord {
        let mut headers = vec![(HEADER_QOS.to_string(), Some(Bytes::from_static(b"2")))];
        MessageProps {
            message_expiry: expiry,
            ..MessageProps::default()
        }
        .to_headers(&mut headers);
        NewRecord {
            timestamp: ts,
            key: None,
            value: Some(Bytes::from_static(payload)),
            headers,
        }
    }

    #[tokio::test]
    async fn set_clear_cap_expiry_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&LogOptions::for_tests(dir.path(), 64 << 20)).unwrap();
        let store = RetainedStore::load(log.clone(), 3, 0).unwrap();
        assert_eq!(
            store.set("a/1", &record(b"x", 1_000, None)).await.unwrap(),
            Retained::Stored
        );
        store
            .set("a/2", &record(b"y", 1_000, Some(5)))
            .await
            .unwrap();
        store
            .set("$SYS/x", &record(b"z", 1_000, None))
            .await
            .unwrap();
        assert_eq!(
            store.set("b", &record(b"w", 1_000, None)).await.unwrap(),
            Retained::Refused,
            "cap of 3"
        );
        let m = store.get("a/2", 3_000).unwrap();
        assert_eq!(
            (m.qos, &m.payload[..], m.props.message_expiry),
            (QoS::ExactlyOnce, &b"y"[..], Some(3))
        );
        assert_eq!(store.next_match("#", None, 2_000).as_deref(), Some("a/1"));
        assert_eq!(
            store.next_match("#", Some("a/1"), 2_000).as_deref(),
            Some("a/2")
        );
        assert_eq!(store.next_match("#", Some("a/2"), 2_000), None, "$ topic");
        assert_eq!(
            store.next_match("$SYS/#", None, 2_000).as_deref(),
            Some("$SYS/x")
        );
        // a/2 expires at 6 s: dropped when met, its slot free again.
        assert_eq!(store.next_match("a/+", Some("a/1"), 6_000), None);
        assert!(store.get("a/2", 6_000).is_none());
        assert_eq!(
            store.set("b", &record(b"w", 7_000, None)).await.unwrap(),
            Retained::Stored
        );
        assert!(log.get_meta("mqtt/retained/a/2").unwrap().is_none());
        assert_eq!(
            store.set("a/1", &record(b"", 8_000, None)).await.unwrap(),
            Retained::Cleared
        );
        let long = "t".repeat(MAX_TOPIC_BYTES + 1);
        assert_eq!(
            store.set(&long, &record(b"v", 8_000, None)).await.unwrap(),
            Retained::Refused
        );
        drop(store);
        log.close().await;

        let log = Log::open(&LogOptions::for_tests(dir.path(), 64 << 20)).unwrap();
        let store = RetainedStore::load(log.clone(), 3, 9_000).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(&store.get("b", 9_000).unwrap().payload[..], b"w");
        assert!(store.get("a/1", 9_000).is_none());
        drop(store);
        log.close().await;
    }

    #[tokio::test]
    async fn wildcard_scans_find_every_match_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&LogOptions::for_tests(dir.path(), 64 << 20)).unwrap();
        let store = RetainedStore::load(log.clone(), 100, 0).unwrap();
        for t in ["a", "a/b", "a/b/c", "ab", "b/a", "$a/b"] {
            store.set(t, &record(b"v", 0, None)).await.unwrap();
        }
        let all = |filter: &str| {
            let mut found = Vec::new();
            while let Some(t) = store.next_match(filter, found.last().map(String::as_str), 0) {
                found.push(t);
            }
            found
        };
        assert_eq!(all("a/#"), ["a", "a/b", "a/b/c"]);
        assert_eq!(all("a/+"), ["a/b"]);
        assert_eq!(all("+/a"), ["b/a"]);
        assert_eq!(all("#"), ["a", "a/b", "a/b/c", "ab", "b/a"]);
        assert_eq!(all("$a/#"), ["$a/b"]);
        assert_eq!(all("ab"), ["ab"]);
        drop(store);
        log.close().await;
    }
}
