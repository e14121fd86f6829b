//! The async shell on a real clock: waiting JoinGroups are woken when the initial rebalance
//! delay ends, with one generation for everyone who came during it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::state::{JoinAnswer, JoinParams, Joined, Step};
use super::Coordinator;
use crate::config::GroupsSection;
use crate::log::{Log, LogOptions};

const DELAY: Duration = Duration::from_millis(300);

async fn join(c: &Coordinator, shutdown: &CancellationToken) -> JoinAnswer {
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
    match c.with(|g, now| g.join("g", params, now)) {
        Joined::Wait(member) => c
            .wait(shutdown, |g, now| g.poll_join("g", &member, now))
            .await
            .unwrap(),
        Joined::Step(Step::Done(answer)) => answer,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn members_joining_within_the_initial_delay_share_one_generation() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&LogOptions::for_tests(dir.path(), 64 * 1024 * 1024)).unwrap();
    let c = Coordinator::with_config(
        log,
        &GroupsSection {
            initial_rebalance_delay_ms: DELAY.as_millis() as u64,
            ..GroupsSection::default()
        },
    );
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let first = join(&c, &shutdown);
    let second = async {
        tokio::time::sleep(DELAY / 3).await;
        join(&c, &shutdown).await
    };
    let (a, b) = tokio::join!(first, second);
    assert_eq!((a.generation, b.generation), (1, 1));
    assert_eq!(a.leader, b.leader);
    // The second arrival extended the wait by one more delay.
    assert!(start.elapsed() >= DELAY * 2, "{:?}", start.elapsed());
}
