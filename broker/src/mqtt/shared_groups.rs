//! The share groups of the broker ([`super::shared`]), kept while anyone needs them and saved in
//! LMDB so a restart loses no group's place.
//!
//! A group lives while a connected member holds it or a stored persistent session has its
//! shared subscription: such a session *parks* its groups when its connection ends
//! ([`ShareGroups::park`]) until it resumes, is cleaned or expires. So messages published while
//! every member is away wait in the log for the group, as Mosquitto queues them for offline
//! members.
//!
//! Each group's position (per partition, the next offset no member claimed, and the claims not
//! settled yet) is saved in the log's metadata under `mqtt/share/{group}/{filter}` by
//! [`ShareGroups::save`], which the broker runs every [`SAVE_INTERVAL`] and once more at
//! shutdown, after the connections have ended; only positions that moved are written, so idle
//! groups cost no commits. A group made again after a restart starts where it was saved: its
//! unsettled claims are claimed again first (but a stored session's held QoS 2 deliveries stay
//! its own), so at most the last interval's messages are delivered again after a crash. A group
//! nobody holds any more (no member, no parked session) is dropped, and its saved position
//! deleted, by the next save. At startup, every stored session parks the groups of its shared
//! filters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::log::{Log, LogError, PartitionHandle};

use super::routing::Router;
use super::session::Position;
use super::shared::{SavedGroup, ShareGroup};
use super::shared_member::Away;

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
    /// Its QoS 2 deliveries not acknowledged yet or released, completed when it resumes.
    away: Away,
    /// When the session expires (ms since the epoch); `None` never.
    expires_at: Option<i64>,
}

impl Drop for Parked {
    /// A session that ends (expired, cleaned) drops its held deliveries (MQTT-4.8.2-5); one
    /// that resumed took them.
    fn drop(&mut self) {
        self.away.drop_deliveries();
    }
}

#[derive(Default)]
struct Registry {
    /// Every group alive, and those nobody holds any more until the next save drops them (so a
    /// member joining meanwhile finds its state as it is, not as last saved).
    groups: HashMap<GroupKey, Arc<ShareGroup>>,
    /// By client id.
    parked: HashMap<String, Parked>,
    /// What LMDB holds for each group, so a save writes only positions that moved and deletes
    /// only entries that exist.
    stored: HashMap<GroupKey, Vec<u8>>,
    /// Groups dropped by the save in progress: a member joining before their deletion is
    /// written takes them back (what LMDB holds of them may be older).
    deleting: HashMap<GroupKey, Arc<ShareGroup>>,
}

