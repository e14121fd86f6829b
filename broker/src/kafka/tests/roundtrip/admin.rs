//! Round-trip strategies for the admin APIs. Each takes the version to build for; `f` is "this
//! version is flexible". A field that `kafka-protocol` refuses to encode outside its versions
//! is set only where it exists (`v >= n`); ignorable fields are always set.

use kafka_protocol::messages::*;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::values::*;

pub(super) fn create_topics_request(v: i16) -> Strat<CreateTopicsRequest> {
    use create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig};
    let f = flexible(ApiKey::CreateTopics, v);
    let assignment = (any::<i32>(), broker_ids(), tags(f)).prop_map(|(index, brokers, tags)| {
        CreatableReplicaAssignment::default()
            .with_partition_index(index)
            .with_broker_ids(brokers)
            .with_unknown_tagged_fields(tags)
    });
    let config = (text(), nullable(), tags(f)).prop_map(|(name, value, tags)| {
        CreatableTopicConfig::default()
            .with_name(name)
            .with_value(value)
            .with_unknown_tagged_fields(tags)
    });
    let creatable = (
        topic(),
        prop_oneof![Just(-1), any::<i32>()],
        prop_oneof![Just(-1i16), any::<i16>()],
        list(assignment.boxed()),
        list(config.boxed()),
        tags(f),
    )
        .prop_map(
            |(name, partitions, replication, assignments, configs, tags)| {
                CreatableTopic::default()
                    .with_name(name)
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication)
                    .with_assignments(assignments)
                    .with_configs(configs)
                    .with_unknown_tagged_fields(tags)
            },
        );
    (
        list(creatable.boxed()),
        any::<i32>(),
        any::<bool>(),
        tags(f),
    )
        .prop_map(|(topics, timeout, validate_only, tags)| {
            CreateTopicsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(timeout)
                .with_validate_only(validate_only)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn delete_topics_request(v: i16) -> Strat<DeleteTopicsRequest> {
    let f = flexible(ApiKey::DeleteTopics, v);
    (list(topic()), any::<i32>(), tags(f))
        .prop_map(|(names, timeout, tags)| {
            DeleteTopicsRequest::default()
                .with_topic_names(names)
                .with_timeout_ms(timeout)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn delete_records_request(v: i16) -> Strat<DeleteRecordsRequest> {
    use delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    let f = flexible(ApiKey::DeleteRecords, v);
    let partition = (any::<i32>(), any::<i64>(), tags(f)).prop_map(|(index, offset, tags)| {
        DeleteRecordsPartition::default()
            .with_partition_index(index)
            .with_offset(offset)
            .with_unknown_tagged_fields(tags)
    });
    let records_topic =
        (topic(), list(partition.boxed()), tags(f)).prop_map(|(name, parts, tags)| {
            DeleteRecordsTopic::default()
                .with_name(name)
                .with_partitions(parts)
                .with_unknown_tagged_fields(tags)
        });
    (list(records_topic.boxed()), any::<i32>(), tags(f))
        .prop_map(|(topics, timeout, tags)| {
            DeleteRecordsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(timeout)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn describe_configs_request(v: i16) -> Strat<DescribeConfigsRequest> {
    use describe_configs_request::DescribeConfigsResource;
    let f = flexible(ApiKey::DescribeConfigs, v);
    let resource = (
        select(vec![2i8, 4, 8]),
        text(),
        option::of(list(text())),
        tags(f),
    )
        .prop_map(|(resource_type, name, keys, tags)| {
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(name)
                .with_configuration_keys(keys)
                .with_unknown_tagged_fields(tags)
        });
    (list(resource.boxed()), any::<[bool; 2]>(), tags(f))
        .prop_map(move |(resources, [synonyms, documentation], tags)| {
            DescribeConfigsRequest::default()
                .with_resources(resources)
                .with_include_synonyms(synonyms)
                .with_include_documentation(documentation && v >= 3)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn alter_configs_request(v: i16) -> Strat<AlterConfigsRequest> {
    use alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let f = flexible(ApiKey::AlterConfigs, v);
    let config = (text(), nullable(), tags(f)).prop_map(|(name, value, tags)| {
        AlterableConfig::default()
            .with_name(name)
            .with_value(value)
            .with_unknown_tagged_fields(tags)
    });
    let resource = (
        select(vec![2i8, 4, 8]),
        text(),
        list(config.boxed()),
        tags(f),
    )
        .prop_map(|(resource_type, name, configs, tags)| {
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(name)
                .with_configs(configs)
                .with_unknown_tagged_fields(tags)
        });
    (list(resource.boxed()), any::<bool>(), tags(f))
        .prop_map(|(resources, validate_only, tags)| {
            AlterConfigsRequest::default()
                .with_resources(resources)
                .with_validate_only(validate_only)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn create_partitions_request(v: i16) -> Strat<CreatePartitionsRequest> {
    use create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
    let f = flexible(ApiKey::CreatePartitions, v);
    let assignment = (broker_ids(), tags(f)).prop_map(|(brokers, tags)| {
        CreatePartitionsAssignment::default()
            .with_broker_ids(brokers)
            .with_unknown_tagged_fields(tags)
    });
    let partitions_topic = (
        topic(),
        any::<i32>(),
        option::of(list(assignment.boxed())),
        tags(f),
    )
        .prop_map(|(name, count, assignments, tags)| {
            CreatePartitionsTopic::default()
                .with_name(name)
                .with_count(count)
                .with_assignments(assignments)
                .with_unknown_tagged_fields(tags)
        });
    (
        list(partitions_topic.boxed()),
        any::<i32>(),
        any::<bool>(),
        tags(f),
    )
        .prop_map(|(topics, timeout, validate_only, tags)| {
            CreatePartitionsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(timeout)
                .with_validate_only(validate_only)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn incremental_alter_configs_request(v: i16) -> Strat<IncrementalAlterConfigsRequest> {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let f = flexible(ApiKey::IncrementalAlterConfigs, v);
    let config = (text(), select(vec![0i8, 1, 2, 3]), nullable(), tags(f)).prop_map(
        |(name, operation, value, tags)| {
            AlterableConfig::default()
                .with_name(name)
                .with_config_operation(operation)
                .with_value(value)
                .with_unknown_tagged_fields(tags)
        },
    );
    let resource = (
        select(vec![2i8, 4, 8]),
        text(),
        list(config.boxed()),
        tags(f),
    )
        .prop_map(|(resource_type, name, configs, tags)| {
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(name)
                .with_configs(configs)
                .with_unknown_tagged_fields(tags)
        });
    (list(resource.boxed()), any::<bool>(), tags(f))
        .prop_map(|(resources, validate_only, tags)| {
            IncrementalAlterConfigsRequest::default()
                .with_resources(resources)
                .with_validate_only(validate_only)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn describe_cluster_request(v: i16) -> Strat<DescribeClusterRequest> {
    let f = flexible(ApiKey::DescribeCluster, v);
    (any::<bool>(), select(vec![1i8, 2]), any::<bool>(), tags(f))
        .prop_map(move |(operations, endpoint_type, fenced, tags)| {
            DescribeClusterRequest::default()
                .with_include_cluster_authorized_operations(operations)
                .with_endpoint_type(if v >= 1 { endpoint_type } else { 1 })
                .with_include_fenced_brokers(fenced && v >= 2)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}
