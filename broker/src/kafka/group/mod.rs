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
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
}

struct Shared {
    groups: Groups,
    offsets: OffsetCache,
}

impl Coordinator {
    pub fn new(log: Log) -> Coordinator {
        // Member ids must not repeat across restarts: a client could still hold an old one.
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        Coordinator {
            inner: Arc::new(Inner {
                log,
                state: Mutex::new(Shared {
                    groups: Groups::new(salt),
                    offsets: OffsetCache::default(),
                }),
                changed: Notify::new(),
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
        let all = shared.offsets.load(&self.inner.log).map_err(|e| {
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
            .load(&self.inner.log)
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
        self.committed(group)?;
        let meta = entries
            .iter()
            .map(|(t, p, c)| (offsets::key(group, t, *p), Some(offsets::encode_value(c))))
            .collect();
        self.inner.log.put_meta(meta).await.map_err(|e| {
            tracing::warn!(group, error = %e, "could not persist committed offsets");
            super::errors::log_error(&e)
        })?;
        let mut shared = self.lock();
        if let Some(all) = shared.offsets.loaded() {
            let group = all.entry(group.to_string()).or_default();
            for (t, p, c) in entries {
                group.insert((t, p), c);
            }
        }
        Ok(())
    }

    /// Deletes the committed offsets of `group`.
    pub async fn delete_offsets(&self, group: &str) -> Result<(), ResponseError> {
        let keys: Vec<(String, Option<Vec<u8>>)> = self
            .committed(group)?
            .keys()
            .map(|(t, p)| (offsets::key(group, t, *p), None))
            .collect();
        if !keys.is_empty() {
            self.inner
                .log
                .put_meta(keys)
                .await
                .map_err(|e| super::errors::log_error(&e))?;
        }
        if let Some(all) = self.lock().offsets.loaded() {
            all.remove(group);
        }
        Ok(())
    }
}

/// `Some(text)` for a non-empty optional string, as Kafka treats empty instance ids.
pub fn non_empty(s: &Option<StrBytes>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}
