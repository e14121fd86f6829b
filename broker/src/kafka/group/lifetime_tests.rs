//! Group lifetime on a real log: retention sweeps and deleted topics, with the wall clock
//! passed in (`sweep(now_ms)`), so nothing sleeps.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::super::offsets::{Committed, PREFIX};
use super::super::state::{JoinParams, Joined, Step};
use super::*;
use crate::config::GroupsSection;
use crate::log::{Log, LogOptions};

const MINUTE: i64 = 60_000;

fn open(dir: &std::path::Path) -> Log {
    Log::open(&LogOptions::for_tests(dir, 64 * 1024 * 1024)).unwrap()
}

fn coordinator(log: &Log) -> Coordinator {
    Coordinator::with_config(
        log.clone(),
        &GroupsSection {
            initial_rebalance_delay_ms: 0,
            offsets_retention_minutes: 1,
            offsets_retention_check_interval_ms: 1,
        },
    )
}

fn at(offset: i64) -> Committed {
    Committed {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
    }
}

/// Joins `group` as a one-member group (pre-KIP-394, so one round trip); returns the member.
fn join(c: &Coordinator, group: &str) -> String {
    let params = JoinParams {
        member_id: String::new(),
        instance_id: None,
        client_id: "test".to_string(),
        client_host: "127.0.0.1".to_string(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        protocol_type: "consumer".to_string(),
        protocols: vec![("range".to_string(), Bytes::new())],
        require_known_member_id: false,
    };
    match c.with(|g, now| g.join(group, params, now)) {
        Joined::Step(Step::Done(answer)) => answer.member_id,
        other => panic!("join of {group}: {other:?}"),
    }
}

/// Every committed-offset entry on disk, by group.
fn stored(log: &Log) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (key, _) in log.scan_meta(PREFIX).unwrap() {
        let group = key[PREFIX.len()..].split('/').next().unwrap().to_string();
        *out.entry(group).or_default() += 1;
    }
    out
}

fn group_count(c: &Coordinator) -> usize {
    c.with(|g, _| g.iter().count())
}

#[tokio::test]
async fn offsets_of_an_empty_group_expire_after_the_retention_period() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let c = coordinator(&log);
    c.commit("gone", vec![("t".into(), 0, at(5)), ("t".into(), 1, at(7))])
        .await
        .unwrap();
    c.commit("busy", vec![("t".into(), 0, at(9))])
        .await
        .unwrap();
    let member = join(&c, "busy");
    let start = wall_ms();

    // Within the retention period nothing goes.
    c.sweep(start + 30_000).await;
    assert_eq!(c.committed("gone").unwrap().len(), 2);

    // Past it, the group without members loses its offsets, in memory and on disk; the one
    // with a member keeps them, and its activity is recorded.
    c.sweep(start + 2 * MINUTE).await;
    assert!(c.committed("gone").unwrap().is_empty());
    assert_eq!(c.committed("busy").unwrap().len(), 1);
    assert_eq!(
        stored(&log),
        HashMap::from([("busy".to_string(), 2)]),
        "busy keeps its offset and activity entry; nothing of gone is left"
    );
    assert_eq!(c.groups_with_offsets().unwrap(), vec!["busy".to_string()]);

    // Once busy's member leaves, its clock starts from the last sweep that saw it active,
    // and a restarted coordinator reads that clock back from disk.
    c.with(|g, now| g.leave("busy", &member, None, now))
        .unwrap();
    let restarted = coordinator(&log);
    restarted.sweep(start + 2 * MINUTE + 30_000).await;
    assert_eq!(restarted.committed("busy").unwrap().len(), 1);
    restarted.sweep(start + 3 * MINUTE).await;
    assert!(restarted.committed("busy").unwrap().is_empty());
    assert!(stored(&log).is_empty());
}

