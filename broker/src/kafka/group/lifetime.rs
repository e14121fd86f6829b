//! How groups end: offset retention, forgetting idle groups, and offsets of deleted topics.
//!
//! Kafka's rules (GroupMetadataManager's cleanup), on one node:
//! - A group's committed offsets expire once it has had no members and no commits for
//!   `offsets.retention.minutes` (default 7 days). Headwater measures that from the group's last
//!   activity: its last commit, or the moment it became Empty (as seen by this process; across
//!   a restart, the last sweep that saw it with members or recorded that moment). Kafka expires the
//!   offsets of a group that never used the group protocol (a consumer assigning partitions
//!   itself) one by one from each commit; here they go together, from the group's last commit,
//!   which keeps one timestamp per group instead of one per partition.
//! - A group with neither members nor offsets is forgotten (Kafka marks it Dead), so a stream
//!   of short-lived groups (a CLI consumer per run, a test per group id) leaves nothing behind
//!   after one sweep.
//! - A deleted topic's committed offsets are removed from every group, in memory and on disk,
//!   so a topic created again under the same name starts without stale positions.
//!
//! A sweep runs at most every `offsets.retention.check.interval.ms` (default 10 minutes), on
//! the next JoinGroup or OffsetCommit after that: no background task, and an idle broker does
//! no work (nor does its memory grow, since only requests create groups). The decision is the
//! pure [`plan`]; [`Coordinator::sweep`] applies it, deleting from the durable meta store
//! before the cache, so a crash in between only leaves entries the next sweep removes again.

use std::collections::HashSet;
use std::time::Instant;

use super::offsets::{self, active_key};
use super::{wall_ms, Coordinator};

/// What the membership state says about a group with offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It has members (or member ids handed out): active now.
    Members,
    /// It became Empty at this wall-clock time.
    EmptiedAt(i64),
    /// No membership state (never joined in this process, or forgotten).
    Unknown,
}

/// What one retention sweep does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Groups without members whose last activity is a retention period old: their offsets go.
    pub expired: Vec<String>,
    /// Groups whose recorded last activity moves forward, with the new time.
    pub record: Vec<(String, i64)>,
}

/// Decides a sweep from each group with offsets, its recorded last activity and its
/// membership (times in wall-clock ms).
pub fn plan<'a>(
    groups: impl Iterator<Item = (&'a String, i64, Liveness)>,
    now_ms: i64,
    retention_ms: i64,
) -> Sweep {
    let mut sweep = Sweep::default();
    for (group, recorded_ms, liveness) in groups {
        let last_ms = match liveness {
            Liveness::Members => now_ms,
            Liveness::EmptiedAt(ms) => recorded_ms.max(ms),
            Liveness::Unknown => recorded_ms,
        };
        if liveness != Liveness::Members && last_ms.saturating_add(retention_ms) <= now_ms {
            sweep.expired.push(group.clone());
        } else if last_ms > recorded_ms {
            sweep.record.push((group.clone(), last_ms));
        }
    }
    sweep.expired.sort();
    sweep.record.sort();
    sweep
}

impl Coordinator {
    /// Runs a retention sweep if the check interval has passed since the last one.
    pub async fn housekeeping(&self) {
        let now_ms = wall_ms();
        {
            let mut shared = self.lock();
            if now_ms < shared.next_sweep_ms {
                return;
            }
            shared.next_sweep_ms = now_ms.saturating_add(self.inner.sweep_interval_ms);
        }
        self.sweep(now_ms).await;
    }

