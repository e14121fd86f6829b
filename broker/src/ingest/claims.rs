//! One claimed request at a time per idempotent producer and partition, on the plugin path.
//!
//! A request whose sequence range is claimed (see [`crate::log::producers::ProducerClaim`]) is
//! checked against the log before its chain runs, so a retry of a request already stored is
//! answered from the log. A retry that arrives while its original is still on its way (a client
//! that timed out and sent again on a new connection) would pass that check too and run the
//! plugins a second time: their held states would count it twice, and the records they route to
//! other topics (and dead letters) would be written twice; the writer only drops the source
//! topic's repeat. So such requests wait here for each other, and the later one then finds the
//! earlier in the log. A connection finishes such a request before it takes its next (see
//! `via_plugins`), so normally nobody waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// Partition id and producer id.
type Key = (u32, i64);

#[derive(Default)]
pub(super) struct ClaimLocks(Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>);

/// Held from before a claimed request's check until its outcome is known.
pub(super) struct ClaimGuard {
    locks: Arc<ClaimLocks>,
    key: Key,
    held: Option<OwnedMutexGuard<()>>,
}

impl ClaimLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<tokio::sync::Mutex<()>>>> {
        // Each operation leaves the map whole: a panic cannot break it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no other request of `producer_id` for partition `partition_id` is on the
    /// plugin path.
    pub(super) async fn lock(self: &Arc<Self>, partition_id: u32, producer_id: i64) -> ClaimGuard {
        let key = (partition_id, producer_id);
        let lock = {
            let mut map = self.map();
            // Entries nobody holds or waits for: left by a waiter that gave up (cancelled)
            // after the holder had looked (see `Drop`).
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
            map.entry(key).or_default().clone()
        };
        ClaimGuard {
            locks: self.clone(),
            key,
            held: Some(lock.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let mut map = self.locks.map();
        drop(self.held.take());
        // The entry goes with its last user: every waiter holds a clone of it.
        if map
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_producer_waits_for_its_own_claim_on_the_same_partition_only() {
        let locks = Arc::new(ClaimLocks::default());
        let first = locks.lock(1, 7).await;
        let other_partition = locks.lock(2, 7).await;
        let other_producer = locks.lock(1, 8).await;
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move { drop(locks.lock(1, 7).await) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "the same producer and partition wait"
        );
        drop(first);
        waiting.await.unwrap();
        drop((other_partition, other_producer));
        assert_eq!(locks.len(), 0, "no entry outlives its users");
    }
}
