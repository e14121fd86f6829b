//! Committed offsets: a cache in memory, persisted as log metadata so they survive restarts.
//!
//! Each committed partition is one metadata entry (`Log::put_meta`), written durably before
//! the OffsetCommit is answered:
//! key `group/<group>/offset/<topic>/<partition>`, value `offset (i64 BE) ‖ leader epoch
//! (i32 BE) ‖ metadata (UTF-8)`. Topic names cannot contain `/`; group ids can, so `%` and `/`
//! in a group id are percent-escaped, which keeps one group's prefix from matching another's.
//! The whole set is read once, on first use (not at construction, so a failing read is an
//! error the client retries, COORDINATOR_LOAD_IN_PROGRESS, rather than silently empty offsets).
//!
//! Next to a group's offsets, `group/<group>/active-at` (i64 BE, wall-clock ms) records when
//! the group was last seen active: written with every commit and, for groups with members, by
//! each retention sweep (see `lifetime`). Offsets expire from that moment, so the clock
//! survives restarts; a group stored before this entry existed counts as active when loaded.

use std::collections::{BTreeMap, HashMap};

use crate::log::{Log, LogError};

/// Prefix of every entry this module writes.
pub const PREFIX: &str = "group/";

/// One committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// Partitions of one group: (topic, partition) → committed position.
pub type GroupOffsets = BTreeMap<(String, i32), Committed>;

#[derive(Debug, Default)]
pub struct OffsetCache {
    groups: Option<HashMap<String, GroupOffsets>>,
    /// Group → when it was last seen active (wall-clock ms), for offset retention.
    active_ms: HashMap<String, i64>,
    /// Groups stored without an activity time (offsets from before it was kept): the time given
    /// them at load must be written, or every restart would restart their retention clock.
    unrecorded: Vec<String>,
}

impl OffsetCache {
    /// Loads every committed offset from `log` unless already loaded; `now_ms` is the activity
    /// time of groups stored without one.
    pub fn load(
        &mut self,
        log: &Log,
        now_ms: i64,
    ) -> Result<&mut HashMap<String, GroupOffsets>, LogError> {
        if self.groups.is_none() {
            let mut groups: HashMap<String, GroupOffsets> = HashMap::new();
            let mut active_ms = HashMap::new();
            for (key, value) in log.scan_meta(PREFIX)? {
                if let Some(group) = parse_active_key(&key) {
                    match <[u8; 8]>::try_from(value.as_slice()) {
                        Ok(ms) => {
                            active_ms.insert(group, i64::from_be_bytes(ms));
                        }
                        Err(_) => tracing::warn!(key, "ignoring malformed group activity entry"),
                    }
                    continue;
                }
                match (parse_key(&key), decode_value(&value)) {
                    (Some((group, topic, partition)), Some(committed)) => {
                        groups
                            .entry(group)
                            .or_default()
                            .insert((topic, partition), committed);
                    }
                    _ => tracing::warn!(key, "ignoring malformed committed-offset entry"),
                }
            }
            // Activity entries of groups without offsets are not kept: nothing would expire
            // them (their keys are deleted with the group's next sweep or deletion anyway).
            active_ms.retain(|g, _| groups.contains_key(g));
            for group in groups.keys() {
                if !active_ms.contains_key(group) {
                    active_ms.insert(group.clone(), now_ms);
                    self.unrecorded.push(group.clone());
                }
            }
            self.active_ms = active_ms;
            self.groups = Some(groups);
        }
        Ok(self.groups.get_or_insert_with(HashMap::new))
    }

    /// Groups whose activity time was given at load and not stored yet (see `unrecorded`).
    pub fn take_unrecorded(&mut self) -> Vec<String> {
        std::mem::take(&mut self.unrecorded)
    }

    /// The loaded offsets, if [`OffsetCache::load`] succeeded before.
    pub fn loaded(&mut self) -> Option<&mut HashMap<String, GroupOffsets>> {
        self.groups.as_mut()
    }

