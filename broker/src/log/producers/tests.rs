//! The sequence rules of `producers`, pure and through the log (reopened to prove durability).

use super::*;
use crate::log::{LogOptions, PartitionHandle, TopicConfig};
use bytes::Bytes;
use kafka_protocol::records::Compression;
use std::sync::Arc;

fn meta(first_seq: i32, last_seq: i32, base_offset: i64) -> BatchMeta {
    BatchMeta {
        first_seq,
        last_seq,
        base_offset,
        last_offset: base_offset + i64::from(last_seq - first_seq),
    }
}

/// An entry of `epoch` that has written batches of 10 records from sequence 0 to `upto`.
fn entry(epoch: i16, batches: &[(i32, i32)]) -> ProducerEntry {
    let mut e: Option<ProducerEntry> = None;
    for (i, (first, last)) in batches.iter().enumerate() {
        e = Some(ProducerEntry::record(
            e.as_ref(),
            epoch,
            meta(*first, *last, i as i64 * 100),
            1_000,
        ));
    }
    e.expect("at least one batch")
}

#[test]
fn unknown_producer_may_start_anywhere() {
    assert_eq!(check(None, 0, 0, 9), Ok(Verdict::Append));
    // Kafka since KIP-360: state may have expired, so any sequence is accepted.
    assert_eq!(check(None, 3, 4711, 4720), Ok(Verdict::Append));
}

#[test]
fn next_batch_must_continue_the_sequence() {
    let e = entry(0, &[(0, 9)]);
    assert_eq!(check(Some(&e), 0, 10, 19), Ok(Verdict::Append));
    assert_eq!(
        check(Some(&e), 0, 11, 19),
        Err(SequenceError::OutOfOrder {
            sequence: 11,
            expected: 10
        })
    );
    // A batch that overlaps but is not one of those written is out of order too.
    assert_eq!(
        check(Some(&e), 0, 5, 14),
        Err(SequenceError::OutOfOrder {
            sequence: 5,
            expected: 10
        })
    );
}

#[test]
fn retried_batches_are_duplicates_with_their_original_offsets() {
    let e = entry(2, &[(0, 9), (10, 19), (20, 29)]);
    assert_eq!(
        check(Some(&e), 2, 10, 19),
        Ok(Verdict::Duplicate(meta(10, 19, 100)))
    );
    // Same sequences under another epoch are not the same batch.
    assert_eq!(check(Some(&e), 3, 0, 9), Ok(Verdict::Append));
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let batches: Vec<(i32, i32)> = (0..7).map(|i| (i * 10, i * 10 + 9)).collect();
    let e = entry(0, &batches);
    assert_eq!(e.batches.len(), RETAINED_BATCHES);
    assert!(matches!(
        check(Some(&e), 0, 20, 29),
        Ok(Verdict::Duplicate(_))
    ));
    // Older than the retained five: Kafka answers out of order.
    assert!(matches!(
        check(Some(&e), 0, 10, 19),
        Err(SequenceError::OutOfOrder { .. })
    ));
}

#[test]
fn epochs_fence_and_restart_sequences() {
    let e = entry(5, &[(0, 9)]);
    assert_eq!(
        check(Some(&e), 4, 10, 19),
        Err(SequenceError::StaleEpoch {
            epoch: 4,
            current: 5
        })
    );
    assert_eq!(check(Some(&e), 6, 0, 0), Ok(Verdict::Append));
    assert_eq!(
        check(Some(&e), 6, 10, 19),
        Err(SequenceError::NewEpochNotAtZero {
            epoch: 6,
            sequence: 10
        })
    );
    // Recording the new epoch forgets the old one's batches.
    let bumped = ProducerEntry::record(Some(&e), 6, meta(0, 0, 500), 2_000);
    assert_eq!(bumped.batches.len(), 1);
    assert_eq!(bumped.epoch, 6);
    assert_eq!(check(Some(&bumped), 6, 1, 1), Ok(Verdict::Append));
}

