//! From a frame to a typed request: header, version checks, bounds check, body.
//!
//! The order matters. The API key, version and correlation id are read by hand first (they sit
//! at fixed offsets in every header version), so an unsupported API or version is recognised
//! before anything is decoded and an ApiVersions request of an unknown version can still be
//! answered. Then the header is decoded with `kafka-protocol`, the body is walked by
//! [`super::bounds::check`] (see there why), and only then decoded by `kafka-protocol`, from a
//! `Bytes` so that produce records stay zero-copy slices of the frame.

use bytes::Bytes;
use kafka_protocol::messages::InitProducerIdRequest;
use kafka_protocol::messages::{
    AlterConfigsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DeleteGroupsRequest, DescribeGroupsRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, RequestHeader,
    SyncGroupRequest,
};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::Decodable;

use super::bounds::{self, BoundsError, Schema};
use super::init_producer_id;
use super::{admin, api_versions, fetch, group, list_offsets, metadata, produce, sasl};

/// One API Headwater implements.
#[derive(Debug)]
pub struct Api {
    pub key: ApiKey,
    /// Lowest version implemented.
    pub min: i16,
    /// Highest version implemented; the reason each range ends where it does is in the
    /// handler's module docs.
    pub max: i16,
    /// The request body's layout, for the pre-decode bounds check.
    pub schema: &'static Schema,
}

/// Every API Headwater implements, in ApiVersions order.
pub const APIS: &[Api] = &[
    Api {
        key: ApiKey::Produce,
        min: 3,
        max: 9,
        schema: &produce::SCHEMA,
    },
    Api {
        key: ApiKey::Fetch,
        min: 4,
        max: 12,
        schema: &fetch::SCHEMA,
    },
    Api {
        key: ApiKey::ListOffsets,
        min: 1,
        max: 6,
        schema: &list_offsets::SCHEMA,
    },
    Api {
        key: ApiKey::Metadata,
        min: 0,
        max: 12,
        schema: &metadata::SCHEMA,
    },
    Api {
        key: ApiKey::OffsetCommit,
        min: 2,
        max: 8,
        schema: &group::offset_commit::SCHEMA,
    },
    Api {
        key: ApiKey::OffsetFetch,
        min: 1,
        max: 8,
        schema: &group::offset_fetch::SCHEMA,
    },
    Api {
        key: ApiKey::FindCoordinator,
        min: 0,
        max: 4,
        schema: &group::find_coordinator::SCHEMA,
    },
    Api {
        key: ApiKey::JoinGroup,
        min: 0,
        max: 9,
        schema: &group::join_group::SCHEMA,
    },
    Api {
        key: ApiKey::Heartbeat,
        min: 0,
        max: 4,
        schema: &group::heartbeat::SCHEMA,
    },
    Api {
        key: ApiKey::LeaveGroup,
        min: 0,
        max: 5,
        schema: &group::leave_group::SCHEMA,
    },
    Api {
        key: ApiKey::SyncGroup,
        min: 0,
        max: 5,
        schema: &group::sync_group::SCHEMA,
    },
    Api {
        key: ApiKey::DescribeGroups,
        min: 0,
        max: 5,
        schema: &group::describe_groups::SCHEMA,
    },
    Api {
        key: ApiKey::ListGroups,
        min: 0,
        max: 4,
        schema: &group::list_groups::SCHEMA,
    },
    Api {
        key: ApiKey::SaslHandshake,
        min: 0,
        max: 1,
        schema: &sasl::HANDSHAKE_SCHEMA,
    },
    Api {
        key: ApiKey::ApiVersions,
        min: 0,
        max: 4,
        schema: &api_versions::SCHEMA,
    },
    Api {
        key: ApiKey::OffsetForLeaderEpoch,
        min: 2,
        max: 4,
        schema: &group::offset_for_leader_epoch::SCHEMA,
    },
    Api {
        key: ApiKey::DeleteGroups,
        min: 0,
        max: 2,
        schema: &group::delete_groups::SCHEMA,
    },
    Api {
        key: ApiKey::CreateTopics,
        min: 2,
        max: 5,
        schema: &admin::create_topics::SCHEMA,
    },
    Api {
        key: ApiKey::DeleteTopics,
        min: 1,
        max: 5,
        schema: &admin::delete_topics::SCHEMA,
    },
    Api {
        key: ApiKey::DeleteRecords,
        min: 0,
        max: 2,
        schema: &admin::delete_records::SCHEMA,
    },
    Api {
        key: ApiKey::InitProducerId,
        min: 0,
        max: 5,
        schema: &init_producer_id::SCHEMA,
    },
    Api {
        key: ApiKey::DescribeConfigs,
        min: 1,
        max: 4,
        schema: &admin::describe_configs::SCHEMA,
    },
    Api {
        key: ApiKey::AlterConfigs,
        min: 0,
        max: 2,
        schema: &admin::alter_configs::SCHEMA,
    },
    Api {
        key: ApiKey::CreatePartitions,
        min: 0,
        max: 3,
        schema: &admin::create_partitions::SCHEMA,
    },
    Api {
        key: ApiKey::IncrementalAlterConfigs,
        min: 0,
        max: 1,
        schema: &admin::incremental_alter_configs::SCHEMA,
    },
    Api {
        key: ApiKey::DescribeCluster,
        min: 0,
        max: 2,
        schema: &admin::describe_cluster::SCHEMA,
    },
    Api {
        key: ApiKey::SaslAuthenticate,
        min: 0,
        max: 2,
        schema: &sasl::AUTHENTICATE_SCHEMA,
    },
];

