use super::*;
use bytes::Bytes;

fn options(dir: &std::path::Path) -> LogOptions {
    LogOptions::for_tests(dir, 64 * 1024 * 1024)
}

fn record(value: &str, timestamp: i64) -> NewRecord {
    NewRecord {
        timestamp,
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: vec![],
    }
}

#[tokio::test]
async fn offsets_are_dense_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(&options(dir.path())).unwrap();
        let topic = log.topic_for_write("t").await.unwrap();
        assert_eq!(topic.partitions.len(), 2);
        let p = &topic.partitions[1];
        let a = log
            .append_records(p, &[record("a", 1), record("b", 1)])
            .await
            .unwrap();
        let b = log.append_records(p, &[record("c", 1)]).await.unwrap();
        assert_eq!((a.base_offset, a.last_offset), (0, 1));
        assert_eq!((b.base_offset, b.last_offset), (2, 2));
        drop(topic);
        log.close().await;
    }
    let log = Log::open(&options(dir.path())).unwrap();
    let topic = log.topic("t").expect("topic kept across reopen");
    let p = &topic.partitions[1];
    assert_eq!(p.high_watermark(), 3);
    let from_one = log.read_records(p, 1, 1 << 20).unwrap();
    let values: Vec<_> = from_one.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(values, vec![Bytes::from("b"), Bytes::from("c")]);
    assert_eq!(from_one[0].offset, 1);
    assert!(log
        .read_records(&topic.partitions[0], 0, 1 << 20)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn concurrent_appends_get_distinct_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let topic = log.topic_for_write("c").await.unwrap();
    let p = topic.partitions[0].clone();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let log = log.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            log.append_records(&p, &[record(&i.to_string(), 1)])
                .await
                .unwrap()
                .base_offset
        }));
    }
    let mut offsets = Vec::new();
    for t in tasks {
        offsets.push(t.await.unwrap());
    }
    offsets.sort();
    assert_eq!(offsets, (0..50).collect::<Vec<i64>>());
    assert_eq!(log.read_records(&p, 0, 1 << 20).unwrap().len(), 50);
}

#[tokio::test]
async fn retention_by_age_and_bytes_moves_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let aged = log
        .create_topic(
            "aged",
            1,
            TopicConfig {
                retention_ms: Some(1000),
                retention_bytes: None,
                ..TopicConfig::default()
            },
        )
        .await
        .unwrap();
    let p = &aged.partitions[0];
    log.append_records(p, &[record("old", 1_000)])
        .await
        .unwrap();
    log.append_records(p, &[record("new", 10_000)])
        .await
        .unwrap();
    assert_eq!(log.apply_retention(10_500).await.unwrap(), 1);
    assert_eq!(p.log_start(), 1);
    let left = log.read_records(p, 0, 1 << 20).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].offset, 1);

    let sized = log
        .create_topic(
            "sized",
            1,
            TopicConfig {
                retention_ms: None,
                retention_bytes: Some(1),
                ..TopicConfig::default()
            },
        )
        .await
        .unwrap();
    let q = &sized.partitions[0];
    for i in 0..5 {
        log.append_records(q, &[record("x", i)]).await.unwrap();
    }
    log.apply_retention(0).await.unwrap();
    // Kafka keeps at least retention.bytes: here, the newest batch only.
    assert_eq!(q.log_start(), 4);
    assert_eq!(q.high_watermark(), 5);
}

