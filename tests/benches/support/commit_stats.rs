//! The broker's group-commit counters, read from its `/metrics`: how many commits it made, the
//! records they carried and the time spent committing (LMDB commit including its fsync).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy)]
pub struct CommitCounts {
    pub commits: u64,
    pub records: u64,
    pub seconds: f64,
}

impl CommitCounts {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: CommitCounts) -> CommitCounts {
        CommitCounts {
            commits: self.commits - earlier.commits,
            records: self.records - earlier.records,
            seconds: self.seconds - earlier.seconds,
        }
    }
}

pub async fn read(http: SocketAddr) -> CommitCounts {
    let mut stream = tokio::net::TcpStream::connect(http).await.expect("http");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("response");
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    CommitCounts {
        commits: value("headwater_log_commits_total") as u64,
        records: value("headwater_log_committed_records_total") as u64,
        seconds: value("headwater_log_commit_seconds"),
    }
}