#[test]
fn negative_sequences_and_epochs_are_invalid() {
    assert!(matches!(
        check(None, 0, -1, 0),
        Err(SequenceError::Invalid { .. })
    ));
    assert!(matches!(
        check(None, -1, 0, 0),
        Err(SequenceError::Invalid { .. })
    ));
}

#[test]
fn sequences_wrap_at_i32_max() {
    assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
    assert_eq!(last_sequence(i32::MAX, 1), 0);
    assert_eq!(last_sequence(i32::MAX - 2, 9), 6);
    let e = entry(0, &[(i32::MAX - 9, i32::MAX)]);
    assert_eq!(check(Some(&e), 0, 0, 9), Ok(Verdict::Append));
    assert!(matches!(
        check(Some(&e), 0, 1, 9),
        Err(SequenceError::OutOfOrder { expected: 0, .. })
    ));
    // A batch that itself wraps continues from its last sequence.
    let e = entry(0, &[(i32::MAX - 2, last_sequence(i32::MAX - 2, 9))]);
    assert_eq!(check(Some(&e), 0, 7, 9), Ok(Verdict::Append));
}

#[test]
fn expiry_uses_the_broker_clock() {
    let e = entry(0, &[(0, 9)]);
    assert!(!e.is_expired(
        1_000 + PRODUCER_ID_EXPIRATION_MS - 1,
        PRODUCER_ID_EXPIRATION_MS
    ));
    assert!(e.is_expired(1_000 + PRODUCER_ID_EXPIRATION_MS, PRODUCER_ID_EXPIRATION_MS));
}

#[test]
fn expiry_forgets_idle_producers_then_the_least_recent_past_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 16 << 20, false).unwrap();
    let mut producers = Producers::default();
    let mut staging = Staging::default();
    for (pid, written) in [(1, 100), (2, 5_000), (3, 9_000), (4, 7_000)] {
        let mut e = entry(0, &[(0, 9)]);
        e.last_write_ms = written;
        staging.entries.insert((0, pid), Some(e));
    }
    producers.apply(staging);
    let forget = |producers: &Producers, now, max| {
        let mut wtxn = store.env.write_txn().unwrap();
        let mut staging = Staging::default();
        let n = producers
            .stage_expiry(&store, &mut wtxn, &mut staging, now, 1_000, max)
            .unwrap();
        wtxn.commit().unwrap();
        (n, staging)
    };
    // At 5 999, producer 1 has been idle for 1 000 ms or more; producer 2 for only 999.
    let (n, staging) = forget(&producers, 5_999, 10);
    assert_eq!(n, 1);
    producers.apply(staging);
    let mut left: Vec<i64> = producers.entries.keys().map(|k| k.1).collect();
    left.sort_unstable();
    assert_eq!(left, vec![2, 3, 4]);
    // A cap of 1 forgets the least recently written first: 2, then 4.
    let (n, staging) = forget(&producers, 6_000, 1);
    assert_eq!(n, 2);
    producers.apply(staging);
    assert_eq!(
        producers.entries.keys().map(|k| k.1).collect::<Vec<_>>(),
        vec![3]
    );
}