#[tokio::test]
async fn full_map_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_disk_bytes = 1024 * 1024;
    let log = Log::open(&opts).unwrap();
    let topic = log.topic_for_write("big").await.unwrap();
    let p = &topic.partitions[0];
    let value = "v".repeat(64 * 1024);
    let mut saw_full = false;
    for _ in 0..64 {
        match log.append_records(p, &[record(&value, 1)]).await {
            Ok(_) => {}
            Err(LogError::Full) => {
                saw_full = true;
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(saw_full, "a 1 MiB map must fill up with 4 MiB of appends");
    // Reading still works after the refusal.
    assert!(!log.read_records(p, 0, 1 << 20).unwrap().is_empty());
}

#[test]
fn topic_names_follow_kafka_rules() {
    assert!(validate_topic_name("sensors.temp-1_a").is_ok());
    assert!(validate_topic_name("").is_err());
    assert!(validate_topic_name("..").is_err());
    assert!(validate_topic_name("a/b").is_err());
    assert!(validate_topic_name(&"x".repeat(250)).is_err());
}

async fn reopen(log: Log, dir: &std::path::Path) -> Log {
    log.close().await;
    Log::open(&options(dir)).unwrap()
}

/// Meta keys a topic owns (replication cursors, plugin states) go with it, and only its own.
#[tokio::test]
async fn deleting_a_topic_deletes_the_metadata_it_owns() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    for name in ["t", "t2"] {
        log.create_topic(name, 1, TopicConfig::default())
            .await
            .unwrap();
    }
    let mut entries = vec![("other/t/x".to_string(), Some(vec![9]))];
    for namespace in super::TOPIC_META_NAMESPACES {
        for (name, n) in [("t", 0), ("t", 1), ("t", 2), ("t2", 0)] {
            let key = format!("{}{n}", super::topic_meta_prefix(namespace, name));
            entries.push((key, Some(vec![1])));
        }
    }
    log.put_meta(entries).await.unwrap();
    log.delete_topic("t").await.unwrap();
    let mut left = Vec::new();
    for prefix in ["ingest/", "other/", "upstream/"] {
        left.extend(log.scan_meta(prefix).unwrap().into_iter().map(|(k, _)| k));
    }
    assert_eq!(
        left,
        [
            "ingest/state/t2/0",
            "other/t/x",
            "upstream/cursor/t2/0",
            "upstream/state/t2/0"
        ]
    );
    log.close().await;
}

#[tokio::test]
async fn deleted_topic_is_gone_and_can_be_recreated_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let topic = log
        .create_topic("gone", 2, TopicConfig::default())
        .await
        .unwrap();
    let held = topic.partitions[0].clone();
    log.append_records(&held, &[record("a", 1), record("b", 1)])
        .await
        .unwrap();
    log.delete_topic("gone").await.unwrap();
    assert!(log.topic("gone").is_none());
    assert!(held.is_deleted());
    // A reader or writer still holding the old partition gets an error, not a crash.
    assert!(matches!(
        log.read(&held, 0, 1 << 20),
        Err(LogError::UnknownPartition { .. })
    ));
    assert!(matches!(
        log.append_records(&held, &[record("c", 1)]).await,
        Err(LogError::UnknownPartition { .. })
    ));
    assert!(matches!(
        log.delete_topic("gone").await,
        Err(LogError::UnknownTopic(_))
    ));
    drop((topic, held));
    let log = reopen(log, dir.path()).await;
    assert!(log.topic("gone").is_none(), "deletion survives reopen");
    let again = log
        .create_topic("gone", 1, TopicConfig::default())
        .await
        .unwrap();
    let p = &again.partitions[0];
    assert_eq!(p.high_watermark(), 0);
    assert!(log.read_records(p, 0, 1 << 20).unwrap().is_empty());
    let appended = log.append_records(p, &[record("new", 1)]).await.unwrap();
    assert_eq!(appended.base_offset, 0);
    drop(again);
    let log = reopen(log, dir.path()).await;
    let again = log.topic("gone").unwrap();
    let values: Vec<_> = log
        .read_records(&again.partitions[0], 0, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(values, vec![Bytes::from("new")]);
}

#[tokio::test]
async fn delete_then_append_in_one_group_does_not_fail_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let doomed = log
        .create_topic("doomed", 1, TopicConfig::default())
        .await
        .unwrap();
    let kept = log
        .create_topic("kept", 1, TopicConfig::default())
        .await
        .unwrap();
    let (x, y) = ([record("x", 1)], [record("y", 1)]);
    let (deleted, late, other) = tokio::join!(
        log.delete_topic("doomed"),
        log.append_records(&doomed.partitions[0], &x),
        log.append_records(&kept.partitions[0], &y),
    );
    deleted.unwrap();
    // The late append either landed before the delete (and was deleted with it) or was refused.
    if let Err(e) = late {
        assert!(matches!(e, LogError::UnknownPartition { .. }), "{e}");
    }
    assert_eq!(other.unwrap().base_offset, 0);
    assert_eq!(kept.partitions[0].high_watermark(), 1);
}

