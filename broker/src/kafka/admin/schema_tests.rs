//! Test requests for the admin APIs, for the bounds-schema and decode tests in `bounds.rs`
//! and `request.rs`: every supported version, filled from the bounds tests' random shape and
//! encoded by `kafka-protocol`.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::kafka::group::schema_tests::Shape;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A string made from a partition's bytes, `None` when it has none (nullable fields).
fn text(bytes: &Option<Vec<u8>>) -> Option<StrBytes> {
    bytes.as_ref().map(|b| {
        s(&b.iter()
            .map(|c| char::from(b'a' + c % 26))
            .collect::<String>())
    })
}

/// `key` v`version` filled from `shape`, encoded; `None` if `key` is not an admin API.
pub fn encode(key: ApiKey, version: i16, shape: &Shape) -> Option<Vec<u8>> {
    let mut buf = bytes::BytesMut::new();
    let topic = |t: &String| TopicName(s(t));
    let result = match key {
        ApiKey::CreateTopics => {
            let mut r = CreateTopicsRequest::default();
            r.topics = shape
                .iter()
                .map(|(t, ps)| {
                    let mut c = create_topics_request::CreatableTopic::default();
                    c.name = topic(t);
                    c.num_partitions = ps.len() as i32;
                    c.replication_factor = 1;
                    c.assignments = ps
                        .iter()
                        .map(|(p, o, _)| {
                            let mut a =
                                create_topics_request::CreatableReplicaAssignment::default();
                            a.partition_index = *p;
                            a.broker_ids = vec![BrokerId(*o as i32)];
                            a
                        })
                        .collect();
                    c.configs = ps
                        .iter()
                        .map(|(_, o, b)| {
                            let mut cfg = create_topics_request::CreatableTopicConfig::default();
                            cfg.name = s(&o.to_string());
                            cfg.value = text(b);
                            cfg
                        })
                        .collect();
                    c
                })
                .collect();
            r.timeout_ms = 1000;
            r.validate_only = shape.len() % 2 == 1;
            r.encode(&mut buf, version)
        }
        ApiKey::DeleteTopics => {
            let mut r = DeleteTopicsRequest::default();
            r.topic_names = shape.iter().map(|(t, _)| topic(t)).collect();
            r.timeout_ms = 1000;
            r.encode(&mut buf, version)
        }
        ApiKey::DeleteRecords => {
            let mut r = DeleteRecordsRequest::default();
            r.topics = shape
                .iter()
                .map(|(t, ps)| {
                    let mut d = delete_records_request::DeleteRecordsTopic::default();
                    d.name = topic(t);
                    d.partitions = ps
                        .iter()
                        .map(|(p, o, _)| {
                            let mut x = delete_records_request::DeleteRecordsPartition::default();
                            x.partition_index = *p;
                            x.offset = *o;
                            x
                        })
                        .collect();
                    d
                })
                .collect();
            r.timeout_ms = 1000;
            r.encode(&mut buf, version)
        }
        ApiKey::DescribeConfigs => {
            let mut r = DescribeConfigsRequest::default();
            r.resources = shape
                .iter()
                .map(|(t, ps)| {
                    let mut d = describe_configs_request::DescribeConfigsResource::default();
                    d.resource_type = 2;
                    d.resource_name = s(t);
                    d.configuration_keys = if ps.is_empty() {
                        None
                    } else {
                        Some(ps.iter().map(|(p, _, _)| s(&p.to_string())).collect())
                    };
                    d
                })
                .collect();
            r.include_synonyms = true;
            r.include_documentation = version >= 3;
            r.encode(&mut buf, version)
        }
        ApiKey::AlterConfigs => {
            let mut r = AlterConfigsRequest::default();
            r.resources = shape
                .iter()
                .map(|(t, ps)| {
                    let mut d = alter_configs_request::AlterConfigsResource::default();
                    d.resource_type = 2;
                    d.resource_name = s(t);
                    d.configs = ps
                        .iter()
                        .map(|(p, _, b)| {
                            let mut c = alter_configs_request::AlterableConfig::default();
                            c.name = s(&p.to_string());
                            c.value = text(b);
                            c
                        })
                        .collect();
                    d
                })
                .collect();
            r.encode(&mut buf, version)
        }
        ApiKey::CreatePartitions => {
            let mut r = CreatePartitionsRequest::default();
            r.topics = shape
                .iter()
                .map(|(t, ps)| {
                    let mut c = create_partitions_request::CreatePartitionsTopic::default();
                    c.name = topic(t);
                    c.count = ps.len() as i32;
                    c.assignments = if ps.is_empty() {
                        None
                    } else {
                        Some(
                            ps.iter()
                                .map(|(p, _, _)| {
                                    let mut a =
                                        create_partitions_request::CreatePartitionsAssignment::default();
                                    a.broker_ids = vec![BrokerId(*p)];
                                    a
                                })
                                .collect(),
                        )
                    };
                    c
                })
                .collect();
            r.timeout_ms = 1000;
            r.encode(&mut buf, version)
        }
        ApiKey::IncrementalAlterConfigs => {
            let mut r = IncrementalAlterConfigsRequest::default();
            r.resources = shape
                .iter()
                .map(|(t, ps)| {
                    let mut d = incremental_alter_configs_request::AlterConfigsResource::default();
                    d.resource_type = 2;
                    d.resource_name = s(t);
                    d.configs = ps
                        .iter()
                        .map(|(p, _, b)| {
                            let mut c =
                                incremental_alter_configs_request::AlterableConfig::default();
                            c.name = s(&p.to_string());
                            c.config_operation = (*p & 1) as i8;
                            c.value = text(b);
                            c
                        })
                        .collect();
                    d
                })
                .collect();
            r.encode(&mut buf, version)
        }
        ApiKey::DescribeCluster => {
            let mut r = DescribeClusterRequest::default();
            r.include_cluster_authorized_operations = !shape.is_empty();
            if version >= 1 {
                r.endpoint_type = 1;
            }
            r.encode(&mut buf, version)
        }
        _ => return None,
    };
    result.ok()?;
    Some(buf.to_vec())
}
