//! Consumer groups with librdkafka (the rdkafka crate): two members share a topic, a member
//! leaving hands its partitions over, committed offsets survive a broker restart, and the
//! cooperative-sticky assignor works.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use headwater_tests::{ChildBroker, InProcess};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");
const PATIENCE: Duration = Duration::from_secs(20);

fn member(bootstrap: &str, group: &str, strategy: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("fetch.wait.max.ms", "100")
        .set("partition.assignment.strategy", strategy)
        .create()
        .expect("rdkafka consumer")
}

fn assigned(consumer: &BaseConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer in turn until `done` holds; records what each one received as
/// (partition, offset) → value.
fn poll_until(
    consumers: &[&BaseConsumer],
    received: &mut [Vec<(i32, i64, String)>],
    what: &str,
    mut done: impl FnMut(&[&BaseConsumer], &[Vec<(i32, i64, String)>]) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    while !done(consumers, received) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for (c, out) in consumers.iter().zip(received.iter_mut()) {
            match c.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => out.push((
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )),
                Some(Err(e)) => eprintln!("consumer error (retrying): {e}"),
                None => {}
            }
        }
    }
}

async fn produce(producer: &FutureProducer, topic: &str, partitions: i32, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(i as i32 % partitions)
                    .payload(v),
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
    }
}

/// Creates `topic` (4 partitions by the broker's default) through a producer's Metadata
/// request, which asks for auto-creation; consumers do not.
fn create_topic(producer: &FutureProducer, topic: &str) {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 4);
}

fn commit(consumer: &BaseConsumer) {
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
}

fn values(received: &[Vec<(i32, i64, String)>]) -> Vec<String> {
    let mut all: Vec<String> = received.iter().flatten().map(|r| r.2.clone()).collect();
    all.sort();
    all
}