proptest::proptest! {
    #[test]
    fn entries_round_trip(
        epoch in 0i16..i16::MAX,
        time in proptest::num::i64::ANY,
        batches in proptest::collection::vec(
            (0i32..i32::MAX, 0i32..i32::MAX, 0i64..i64::MAX / 2, 0i64..1000), 1..=RETAINED_BATCHES)
    ) {
        let entry = ProducerEntry {
            epoch,
            last_write_ms: time,
            batches: batches.iter().map(|(f, l, o, n)| BatchMeta {
                first_seq: *f, last_seq: *l, base_offset: *o, last_offset: o + n,
            }).collect(),
        };
        proptest::prop_assert_eq!(ProducerEntry::decode(&entry.encode()), Some(entry.clone()));
        let bytes = entry.encode();
        proptest::prop_assert_eq!(ProducerEntry::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let _ = ProducerEntry::decode(&bytes);
    }
}

/// A batch's header as the sequence checks judge it.
fn header(pid: i64, epoch: i16, seq: i32, records: i32) -> Judged {
    Judged::batch(&BatchHeader {
        base_offset: 0,
        batch_length: 100,
        attributes: 0,
        last_offset_delta: records - 1,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        records_count: records,
    })
}

#[test]
fn plans_check_each_batch_against_the_ones_before_it() {
    let producers = Producers::default();
    let staging = Staging::default();
    let (a, b, plain) = (
        header(7, 0, 0, 5),
        header(7, 0, 5, 5),
        header(-1, -1, -1, 3),
    );
    let Ok(Plan::Append(entries)) = producers.plan(&staging, 1, 40, &[a, plain, b], 9) else {
        panic!("in-order batches are appended");
    };
    assert_eq!(entries.len(), 1);
    let (pid, e) = &entries[0];
    assert_eq!(*pid, 7);
    let offsets: Vec<_> = e
        .batches
        .iter()
        .map(|m| (m.base_offset, m.last_offset))
        .collect();
    assert_eq!(
        offsets,
        vec![(40, 44), (48, 52)],
        "offsets skip the plain batch"
    );
    // A gap anywhere refuses the whole append.
    let gap = header(7, 0, 11, 1);
    assert_eq!(
        producers.plan(&staging, 1, 40, &[a, gap], 9),
        Err((
            7,
            SequenceError::OutOfOrder {
                sequence: 11,
                expected: 5
            }
        ))
    );
}

#[test]
fn plans_answer_retries_and_refuse_mixtures() {
    let mut producers = Producers::default();
    let mut staging = Staging::default();
    staging
        .entries
        .insert((1, 7), Some(entry(0, &[(0, 4), (5, 9)])));
    producers.apply(staging);
    let staging = Staging::default();
    assert_eq!(
        producers.plan(
            &staging,
            1,
            500,
            &[header(7, 0, 0, 5), header(7, 0, 5, 5)],
            9
        ),
        Ok(Plan::Duplicate {
            base_offset: 0,
            last_offset: 104
        })
    );
    assert_eq!(
        producers.plan(
            &staging,
            1,
            500,
            &[header(7, 0, 5, 5), header(7, 0, 10, 1)],
            9
        ),
        Err((7, SequenceError::MixedDuplicates))
    );
    // Another partition knows nothing of producer 7.
    assert!(matches!(
        producers.plan(&staging, 2, 0, &[header(7, 0, 5, 5)], 9),
        Ok(Plan::Append(_))
    ));
}

// ---- through the log ----

fn options(dir: &std::path::Path) -> LogOptions {
    LogOptions::for_tests(dir, 64 * 1024 * 1024)
}

/// An idempotent batch of `records` records starting at sequence `seq`.
fn batch(pid: i64, epoch: i16, seq: i32, records: i32) -> (BatchHeader, Bytes) {
    let records: Vec<NewRecord> = (0..records)
        .map(|i| NewRecord {
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("v{}", seq.wrapping_add(i)))),
            headers: vec![],
        })
        .collect();
    let producer = crate::log::batch::Producer {
        id: pid,
        epoch,
        base_sequence: seq,
    };
    let bytes = crate::log::batch::encode_as(&records, producer, Compression::None).unwrap();
    (crate::log::batch::validate(&bytes).unwrap(), bytes)
}

async fn append(
    log: &Log,
    p: &Arc<PartitionHandle>,
    batches: Vec<(BatchHeader, Bytes)>,
) -> Result<(i64, i64), LogError> {
    log.append_batches(p, batches)
        .await
        .map(|a| (a.base_offset, a.last_offset))
}

fn reason(result: Result<(i64, i64), LogError>) -> SequenceError {
    match result {
        Err(LogError::Sequence { reason, .. }) => reason,
        other => panic!("expected a sequence refusal, got {other:?}"),
    }
}

async fn reopen(log: Log, dir: &std::path::Path) -> Log {
    log.close().await;
    Log::open(&options(dir)).unwrap()
}

