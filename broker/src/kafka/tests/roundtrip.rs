//! Property-based round trips of every request Headwater accepts, through the broker's own
//! decoding path.
//!
//! For every entry of [`request::APIS`] and every version it accepts, random but valid requests
//! are built with `kafka-protocol`, encoded behind a request header, framed, and fed to
//! [`frame::decode`] and [`request::decode`]: the two calls the connection's read loop makes, so
//! the pre-decode bounds walk ([`bounds::check`] with the API's hand-written `SCHEMA`) is on the
//! path. A case passes when the bounds walk accepts the body and consumes exactly its bytes, and
//! the decoded header and body re-encode to exactly the bytes that were sent. A schema mistake
//! (a field in the wrong versions, a string where the wire has an array) makes the broker refuse
//! real clients at some version, and shows up here as a failure naming the API and version.
//!
//! Why byte equality rather than comparing structs: a field a version does not carry decodes
//! to its default, so comparing structs would need a per-version projection; the bytes are what
//! the client sent, and they must survive unchanged.
//!
//! Why one strategy per (API, version) rather than one request encoded at every version:
//! `kafka-protocol` refuses to encode a non-default value in a field the version lacks unless
//! the field is marked ignorable, so the strategies set such fields only in the versions that
//! carry them (the `v >= n` tests in the strategy files follow the field ranges of the Kafka message JSON).
//! Ignorable fields are always set: the crate drops them where they do not exist.
//!
//! Flexible versions (KIP-482) also carry unknown tagged fields, which a receiver must skip, on
//! the header, the request and every nested struct, so the walker's tag skipping is exercised.
//! Strings include empty, Unicode and ones longer than 127 bytes, and some INT32 arrays more than
//! 127 elements, so compact lengths and counts take two varint bytes.
//!
//! `PROPTEST_CASES` overrides the default of 64 cases per (API, version).
//!
//! Layout: this file is the harness and the table of APIs; the strategies live in
//! `roundtrip/`, grouped as the handlers are ([`data`], [`groups`], [`admin`]), on top of the
//! field values in [`values`].

mod admin;
mod data;
mod groups;
mod values;

use std::fmt::Debug;

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::kafka::bounds::{self, between, from, Schema, Ty};
use crate::kafka::frame::{self, Progress};
use crate::kafka::produce;
use crate::kafka::request::{self, Body, APIS};

use values::{header, Strat};

/// Cases per (API, version) unless `PROPTEST_CASES` says otherwise: about 150 pairs make the
/// whole file run in seconds in a debug build.
const DEFAULT_CASES: u32 = 64;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Sends one request through framing, the bounds walk and decoding, and checks that nothing
/// was refused, lost or misread. `schema` is the one the walk must agree with (the API's own,
/// except in the test that proves a wrong schema is caught).
fn round_trip<T: Encodable>(
    key: ApiKey,
    version: i16,
    schema: &Schema,
    header: &RequestHeader,
    body: &T,
    take: fn(Body) -> Option<T>,
) -> Result<(), TestCaseError> {
    let header_version = key.request_header_version(version);
    let mut sent = BytesMut::new();
    header
        .encode(&mut sent, header_version)
        .map_err(|e| TestCaseError::fail(format!("strategy built a bad header: {e:#}")))?;
    let header_len = sent.len();
    body.encode(&mut sent, version).map_err(|e| {
        TestCaseError::fail(format!(
            "strategy built a {key:?} request that v{version} cannot encode: {e:#}"
        ))
    })?;
    let sent = sent.freeze();

    let walked = bounds::check(schema, version, &sent[header_len..]);
    prop_assert_eq!(
        walked,
        Ok(sent.len() - header_len),
        "the bounds walk of {:?} v{} does not consume exactly the encoded body",
        key,
        version
    );

    let mut wire = BytesMut::new();
    let at = frame::start(&mut wire);
    wire.extend_from_slice(&sent);
    frame::finish(&mut wire, at).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let frame = match frame::decode(&mut wire, sent.len()) {
        Ok(Progress::Frame(frame)) => frame,
        other => return Err(TestCaseError::fail(format!("framing: {other:?}"))),
    };
    prop_assert!(wire.is_empty(), "framing left {} bytes", wire.len());
    let decoded = request::decode(frame)
        .map_err(|e| TestCaseError::fail(format!("the broker refused {key:?} v{version}: {e}")))?;
    prop_assert_eq!(decoded.api, key);
    prop_assert_eq!(decoded.version, version);

    let mut again = BytesMut::new();
    decoded
        .header
        .encode(&mut again, header_version)
        .map_err(|e| TestCaseError::fail(format!("decoded header re-encodes: {e:#}")))?;
    let Some(body) = take(decoded.body) else {
        return Err(TestCaseError::fail(format!(
            "{key:?} v{version} decoded into another Body variant"
        )));
    };
    body.encode(&mut again, version).map_err(|e| {
        TestCaseError::fail(format!("decoded {key:?} v{version} re-encodes: {e:#}"))
    })?;
    prop_assert!(
        again[..] == sent[..],
        "{:?} v{} changed in the round trip:\n sent {:?}\n  got {:?}",
        key,
        version,
        sent,
        again.freeze()
    );
    Ok(())
}