    /// Expires offsets of groups inactive since `now_ms` minus the retention period, records
    /// the activity of groups with members, and forgets groups with neither members nor
    /// offsets. A failure to write is logged and retried at the next sweep.
    pub async fn sweep(&self, now_ms: i64) {
        let _alone = self.inner.offset_writes.write().await;
        let (sweep, entries) = {
            let mut shared = self.lock();
            let now = Instant::now();
            shared.groups.tick(now);
            let shared = &mut *shared;
            let all = match shared.offsets.load(&self.inner.log, now_ms) {
                Ok(all) => all,
                Err(e) => {
                    tracing::warn!(error = %e, "offset retention: could not load committed offsets");
                    return;
                }
            };
            let names: Vec<String> = all.keys().cloned().collect();
            let groups = &shared.groups;
            let liveness = |name: &str| match groups.get(name) {
                Some(group) if !group.is_idle() => Liveness::Members,
                Some(group) => match group.emptied_at() {
                    Some(at) => {
                        let ago = now.saturating_duration_since(at).as_millis() as i64;
                        Liveness::EmptiedAt(now_ms.saturating_sub(ago))
                    }
                    None => Liveness::Unknown,
                },
                None => Liveness::Unknown,
            };
            let sweep = plan(
                names.iter().map(|g| {
                    let recorded = shared.offsets.active_ms(g).unwrap_or(now_ms);
                    (g, recorded, liveness(g))
                }),
                now_ms,
                self.inner.retention_ms,
            );
            let mut entries: Vec<(String, Option<Vec<u8>>)> = Vec::new();
            if let Some(all) = shared.offsets.loaded() {
                for group in &sweep.expired {
                    let partitions = all.get(group).into_iter().flat_map(|o| o.keys());
                    entries.extend(partitions.map(|(t, p)| (offsets::key(group, t, *p), None)));
                    entries.push((active_key(group), None));
                }
            }
            for (group, at_ms) in &sweep.record {
                entries.push((active_key(group), Some(offsets::encode_active(*at_ms))));
            }
            for group in shared.offsets.take_unrecorded() {
                let recorded = sweep.record.iter().any(|(g, _)| *g == group);
                if !recorded && !sweep.expired.contains(&group) {
                    if let Some(at_ms) = shared.offsets.active_ms(&group) {
                        entries.push((active_key(&group), Some(offsets::encode_active(at_ms))));
                    }
                }
            }
            (sweep, entries)
        };
        if !entries.is_empty() {
            if let Err(e) = self.inner.log.put_meta(entries).await {
                tracing::warn!(error = %e, "offset retention: could not update committed offsets");
                return;
            }
        }
        let mut shared = self.lock();
        for group in &sweep.expired {
            tracing::info!(
                group,
                "committed offsets expired (group inactive past retention)"
            );
            shared.offsets.remove_group(group);
        }
        for (group, at_ms) in &sweep.record {
            shared.offsets.touch(group, *at_ms);
        }
        let shared = &mut *shared;
        let with_offsets: HashSet<String> = shared
            .offsets
            .loaded()
            .map(|all| all.keys().cloned().collect())
            .unwrap_or_default();
        shared.groups.forget_idle(|g| with_offsets.contains(g));
    }

    /// Removes the committed offsets of a deleted topic from every group, on disk and in
    /// memory; a group left without offsets goes entirely.
    pub async fn forget_topic(&self, topic: &str) -> Result<(), crate::log::LogError> {
        let _alone = self.inner.offset_writes.write().await;
        let (doomed, emptied, entries) = {
            let mut shared = self.lock();
            let all = shared.offsets.load(&self.inner.log, wall_ms())?;
            let mut doomed: Vec<(String, i32, String)> = Vec::new();
            let mut emptied = Vec::new();
            for (group, partitions) in all.iter() {
                let before = doomed.len();
                doomed.extend(
                    partitions
                        .keys()
                        .filter(|(t, _)| t == topic)
                        .map(|(t, p)| (group.clone(), *p, t.clone())),
                );
                if doomed.len() > before && doomed.len() - before == partitions.len() {
                    emptied.push(group.clone());
                }
            }
            let mut entries: Vec<(String, Option<Vec<u8>>)> = doomed
                .iter()
                .map(|(g, p, t)| (offsets::key(g, t, *p), None))
                .collect();
            entries.extend(emptied.iter().map(|g| (active_key(g), None)));
            (doomed, emptied, entries)
        };
        if entries.is_empty() {
            return Ok(());
        }
        self.inner.log.put_meta(entries).await?;
        let mut shared = self.lock();
        if let Some(all) = shared.offsets.loaded() {
            for (group, partition, topic) in doomed {
                if let Some(offsets) = all.get_mut(&group) {
                    offsets.remove(&(topic, partition));
                }
            }
        }
        for group in &emptied {
            shared.offsets.remove_group(group);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "lifetime_tests.rs"]
mod tests;