/// Two members share a 4-partition topic, then one leaves and the other takes over.
async fn share_then_hand_over(strategy: &'static str) {
    let broker = InProcess::start_with(|c| c.log.default_partitions = 4).await;
    let bootstrap = broker.kafka();
    let topic = format!("groups-{}", strategy.replace(',', "-"));
    let group = format!("group-{strategy}");
    let producer = common::producer(&bootstrap, &[]);
    create_topic(&producer, &topic);

    let a = member(&bootstrap, &group, strategy);
    let b = member(&bootstrap, &group, strategy);
    a.subscribe(&[&topic]).expect("subscribe");
    b.subscribe(&[&topic]).expect("subscribe");
    let mut received = vec![Vec::new(), Vec::new()];
    poll_until(&[&a, &b], &mut received, "two partitions each", |c, _| {
        assigned(c[0]).len() == 2
            && assigned(c[1]).len() == 2
            && assigned(c[0]).is_disjoint(&assigned(c[1]))
    });
    assert!(values(&received).is_empty());
    // ListGroups and DescribeGroups, as librdkafka's group listing uses them.
    let listing = a
        .fetch_group_list(Some(&group), Duration::from_secs(10))
        .expect("group list");
    let described = &listing.groups()[0];
    assert_eq!(described.state(), "Stable");
    assert_eq!(described.protocol_type(), "consumer");
    let expected_protocol = strategy.split(',').next().unwrap_or_default();
    assert_eq!(described.protocol(), expected_protocol);
    assert_eq!(described.members().len(), 2);
    let cooperative = strategy == "cooperative-sticky";
    assert_eq!(
        matches!(
            a.rebalance_protocol(),
            rdkafka::consumer::RebalanceProtocol::Cooperative
        ),
        cooperative
    );

    let batch: Vec<String> = (0..40).map(|i| format!("first-{i:02}")).collect();
    produce(&producer, &topic, 4, &batch).await;
    poll_until(&[&a, &b], &mut received, "the first batch", |_, r| {
        r.iter().map(Vec::len).sum::<usize>() >= 40
    });
    assert_eq!(values(&received), batch, "each record exactly once");
    for (member, got) in [(&a, &received[0]), (&b, &received[1])] {
        let mine = assigned(member);
        let firsts: BTreeSet<i32> = got.iter().map(|r| r.0).collect();
        assert_eq!(firsts, mine, "a member reads exactly its own partitions");
    }
    commit(&a);
    commit(&b);

    // b leaves: a takes over all four partitions and resumes where b committed.
    b.unsubscribe();
    drop(b);
    let mut after = vec![Vec::new()];
    poll_until(&[&a], &mut after, "the hand-over", |c, _| {
        assigned(c[0]).len() == 4
    });
    let second: Vec<String> = (0..20).map(|i| format!("second-{i:02}")).collect();
    produce(&producer, &topic, 4, &second).await;
    poll_until(&[&a], &mut after, "the second batch", |_, r| {
        r[0].len() >= 20
    });
    // Give a moment for any duplicate to show up before judging.
    let quiet = Instant::now() + Duration::from_millis(500);
    while Instant::now() < quiet {
        if let Some(Ok(m)) = a.poll(Duration::from_millis(50)) {
            after[0].push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    assert_eq!(
        values(&after),
        second,
        "no record of the first batch came back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_members_share_a_topic_and_a_leaving_one_hands_over() {
    share_then_hand_over("range,roundrobin").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cooperative_sticky_assignor_shares_and_hands_over() {
    share_then_hand_over("cooperative-sticky").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let bootstrap = broker.kafka();
    let producer = common::producer(&bootstrap, &[]);
    let values: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    produce(&producer, "restart", 1, &values).await;
    drop(producer);

    let consumer = member(&bootstrap, "survivor", "range");
    consumer.subscribe(&["restart"]).expect("subscribe");
    let mut got = vec![Vec::new()];
    poll_until(&[&consumer], &mut got, "five records", |_, r| {
        r[0].len() >= 5
    });
    let mut position = TopicPartitionList::new();
    position
        .add_partition_offset("restart", 0, Offset::Offset(5))
        .expect("offset");
    consumer
        .commit(&position, CommitMode::Sync)
        .expect("commit");
    drop(consumer);
    let status = broker.terminate();
    assert!(status.success(), "broker exit: {status:?}");

    let broker = ChildBroker::spawn(BIN, &data, "");
    let bootstrap = broker.kafka();
    let consumer = member(&bootstrap, "survivor", "range");
    let committed = consumer
        .committed_offsets(
            {
                let mut l = TopicPartitionList::new();
                l.add_partition("restart", 0);
                l
            },
            Duration::from_secs(10),
        )
        .expect("committed offsets");
    assert_eq!(
        committed.find_partition("restart", 0).map(|e| e.offset()),
        Some(Offset::Offset(5))
    );
    consumer.subscribe(&["restart"]).expect("subscribe");
    let mut got = vec![Vec::new()];
    poll_until(&[&consumer], &mut got, "the rest", |_, r| r[0].len() >= 5);
    let offsets: Vec<i64> = got[0].iter().map(|r| r.1).collect();
    assert_eq!(
        offsets,
        vec![5, 6, 7, 8, 9],
        "resumed after the committed offset"
    );
}

/// A member that dies without leaving (kcat on librdkafka 2.0.2, killed with SIGKILL) is
/// dropped when its session times out, and the survivor takes over its partitions.
#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_member_times_out_and_its_partitions_move() {
    let Some(kcat) = headwater_tests::system_client("kcat") else {
        return;
    };
    let broker = InProcess::start_with(|c| c.log.default_partitions = 4).await;
    let bootstrap = broker.kafka();
    let producer = common::producer(&bootstrap, &[]);
    create_topic(&producer, "crash");
    let mut crashing = std::process::Command::new(kcat)
        .args(["-b", &bootstrap, "-G", "crash-group", "crash", "-q"])
        .args([
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=300",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn kcat");
    let survivor = member(&bootstrap, "crash-group", "range");
    survivor.subscribe(&["crash"]).expect("subscribe");
    let mut got = vec![Vec::new()];
    poll_until(&[&survivor], &mut got, "a share of two", |c, _| {
        assigned(c[0]).len() == 2
    });
    crashing.kill().expect("kill kcat");
    let _ = crashing.wait();
    let killed = Instant::now();
    poll_until(
        &[&survivor],
        &mut got,
        "all four after the timeout",
        |c, _| assigned(c[0]).len() == 4,
    );
    let waited = killed.elapsed();
    assert!(
        waited >= Duration::from_secs(5),
        "taken over after {waited:?}, before the session could time out"
    );
}
