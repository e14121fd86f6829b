//! Consumer group APIs over real connections: coordinator lookup, a two-member rebalance,
//! committed offsets, listing, describing and deleting groups, leader-epoch lookups.

use super::*;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn join(member: &str) -> JoinGroupRequest {
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    p.metadata = Bytes::from_static(b"subscription");
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(s("g"));
    r.session_timeout_ms = 10_000;
    r.rebalance_timeout_ms = 10_000;
    r.member_id = s(member);
    r.protocol_type = s("consumer");
    r.protocols = vec![p];
    r
}

fn sync(member: &str, generation: i32, assignments: &[(&str, &'static str)]) -> SyncGroupRequest {
    let mut r = SyncGroupRequest::default();
    r.group_id = GroupId(s("g"));
    r.member_id = s(member);
    r.generation_id = generation;
    r.assignments = assignments
        .iter()
        .map(|(m, a)| {
            let mut x = SyncGroupRequestAssignment::default();
            x.member_id = s(m);
            x.assignment = Bytes::from_static(a.as_bytes());
            x
        })
        .collect();
    r
}

fn heartbeat(member: &str, generation: i32) -> HeartbeatRequest {
    let mut r = HeartbeatRequest::default();
    r.group_id = GroupId(s("g"));
    r.member_id = s(member);
    r.generation_id = generation;
    r
}

/// KIP-394 handshake, then the real join; returns (member id, answer).
async fn join_fully(client: &mut Client) -> (String, JoinGroupResponse) {
    let first = client.call(9, &join("")).await;
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let id = first.member_id.to_string();
    (id.clone(), client.call(9, &join(&id)).await)
}

use kafka_protocol::error::ResponseError;

#[tokio::test]
async fn find_coordinator_names_this_node_for_groups_and_transactions() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    for version in 0..=3 {
        let mut r = FindCoordinatorRequest::default();
        r.key = s("g");
        let answer = client.call(version, &r).await;
        assert_eq!(answer.error_code, 0, "v{version}");
        assert_eq!(*answer.node_id, 0);
        assert_eq!(answer.host.as_str(), "127.0.0.1");
        assert_eq!(answer.port, i32::from(broker.addr.port()));
    }
    let mut r = FindCoordinatorRequest::default();
    r.key_type = 1;
    r.coordinator_keys = vec![s("tx-1"), s("tx-2")];
    let answer = client.call(4, &r).await;
    assert_eq!(answer.coordinators.len(), 2);
    assert!(answer
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && *c.node_id == 0));
    let mut r = FindCoordinatorRequest::default();
    r.key = s("g");
    r.key_type = 7;
    let answer = client.call(3, &r).await;
    assert_eq!(answer.error_code, ResponseError::InvalidRequest.code());
}

