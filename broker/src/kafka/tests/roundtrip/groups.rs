//! Round-trip strategies for the consumer-group APIs. Each takes the version to build for; `f` is "this
//! version is flexible". A field that `kafka-protocol` refuses to encode outside its versions
//! is set only where it exists (`v >= n`); ignorable fields are always set.

use kafka_protocol::messages::*;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::values::*;

pub(super) fn offset_commit_request(v: i16) -> Strat<OffsetCommitRequest> {
    use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    let f = flexible(ApiKey::OffsetCommit, v);
    let partition = (
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        nullable(),
        tags(f),
    )
        .prop_map(|(index, offset, epoch, metadata, tags)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(index)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(epoch)
                .with_committed_metadata(metadata)
                .with_unknown_tagged_fields(tags)
        });
    let commit_topic =
        (topic(), list(partition.boxed()), tags(f)).prop_map(|(name, parts, tags)| {
            OffsetCommitRequestTopic::default()
                .with_name(name)
                .with_partitions(parts)
                .with_unknown_tagged_fields(tags)
        });
    (
        group(),
        any::<i32>(),
        text(),
        nullable(),
        any::<i64>(),
        list(commit_topic.boxed()),
        tags(f),
    )
        .prop_map(
            move |(group_id, generation, member, instance, retention, topics, tags)| {
                OffsetCommitRequest::default()
                    .with_group_id(group_id)
                    .with_generation_id_or_member_epoch(generation)
                    .with_member_id(member)
                    .with_group_instance_id(if v >= 7 { instance } else { None })
                    .with_retention_time_ms(retention)
                    .with_topics(topics)
                    .with_unknown_tagged_fields(tags)
            },
        )
        .boxed()
}

pub(super) fn offset_fetch_request(v: i16) -> Strat<OffsetFetchRequest> {
    use offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    let f = flexible(ApiKey::OffsetFetch, v);
    // Up to v7: one group, its topics inline.
    let old_topic = (topic(), int32s(), tags(f)).prop_map(|(name, partitions, tags)| {
        OffsetFetchRequestTopic::default()
            .with_name(name)
            .with_partition_indexes(partitions)
            .with_unknown_tagged_fields(tags)
    });
    // From v8: a batch of groups.
    let new_topic = (topic(), int32s(), tags(f)).prop_map(|(name, partitions, tags)| {
        OffsetFetchRequestTopics::default()
            .with_name(name)
            .with_partition_indexes(partitions)
            .with_unknown_tagged_fields(tags)
    });
    let fetch_group = (group(), option::of(list(new_topic.boxed())), tags(f)).prop_map(
        |(group_id, topics, tags)| {
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id)
                .with_topics(topics)
                .with_unknown_tagged_fields(tags)
        },
    );
    let old_topics = list(old_topic.boxed());
    (
        group(),
        option::of(old_topics.clone()),
        old_topics,
        list(fetch_group.boxed()),
        any::<bool>(),
        tags(f),
    )
        .prop_map(
            move |(group_id, nullable_topics, topics, groups, stable, tags)| {
                let request = OffsetFetchRequest::default()
                    .with_require_stable(stable && v >= 7)
                    .with_unknown_tagged_fields(tags);
                if v >= 8 {
                    request.with_groups(groups)
                } else {
                    request
                        .with_group_id(group_id)
                        // Null (all topics) from v2 on.
                        .with_topics(if v >= 2 {
                            nullable_topics
                        } else {
                            Some(topics)
                        })
                }
            },
        )
        .boxed()
}

pub(super) fn find_coordinator_request(v: i16) -> Strat<FindCoordinatorRequest> {
    let f = flexible(ApiKey::FindCoordinator, v);
    (text(), select(vec![0i8, 1]), list(text()), tags(f))
        .prop_map(move |(key, key_type, keys, tags)| {
            let request = FindCoordinatorRequest::default()
                .with_key_type(if v >= 1 { key_type } else { 0 })
                .with_unknown_tagged_fields(tags);
            // From v4 on, a batch of keys replaces the single key.
            if v >= 4 {
                request.with_coordinator_keys(keys)
            } else {
                request.with_key(key)
            }
        })
        .boxed()
}