#[tokio::test]
async fn duplicates_and_gaps_are_caught_before_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&options(dir.path())).unwrap();
    let (pid, epoch) = log.init_producer_id().await.unwrap();
    let p = log.topic_for_write("idem").await.unwrap().partitions[0].clone();
    assert_eq!(
        append(&log, &p, vec![batch(pid, epoch, 0, 3)])
            .await
            .unwrap(),
        (0, 2)
    );
    assert_eq!(
        append(&log, &p, vec![batch(pid, epoch, 3, 2)])
            .await
            .unwrap(),
        (3, 4)
    );
    // The retry gets the original offsets and nothing is written.
    assert_eq!(
        append(&log, &p, vec![batch(pid, epoch, 0, 3)])
            .await
            .unwrap(),
        (0, 2)
    );
    assert_eq!(p.high_watermark(), 5);
    drop(p);
    for _ in 0..2 {
        log = reopen(log, dir.path()).await;
        let p = log.topic("idem").unwrap().partitions[0].clone();
        assert_eq!(
            append(&log, &p, vec![batch(pid, epoch, 3, 2)])
                .await
                .unwrap(),
            (3, 4)
        );
        assert_eq!(
            p.high_watermark(),
            5,
            "duplicate after reopen is not written"
        );
        assert_eq!(
            reason(append(&log, &p, vec![batch(pid, epoch, 7, 1)]).await),
            SequenceError::OutOfOrder {
                sequence: 7,
                expected: 5
            }
        );
    }
    let p = log.topic("idem").unwrap().partitions[0].clone();
    assert_eq!(
        append(&log, &p, vec![batch(pid, epoch, 5, 1)])
            .await
            .unwrap(),
        (5, 5)
    );
    let values: Vec<_> = log
        .read_records(&p, 0, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    let expected: Vec<Bytes> = (0..6).map(|i| Bytes::from(format!("v{i}"))).collect();
    assert_eq!(values, expected, "every record once, in order");
    drop(p);
    log.close().await;
}

#[tokio::test]
async fn epochs_fence_old_instances() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let (pid, epoch) = log.init_producer_id().await.unwrap();
    let p = log.topic_for_write("fence").await.unwrap().partitions[0].clone();
    append(&log, &p, vec![batch(pid, epoch, 0, 2)])
        .await
        .unwrap();
    // A newer epoch of the same id (a client's own bump) fences the older one.
    let bumped = epoch + 1;
    assert!(matches!(
        reason(append(&log, &p, vec![batch(pid, bumped, 2, 1)]).await),
        SequenceError::NewEpochNotAtZero { .. }
    ));
    append(&log, &p, vec![batch(pid, bumped, 0, 1)])
        .await
        .unwrap();
    assert!(matches!(
        reason(append(&log, &p, vec![batch(pid, epoch, 2, 1)]).await),
        SequenceError::StaleEpoch { .. }
    ));
    assert_eq!(p.high_watermark(), 3);
    drop(p);
    log.close().await;
}

#[tokio::test]
async fn producer_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&options(dir.path())).unwrap();
    let (a, _) = log.init_producer_id().await.unwrap();
    let (b, _) = log.init_producer_id().await.unwrap();
    assert!(b > a);
    log = reopen(log, dir.path()).await;
    let (c, epoch) = log.init_producer_id().await.unwrap();
    assert!(c > b, "{c} after {b}");
    assert_eq!(epoch, 0);
    log.close().await;
}

#[tokio::test]
async fn a_refused_batch_leaves_the_whole_append_unapplied() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let p = log.topic_for_write("atomic").await.unwrap().partitions[0].clone();
    let gap = vec![batch(9, 0, 0, 2), batch(9, 0, 5, 1)];
    assert!(matches!(
        reason(append(&log, &p, gap).await),
        SequenceError::OutOfOrder { .. }
    ));
    assert_eq!(p.high_watermark(), 0);
    // Producer 9's first batch was not remembered either: it can be sent again as new.
    assert_eq!(
        append(&log, &p, vec![batch(9, 0, 0, 2)]).await.unwrap(),
        (0, 1)
    );
    drop(p);
    log.close().await;
}

