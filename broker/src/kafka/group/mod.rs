//! Consumer groups: the group coordinator and committed offsets.
//!
//! Headwater is a single node, so it is the coordinator of every group (FindCoordinator
//! always names node 0). The design splits in three:
//! - [`state`]: the membership state machine (join, sync, heartbeat, leave, session and
//!   rebalance timeouts, generations). Pure: time is an argument, so it is tested with a
//!   virtual clock.
//! - [`offsets`]: committed offsets, cached in memory and persisted as log metadata before an
//!   OffsetCommit is answered, so they survive a restart.
//! - [`Coordinator`] (this file): the async shell. One `std::sync::Mutex` guards the state
//!   (never held across an `.await`); a `Notify` wakes requests waiting for other members
//!   (JoinGroup for the rebalance to finish, SyncGroup for the leader's assignment). Time
//!   passes in [`state::Groups::tick`], run before every group operation and by the waiters at
//!   the next deadline, so sessions expire without a background task: a dead member is
//!   noticed as soon as a live one talks to the group or a waiter's deadline comes.
//! - [`lifetime`]: how groups end. Offsets of a group without members expire after
//!   `offsets_retention_minutes` without activity, groups that hold neither members nor
//!   offsets are forgotten, and a deleted topic's offsets leave every group. Checked every
//!   `offsets_retention_check_interval_ms` on the next JoinGroup or OffsetCommit, so memory
//!   stays bounded under churn of short-lived groups without a background task.
//! - One file per API handler: request in, response out.
//!
//! Waiting requests hold their connection, exactly as with Apache Kafka; librdkafka talks to
//! the coordinator on a connection of its own, so fetches are not held up. At shutdown a
//! waiting request is answered at once with COORDINATOR_NOT_AVAILABLE.

pub mod delete_groups;
pub mod describe_groups;
pub mod find_coordinator;
pub mod heartbeat;
pub mod join_group;
pub mod leave_group;
pub mod lifetime;
pub mod list_groups;
pub mod offset_commit;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod offsets;
pub mod state;
pub mod sync_group;

#[cfg(test)]
pub mod schema_tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;

use crate::config::GroupsSection;
use crate::log::Log;
use offsets::{Committed, OffsetCache};
use state::{Groups, Step};

/// Longest a waiting request sleeps before re-checking the clock, in case a deadline was
/// added after it went to sleep.
const MAX_NAP: Duration = Duration::from_millis(500);

/// The group coordinator; cheap to clone (one per connection through `KafkaContext`).
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

struct Inner {
    log: Log,
    state: Mutex<Shared>,
    /// Woken after every change of membership state.
    changed: Notify,
    /// Orders durable offset writes: commits share it (they may run together and be committed
    /// in one group by the log writer); deletions (DeleteGroups, retention, deleted topics)
    /// hold it alone, so a deletion planned from the cache cannot overtake a commit that
    /// changed the cache meanwhile.
    offset_writes: RwLock<()>,
    /// Offsets of a group inactive this long expire (`offsets_retention_minutes`).
    retention_ms: i64,
    /// Time between retention sweeps (`offsets_retention_check_interval_ms`).
    sweep_interval_ms: i64,
}

struct Shared {
    groups: Groups,
    offsets: OffsetCache,
    /// Wall-clock ms of the next retention sweep.
    next_sweep_ms: i64,
}

