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