#[tokio::test]
async fn pipelined_batches_in_one_group_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let p = log.topic_for_write("pipe").await.unwrap().partitions[0].clone();
    let (a, b, c, retry) = tokio::join!(
        append(&log, &p, vec![batch(3, 0, 0, 1)]),
        append(&log, &p, vec![batch(3, 0, 1, 1)]),
        append(&log, &p, vec![batch(3, 0, 2, 1)]),
        append(&log, &p, vec![batch(3, 0, 1, 1)]),
    );
    assert_eq!(
        (a.unwrap(), b.unwrap(), c.unwrap(), retry.unwrap()),
        ((0, 0), (1, 1), (2, 2), (1, 1))
    );
    assert_eq!(p.high_watermark(), 3);
    drop(p);
    log.close().await;
}

fn stored_producers(log: &Log) -> usize {
    let store = &log.inner.store;
    let rtxn = store.env.read_txn().unwrap();
    store.producers.len(&rtxn).unwrap() as usize
}

#[tokio::test]
async fn retention_keeps_live_producers_and_expiry_forgets_idle_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&options(dir.path())).unwrap();
    let config = TopicConfig {
        retention_bytes: Some(0),
        ..TopicConfig::default()
    };
    let topic = log.create_topic("ret", 1, config).await.unwrap();
    let p = topic.partitions[0].clone();
    append(&log, &p, vec![batch(4, 0, 0, 2)]).await.unwrap();
    append(&log, &p, vec![batch(4, 0, 2, 2)]).await.unwrap();
    let now = crate::log::retention::now_ms();
    assert!(log.apply_retention(now).await.unwrap() > 0);
    assert_eq!(p.log_start(), 4, "retention deleted the batches");
    // The retry of a deleted batch is still recognised, and the sequence goes on.
    assert_eq!(
        append(&log, &p, vec![batch(4, 0, 2, 2)]).await.unwrap(),
        (2, 3)
    );
    assert!(matches!(
        reason(append(&log, &p, vec![batch(4, 0, 9, 1)]).await),
        SequenceError::OutOfOrder { .. }
    ));
    assert_eq!(stored_producers(&log), 1);
    log.apply_retention(now + PRODUCER_ID_EXPIRATION_MS + 60_000)
        .await
        .unwrap();
    assert_eq!(stored_producers(&log), 0, "expired on disk");
    drop((p, topic));
    log = reopen(log, dir.path()).await;
    let p = log.topic("ret").unwrap().partitions[0].clone();
    // Unknown again: any sequence is accepted, as in Kafka.
    assert_eq!(
        append(&log, &p, vec![batch(4, 0, 9, 1)]).await.unwrap(),
        (4, 4)
    );
    drop(p);
    log.close().await;
}

#[tokio::test]
async fn deleting_a_topic_deletes_its_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let keep = log.topic_for_write("keep").await.unwrap().partitions[0].clone();
    let gone = log.topic_for_write("gone").await.unwrap();
    append(&log, &keep, vec![batch(1, 0, 0, 1)]).await.unwrap();
    for partition in &gone.partitions {
        append(&log, partition, vec![batch(1, 0, 0, 1)])
            .await
            .unwrap();
    }
    assert_eq!(stored_producers(&log), 3);
    log.delete_topic("gone").await.unwrap();
    assert_eq!(stored_producers(&log), 1);
    // Recreated, the topic's partitions know nothing of producer 1.
    let again = log.topic_for_write("gone").await.unwrap().partitions[0].clone();
    assert_eq!(
        append(&log, &again, vec![batch(1, 0, 1, 1)]).await.unwrap(),
        (0, 0)
    );
    assert_eq!(
        append(&log, &keep, vec![batch(1, 0, 0, 1)]).await.unwrap(),
        (0, 0)
    );
    drop((keep, gone, again));
    log.close().await;
}

