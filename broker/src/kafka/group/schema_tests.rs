//! Test requests for the group APIs, for the bounds-schema and decode tests in
//! `bounds.rs` and `request.rs`: every supported version, encoded by `kafka-protocol`.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, StrBytes};

/// Topics with partitions, as the bounds tests generate them:
/// (name, [(partition, offset or timestamp, bytes)]).
pub type Shape = Vec<(String, Vec<(i32, i64, Option<Vec<u8>>)>)>;

/// Already encoded body bytes, to put behind a request header.
pub struct Raw(pub Vec<u8>);

impl Encodable for Raw {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, _version: i16) -> anyhow::Result<()> {
        buf.put_slice(&self.0);
        Ok(())
    }

    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        Ok(self.0.len())
    }
}

/// A whole request frame with a default body of a group API, built by the caller's `frame`.
pub fn default_frame(
    key: ApiKey,
    version: i16,
    frame: impl Fn(ApiKey, i16, &Raw) -> Bytes,
) -> Option<Bytes> {
    let body = encode(key, version, &Vec::new())?;
    Some(frame(key, version, &Raw(body)))
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// `key` v`version` filled from `shape`, encoded; `None` if `key` is not a group API.
pub fn encode(key: ApiKey, version: i16, shape: &Shape) -> Option<Vec<u8>> {
    let mut buf = bytes::BytesMut::new();
    let names = || shape.iter().map(|(t, _)| s(t));
    let first = shape.first().map(|(t, _)| t.as_str()).unwrap_or("g");
    let flex = |since: i16| version >= since;
    let result = match key {
        ApiKey::FindCoordinator => {
            let mut r = FindCoordinatorRequest::default();
            if version <= 3 {
                r.key = s(first);
            } else {
                r.coordinator_keys = names().collect();
            }
            if version >= 1 {
                r.key_type = 1;
            }
            r.encode(&mut buf, version)
        }
        ApiKey::JoinGroup => {
            let mut r = JoinGroupRequest::default();
            r.group_id = GroupId(s(first));
            r.session_timeout_ms = 10_000;
            r.member_id = s("member-1");
            if version >= 5 {
                r.group_instance_id = Some(s("instance"));
            }
            r.protocol_type = s("consumer");
            r.protocols = shape
                .iter()
                .map(|(t, ps)| {
                    let mut p = join_group_request::JoinGroupRequestProtocol::default();
                    p.name = s(t);
                    p.metadata = ps
                        .first()
                        .and_then(|p| p.2.clone())
                        .map(Bytes::from)
                        .unwrap_or_default();
                    p
                })
                .collect();
            if flex(8) {
                r.reason = Some(s("because"));
            }
            r.encode(&mut buf, version)
        }
        ApiKey::SyncGroup => {
            let mut r = SyncGroupRequest::default();
            r.group_id = GroupId(s(first));
            r.member_id = s("m");
            if flex(3) {
                r.group_instance_id = Some(s("i"));
            }
            if flex(5) {
                r.protocol_type = Some(s("consumer"));
                r.protocol_name = Some(s("range"));
            }
            r.assignments = shape
                .iter()
                .map(|(t, ps)| {
                    let mut a = sync_group_request::SyncGroupRequestAssignment::default();
                    a.member_id = s(t);
                    a.assignment = Bytes::from(vec![0u8; ps.len()]);
                    a
                })
                .collect();
            r.encode(&mut buf, version)
        }
        ApiKey::Heartbeat => {
            let mut r = HeartbeatRequest::default();
            r.group_id = GroupId(s(first));
            r.member_id = s("m");
            if flex(3) {
                r.group_instance_id = Some(s("i"));
            }
            r.encode(&mut buf, version)
        }
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupRequest::default();
            r.group_id = GroupId(s(first));
            if version <= 2 {
                r.member_id = s("m");
            } else {
                r.members = names()
                    .map(|n| {
                        let mut m = leave_group_request::MemberIdentity::default();
                        m.member_id = n.clone();
                        m.group_instance_id = Some(n);
                        if version >= 5 {
                            m.reason = Some(s("bye"));
                        }
                        m
                    })
                    .collect();
            }
            r.encode(&mut buf, version)
        }
        ApiKey::OffsetCommit => {
            let mut r = OffsetCommitRequest::default();
            r.group_id = GroupId(s(first));
            r.member_id = s("m");
            if flex(7) {
                r.group_instance_id = Some(s("i"));
            }
            r.topics = shape
                .iter()
                .map(|(t, ps)| {
                    let mut topic = offset_commit_request::OffsetCommitRequestTopic::default();
                    topic.name = TopicName(s(t));
                    topic.partitions = ps
                        .iter()
                        .map(|(p, o, _)| {
                            let mut x =
                                offset_commit_request::OffsetCommitRequestPartition::default();
                            x.partition_index = *p;
                            x.committed_offset = *o;
                            x.committed_metadata = Some(s("meta"));
                            x
                        })
                        .collect();
                    topic
                })
                .collect();
            r.encode(&mut buf, version)
        }
        ApiKey::OffsetFetch => {
            let mut r = OffsetFetchRequest::default();
            let topics = || {
                shape
                    .iter()
                    .map(|(t, ps)| (TopicName(s(t)), ps.iter().map(|p| p.0).collect::<Vec<_>>()))
            };
            if version <= 7 {
                r.group_id = GroupId(s(first));
                r.topics = Some(
                    topics()
                        .map(|(name, partition_indexes)| {
                            let mut x = offset_fetch_request::OffsetFetchRequestTopic::default();
                            x.name = name;
                            x.partition_indexes = partition_indexes;
                            x
                        })
                        .collect(),
                );
            } else {
                let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
                g.group_id = GroupId(s(first));
                g.topics = Some(
                    topics()
                        .map(|(name, partition_indexes)| {
                            let mut x = offset_fetch_request::OffsetFetchRequestTopics::default();
                            x.name = name;
                            x.partition_indexes = partition_indexes;
                            x
                        })
                        .collect(),
                );
                let mut all = offset_fetch_request::OffsetFetchRequestGroup::default();
                all.group_id = GroupId(s("everything"));
                r.groups = vec![g, all];
            }
            r.encode(&mut buf, version)
        }
        ApiKey::ListGroups => {
            let mut r = ListGroupsRequest::default();
            if version >= 4 {
                r.states_filter = names().collect();
            }
            r.encode(&mut buf, version)
        }
        ApiKey::DescribeGroups => {
            let mut r = DescribeGroupsRequest::default();
            r.groups = names().map(GroupId).collect();
            if version >= 3 {
                r.include_authorized_operations = true;
            }
            r.encode(&mut buf, version)
        }
        ApiKey::DeleteGroups => {
            let mut r = DeleteGroupsRequest::default();
            r.groups_names = names().map(GroupId).collect();
            r.encode(&mut buf, version)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let mut r = OffsetForLeaderEpochRequest::default();
            r.topics = shape
                .iter()
                .map(|(t, ps)| {
                    let mut topic =
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
                    topic.topic = TopicName(s(t));
                    topic.partitions = ps
                        .iter()
                        .map(|(p, o, _)| {
                            let mut x =
                                offset_for_leader_epoch_request::OffsetForLeaderPartition::default(
                                );
                            x.partition = *p;
                            x.leader_epoch = *o as i32;
                            x
                        })
                        .collect();
                    topic
                })
                .collect();
            r.encode(&mut buf, version)
        }
        _ => return None,
    };
    result.ok()?;
    Some(buf.to_vec())
}