#[tokio::test]
async fn partitions_grow_and_old_handles_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let before = log
        .create_topic("grow", 2, TopicConfig::default())
        .await
        .unwrap();
    log.append_records(&before.partitions[1], &[record("a", 1)])
        .await
        .unwrap();
    let after = log.create_partitions("grow", 5).await.unwrap();
    assert_eq!(after.partitions.len(), 5);
    assert_eq!(log.topic("grow").unwrap().partitions.len(), 5);
    assert!(Arc::ptr_eq(&before.partitions[1], &after.partitions[1]));
    let ids: std::collections::HashSet<u32> = after.partitions.iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), 5, "fresh ids for new partitions");
    log.append_records(&before.partitions[1], &[record("b", 1)])
        .await
        .unwrap();
    log.append_records(&after.partitions[4], &[record("c", 1)])
        .await
        .unwrap();
    assert!(matches!(
        log.create_partitions("grow", 5).await,
        Err(LogError::InvalidPartitions { .. })
    ));
    assert!(matches!(
        log.create_partitions("grow", 3).await,
        Err(LogError::InvalidPartitions { .. })
    ));
    assert!(matches!(
        log.create_partitions("nope", 3).await,
        Err(LogError::UnknownTopic(_))
    ));
    drop((before, after));
    let log = reopen(log, dir.path()).await;
    let topic = log.topic("grow").unwrap();
    assert_eq!(topic.partitions.len(), 5);
    assert_eq!(topic.partitions[1].high_watermark(), 2);
    assert_eq!(topic.partitions[4].high_watermark(), 1);
    assert_eq!(topic.partitions[3].high_watermark(), 0);
    // A topic created after reopen does not reuse any of those ids.
    let other = log
        .create_topic("other", 1, TopicConfig::default())
        .await
        .unwrap();
    assert!(topic
        .partitions
        .iter()
        .all(|p| p.id != other.partitions[0].id));
}

#[tokio::test]
async fn topic_config_changes_persist_and_compaction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let topic = log
        .create_topic("conf", 1, TopicConfig::default())
        .await
        .unwrap();
    let config = TopicConfig {
        retention_ms: Some(1000),
        retention_bytes: Some(4096),
        cleanup_policy: Some("delete".into()),
    };
    let updated = log.set_topic_config("conf", config.clone()).await.unwrap();
    assert_eq!(updated.config, config);
    assert!(Arc::ptr_eq(&topic.partitions[0], &updated.partitions[0]));
    let compact = TopicConfig {
        cleanup_policy: Some("compact".into()),
        ..TopicConfig::default()
    };
    assert!(matches!(
        log.set_topic_config("conf", compact).await,
        Err(LogError::InvalidConfig(_))
    ));
    assert!(matches!(
        log.set_topic_config("missing", TopicConfig::default())
            .await,
        Err(LogError::UnknownTopic(_))
    ));
    // The new retention applies to the next sweep.
    log.append_records(&topic.partitions[0], &[record("old", 1)])
        .await
        .unwrap();
    assert_eq!(log.apply_retention(5_000).await.unwrap(), 1);
    drop((topic, updated));
    let log = reopen(log, dir.path()).await;
    assert_eq!(log.topic("conf").unwrap().config, config);
}