#[tokio::test]
async fn delete_records_keeps_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&options(dir.path())).unwrap();
    let p = log.topic_for_write("dr").await.unwrap().partitions[0].clone();
    append(&log, &p, vec![batch(6, 0, 0, 3)]).await.unwrap();
    assert_eq!(log.delete_records(&p, -1).await.unwrap(), 3);
    // The batch is gone but its retry is still recognised, and the sequence continues.
    assert_eq!(
        append(&log, &p, vec![batch(6, 0, 0, 3)]).await.unwrap(),
        (0, 2)
    );
    assert_eq!(p.high_watermark(), 3);
    assert_eq!(
        append(&log, &p, vec![batch(6, 0, 3, 1)]).await.unwrap(),
        (3, 3)
    );
    drop(p);
    log.close().await;
}

#[test]
fn a_request_claims_its_batches_sequence_range() {
    let parse = |(h, _): &(BatchHeader, Bytes)| *h;
    let (a, b) = (parse(&batch(5, 1, 0, 3)), parse(&batch(5, 1, 3, 2)));
    assert_eq!(
        ProducerClaim::of_request(&[&a, &b]),
        Ok(Some(ProducerClaim {
            producer_id: 5,
            epoch: 1,
            first_seq: 0,
            last_seq: 4
        }))
    );
    let plain = parse(&batch(-1, -1, -1, 1));
    assert_eq!(ProducerClaim::of_request(&[&plain, &plain]), Ok(None));
    assert_eq!(ProducerClaim::of_request(&[]), Ok(None));
    for scattered in [
        vec![&a, &a],
        vec![&a, &plain],
        vec![&a, &parse(&batch(6, 1, 3, 1))],
        vec![&a, &parse(&batch(5, 2, 3, 1))],
    ] {
        assert_eq!(
            ProducerClaim::of_request(&scattered),
            Err(SequenceError::Scattered)
        );
    }
}

#[tokio::test]
async fn claimed_appends_are_checked_like_the_producers_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&options(dir.path())).unwrap();
    let p = log.topic_for_write("plug").await.unwrap().partitions[0].clone();
    let claim = |first_seq, last_seq| ProducerClaim {
        producer_id: 8,
        epoch: 0,
        first_seq,
        last_seq,
    };
    // Three records in, one out (say a plugin filtered two).
    let out = [crate::log::NewRecord {
        timestamp: 1,
        value: Some(Bytes::from_static(b"kept")),
        ..Default::default()
    }];
    assert_eq!(log.check_claim(&p, claim(0, 2)).unwrap(), None);
    let first = log
        .append_records_claimed(&p, &out, claim(0, 2))
        .await
        .unwrap();
    assert_eq!((first.base_offset, first.last_offset), (0, 0));
    // Everything dropped: the claim is still recorded, so the sequence goes on.
    let none = log
        .append_records_claimed(&p, &[], claim(3, 4))
        .await
        .unwrap();
    assert_eq!((none.base_offset, none.last_offset), (1, 0));
    drop(p);
    log = reopen(log, dir.path()).await;
    let p = log.topic("plug").unwrap().partitions[0].clone();
    let retry = log.check_claim(&p, claim(0, 2)).unwrap().expect("a retry");
    assert_eq!((retry.base_offset, retry.last_offset), (0, 0));
    let again = log
        .append_records_claimed(&p, &out, claim(0, 2))
        .await
        .unwrap();
    assert_eq!(again, retry);
    assert_eq!(p.high_watermark(), 1, "the retry was not written");
    assert!(matches!(
        log.check_claim(&p, claim(7, 7)),
        Err(LogError::Sequence {
            reason: SequenceError::OutOfOrder { expected: 5, .. },
            ..
        })
    ));
    assert_eq!(log.check_claim(&p, claim(5, 9)).unwrap(), None);
    let next = log
        .append_records_claimed(&p, &out, claim(5, 9))
        .await
        .unwrap();
    assert_eq!((next.base_offset, next.last_offset), (1, 1));
    drop(p);
    log.close().await;
}