#[derive(Default)]
pub struct ShareGroups {
    registry: Mutex<Registry>,
    /// One save at a time, from the snapshot to the commit: saves run from the saver and from
    /// connections (see `connection`'s fence), and an older snapshot must never land last.
    saving: tokio::sync::Mutex<()>,
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
        if let Some(group) = registry.deleting.remove(&key) {
            registry.groups.insert(key.clone(), group);
        }
        if let Some(group) = registry.groups.get(&key) {
            group.refresh(log, router);
            return group.clone();
        }
        let saved = load(log, &key).map(|(bytes, positions)| {
            registry.stored.insert(key.clone(), bytes);
            positions
        });
        let group = Arc::new(ShareGroup::new(filter, log, router, saved));
        registry.groups.insert(key, group.clone());
        group
    }

    /// Holds a persistent session's groups and QoS 2 deliveries while it is away (replacing
    /// what it held before).
    pub fn park(
        &self,
        client_id: &str,
        groups: Vec<Arc<ShareGroup>>,
        away: Away,
        expires_at: Option<i64>,
    ) {
        let mut registry = self.lock();
        let replaced = if groups.is_empty() && away.held.is_empty() && away.released.is_empty() {
            registry.parked.remove(client_id)
        } else {
            let parked = Parked {
                groups,
                away,
                expires_at,
            };
            registry.parked.insert(client_id.to_string(), parked)
        };
        drop(registry);
        drop(replaced); // settles in the groups, outside the registry's lock
    }

    /// Lets go of what `client_id`'s session held (it resumed, and holds its groups itself, or
    /// it was cleaned); returns its deliveries, for a resumed session to complete (a cleaned
    /// one drops them).
    pub fn unpark(&self, client_id: &str) -> Away {
        let parked = self.lock().parked.remove(client_id);
        match parked {
            Some(mut parked) => std::mem::take(&mut parked.away),
            None => Away::default(),
        }
    }

    /// Saves the position of every live group that moved and deletes those of groups gone;
    /// drops what expired sessions held (at `now_ms`).
    pub async fn save(&self, log: &Log, now_ms: i64) -> Result<(), LogError> {
        let _one_at_a_time = self.saving.lock().await;
        let result = self.save_changes(log, now_ms).await;
        // Groups whose deletion is written (or failed: the next save deletes them again) are
        // gone; until then `join` takes them back as they are.
        self.lock().deleting.clear();
        result
    }

    async fn save_changes(&self, log: &Log, now_ms: i64) -> Result<(), LogError> {
        // What changed: (group, new stored value or `None` to delete).
        let changes: Vec<(GroupKey, Option<Vec<u8>>)> = {
            let mut registry = self.lock();
            let expired: Vec<String> = (registry.parked.iter())
                .filter(|(_, p)| p.expires_at.is_some_and(|at| at <= now_ms))
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                // Dropped here: settling takes only the group's own lock.
                registry.parked.remove(&id);
            }
            let Registry {
                groups,
                stored,
                deleting,
                ..
            } = &mut *registry;
            // Held by the registry alone: nobody will claim from it again.
            let gone: Vec<GroupKey> = (groups.iter())
                .filter(|(_, group)| Arc::strong_count(group) == 1)
                .map(|(key, _)| key.clone())
                .collect();
            for key in gone {
                if let Some(group) = groups.remove(&key) {
                    deleting.insert(key, group);
                }
            }
            let mut changes = Vec::new();
            for (key, group) in groups.iter() {
                let bytes = encode(group);
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

/// A group's state as stored (JSON). Before `unsettled` was kept, a group was stored as its
/// cursors alone, each before the partition's oldest unsettled claim; that form still loads.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Group {
        cursors: Vec<Position>,
        unsettled: Vec<Position>,
    },
    Cursors(Vec<Position>),
}

fn encode(group: &ShareGroup) -> Vec<u8> {
    let at = |(p, offset): (Arc<PartitionHandle>, i64)| Position {
        topic: p.topic.to_string(),
        partition: p.index,
        offset,
    };
    let positions = group.positions();
    let stored = Stored::Group {
        cursors: positions.cursors.into_iter().map(at).collect(),
        unsettled: positions.unsettled.into_iter().map(at).collect(),
    };
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// The saved state of a group as stored and by partition store id; `None` if it was never
/// saved.
fn load(log: &Log, key: &GroupKey) -> Option<(Vec<u8>, SavedGroup)> {
    let bytes = match log.get_meta(&meta_key(key)) {
        Ok(found) => found?,
        Err(e) => {
            tracing::warn!(group = %key.0, filter = %key.1, error = %e, "mqtt: cannot read a shared subscription's position; starting at the end");
            return None;
        }
    };
    let (cursors, unsettled) = match serde_json::from_slice(&bytes) {
        Ok(Stored::Group { cursors, unsettled }) => (cursors, unsettled),
        Ok(Stored::Cursors(cursors)) => (cursors, Vec::new()),
        Err(e) => {
            tracing::warn!(group = %key.0, filter = %key.1, error = %e, "mqtt: unreadable shared subscription position; starting at the end");
            return None;
        }
    };
    let id = |p: &Position| {
        let handle = log.topic(&p.topic)?.partition(p.partition as i32)?.clone();
        Some((handle.id, p.offset))
    };
    let saved = SavedGroup {
        cursors: cursors.iter().filter_map(id).collect(),
        unsettled: unsettled.iter().filter_map(id).collect(),
    };
    Some((bytes, saved))
}
