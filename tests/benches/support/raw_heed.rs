//! Raw LMDB baselines through heed, with no broker code: what the storage alone can do on this
//! machine, measured in the same run as the broker so ratios compare like with like.

// Shared by several bench binaries; each uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use heed::types::Bytes as Raw;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions};

pub struct RawLog {
    env: Env,
    db: Database<'static, Raw, Raw>,
    next: u64,
    _dir: tempfile::TempDir,
}

impl RawLog {
    pub fn open() -> RawLog {
        let dir = tempfile::tempdir().expect("tempdir");
        // SAFETY: the directory is new and private to this process, so no other handle maps it.
        let env = unsafe {
            EnvOpenOptions::new()
                .map_size(16 << 30)
                .max_dbs(2)
                .open(dir.path())
                .expect("open env")
        };
        let wtxn = env.write_txn().expect("txn");
        let db = env
            .create_databases_and_commit(wtxn, |dbs, wtxn| -> Result<_, heed::Error> {
                Ok(CommitOrAbort::<_, ()>::Commit(
                    dbs.create_database(wtxn, Some("log"))?,
                ))
            })
            .expect("create db")
            .unwrap_commit();
        RawLog {
            env,
            db,
            next: 0,
            _dir: dir,
        }
    }

    /// Appends `records` values of `value` under increasing 8-byte keys (a plain put, as the
    /// broker does), one record per put
    /// and `per_commit` records per fsync'd commit.
    pub fn append_records(&mut self, value: &[u8], records: usize, per_commit: usize) -> Duration {
        let start = Instant::now();
        let mut left = records;
        while left > 0 {
            let n = left.min(per_commit);
            let mut wtxn = self.env.write_txn().expect("txn");
            for _ in 0..n {
                self.db
                    .put(&mut wtxn, &self.next.to_be_bytes(), value)
                    .expect("put");
                self.next += 1;
            }
            wtxn.commit().expect("commit");
            left -= n;
        }
        start.elapsed()
    }

    /// Appends `commits` values of `batch` (a whole Kafka batch per put, as Headwater stores
    /// them), one per fsync'd commit.
    pub fn append_batches(&mut self, batch: &[u8], commits: usize) -> Duration {
        self.append_records(batch, commits, 1)
    }

    /// Latency of each of `commits` fsync'd commits of one `value`.
    pub fn commit_latencies(&mut self, value: &[u8], commits: usize) -> Vec<Duration> {
        (0..commits)
            .map(|_| self.append_records(value, 1, 1))
            .collect()
    }

    /// Like [`RawLog::commit_latencies`], but one commit every `1 / per_second` seconds, the
    /// pace of the produce-to-ack measurement: commits back to back find the CPU and the disk
    /// queue busy and warm, paced ones find them idle, as the broker's do.
    pub fn paced_commit_latencies(
        &mut self,
        value: &[u8],
        commits: usize,
        per_second: u64,
    ) -> Vec<Duration> {
        let period = Duration::from_nanos(1_000_000_000 / per_second.max(1));
        let start = Instant::now();
        (0..commits)
            .map(|i| {
                let due = start + period * i as u32;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                self.append_records(value, 1, 1)
            })
            .collect()
    }

    /// Reads every entry in key order, touching each value's bytes; returns (entries, time).
    pub fn scan(&self) -> (u64, Duration) {
        let start = Instant::now();
        let rtxn = self.env.read_txn().expect("read txn");
        let (mut entries, mut checksum) = (0u64, 0u64);
        for item in self.db.iter(&rtxn).expect("iter") {
            let (_, value) = item.expect("entry");
            entries += 1;
            checksum = checksum.wrapping_add(value.len() as u64 + value[0] as u64);
        }
        std::hint::black_box(checksum);
        (entries, start.elapsed())
    }
}

/// The `q` quantile (0..1) of `samples`, which it sorts.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let at = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[at.min(samples.len() - 1)]
}
