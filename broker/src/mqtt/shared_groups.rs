//! The share groups of the broker ([`super::shared`]), kept while anyone needs them and saved in
//! LMDB so a restart loses no group's place.
//!
//! A group lives while a connected member holds it or a stored persistent session has its
//! shared subscription: such a session *parks* its groups when its connection ends
//! ([`ShareGroups::park`]) until it resumes, is cleaned or expires. So messages published while
//! every member is away wait in the log for the group, as Mosquitto queues them for offline
//! members.
//!
//! Each group's position (per partition, before its oldest claim not yet acknowledged) is saved
//! in the log's metadata under `mqtt/share/{group}/{filter}` by [`ShareGroups::save`], which the
//! broker runs every [`SAVE_INTERVAL`] and once more at shutdown, after the connections have
//! ended; only positions that moved are written, so idle groups cost no commits. A group created again (after a restart, or after a time with no member) starts where
//! it was saved, so at most the last interval's acknowledged messages are delivered again after
//! a crash. A saved position whose group is gone (no member, no parked session) is deleted by
//! the next save. At startup, every stored session parks the groups of its shared filters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use crate::log::{Log, LogError};

use super::routing::Router;
use super::session::Position;
use super::shared::ShareGroup;

/// How often group positions are saved: the most a crash can deliver again.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(500);

const KEY_PREFIX: &str = "mqtt/share/";

type GroupKey = (String, String);

fn meta_key((name, filter): &GroupKey) -> String {
    // A share name holds no '/', so the key splits back unambiguously.
    format!("{KEY_PREFIX}{name}/{filter}")
}

/// A stored session's groups, held while it is away.
struct Parked {
    /// Never read: holding them keeps the groups (and their place in the log) alive.
    #[allow(dead_code)]
    groups: Vec<Arc<ShareGroup>>,
    /// When the session expires (ms since the epoch); `None` never.
    expires_at: Option<i64>,
}

#[derive(Default)]
struct Registry {
    /// Every group created, alive or not yet forgotten by a save.
    groups: HashMap<GroupKey, Weak<ShareGroup>>,
    /// By client id.
    parked: HashMap<String, Parked>,
    /// What LMDB holds for each group, so a save writes only positions that moved and deletes
    /// only entries that exist.
    stored: HashMap<GroupKey, Vec<u8>>,
}

#[derive(Default)]
pub struct ShareGroups {
    registry: Mutex<Registry>,
}

impl ShareGroups {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The group `name` of `filter`: the live one, or one made where it was last saved (at
    /// the partitions' high watermarks if it never was).
    pub fn join(&self, name: &str, filter: &str, log: &Log, router: &Router) -> Arc<ShareGroup> {
        let mut registry = self.lock();
        let key = (name.to_string(), filter.to_string());
        if let Some(group) = registry.groups.get(&key).and_then(Weak::upgrade) {
            group.refresh(log, router);
            return group;
        }
        let saved = load(log, &key).map(|(bytes, positions)| {
            registry.stored.insert(key.clone(), bytes);
            positions
        });
        let group = Arc::new(ShareGroup::new(filter, log, router, saved));
        registry.groups.insert(key, Arc::downgrade(&group));
        group
    }

    /// Holds a persistent session's groups while it is away (replacing what it held before).
    pub fn park(&self, client_id: &str, groups: Vec<Arc<ShareGroup>>, expires_at: Option<i64>) {
        let mut registry = self.lock();
        if groups.is_empty() {
            registry.parked.remove(client_id);
        } else {
            let parked = Parked { groups, expires_at };
            registry.parked.insert(client_id.to_string(), parked);
        }
    }

    /// Lets go of what `client_id`'s session held (it resumed, and holds its groups itself, or
    /// it was cleaned).
    pub fn unpark(&self, client_id: &str) {
        self.lock().parked.remove(client_id);
    }

    /// Saves the position of every live group that moved and deletes those of groups gone;
    /// drops what expired sessions held (at `now_ms`).
    pub async fn save(&self, log: &Log, now_ms: i64) -> Result<(), LogError> {
        // What changed: (group, new stored value or `None` to delete).
        let changes: Vec<(GroupKey, Option<Vec<u8>>)> = {
            let mut registry = self.lock();
            registry
                .parked
                .retain(|_, p| p.expires_at.is_none_or(|at| at > now_ms));
            let Registry { groups, stored, .. } = &mut *registry;
            groups.retain(|_, group| group.strong_count() > 0);
            let mut changes = Vec::new();
            for (key, group) in groups.iter() {
                let Some(group) = group.upgrade() else {
                    continue;
                };
                let bytes = encode(&group);
                if stored.get(key) != Some(&bytes) {
                    changes.push((key.clone(), Some(bytes)));
                }
            }
            for key in stored.keys().filter(|key| !groups.contains_key(*key)) {
                changes.push((key.clone(), None));
            }
            changes
        };
        if changes.is_empty() {
            return Ok(());
        }
        let entries = changes
            .iter()
            .map(|(key, value)| (meta_key(key), value.clone()))
            .collect();
        log.put_meta(entries).await?;
        // Recorded only once written, so a failed save is tried again by the next one.
        let stored = &mut self.lock().stored;
        for (key, value) in changes {
            match value {
                Some(bytes) => stored.insert(key, bytes),
                None => stored.remove(&key),
            };
        }
        Ok(())
    }

    /// Saves every [`SAVE_INTERVAL`] until `shutdown`; the caller saves once more after the
    /// connections have ended.
    pub async fn run_saver(
        self: Arc<Self>,
        log: Log,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(SAVE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(e) = self.save(&log, super::now_ms()).await {
                tracing::warn!(error = %e, "mqtt: cannot save shared subscription positions; retrying");
            }
        }
    }
}

fn encode(group: &ShareGroup) -> Vec<u8> {
    let positions: Vec<Position> = group
        .positions()
        .into_iter()
        .map(|(p, offset)| Position {
            topic: p.topic.to_string(),
            partition: p.index,
            offset,
        })
        .collect();
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_vec(&positions).unwrap_or_default()
}

/// The saved position of a group as stored and by partition store id; `None` if it was never
/// saved.
fn load(log: &Log, key: &GroupKey) -> Option<(Vec<u8>, HashMap<u32, i64>)> {
    let bytes = match log.get_meta(&meta_key(key)) {
        Ok(found) => found?,
        Err(e) => {
            tracing::warn!(group = %key.0, filter = %key.1, error = %e, "mqtt: cannot read a shared subscription's position; starting at the end");
            return None;
        }
    };
    let positions: Vec<Position> = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(group = %key.0, filter = %key.1, error = %e, "mqtt: unreadable shared subscription position; starting at the end");
            return None;
        }
    };
    let mut saved = HashMap::new();
    for p in positions {
        let handle = log
            .topic(&p.topic)
            .and_then(|t| t.partition(p.partition as i32).cloned());
        if let Some(handle) = handle {
            saved.insert(handle.id, p.offset);
        }
    }
    Some((bytes, saved))
}
