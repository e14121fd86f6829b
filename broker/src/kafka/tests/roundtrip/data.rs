//! Round-trip strategies for the data path (Produce, Fetch, ListOffsets, Metadata,
//! InitProducerId) and connection setup (ApiVersions, SASL). Each takes the version to build
//! for; `f` is "this version is flexible". A field that `kafka-protocol` refuses to encode outside its versions
//! is set only where it exists (`v >= n`); ignorable fields are always set.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::values::*;

pub(super) fn produce_request(v: i16) -> Strat<ProduceRequest> {
    use produce_request::{PartitionProduceData, TopicProduceData};
    let f = flexible(ApiKey::Produce, v);
    let partition = (any::<i32>(), records(), tags(f)).prop_map(|(index, records, tags)| {
        PartitionProduceData::default()
            .with_index(index)
            .with_records(records)
            .with_unknown_tagged_fields(tags)
    });
    let topic = (topic(), list(partition.boxed()), tags(f)).prop_map(|(name, partitions, tags)| {
        TopicProduceData::default()
            .with_name(name)
            .with_partition_data(partitions)
            .with_unknown_tagged_fields(tags)
    });
    (
        option::of(text().prop_map(TransactionalId)),
        select(vec![-1i16, 0, 1]),
        any::<i32>(),
        list(topic.boxed()),
        tags(f),
    )
        .prop_map(|(transactional_id, acks, timeout_ms, topics, tags)| {
            ProduceRequest::default()
                .with_transactional_id(transactional_id)
                .with_acks(acks)
                .with_timeout_ms(timeout_ms)
                .with_topic_data(topics)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn fetch_request(v: i16) -> Strat<FetchRequest> {
    use fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    let f = flexible(ApiKey::Fetch, v);
    let partition = (
        any::<i32>(),
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        tags(f),
    )
        .prop_map(
            move |(partition, leader_epoch, offset, last_epoch, log_start, max_bytes, tags)| {
                FetchPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(leader_epoch)
                    .with_fetch_offset(offset)
                    .with_last_fetched_epoch(if v >= 12 { last_epoch } else { -1 })
                    .with_log_start_offset(log_start)
                    .with_partition_max_bytes(max_bytes)
                    .with_unknown_tagged_fields(tags)
            },
        );
    let fetch_topic =
        (topic(), list(partition.boxed()), tags(f)).prop_map(|(name, parts, tags)| {
            FetchTopic::default()
                .with_topic(name)
                .with_partitions(parts)
                .with_unknown_tagged_fields(tags)
        });
    let forgotten = (topic(), int32s(), tags(f)).prop_map(|(name, partitions, tags)| {
        ForgottenTopic::default()
            .with_topic(name)
            .with_partitions(partitions)
            .with_unknown_tagged_fields(tags)
    });
    let limits = (
        prop_oneof![Just(-1), any::<i32>()],
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
        select(vec![0i8, 1]),
        any::<i32>(),
        any::<i32>(),
    );
    (
        limits,
        list(fetch_topic.boxed()),
        list(forgotten.boxed()),
        text(),
        nullable(),
        tags(f),
    )
        .prop_map(move |(limits, topics, forgotten, rack, cluster_id, tags)| {
            let (replica, max_wait, min_bytes, max_bytes, isolation, session, epoch) = limits;
            FetchRequest::default()
                // From v15 on, a follower names itself in `replica_state` instead.
                .with_replica_id(BrokerId(if v <= 14 { replica } else { -1 }))
                .with_max_wait_ms(max_wait)
                .with_min_bytes(min_bytes)
                .with_max_bytes(max_bytes)
                .with_isolation_level(isolation)
                .with_session_id(session)
                .with_session_epoch(epoch)
                .with_topics(topics)
                .with_forgotten_topics_data(if v >= 7 { forgotten } else { Vec::new() })
                .with_rack_id(rack)
                .with_cluster_id(if v >= 12 { cluster_id } else { None })
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn list_offsets_request(v: i16) -> Strat<ListOffsetsRequest> {
    use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let f = flexible(ApiKey::ListOffsets, v);
    let partition = (
        any::<i32>(),
        any::<i32>(),
        prop_oneof![Just(-2i64), Just(-1), any::<i64>()],
        tags(f),
    )
        .prop_map(|(index, epoch, timestamp, tags)| {
            ListOffsetsPartition::default()
                .with_partition_index(index)
                .with_current_leader_epoch(epoch)
                .with_timestamp(timestamp)
                .with_unknown_tagged_fields(tags)
        });
    let list_topic = (topic(), list(partition.boxed()), tags(f)).prop_map(|(name, parts, tags)| {
        ListOffsetsTopic::default()
            .with_name(name)
            .with_partitions(parts)
            .with_unknown_tagged_fields(tags)
    });
    (
        prop_oneof![Just(-1), any::<i32>()],
        select(vec![0i8, 1]),
        list(list_topic.boxed()),
        tags(f),
    )
        .prop_map(move |(replica, isolation, topics, tags)| {
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(replica))
                .with_isolation_level(if v >= 2 { isolation } else { 0 })
                .with_topics(topics)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn metadata_request(v: i16) -> Strat<MetadataRequest> {
    let f = flexible(ApiKey::Metadata, v);
    let metadata_topic = (option::of(topic()), topic(), any::<[u8; 16]>(), tags(f)).prop_map(
        move |(name, other, id, tags)| {
            metadata_topic_with_id(id)
                // Names are nullable from v10 on, when topics can be named by id instead.
                .with_name(if v >= 10 { name } else { Some(other) })
                .with_unknown_tagged_fields(tags)
        },
    );
    let topics = list(metadata_topic.boxed());
    (
        option::of(topics.clone()),
        topics,
        any::<[bool; 3]>(),
        tags(f),
    )
        .prop_map(move |(nullable_topics, topics, flags, tags)| {
            let [auto_create, cluster_ops, topic_ops] = flags;
            MetadataRequest::default()
                // Null (all topics) from v1 on; v0 says "all" with an empty array.
                .with_topics(if v >= 1 {
                    nullable_topics
                } else {
                    Some(topics)
                })
                .with_allow_auto_topic_creation(auto_create || v < 4)
                .with_include_cluster_authorized_operations(cluster_ops && (8..=10).contains(&v))
                .with_include_topic_authorized_operations(topic_ops && v >= 8)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

/// A Metadata topic (v10 on) with a random topic id and no name. It is decoded from the id's
/// bytes by the codec, which saves a dependency on the `uuid` crate just to name its type.
pub(super) fn metadata_topic_with_id(id: [u8; 16]) -> metadata_request::MetadataRequestTopic {
    let mut raw = id.to_vec();
    raw.extend_from_slice(&[0, 0]); // null compact name, no tagged fields
    metadata_request::MetadataRequestTopic::decode(&mut Bytes::from(raw), 10).unwrap_or_default()
}

pub(super) fn init_producer_id_request(v: i16) -> Strat<InitProducerIdRequest> {
    let f = flexible(ApiKey::InitProducerId, v);
    (
        option::of(text().prop_map(TransactionalId)),
        any::<i32>(),
        prop_oneof![Just(-1i64), any::<i64>()],
        prop_oneof![Just(-1i16), any::<i16>()],
        tags(f),
    )
        .prop_map(move |(transactional_id, timeout, producer, epoch, tags)| {
            // v3 lets a producer that already has an id ask to keep it (KIP-360).
            InitProducerIdRequest::default()
                .with_transactional_id(transactional_id)
                .with_transaction_timeout_ms(timeout)
                .with_producer_id(ProducerId(if v >= 3 { producer } else { -1 }))
                .with_producer_epoch(if v >= 3 { epoch } else { -1 })
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn api_versions_request(v: i16) -> Strat<ApiVersionsRequest> {
    let f = flexible(ApiKey::ApiVersions, v);
    (text(), text(), tags(f))
        .prop_map(|(name, version, tags)| {
            ApiVersionsRequest::default()
                .with_client_software_name(name)
                .with_client_software_version(version)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}

pub(super) fn sasl_handshake_request(_v: i16) -> Strat<SaslHandshakeRequest> {
    prop_oneof![
        select(vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]).prop_map(StrBytes::from_static_str),
        text(),
    ]
    .prop_map(|mechanism| SaslHandshakeRequest::default().with_mechanism(mechanism))
    .boxed()
}

pub(super) fn sasl_authenticate_request(v: i16) -> Strat<SaslAuthenticateRequest> {
    let f = flexible(ApiKey::SaslAuthenticate, v);
    (blob(), tags(f))
        .prop_map(|(auth_bytes, tags)| {
            SaslAuthenticateRequest::default()
                .with_auth_bytes(auth_bytes)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}