#[tokio::test]
async fn offsets_stored_without_an_activity_time_get_one_that_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // Offsets as stored before activity times were kept: no `active-at` entry.
    let key = super::super::offsets::key("old", "t", 0);
    let value = super::super::offsets::encode_value(&at(3));
    log.put_meta(vec![(key, Some(value))]).await.unwrap();
    let start = wall_ms();
    coordinator(&log).sweep(start).await;
    // A restart after the retention period still counts from the first load, not from itself.
    let restarted = coordinator(&log);
    restarted.sweep(start + 2 * MINUTE).await;
    assert!(restarted.committed("old").unwrap().is_empty());
    assert!(stored(&log).is_empty());
}

#[tokio::test]
async fn many_short_lived_groups_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let c = coordinator(&log);
    for i in 0..2_000 {
        let group = format!("cli-{i}");
        let member = join(&c, &group);
        c.with(|g, now| g.leave(&group, &member, None, now))
            .unwrap();
    }
    // Each one rebalanced, so `tick` keeps its state until a sweep.
    assert_eq!(group_count(&c), 2_000);
    c.commit("kept", vec![("t".into(), 0, at(3))])
        .await
        .unwrap();
    c.sweep(wall_ms()).await;
    assert_eq!(
        group_count(&c),
        0,
        "idle groups without offsets are forgotten"
    );
    assert_eq!(c.committed("kept").unwrap().len(), 1);
}

#[tokio::test]
async fn a_deleted_topic_leaves_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let c = coordinator(&log);
    c.commit(
        "a",
        vec![("doomed".into(), 0, at(1)), ("kept".into(), 0, at(2))],
    )
    .await
    .unwrap();
    c.commit(
        "b",
        vec![("doomed".into(), 0, at(3)), ("doomed".into(), 1, at(4))],
    )
    .await
    .unwrap();
    c.forget_topic("doomed").await.unwrap();
    let a = c.committed("a").unwrap();
    assert_eq!(a.keys().collect::<Vec<_>>(), vec![&("kept".to_string(), 0)]);
    assert!(c.committed("b").unwrap().is_empty());
    assert_eq!(c.groups_with_offsets().unwrap(), vec!["a".to_string()]);
    // The same on disk, as a restarted coordinator sees it.
    assert_eq!(stored(&log), HashMap::from([("a".to_string(), 2)]));
    let restarted = coordinator(&log);
    assert_eq!(restarted.committed("a").unwrap().len(), 1);
}

#[tokio::test]
async fn housekeeping_waits_for_the_check_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let c = Coordinator::with_config(
        log.clone(),
        &GroupsSection {
            initial_rebalance_delay_ms: 0,
            offsets_retention_minutes: 1,
            offsets_retention_check_interval_ms: 3_600_000,
        },
    );
    let member = join(&c, "short");
    c.with(|g, now| g.leave("short", &member, None, now))
        .unwrap();
    c.housekeeping().await;
    assert_eq!(
        group_count(&c),
        1,
        "no sweep before the interval has passed"
    );
    c.lock().next_sweep_ms = 0;
    c.housekeeping().await;
    assert_eq!(group_count(&c), 0);
}

#[test]
fn the_plan_counts_retention_from_the_last_activity() {
    let names = ["old", "recent", "live", "emptied-late", "emptied-early"].map(String::from);
    let groups = [
        (0, Liveness::Unknown),
        (50, Liveness::Unknown),
        (0, Liveness::Members),
        // Committed long ago but became Empty only at 70: not expired yet.
        (0, Liveness::EmptiedAt(70)),
        (30, Liveness::EmptiedAt(10)),
    ];
    let sweep = plan(
        names.iter().zip(groups).map(|(n, (at, l))| (n, at, l)),
        100,
        60,
    );
    assert_eq!(
        sweep,
        Sweep {
            expired: vec!["emptied-early".to_string(), "old".to_string()],
            record: vec![("emptied-late".to_string(), 70), ("live".to_string(), 100)],
        }
    );
}