#[tokio::test]
async fn two_members_rebalance_through_join_sync_heartbeat_and_leave() {
    let broker = broker().await;
    let mut a = Client::connect(broker.addr).await;
    let (a_id, first) = join_fully(&mut a).await;
    assert_eq!((first.error_code, first.generation_id), (0, 1));
    assert_eq!(first.leader.as_str(), a_id);
    assert_eq!(first.protocol_name.as_deref(), Some("range"));
    assert_eq!(first.members.len(), 1);
    let synced = a.call(5, &sync(&a_id, 1, &[(&a_id, "all four")])).await;
    assert_eq!(&synced.assignment[..], b"all four");
    assert_eq!(a.call(4, &heartbeat(&a_id, 1)).await.error_code, 0);

    // b joins on its own connection and waits for a to rejoin.
    let addr = broker.addr;
    let b_task = tokio::spawn(async move {
        let mut b = Client::connect(addr).await;
        let (b_id, answer) = join_fully(&mut b).await;
        (b, b_id, answer)
    });
    let deadline = Instant::now() + PATIENCE;
    loop {
        let code = a.call(4, &heartbeat(&a_id, 1)).await.error_code;
        if code == ResponseError::RebalanceInProgress.code() {
            break;
        }
        assert!(Instant::now() < deadline, "a was never told to rejoin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rejoined = a.call(9, &join(&a_id)).await;
    assert_eq!((rejoined.error_code, rejoined.generation_id), (0, 2));
    assert_eq!(rejoined.members.len(), 2);
    let (mut b, b_id, b_answer) = b_task.await.unwrap();
    assert_eq!((b_answer.error_code, b_answer.generation_id), (0, 2));
    assert_eq!(b_answer.leader.as_str(), a_id);
    assert!(b_answer.members.is_empty());

    // b's SyncGroup waits for the leader's.
    let b_sync = tokio::spawn(async move {
        let answer = b.call(3, &sync(&b_id, 2, &[])).await;
        (b, b_id, answer)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let a_sync = a
        .call(5, &sync(&a_id, 2, &[(&a_id, "p0 p1"), ("", ""), ("x", "")]))
        .await;
    assert_eq!(&a_sync.assignment[..], b"p0 p1");
    let (mut b, b_id, b_synced) = b_sync.await.unwrap();
    assert_eq!(b_synced.error_code, 0);
    assert!(
        b_synced.assignment.is_empty(),
        "b got no share from the leader"
    );

    // Described while stable.
    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![GroupId(s("g")), GroupId(s("never-seen"))];
    let described = a.call(5, &describe).await;
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].protocol_data.as_str(), "range");
    assert_eq!(described.groups[0].members.len(), 2);
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");

    // A non-empty group cannot be deleted.
    let mut delete = DeleteGroupsRequest::default();
    delete.groups_names = vec![GroupId(s("g"))];
    let refused = a.call(2, &delete).await;
    assert_eq!(
        refused.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );

    // b leaves with a v5 batch; a unknown member in the same batch gets its own error.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(s("g"));
    let mut me = MemberIdentity::default();
    me.member_id = s(&b_id);
    let mut ghost = MemberIdentity::default();
    ghost.member_id = s("ghost");
    leave.members = vec![me, ghost];
    let left = b.call(5, &leave).await;
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(
        left.members[1].error_code,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        a.call(4, &heartbeat(&a_id, 2)).await.error_code,
        ResponseError::RebalanceInProgress.code()
    );
    let alone = a.call(9, &join(&a_id)).await;
    assert_eq!((alone.generation_id, alone.members.len()), (3, 1));

    // a leaves with v0; the group is empty and can be deleted.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(s("g"));
    leave.member_id = s(&a_id);
    assert_eq!(a.call(0, &leave).await.error_code, 0);
    let deleted = a.call(2, &delete).await;
    assert_eq!(deleted.results[0].error_code, 0);
    let again = a.call(0, &delete).await;
    assert_eq!(
        again.results[0].error_code,
        ResponseError::GroupIdNotFound.code()
    );
}

#[tokio::test]
async fn old_join_versions_get_a_member_id_at_once() {
    let broker = broker().await;
    let mut a = Client::connect(broker.addr).await;
    let answer = a.call(0, &join("")).await;
    assert_eq!((answer.error_code, answer.generation_id), (0, 1));
    assert!(!answer.member_id.is_empty());
    let mut bad = join("");
    bad.protocol_type = s("");
    let mut other = bad.clone();
    other.group_id = GroupId(s("other"));
    let refused = a.call(5, &other).await;
    assert_eq!(
        refused.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
}

fn commit(
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id_or_member_epoch = generation;
    r.member_id = s(member);
    r.topics = offsets
        .iter()
        .map(|(t, p, o)| {
            let mut part = OffsetCommitRequestPartition::default();
            part.partition_index = *p;
            part.committed_offset = *o;
            part.committed_metadata = Some(s("why"));
            let mut topic = OffsetCommitRequestTopic::default();
            topic.name = name(t);
            topic.partitions = vec![part];
            topic
        })
        .collect();
    r
}

#[tokio::test]
async fn offsets_are_committed_durably_and_fetched_in_every_version() {
    let broker = broker().await;
    broker
        .log
        .create_topic("t", 2, Default::default())
        .await
        .unwrap();
    let mut client = Client::connect(broker.addr).await;
    for version in 2..=8 {
        let answer = client
            .call(
                version,
                &commit(
                    "g",
                    -1,
                    "",
                    &[
                        ("t", 0, 10 + i64::from(version)),
                        ("t", 5, 1),
                        ("nope", 0, 1),
                    ],
                ),
            )
            .await;
        assert_eq!(answer.topics[0].partitions[0].error_code, 0, "v{version}");
        assert_eq!(
            answer.topics[1].partitions[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            answer.topics[2].partitions[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
    }
    let mut huge = commit("g", -1, "", &[("t", 1, 1)]);
    huge.topics[0].partitions[0].committed_metadata = Some(s(&"x".repeat(5000)));
    let refused = client.call(8, &huge).await;
    assert_eq!(
        refused.topics[0].partitions[0].error_code,
        ResponseError::OffsetMetadataTooLarge.code()
    );
    // The entry is on disk, under the group's prefix.
    let stored = broker.log.scan_meta("group/g/offset/").unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, "group/g/offset/t/0");

    for version in 1..=7 {
        let mut topic = OffsetFetchRequestTopic::default();
        topic.name = name("t");
        topic.partition_indexes = vec![0, 1];
        let mut r = OffsetFetchRequest::default();
        r.group_id = GroupId(s("g"));
        r.topics = Some(vec![topic]);
        let answer = client.call(version, &r).await;
        let parts = &answer.topics[0].partitions;
        assert_eq!(parts[0].committed_offset, 18, "v{version}");
        assert_eq!(parts[0].metadata.as_deref(), Some("why"));
        assert_eq!(parts[1].committed_offset, -1, "never committed");
    }
    // v8: several groups at once, one of them asking for everything it has.
    let mut topic = OffsetFetchRequestTopics::default();
    topic.name = name("t");
    topic.partition_indexes = vec![0];
    let mut g = OffsetFetchRequestGroup::default();
    g.group_id = GroupId(s("g"));
    g.topics = Some(vec![topic]);
    let mut all = OffsetFetchRequestGroup::default();
    all.group_id = GroupId(s("g"));
    all.topics = None;
    let mut empty = OffsetFetchRequestGroup::default();
    empty.group_id = GroupId(s("nobody"));
    let mut r = OffsetFetchRequest::default();
    r.groups = vec![g, all, empty];
    let answer = client.call(8, &r).await;
    assert_eq!(
        answer.groups[0].topics[0].partitions[0].committed_offset,
        18
    );
    assert_eq!(
        answer.groups[1].topics[0].partitions[0].committed_offset,
        18
    );
    assert!(answer.groups[2].topics.is_empty());

    // A group with only offsets is listed as Empty, and a fresh coordinator over the same
    // log (a restarted broker) sees the offsets.
    let listed = client.call(4, &ListGroupsRequest::default()).await;
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_state.as_str(), "Empty");
    let fresh = crate::kafka::group::Coordinator::new(broker.log.clone());
    let committed = fresh.committed("g").unwrap();
    assert_eq!(committed[&("t".to_string(), 0)].offset, 18);

    // Members of an active group must name their generation.
    let (member, _) = join_fully(&mut client).await;
    let refused = client.call(8, &commit("g", -1, "", &[("t", 0, 1)])).await;
    assert_eq!(
        refused.topics[0].partitions[0].error_code,
        ResponseError::UnknownMemberId.code()
    );
    let stale = client
        .call(8, &commit("g", 9, &member, &[("t", 0, 1)]))
        .await;
    assert_eq!(
        stale.topics[0].partitions[0].error_code,
        ResponseError::IllegalGeneration.code()
    );
}

#[tokio::test]
async fn leader_epoch_zero_ends_at_the_high_watermark() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    client
        .call(
            9,
            &produce_request("e", 0, -1, records(&["a", "b", "c"], 1000)),
        )
        .await;
    for version in 2..=4 {
        let mut topic = OffsetForLeaderTopic::default();
        topic.topic = name("e");
        topic.partitions = [(0, 0), (0, 3), (9, 0)]
            .iter()
            .map(|(p, epoch)| {
                let mut x = OffsetForLeaderPartition::default();
                x.partition = *p;
                x.leader_epoch = *epoch;
                x
            })
            .collect();
        let mut r = OffsetForLeaderEpochRequest::default();
        r.topics = vec![topic];
        let answer = client.call(version, &r).await;
        let parts = &answer.topics[0].partitions;
        assert_eq!(
            (
                parts[0].error_code,
                parts[0].leader_epoch,
                parts[0].end_offset
            ),
            (0, 0, 3)
        );
        assert_eq!((parts[1].leader_epoch, parts[1].end_offset), (-1, -1));
        assert_eq!(
            parts[2].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
    }
}

/// Group requests captured from real clients (with `strace -e sendmsg` on the client):
/// kcat 1.7 on Debian's librdkafka 2.0.2 (`kcat -G`) and the rdkafka crate 0.39 on
/// librdkafka 2.12.1 (the consumer group tests in `tests/tests/consumer_groups.rs`).
const GROUP_FIXTURES: &[(&str, &[u8])] = &[
    (
        "librdkafka-2.0.2-find_coordinator-v2",
        include_bytes!("fixtures/librdkafka-2.0.2-find_coordinator-v2.bin"),
    ),
    (
        "librdkafka-2.0.2-heartbeat-v3",
        include_bytes!("fixtures/librdkafka-2.0.2-heartbeat-v3.bin"),
    ),
    (
        "librdkafka-2.0.2-join_group-v5",
        include_bytes!("fixtures/librdkafka-2.0.2-join_group-v5.bin"),
    ),
    (
        "librdkafka-2.0.2-leave_group-v1",
        include_bytes!("fixtures/librdkafka-2.0.2-leave_group-v1.bin"),
    ),
    (
        "librdkafka-2.0.2-offset_commit-v7",
        include_bytes!("fixtures/librdkafka-2.0.2-offset_commit-v7.bin"),
    ),
    (
        "librdkafka-2.0.2-offset_fetch-v7",
        include_bytes!("fixtures/librdkafka-2.0.2-offset_fetch-v7.bin"),
    ),
    (
        "librdkafka-2.0.2-sync_group-v3",
        include_bytes!("fixtures/librdkafka-2.0.2-sync_group-v3.bin"),
    ),
    (
        "librdkafka-2.12.1-describe_groups-v0",
        include_bytes!("fixtures/librdkafka-2.12.1-describe_groups-v0.bin"),
    ),
    (
        "librdkafka-2.12.1-find_coordinator-v2",
        include_bytes!("fixtures/librdkafka-2.12.1-find_coordinator-v2.bin"),
    ),
    (
        "librdkafka-2.12.1-heartbeat-v3",
        include_bytes!("fixtures/librdkafka-2.12.1-heartbeat-v3.bin"),
    ),
    (
        "librdkafka-2.12.1-join_group-v5",
        include_bytes!("fixtures/librdkafka-2.12.1-join_group-v5.bin"),
    ),
    (
        "librdkafka-2.12.1-leave_group-v1",
        include_bytes!("fixtures/librdkafka-2.12.1-leave_group-v1.bin"),
    ),
    (
        "librdkafka-2.12.1-list_groups-v0",
        include_bytes!("fixtures/librdkafka-2.12.1-list_groups-v0.bin"),
    ),
    (
        "librdkafka-2.12.1-offset_commit-v8",
        include_bytes!("fixtures/librdkafka-2.12.1-offset_commit-v8.bin"),
    ),
    (
        "librdkafka-2.12.1-offset_fetch-v8",
        include_bytes!("fixtures/librdkafka-2.12.1-offset_fetch-v8.bin"),
    ),
    (
        "librdkafka-2.12.1-sync_group-v3",
        include_bytes!("fixtures/librdkafka-2.12.1-sync_group-v3.bin"),
    ),
];

#[test]
fn real_client_group_requests_decode_and_pass_the_bounds_check() {
    use crate::kafka::request;
    for (name, bytes) in GROUP_FIXTURES {
        let request =
            request::decode(Bytes::from_static(bytes)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(name.ends_with(&format!("-v{}", request.version)), "{name}");
    }
}

#[tokio::test]
async fn real_client_group_requests_are_answered() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    for (name, bytes) in GROUP_FIXTURES {
        let api = ApiKey::try_from(i16::from_be_bytes([bytes[0], bytes[1]])).unwrap();
        let version = i16::from_be_bytes([bytes[2], bytes[3]]);
        let correlation_id = i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        client.send_raw(bytes).await;
        let mut frame = client
            .read_frame()
            .await
            .unwrap_or_else(|| panic!("{name}: closed"));
        let header =
            ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, correlation_id, "{name}");
        // The fixture's member ids belong to another broker run: a join is asked for a new
        // member id, the rest are told the member is unknown; a lookup names this node.
        let code = match api {
            ApiKey::FindCoordinator => {
                FindCoordinatorResponse::decode(&mut frame, version)
                    .unwrap()
                    .error_code
            }
            ApiKey::JoinGroup => {
                JoinGroupResponse::decode(&mut frame, version)
                    .unwrap()
                    .error_code
            }
            ApiKey::SyncGroup => {
                SyncGroupResponse::decode(&mut frame, version)
                    .unwrap()
                    .error_code
            }
            ApiKey::Heartbeat => {
                HeartbeatResponse::decode(&mut frame, version)
                    .unwrap()
                    .error_code
            }
            ApiKey::LeaveGroup => {
                LeaveGroupResponse::decode(&mut frame, version)
                    .unwrap()
                    .error_code
            }
            ApiKey::OffsetCommit => {
                OffsetCommitResponse::decode(&mut frame, version)
                    .unwrap()
                    .topics[0]
                    .partitions[0]
                    .error_code
            }
            ApiKey::OffsetFetch => {
                let r = OffsetFetchResponse::decode(&mut frame, version).unwrap();
                r.error_code + r.groups.iter().map(|g| g.error_code).sum::<i16>()
            }
            ApiKey::ListGroups => {
                ListGroupsResponse::decode(&mut frame, version)
                    .unwrap()
                    .error_code
            }
            ApiKey::DescribeGroups => {
                DescribeGroupsResponse::decode(&mut frame, version)
                    .unwrap()
                    .groups[0]
                    .error_code
            }
            other => panic!("{name}: unexpected {other:?}"),
        };
        let expected = match api {
            ApiKey::JoinGroup => ResponseError::MemberIdRequired.code(),
            ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => {
                ResponseError::UnknownMemberId.code()
            }
            // Committed by a member of a group this broker has never seen.
            ApiKey::OffsetCommit => ResponseError::UnknownMemberId.code(),
            _ => 0,
        };
        assert_eq!(code, expected, "{name}");
    }
}