#[tokio::test]
async fn delete_records_moves_log_start_inside_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let topic = log
        .create_topic("trim", 1, TopicConfig::default())
        .await
        .unwrap();
    let p = topic.partitions[0].clone();
    for batch in 0..3 {
        let records: Vec<_> = (0..3).map(|i| record(&format!("{batch}-{i}"), 1)).collect();
        log.append_records(&p, &records).await.unwrap();
    }
    // Offsets 0-2, 3-5, 6-8. Start at 4: the first batch goes, the second stays.
    assert_eq!(log.delete_records(&p, 4).await.unwrap(), 4);
    assert_eq!(p.log_start(), 4);
    let read = log.read(&p, 4, 1 << 20).unwrap();
    assert_eq!(
        read[0].base_offset, 3,
        "the batch holding the new start stays"
    );
    let records = log.read_records(&p, 0, 1 << 20).unwrap();
    assert_eq!(records[0].offset, 4, "nothing below log start is returned");
    assert_eq!(log.offset_for_timestamp(&p, 0).unwrap(), Some(4));
    // Below the current start: nothing changes. Past the high watermark: refused.
    assert_eq!(log.delete_records(&p, 2).await.unwrap(), 4);
    assert!(matches!(
        log.delete_records(&p, 10).await,
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Retention never moves the start backwards.
    log.apply_retention(i64::MAX).await.unwrap();
    assert!(p.log_start() >= 4);
    drop((topic, p));
    let log = reopen(log, dir.path()).await;
    let p = log.topic("trim").unwrap().partitions[0].clone();
    assert_eq!((p.log_start(), p.high_watermark()), (4, 9));
    assert_eq!(log.delete_records(&p, -1).await.unwrap(), 9);
    assert!(log.read_records(&p, 0, 1 << 20).unwrap().is_empty());
    assert_eq!(p.state().bytes, 0);
    drop(p);
    let log = reopen(log, dir.path()).await;
    let p = log.topic("trim").unwrap().partitions[0].clone();
    assert_eq!((p.log_start(), p.high_watermark()), (9, 9));
    let appended = log.append_records(&p, &[record("z", 1)]).await.unwrap();
    assert_eq!(appended.base_offset, 9);
}

#[tokio::test]
async fn partition_ids_of_deleted_topics_are_not_reused_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    log.create_topic("keep", 1, TopicConfig::default())
        .await
        .unwrap();
    let last = log
        .create_topic("last", 2, TopicConfig::default())
        .await
        .unwrap();
    let old_ids: Vec<u32> = last.partitions.iter().map(|p| p.id).collect();
    drop(last);
    log.delete_topic("last").await.unwrap();
    let log = reopen(log, dir.path()).await;
    let fresh = log
        .create_topic("fresh", 2, TopicConfig::default())
        .await
        .unwrap();
    assert!(fresh.partitions.iter().all(|p| !old_ids.contains(&p.id)));
}

/// A hook that records whether the append's event had already been sent when it ran, and that
/// the metadata was readable by then.
fn meta_update(log: &Log, key: &str, value: &[u8], seen: &Arc<Mutex<Vec<bool>>>) -> MetaUpdate {
    let (log, key, seen) = (log.clone(), key.to_string(), seen.clone());
    let mut events = log.subscribe();
    MetaUpdate {
        entries: vec![(key.clone(), Some(value.to_vec()))],
        on_commit: Box::new(move || {
            let event_sent = events.try_recv().is_ok();
            let stored = log.get_meta(&key).unwrap().is_some();
            seen.lock().unwrap().push(!event_sent && stored);
        }),
    }
}

#[tokio::test]
async fn metadata_rides_with_an_append_and_its_hook_runs_before_readers_hear() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_disk_bytes = 1024 * 1024;
    let log = Log::open(&opts).unwrap();
    let topic = log.topic_for_write("t").await.unwrap();
    let p = &topic.partitions[0];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let update = meta_update(&log, "k/1", b"one", &seen);
    log.append_records_with_meta(p, &[record("a", 1)], Some(update))
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [true],
        "hook ran after commit, before the event"
    );
    assert_eq!(log.get_meta("k/1").unwrap().as_deref(), Some(&b"one"[..]));

    // A failed append writes neither its records nor its metadata, and skips the hook.
    let big = "v".repeat(64 * 1024);
    let mut appended = 1;
    loop {
        let update = meta_update(&log, "k/2", b"two", &seen);
        match log
            .append_records_with_meta(p, &[record(&big, 1)], Some(update))
            .await
        {
            Ok(_) => {
                appended += 1;
                log.put_meta(vec![("k/2".into(), None)]).await.unwrap();
            }
            Err(LogError::Full) => break,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(seen_now.len(), appended, "one hook per successful append");
    assert!(seen_now.iter().all(|ok| *ok));
    assert_eq!(log.get_meta("k/2").unwrap(), None);
    drop(topic);
    let log = reopen(log, dir.path()).await;
    assert_eq!(log.get_meta("k/1").unwrap().as_deref(), Some(&b"one"[..]));
}