pub fn api(key: ApiKey) -> Option<&'static Api> {
    APIS.iter().find(|a| a.key == key)
}

/// A decoded request body.
#[derive(Debug)]
pub enum Body {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    Metadata(MetadataRequest),
    ApiVersions(ApiVersionsRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    DeleteRecords(DeleteRecordsRequest),
    DescribeConfigs(DescribeConfigsRequest),
    AlterConfigs(AlterConfigsRequest),
    CreatePartitions(CreatePartitionsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    DescribeCluster(DescribeClusterRequest),
    InitProducerId(InitProducerIdRequest),
    SaslHandshake(SaslHandshakeRequest),
    SaslAuthenticate(SaslAuthenticateRequest),
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Body,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("frame of {0} bytes is too short for a request header")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{api:?} (key {}) is not implemented by Headwater", *api as i16)]
    UnsupportedApi { api: ApiKey, correlation_id: i32 },
    #[error("{api:?} v{version} is not supported (Headwater implements v{min} to v{max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
        correlation_id: i32,
    },
    #[error("malformed {api:?} v{version} request header: {reason}")]
    Header {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("{api:?} v{version} request refused before decoding: {source}")]
    Bounds {
        api: ApiKey,
        version: i16,
        source: BoundsError,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Body {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Decodes one request frame (without its length prefix).
pub fn decode(frame: Bytes) -> Result<Request, RequestError> {
    let Some(fixed) = frame.first_chunk::<8>() else {
        return Err(RequestError::Short(frame.len()));
    };
    let key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let api_key = ApiKey::try_from(key).map_err(|_| RequestError::UnknownApi(key))?;
    let Some(api) = api(api_key) else {
        return Err(RequestError::UnsupportedApi {
            api: api_key,
            correlation_id,
        });
    };
    if !(api.min..=api.max).contains(&version) {
        return Err(RequestError::UnsupportedVersion {
            api: api_key,
            version,
            min: api.min,
            max: api.max,
            correlation_id,
        });
    }
    let mut buf = frame;
    let header =
        RequestHeader::decode(&mut buf, api_key.request_header_version(version)).map_err(|e| {
            RequestError::Header {
                api: api_key,
                version,
                reason: format!("{e:#}"),
            }
        })?;
    bounds::check(api.schema, version, &buf).map_err(|source| RequestError::Bounds {
        api: api_key,
        version,
        source,
    })?;
    let body = decode_body(api_key, version, &mut buf).map_err(|e| RequestError::Body {
        api: api_key,
        version,
        reason: format!("{e:#}"),
    })?;
    Ok(Request {
        api: api_key,
        version,
        header,
        body,
    })
}

fn decode_body(api: ApiKey, version: i16, buf: &mut Bytes) -> anyhow::Result<Body> {
    Ok(match api {
        ApiKey::Produce => Body::Produce(ProduceRequest::decode(buf, version)?),
        ApiKey::Fetch => Body::Fetch(FetchRequest::decode(buf, version)?),
        ApiKey::ListOffsets => Body::ListOffsets(ListOffsetsRequest::decode(buf, version)?),
        ApiKey::Metadata => Body::Metadata(MetadataRequest::decode(buf, version)?),
        ApiKey::ApiVersions => Body::ApiVersions(ApiVersionsRequest::decode(buf, version)?),
        ApiKey::FindCoordinator => {
            Body::FindCoordinator(FindCoordinatorRequest::decode(buf, version)?)
        }
        ApiKey::JoinGroup => Body::JoinGroup(JoinGroupRequest::decode(buf, version)?),
        ApiKey::SyncGroup => Body::SyncGroup(SyncGroupRequest::decode(buf, version)?),
        ApiKey::Heartbeat => Body::Heartbeat(HeartbeatRequest::decode(buf, version)?),
        ApiKey::LeaveGroup => Body::LeaveGroup(LeaveGroupRequest::decode(buf, version)?),
        ApiKey::OffsetCommit => Body::OffsetCommit(OffsetCommitRequest::decode(buf, version)?),
        ApiKey::OffsetFetch => Body::OffsetFetch(OffsetFetchRequest::decode(buf, version)?),
        ApiKey::ListGroups => Body::ListGroups(ListGroupsRequest::decode(buf, version)?),
        ApiKey::DescribeGroups => {
            Body::DescribeGroups(DescribeGroupsRequest::decode(buf, version)?)
        }
        ApiKey::DeleteGroups => Body::DeleteGroups(DeleteGroupsRequest::decode(buf, version)?),
        ApiKey::OffsetForLeaderEpoch => {
            Body::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::decode(buf, version)?)
        }
        ApiKey::CreateTopics => Body::CreateTopics(CreateTopicsRequest::decode(buf, version)?),
        ApiKey::DeleteTopics => Body::DeleteTopics(DeleteTopicsRequest::decode(buf, version)?),
        ApiKey::DeleteRecords => Body::DeleteRecords(DeleteRecordsRequest::decode(buf, version)?),
        ApiKey::DescribeConfigs => {
            Body::DescribeConfigs(DescribeConfigsRequest::decode(buf, version)?)
        }
        ApiKey::AlterConfigs => Body::AlterConfigs(AlterConfigsRequest::decode(buf, version)?),
        ApiKey::CreatePartitions => {
            Body::CreatePartitions(CreatePartitionsRequest::decode(buf, version)?)
        }
        ApiKey::IncrementalAlterConfigs => {
            Body::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::decode(buf, version)?)
        }
        ApiKey::DescribeCluster => {
            Body::DescribeCluster(DescribeClusterRequest::decode(buf, version)?)
        }
        ApiKey::InitProducerId => {
            Body::InitProducerId(InitProducerIdRequest::decode(buf, version)?)
        }
        ApiKey::SaslHandshake => Body::SaslHandshake(SaslHandshakeRequest::decode(buf, version)?),
        ApiKey::SaslAuthenticate => {
            Body::SaslAuthenticate(SaslAuthenticateRequest::decode(buf, version)?)
        }
        // `api()` only lets the keys above through.
        other => anyhow::bail!("{other:?} has no decoder in Headwater"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn frame(api: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut out = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut out, api.request_header_version(version))
            .unwrap();
        body.encode(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn every_supported_version_decodes() {
        for api in APIS.iter() {
            for version in api.min..=api.max {
                let bytes = match api.key {
                    ApiKey::Produce => frame(api.key, version, &ProduceRequest::default()),
                    ApiKey::Fetch => frame(api.key, version, &FetchRequest::default()),
                    ApiKey::ListOffsets => frame(api.key, version, &ListOffsetsRequest::default()),
                    ApiKey::Metadata => frame(api.key, version, &MetadataRequest::default()),
                    ApiKey::ApiVersions => frame(api.key, version, &ApiVersionsRequest::default()),
                    ApiKey::InitProducerId => {
                        frame(api.key, version, &InitProducerIdRequest::default())
                    }
                    ApiKey::SaslHandshake => {
                        frame(api.key, version, &SaslHandshakeRequest::default())
                    }
                    ApiKey::SaslAuthenticate => {
                        frame(api.key, version, &SaslAuthenticateRequest::default())
                    }
                    other => match group::schema_tests::default_frame(other, version, |k, v, b| {
                        frame(k, v, b)
                    })
                    .or_else(|| {
                        admin::schema_tests::encode(other, version, &Vec::new())
                            .map(|body| frame(other, version, &group::schema_tests::Raw(body)))
                    }) {
                        Some(bytes) => bytes,
                        None => panic!("no test request for {other:?}"),
                    },
                };
                let request = decode(bytes).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(request.header.correlation_id, 7);
                assert_eq!(request.version, version);
            }
        }
    }

    #[test]
    fn unsupported_api_and_version_are_recognised_before_decoding() {
        let mut out = BytesMut::new();
        out.put_i16(ApiKey::ApiVersions as i16);
        out.put_i16(99);
        out.put_i32(1234);
        match decode(out.freeze()) {
            Err(RequestError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                correlation_id: 1234,
                ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        let mut out = BytesMut::new();
        out.put_i16(ApiKey::AlterPartitionReassignments as i16);
        out.put_i16(0);
        out.put_i32(5);
        assert!(matches!(
            decode(out.freeze()),
            Err(RequestError::UnsupportedApi { .. })
        ));
        assert!(matches!(
            decode(Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 0])),
            Err(RequestError::UnknownApi(0x7f7f))
        ));
        assert!(matches!(
            decode(Bytes::from_static(&[0, 3, 0])),
            Err(RequestError::Short(3))
        ));
    }

    #[test]
    fn metadata_bomb_is_refused_by_the_bounds_check() {
        let mut out = BytesMut::new();
        out.put_i16(ApiKey::Metadata as i16);
        out.put_i16(0);
        out.put_i32(1);
        out.put_i16(-1); // null client id
        out.put_i32(i32::MAX); // topics
        assert!(matches!(
            decode(out.freeze()),
            Err(RequestError::Bounds { .. })
        ));
    }

    #[test]
    fn produce_records_are_slices_of_the_frame() {
        let mut partition =
            kafka_protocol::messages::produce_request::PartitionProduceData::default();
        partition.records = Some(Bytes::from_static(b"not-really-a-batch"));
        let mut topic = kafka_protocol::messages::produce_request::TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str("t"));
        topic.partition_data = vec![partition];
        let mut request = ProduceRequest::default();
        request.acks = 1;
        request.topic_data = vec![topic];
        let bytes = frame(ApiKey::Produce, 9, &request);
        let range = bytes.as_ptr_range();
        let Body::Produce(decoded) = decode(bytes.clone()).unwrap().body else {
            panic!("not a produce request");
        };
        let records = decoded.topic_data[0].partition_data[0]
            .records
            .clone()
            .unwrap();
        assert_eq!(&records[..], b"not-really-a-batch");
        assert!(range.contains(&records.as_ptr()), "records were copied");
    }
}