pub(super) fn join_group_request(v: i16) -> Strat<JoinGroupRequest> {
    use join_group_request::JoinGroupRequestProtocol;
    let f = flexible(ApiKey::JoinGroup, v);
    let protocol = (text(), blob(), tags(f)).prop_map(|(name, metadata, tags)| {
        JoinGroupRequestProtocol::default()
            .with_name(name)
            .with_metadata(metadata)
            .with_unknown_tagged_fields(tags)
    });
    (
        (group(), any::<i32>(), any::<i32>(), text(), nullable()),
        text(),
        list(protocol.boxed()),
        nullable(),
        tags(f),
    )
        .prop_map(move |(ids, protocol_type, protocols, reason, tags)| {
            let (group_id, session_timeout, rebalance_timeout, member, instance) = ids;
            JoinGroupRequest::default()
                .with_group_id(group_id)
                .with_session_timeout_ms(session_timeout)
                .with_rebalance_timeout_ms(rebalance_timeout)
                .with_member_id(member)
                .with_group_instance_id(if v >= 5 { instance } else { None })
                .with_protocol_type(protocol_type)
                .with_protocols(protocols)
                .with_reason(reason)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn heartbeat_request(v: i16) -> Strat<HeartbeatRequest> {
    let f = flexible(ApiKey::Heartbeat, v);
    (group(), any::<i32>(), text(), nullable(), tags(f))
        .prop_map(move |(group_id, generation, member, instance, tags)| {
            HeartbeatRequest::default()
                .with_group_id(group_id)
                .with_generation_id(generation)
                .with_member_id(member)
                .with_group_instance_id(if v >= 3 { instance } else { None })
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn leave_group_request(v: i16) -> Strat<LeaveGroupRequest> {
    use leave_group_request::MemberIdentity;
    let f = flexible(ApiKey::LeaveGroup, v);
    let member = (text(), nullable(), nullable(), tags(f)).prop_map(
        |(member_id, instance, reason, tags)| {
            MemberIdentity::default()
                .with_member_id(member_id)
                .with_group_instance_id(instance)
                .with_reason(reason)
                .with_unknown_tagged_fields(tags)
        },
    );
    (group(), text(), list(member.boxed()), tags(f))
        .prop_map(move |(group_id, member_id, members, tags)| {
            let request = LeaveGroupRequest::default()
                .with_group_id(group_id)
                .with_unknown_tagged_fields(tags);
            // From v3 on, a batch of members replaces the single member id.
            if v >= 3 {
                request.with_members(members)
            } else {
                request.with_member_id(member_id)
            }
        })
        .boxed()
}

pub(super) fn sync_group_request(v: i16) -> Strat<SyncGroupRequest> {
    use sync_group_request::SyncGroupRequestAssignment;
    let f = flexible(ApiKey::SyncGroup, v);
    let assignment = (text(), blob(), tags(f)).prop_map(|(member, assignment, tags)| {
        SyncGroupRequestAssignment::default()
            .with_member_id(member)
            .with_assignment(assignment)
            .with_unknown_tagged_fields(tags)
    });
    (
        (group(), any::<i32>(), text(), nullable()),
        nullable(),
        nullable(),
        list(assignment.boxed()),
        tags(f),
    )
        .prop_map(
            move |(ids, protocol_type, protocol_name, assignments, tags)| {
                let (group_id, generation, member, instance) = ids;
                SyncGroupRequest::default()
                    .with_group_id(group_id)
                    .with_generation_id(generation)
                    .with_member_id(member)
                    .with_group_instance_id(if v >= 3 { instance } else { None })
                    .with_protocol_type(protocol_type)
                    .with_protocol_name(protocol_name)
                    .with_assignments(assignments)
                    .with_unknown_tagged_fields(tags)
            },
        )
        .boxed()
}

pub(super) fn describe_groups_request(v: i16) -> Strat<DescribeGroupsRequest> {
    let f = flexible(ApiKey::DescribeGroups, v);
    (list(group()), any::<bool>(), tags(f))
        .prop_map(move |(groups, operations, tags)| {
            DescribeGroupsRequest::default()
                .with_groups(groups)
                .with_include_authorized_operations(operations && v >= 3)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn list_groups_request(v: i16) -> Strat<ListGroupsRequest> {
    let f = flexible(ApiKey::ListGroups, v);
    (list(text()), tags(f))
        .prop_map(move |(states, tags)| {
            ListGroupsRequest::default()
                .with_states_filter(if v >= 4 { states } else { Vec::new() })
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn offset_for_leader_epoch_request(v: i16) -> Strat<OffsetForLeaderEpochRequest> {
    use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    let f = flexible(ApiKey::OffsetForLeaderEpoch, v);
    let partition = (any::<i32>(), any::<i32>(), any::<i32>(), tags(f)).prop_map(
        |(partition, current, epoch, tags)| {
            OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)
                .with_unknown_tagged_fields(tags)
        },
    );
    let epoch_topic =
        (topic(), list(partition.boxed()), tags(f)).prop_map(|(name, parts, tags)| {
            OffsetForLeaderTopic::default()
                .with_topic(name)
                .with_partitions(parts)
                .with_unknown_tagged_fields(tags)
        });
    (
        prop_oneof![Just(-1), any::<i32>()],
        list(epoch_topic.boxed()),
        tags(f),
    )
        .prop_map(|(replica, topics, tags)| {
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(replica))
                .with_topics(topics)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn delete_groups_request(v: i16) -> Strat<DeleteGroupsRequest> {
    let f = flexible(ApiKey::DeleteGroups, v);
    (list(group()), tags(f))
        .prop_map(|(groups, tags)| {
            DeleteGroupsRequest::default()
                .with_groups_names(groups)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}