/// Milliseconds since the Unix epoch: offset retention must survive restarts, so it uses the
/// wall clock (as Kafka does), not `Instant`.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Coordinator {
    /// A coordinator with Kafka's defaults (see [`GroupsSection`]).
    pub fn new(log: Log) -> Coordinator {
        Coordinator::with_config(log, &GroupsSection::default())
    }

    pub fn with_config(log: Log, config: &GroupsSection) -> Coordinator {
        // Member ids must not repeat across restarts: a client could still hold an old one.
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let groups = Groups::new(salt)
            .with_initial_rebalance_delay(Duration::from_millis(config.initial_rebalance_delay_ms));
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let sweep_interval_ms = ms(config.offsets_retention_check_interval_ms).max(1);
        Coordinator {
            inner: Arc::new(Inner {
                log,
                state: Mutex::new(Shared {
                    groups,
                    offsets: OffsetCache::default(),
                    next_sweep_ms: wall_ms().saturating_add(sweep_interval_ms),
                }),
                changed: Notify::new(),
                offset_writes: RwLock::new(()),
                retention_ms: ms(config.offsets_retention_minutes).saturating_mul(60_000),
                sweep_interval_ms,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than refusing every group request from then on would.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the state after applying the passage of time; wakes waiters afterwards.
    pub fn with<T>(&self, f: impl FnOnce(&mut Groups, Instant) -> T) -> T {
        let now = Instant::now();
        let out = {
            let mut shared = self.lock();
            shared.groups.tick(now);
            f(&mut shared.groups, now)
        };
        self.inner.changed.notify_waiters();
        out
    }

    /// Polls `poll` until it is decided, waking on every change and at the next deadline.
    pub async fn wait<T>(
        &self,
        shutdown: &CancellationToken,
        mut poll: impl FnMut(&mut Groups, Instant) -> Step<T>,
    ) -> Result<T, ResponseError> {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (step, deadline) = {
                let mut shared = self.lock();
                shared.groups.tick(now);
                let step = poll(&mut shared.groups, now);
                (step, shared.groups.next_deadline())
            };
            match step {
                Step::Done(v) => {
                    self.inner.changed.notify_waiters();
                    return Ok(v);
                }
                Step::Failed(e) => {
                    self.inner.changed.notify_waiters();
                    return Err(e);
                }
                Step::Wait => {}
            }
            let nap = deadline
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or(MAX_NAP)
                .min(MAX_NAP);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
                _ = shutdown.cancelled() => return Err(ResponseError::CoordinatorNotAvailable),
            }
        }
    }

    /// Committed offsets of `group`, loading them from the log on first use.
    pub fn committed(&self, group: &str) -> Result<offsets::GroupOffsets, ResponseError> {
        let mut shared = self.lock();
        let all = shared
            .offsets
            .load(&self.inner.log, wall_ms())
            .map_err(|e| {
                tracing::warn!(error = %e, "could not load committed offsets");
                ResponseError::CoordinatorLoadInProgress
            })?;
        Ok(all.get(group).cloned().unwrap_or_default())
    }

    /// Names of every group with committed offsets.
    pub fn groups_with_offsets(&self) -> Result<Vec<String>, ResponseError> {
        let mut shared = self.lock();
        let all = shared
            .offsets
            .load(&self.inner.log, wall_ms())
            .map_err(|_| ResponseError::CoordinatorLoadInProgress)?;
        Ok(all
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|(g, _)| g.clone())
            .collect())
    }

    /// Persists committed offsets durably, then makes them visible.
    pub async fn commit(
        &self,
        group: &str,
        entries: Vec<(String, i32, Committed)>,
    ) -> Result<(), ResponseError> {
        let _shared_write = self.inner.offset_writes.read().await;
        self.committed(group)?;
        let now_ms = wall_ms();
        let mut meta: Vec<(String, Option<Vec<u8>>)> = entries
            .iter()
            .map(|(t, p, c)| (offsets::key(group, t, *p), Some(offsets::encode_value(c))))
            .collect();
        meta.push((
            offsets::active_key(group),
            Some(offsets::encode_active(now_ms)),
        ));
        self.inner.log.put_meta(meta).await.map_err(|e| {
            tracing::warn!(group, error = %e, "could not persist committed offsets");
            super::errors::log_error(&e)
        })?;
        let mut shared = self.lock();
        if let Some(all) = shared.offsets.loaded() {
            let offsets = all.entry(group.to_string()).or_default();
            for (t, p, c) in entries {
                offsets.insert((t, p), c);
            }
            shared.offsets.touch(group, now_ms);
        }
        Ok(())
    }

    /// Deletes the committed offsets of `group`.
    pub async fn delete_offsets(&self, group: &str) -> Result<(), ResponseError> {
        let _alone = self.inner.offset_writes.write().await;
        let mut keys: Vec<(String, Option<Vec<u8>>)> = self
            .committed(group)?
            .keys()
            .map(|(t, p)| (offsets::key(group, t, *p), None))
            .collect();
        if !keys.is_empty() {
            keys.push((offsets::active_key(group), None));
            self.inner
                .log
                .put_meta(keys)
                .await
                .map_err(|e| super::errors::log_error(&e))?;
        }
        self.lock().offsets.remove_group(group);
        Ok(())
    }
}

/// `Some(text)` for a non-empty optional string, as Kafka treats empty instance ids.
pub fn non_empty(s: &Option<StrBytes>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