/// Runs the round trip for every version of `key` the broker accepts.
fn run<T: Encodable + Debug>(
    key: ApiKey,
    strategy: fn(i16) -> Strat<T>,
    take: fn(Body) -> Option<T>,
) {
    let Some(api) = request::api(key) else {
        panic!("{key:?} is no longer in request::APIS: remove its round-trip case");
    };
    for version in api.min..=api.max {
        let mut runner = TestRunner::new(config());
        let cases = (header(key, version), strategy(version));
        if let Err(e) = runner.run(&cases, |(header, body)| {
            round_trip(key, version, api.schema, &header, &body, take)
        }) {
            panic!("{key:?} v{version}: {e}");
        }
    }
}

/// One test per API, and the list of APIs covered, from one table so they cannot drift apart.
macro_rules! round_trips {
    ($($test:ident: $key:ident($ty:ty) = $strategy:path;)*) => {
        /// Every API with a round-trip test in this file.
        const COVERED: &[ApiKey] = &[$(ApiKey::$key),*];
        $(
            #[test]
            fn $test() {
                run::<$ty>(ApiKey::$key, $strategy, |body| match body {
                    Body::$key(request) => Some(request),
                    _ => None,
                });
            }
        )*
    };
}

round_trips! {
    produce_round_trips: Produce(ProduceRequest) = data::produce_request;
    fetch_round_trips: Fetch(FetchRequest) = data::fetch_request;
    list_offsets_round_trips: ListOffsets(ListOffsetsRequest) = data::list_offsets_request;
    metadata_round_trips: Metadata(MetadataRequest) = data::metadata_request;
    offset_commit_round_trips: OffsetCommit(OffsetCommitRequest) = groups::offset_commit_request;
    offset_fetch_round_trips: OffsetFetch(OffsetFetchRequest) = groups::offset_fetch_request;
    find_coordinator_round_trips: FindCoordinator(FindCoordinatorRequest) = groups::find_coordinator_request;
    join_group_round_trips: JoinGroup(JoinGroupRequest) = groups::join_group_request;
    heartbeat_round_trips: Heartbeat(HeartbeatRequest) = groups::heartbeat_request;
    leave_group_round_trips: LeaveGroup(LeaveGroupRequest) = groups::leave_group_request;
    sync_group_round_trips: SyncGroup(SyncGroupRequest) = groups::sync_group_request;
    describe_groups_round_trips: DescribeGroups(DescribeGroupsRequest) = groups::describe_groups_request;
    list_groups_round_trips: ListGroups(ListGroupsRequest) = groups::list_groups_request;
    sasl_handshake_round_trips: SaslHandshake(SaslHandshakeRequest) = data::sasl_handshake_request;
    api_versions_round_trips: ApiVersions(ApiVersionsRequest) = data::api_versions_request;
    offset_for_leader_epoch_round_trips: OffsetForLeaderEpoch(OffsetForLeaderEpochRequest) = groups::offset_for_leader_epoch_request;
    delete_groups_round_trips: DeleteGroups(DeleteGroupsRequest) = groups::delete_groups_request;
    create_topics_round_trips: CreateTopics(CreateTopicsRequest) = admin::create_topics_request;
    delete_topics_round_trips: DeleteTopics(DeleteTopicsRequest) = admin::delete_topics_request;
    delete_records_round_trips: DeleteRecords(DeleteRecordsRequest) = admin::delete_records_request;
    init_producer_id_round_trips: InitProducerId(InitProducerIdRequest) = data::init_producer_id_request;
    describe_configs_round_trips: DescribeConfigs(DescribeConfigsRequest) = admin::describe_configs_request;
    alter_configs_round_trips: AlterConfigs(AlterConfigsRequest) = admin::alter_configs_request;
    create_partitions_round_trips: CreatePartitions(CreatePartitionsRequest) = admin::create_partitions_request;
    incremental_alter_configs_round_trips: IncrementalAlterConfigs(IncrementalAlterConfigsRequest) = admin::incremental_alter_configs_request;
    describe_cluster_round_trips: DescribeCluster(DescribeClusterRequest) = admin::describe_cluster_request;
    sasl_authenticate_round_trips: SaslAuthenticate(SaslAuthenticateRequest) = data::sasl_authenticate_request;
}

