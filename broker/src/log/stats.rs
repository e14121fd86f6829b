//! Counters of the log writer's work: how many group commits it made, how many records they
//! carried and how long they took. They show an operator whether group commit is doing its job
//! (records per commit) and let benchmarks compare against raw LMDB at the commit size the broker
//! really achieved. Relaxed atomics: each counter is read on its own, at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Default)]
pub struct CommitStats {
    commits: AtomicU64,
    records: AtomicU64,
    commit_nanos: AtomicU64,
}

/// A reading of [`CommitStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Successful write transactions (each one fsync in the default durability mode).
    pub commits: u64,
    /// Records appended by those commits.
    pub records: u64,
    /// Time spent committing (LMDB commit, including its fsync), in nanoseconds.
    pub commit_nanos: u64,
}

impl CommitStats {
    pub(super) fn record(&self, records: u64, took: Duration) {
        self.commits.fetch_add(1, Relaxed);
        self.records.fetch_add(records, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.commit_nanos.fetch_add(nanos, Relaxed);
    }

    pub fn read(&self) -> CommitCounts {
        CommitCounts {
            commits: self.commits.load(Relaxed),
            records: self.records.load(Relaxed),
            commit_nanos: self.commit_nanos.load(Relaxed),
        }
    }
}
