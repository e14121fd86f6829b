//! The building blocks of the request strategies: field values as clients send them, and the
//! request header. Every strategy file imports all of them.

use std::collections::BTreeMap;
use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::log::{batch, NewRecord};

pub(super) type Strat<T> = BoxedStrategy<T>;

/// Whether `version` of `key` is flexible, from `kafka-protocol` rather than from the schema
/// under test: flexible requests, and only those, use request header v2.
pub(super) fn flexible(key: ApiKey, version: i16) -> bool {
    key.request_header_version(version) >= 2
}

/// Strings as clients send them: empty, plain names, any Unicode, and longer than 127 bytes.
pub(super) fn text() -> Strat<StrBytes> {
    prop_oneof![
        1 => Just(String::new()),
        4 => "[a-zA-Z0-9._-]{1,24}",
        2 => "\\PC{1,12}",
        1 => "[a-z]{120,300}",
    ]
    .prop_map(StrBytes::from_string)
    .boxed()
}

pub(super) fn nullable() -> Strat<Option<StrBytes>> {
    option::of(text()).boxed()
}

pub(super) fn topic() -> Strat<TopicName> {
    text().prop_map(TopicName).boxed()
}

pub(super) fn group() -> Strat<GroupId> {
    text().prop_map(GroupId).boxed()
}

pub(super) fn blob() -> Strat<Bytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..40),
        1 => vec(any::<u8>(), 120..300),
    ]
    .prop_map(Bytes::from)
    .boxed()
}

/// Arrays of structs: empty and a few elements, which nest to a handful of levels.
pub(super) fn list<T: Debug + 'static>(element: Strat<T>) -> Strat<Vec<T>> {
    vec(element, 0..4).boxed()
}

/// Arrays of INT32, sometimes long enough for a two-byte compact count.
pub(super) fn int32s() -> Strat<Vec<i32>> {
    prop_oneof![
        3 => vec(any::<i32>(), 0..4),
        1 => vec(any::<i32>(), 127..200),
    ]
    .boxed()
}

pub(super) fn broker_ids() -> Strat<Vec<BrokerId>> {
    int32s()
        .prop_map(|ids| ids.into_iter().map(BrokerId).collect())
        .boxed()
}

/// Unknown tagged fields for a struct of a flexible version; none otherwise. Tags start at 100,
/// clear of the tags `kafka-protocol` decodes itself (Fetch uses 0 and 1).
pub(super) fn tags(flexible: bool) -> Strat<BTreeMap<i32, Bytes>> {
    if !flexible {
        return Just(BTreeMap::new()).boxed();
    }
    proptest::collection::btree_map(
        100..100_000i32,
        vec(any::<u8>(), 0..8).prop_map(Bytes::from),
        0..3,
    )
    .boxed()
}

/// Produce records: absent, arbitrary bytes (the codec does not look inside), or real v2
/// batches, one or two back to back.
pub(super) fn records() -> Strat<Option<Bytes>> {
    let record = (
        0..1i64 << 41,
        option::of(blob()),
        option::of(blob()),
        vec(("[a-z]{0,8}", option::of(blob())), 0..2),
    )
        .prop_map(|(timestamp, key, value, headers)| NewRecord {
            timestamp,
            key,
            value,
            headers,
        });
    let batches = vec(vec(record, 1..4), 1..3).prop_map(|batches| {
        let mut out = BytesMut::new();
        for records in batches {
            out.extend_from_slice(&batch::encode(&records).ok()?);
        }
        Some(out.freeze())
    });
    prop_oneof![
        1 => Just(None),
        2 => blob().prop_map(Some),
        2 => batches,
    ]
    .boxed()
}

pub(super) fn header(key: ApiKey, version: i16) -> Strat<RequestHeader> {
    (any::<i32>(), nullable(), tags(flexible(key, version)))
        .prop_map(move |(correlation_id, client_id, tags)| {
            RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(correlation_id)
                .with_client_id(client_id)
                .with_unknown_tagged_fields(tags)
        })
        .boxed()
}