#[test]
fn every_accepted_api_has_a_round_trip() {
    let missing: Vec<ApiKey> = APIS
        .iter()
        .map(|api| api.key)
        .filter(|key| !COVERED.contains(key))
        .collect();
    assert!(
        missing.is_empty(),
        "request::APIS accepts {missing:?} without a round-trip strategy in kafka/tests/roundtrip.rs"
    );
}

/// Produce's schema (`produce::SCHEMA`) with one easy mistake in each: a field read with the
/// wrong type, or in the wrong versions.
const PRODUCE_NEAR_MISSES: &[(&str, Schema)] = &[
    (
        "records read as a STRING",
        Schema {
            flexible_since: 9,
            fields: &[
                from(3, Ty::Str),
                from(0, Ty::I16),
                from(0, Ty::I32),
                from(
                    0,
                    Ty::Structs(&[
                        between(0, 12, Ty::Str),
                        from(13, Ty::Uuid),
                        from(0, Ty::Structs(&[from(0, Ty::I32), from(0, Ty::Str)])),
                    ]),
                ),
            ],
        },
    ),
    (
        "flexible versions starting at v10",
        Schema {
            flexible_since: 10,
            fields: produce::SCHEMA.fields,
        },
    ),
    (
        "the transactional id from v4",
        Schema {
            flexible_since: 9,
            fields: &[
                from(4, Ty::Str),
                from(0, Ty::I16),
                from(0, Ty::I32),
                from(
                    0,
                    Ty::Structs(&[
                        between(0, 12, Ty::Str),
                        from(13, Ty::Uuid),
                        from(0, Ty::Structs(&[from(0, Ty::I32), from(0, Ty::Bytes)])),
                    ]),
                ),
            ],
        },
    ),
    (
        "the partition index read as INT16",
        Schema {
            flexible_since: 9,
            fields: &[
                from(3, Ty::Str),
                from(0, Ty::I16),
                from(0, Ty::I32),
                from(
                    0,
                    Ty::Structs(&[
                        between(0, 12, Ty::Str),
                        from(13, Ty::Uuid),
                        from(0, Ty::Structs(&[from(0, Ty::I16), from(0, Ty::Bytes)])),
                    ]),
                ),
            ],
        },
    ),
];

/// The round trips above are only worth something if a wrong schema fails them: each near
/// miss of Produce's schema must be caught at some version.
#[test]
fn near_miss_schemas_are_caught() {
    for (mistake, schema) in PRODUCE_NEAR_MISSES {
        let caught =
            (3..=9).any(|version| {
                let mut runner = TestRunner::new(Config {
                    max_shrink_iters: 0,
                    ..config()
                });
                let cases = (
                    header(ApiKey::Produce, version),
                    data::produce_request(version),
                );
                runner
                    .run(&cases, |(header, body)| {
                        round_trip(ApiKey::Produce, version, schema, &header, &body, |body| {
                            match body {
                                Body::Produce(request) => Some(request),
                                _ => None,
                            }
                        })
                    })
                    .is_err()
            });
        assert!(
            caught,
            "a Produce schema with {mistake} passed every round trip"
        );
    }
}
