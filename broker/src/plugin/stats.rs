//! Counters of one plugin, updated by its worker thread and read at scrape time.
//!
//! Plain atomics rather than metric objects: the worker is the only writer, `/metrics` renders a
//! snapshot (see `crate::metrics`), and the per-batch time histogram is a fixed set of buckets.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the per-batch time histogram; a last, unbounded bucket follows.
pub const BATCH_SECONDS_BUCKETS: [f64; 13] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Counters of one plugin.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls into `hw_process`.
    pub calls: AtomicU64,
    /// Calls that failed as a whole (trap, timeout, bad output, plugin-reported failure).
    pub failed_batches: AtomicU64,
    pub records_in: AtomicU64,
    /// Records the plugin kept (in any topic).
    pub records_out: AtomicU64,
    /// Input records of successful calls that came out as neither a kept record nor a dead
    /// letter (a filter's drops). A plugin that splits or aggregates can keep more or fewer
    /// records than it got; drops count only what falls short.
    pub records_dropped: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub records_failed: AtomicU64,
    /// Wall-clock time spent in calls, encoding and decoding included.
    pub busy_nanos: AtomicU64,
    /// Calls per time bucket ([`BATCH_SECONDS_BUCKETS`], then one for anything longer).
    batch_buckets: [AtomicU64; BATCH_SECONDS_BUCKETS.len() + 1],
    /// Fresh instances started after a failure.
    pub restarts: AtomicU64,
    /// Modules swapped in while running.
    pub reloads: AtomicU64,
    pub disabled: AtomicBool,
}

/// A point-in-time copy of [`PluginStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub failed_batches: u64,
    pub records_in: u64,
    pub records_out: u64,
    pub records_dropped: u64,
    pub records_failed: u64,
    pub busy_nanos: u64,
    /// Calls per bucket of [`BATCH_SECONDS_BUCKETS`] (not cumulative), the last one unbounded.
    pub batch_buckets: [u64; BATCH_SECONDS_BUCKETS.len() + 1],
    pub restarts: u64,
    pub reloads: u64,
    pub disabled: bool,
}

impl PluginStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            calls: get(&self.calls),
            failed_batches: get(&self.failed_batches),
            records_in: get(&self.records_in),
            records_out: get(&self.records_out),
            records_dropped: get(&self.records_dropped),
            records_failed: get(&self.records_failed),
            busy_nanos: get(&self.busy_nanos),
            batch_buckets: std::array::from_fn(|i| get(&self.batch_buckets[i])),
            restarts: get(&self.restarts),
            reloads: get(&self.reloads),
            disabled: self.disabled.load(Ordering::Relaxed),
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts one call that took `took`.
    pub(super) fn record_call(&self, took: Duration) {
        Self::add(&self.calls, 1);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BATCH_SECONDS_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(BATCH_SECONDS_BUCKETS.len());
        Self::add(&self.batch_buckets[bucket], 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_the_first_bucket_that_holds_them() {
        let stats = PluginStats::default();
        stats.record_call(Duration::from_micros(10));
        stats.record_call(Duration::from_micros(50));
        stats.record_call(Duration::from_micros(51));
        stats.record_call(Duration::from_secs(3));
        let s = stats.snapshot();
        assert_eq!(s.calls, 4);
        assert_eq!(s.batch_buckets[0], 2, "<= 50 us, bound included");
        assert_eq!(s.batch_buckets[1], 1);
        assert_eq!(s.batch_buckets[BATCH_SECONDS_BUCKETS.len()], 1);
        assert_eq!(s.batch_buckets.iter().sum::<u64>(), s.calls);
        assert_eq!(s.busy_nanos, 3_000_111_000);
    }
}