    /// Records that `group` was active at `now_ms`.
    pub fn touch(&mut self, group: &str, now_ms: i64) {
        match self.active_ms.get_mut(group) {
            Some(ms) => *ms = (*ms).max(now_ms),
            None => {
                self.active_ms.insert(group.to_string(), now_ms);
            }
        }
    }

    /// When `group` was last seen active, if it has offsets.
    pub fn active_ms(&self, group: &str) -> Option<i64> {
        self.active_ms.get(group).copied()
    }

    /// Forgets a group's offsets in memory.
    pub fn remove_group(&mut self, group: &str) {
        if let Some(all) = self.groups.as_mut() {
            all.remove(group);
        }
        self.active_ms.remove(group);
    }
}

fn escape(group: &str) -> String {
    group.replace('%', "%25").replace('/', "%2F")
}

fn unescape(group: &str) -> String {
    group.replace("%2F", "/").replace("%25", "%")
}

pub fn key(group: &str, topic: &str, partition: i32) -> String {
    format!("{PREFIX}{}/offset/{topic}/{partition}", escape(group))
}

/// Key of a group's last-activity entry.
pub fn active_key(group: &str) -> String {
    format!("{PREFIX}{}/active-at", escape(group))
}

fn parse_active_key(key: &str) -> Option<String> {
    let group = key.strip_prefix(PREFIX)?.strip_suffix("/active-at")?;
    // An escaped group id has no '/'; anything else is some other entry.
    (!group.contains('/')).then(|| unescape(group))
}

/// The value of a last-activity entry.
pub fn encode_active(now_ms: i64) -> Vec<u8> {
    now_ms.to_be_bytes().to_vec()
}

fn parse_key(key: &str) -> Option<(String, String, i32)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (group, rest) = rest.split_once("/offset/")?;
    let (topic, partition) = rest.rsplit_once('/')?;
    Some((unescape(group), topic.to_string(), partition.parse().ok()?))
}

pub fn encode_value(c: &Committed) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + c.metadata.len());
    out.extend_from_slice(&c.offset.to_be_bytes());
    out.extend_from_slice(&c.leader_epoch.to_be_bytes());
    out.extend_from_slice(c.metadata.as_bytes());
    out
}

fn decode_value(v: &[u8]) -> Option<Committed> {
    let (offset, rest) = v.split_first_chunk::<8>()?;
    let (epoch, metadata) = rest.split_first_chunk::<4>()?;
    Some(Committed {
        offset: i64::from_be_bytes(*offset),
        leader_epoch: i32::from_be_bytes(*epoch),
        metadata: String::from_utf8(metadata.to_vec()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_and_values_round_trip(
            group in "[a-z/%.]{0,12}",
            topic in "[a-z0-9._-]{1,12}",
            partition in 0i32..10_000,
            offset in any::<i64>(),
            leader_epoch in any::<i32>(),
            metadata in ".{0,20}",
        ) {
            let k = key(&group, &topic, partition);
            prop_assert_eq!(parse_key(&k), Some((group.clone(), topic, partition)));
            let prefix = format!("{PREFIX}{}/offset/", escape(&group));
            prop_assert!(k.starts_with(&prefix));
            let c = Committed { offset, leader_epoch, metadata };
            prop_assert_eq!(decode_value(&encode_value(&c)), Some(c));
            prop_assert_eq!(parse_active_key(&active_key(&group)), Some(group.clone()));
            prop_assert_eq!(parse_active_key(&k), None);
            prop_assert_eq!(parse_key(&active_key(&group)), None);
        }
    }

    #[test]
    fn a_group_named_like_a_path_does_not_collide() {
        assert_ne!(key("a/offset/b", "t", 0), key("a", "b/t", 0));
        assert_eq!(
            parse_key(&key("a/offset/b", "t", 3)),
            Some(("a/offset/b".to_string(), "t".to_string(), 3))
        );
    }
}
