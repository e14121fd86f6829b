//! Headwater's own log as the benches open it: fsync'd commits (the default durability), no
//! retention, topics created on demand with one partition.

use std::path::Path;

use headwater::log::{Log, LogOptions, TopicDefaults};

pub fn open_fsync(dir: &Path) -> Log {
    Log::open(&LogOptions {
        data_dir: dir.to_path_buf(),
        max_disk_bytes: 8 << 30,
        fsync: true,
        defaults: TopicDefaults {
            auto_create: true,
            partitions: 1,
            retention_ms: -1,
            retention_bytes: -1,
        },
    })
    .unwrap()
}
