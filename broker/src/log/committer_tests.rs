//! Who commits: a task waiting for its own append, or the writer thread (see `writer::committer`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::*;

fn record(value: &str) -> NewRecord {
    NewRecord {
        timestamp: 1,
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: vec![],
    }
}

/// A metadata update whose hook notes the name of the thread that committed it.
fn note_thread(committers: &Arc<Mutex<Vec<String>>>) -> Option<MetaUpdate> {
    let committers = committers.clone();
    Some(MetaUpdate {
        entries: vec![("committer-test".into(), Some(b"x".to_vec()))],
        on_commit: Box::new(move || {
            let name = std::thread::current().name().unwrap_or("").to_string();
            committers.lock().unwrap().push(name);
        }),
    })
}

async fn open(dir: &std::path::Path) -> (Log, Arc<PartitionHandle>) {
    let log = Log::open(&LogOptions::for_tests(dir, 64 * 1024 * 1024)).unwrap();
    let topic = log.topic_for_write("t").await.unwrap();
    let partition = topic.partitions[0].clone();
    (log, partition)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_append_is_committed_by_the_task_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = open(dir.path()).await;
    let committers = Arc::new(Mutex::new(Vec::new()));
    let (task_log, noted) = (log.clone(), committers.clone());
    // In a spawned task, as connections run: on one of the runtime's worker threads.
    let worker = tokio::spawn(async move {
        let worker = std::thread::current().name().unwrap_or("").to_string();
        task_log
            .append_records_with_meta(&p, &[record("a")], note_thread(&noted))
            .await
            .unwrap();
        let mut ticket = task_log
            .submit_records(&p, &[record("b")], note_thread(&noted))
            .await
            .unwrap();
        ticket.commit_in_background();
        ticket.durable().await.unwrap();
        worker
    })
    .await
    .unwrap();
    assert_ne!(worker, "log-writer");
    assert_eq!(
        *committers.lock().unwrap(),
        [worker.as_str(), "log-writer"],
        "inline when waited for; by the writer when handed to it"
    );
    log.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_that_cannot_block_leaves_the_commit_to_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = open(dir.path()).await;
    let committers = Arc::new(Mutex::new(Vec::new()));
    log.append_records_with_meta(&p, &[record("a")], note_thread(&committers))
        .await
        .unwrap();
    assert_eq!(*committers.lock().unwrap(), ["log-writer"]);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_committing_in_turn_keep_each_ones_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = open(dir.path()).await;
    let mut tasks = Vec::new();
    for task in 0..40 {
        let (log, p) = (log.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..25 {
                let value = format!("{task}/{i}");
                let ticket = log.submit_records(&p, &[record(&value)], None).await;
                let ticket = ticket.unwrap();
                // Every other one goes to the writer, so both kinds of commit interleave.
                let mut ticket = ticket;
                if i % 2 == 1 {
                    ticket.commit_in_background();
                }
                offsets.push((ticket.durable().await.unwrap().base_offset, value));
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let offsets = t.await.unwrap();
        assert!(
            offsets.windows(2).all(|w| w[0].0 < w[1].0),
            "a task's appends keep their order"
        );
        all.extend(offsets);
    }
    all.sort();
    let stored = log.read_records(&p, 0, 1 << 24).unwrap();
    assert_eq!(stored.len(), 1000);
    for ((offset, value), record) in all.iter().zip(&stored) {
        assert_eq!(*offset, record.offset);
        assert_eq!(record.value.as_deref(), Some(value.as_bytes()));
    }
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_ticket_is_dropped_is_still_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = open(dir.path()).await;
    drop(log.submit_records(&p, &[record("a")], None).await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while p.high_watermark() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "never committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_close_other_handles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = open(dir.path()).await;
    let other = log.clone();
    log.close().await;
    assert!(matches!(
        other.append_records(&p, &[record("late")]).await,
        Err(LogError::Stopped)
    ));
}

/// A hook that panics (a bug in the broker): the commit is on disk but the in-memory state may
/// not follow, so the log must stop rather than go on from a stale state.
fn panicking_hook() -> Option<MetaUpdate> {
    Some(MetaUpdate {
        entries: vec![("committer-test".into(), Some(b"x".to_vec()))],
        on_commit: Box::new(|| panic!("hook panics on purpose")),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_committing_inline_stops_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = open(dir.path()).await;
    let (task_log, task_p) = (log.clone(), p.clone());
    // In a spawned task, so the commit runs inline on a worker thread; the panic is caught there
    // and the task goes on with `Stopped`.
    let task = tokio::spawn(async move {
        task_log
            .append_records_with_meta(&task_p, &[record("a")], panicking_hook())
            .await
    });
    assert!(matches!(task.await.unwrap(), Err(LogError::Stopped)));
    assert!(matches!(
        log.append_records(&p, &[record("b")]).await,
        Err(LogError::Stopped)
    ));
    log.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_panic_in_the_writer_thread_stops_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = open(dir.path()).await;
    assert!(matches!(
        log.append_records_with_meta(&p, &[record("a")], panicking_hook())
            .await,
        Err(LogError::Stopped)
    ));
    assert!(matches!(
        log.append_records(&p, &[record("b")]).await,
        Err(LogError::Stopped)
    ));
    log.close().await;
}
