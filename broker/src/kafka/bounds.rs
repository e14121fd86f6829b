//! A pre-decode pass that proves a request body is safe to hand to `kafka-protocol`.
//!
//! Why this exists: `kafka-protocol` 0.18 decodes an array by reading its element count off the
//! wire and calling `Vec::with_capacity(count)` *before* decoding any element
//! (`protocol/types.rs`, `Array`/`CompactArray`; upstream kafka-protocol-rs PRs #152, #161 and
//! #200 are open about it). A 9-byte Metadata request claiming 50 million topics makes it
//! allocate gigabytes, and a failed allocation aborts the whole broker; a panic cannot be
//! caught either. So before the crate sees a body, [`check`] walks it with a description of the
//! request's fields ([`Schema`]) that mirrors the crate's decoder for the APIs Headwater serves,
//! and refuses it when
//! - an array claims more elements than bytes remain (every element takes at least one byte), or
//! - the request holds more than [`MAX_ELEMENTS`] array elements in total, which bounds what
//!   the decoded request can occupy in memory (about `MAX_ELEMENTS` × 100 bytes) no matter how
//!   large the frame is.
//!
//! Every element is walked, not just counted, so a count is only accepted when the elements are
//! really there. The walk is linear in the body size and allocates nothing. Tests encode
//! random requests of every supported version with `kafka-protocol` itself and require the walk
//! to consume exactly the encoded bytes, which keeps these schemas honest.

/// Most array elements (topics, partitions, …, summed over all arrays) one request may carry.
/// Real clients send a few per partition they touch; 100 000 partitions in one request is far
/// beyond what an edge broker serves.
pub const MAX_ELEMENTS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    #[error("request body ends in the middle of a field")]
    Truncated,
    #[error("an array claims {count} elements but only {remaining} bytes remain")]
    ArrayTooLong { count: u64, remaining: usize },
    #[error("the request holds more than {MAX_ELEMENTS} array elements")]
    TooManyElements,
    #[error("negative length {0}")]
    NegativeLength(i32),
}

/// Wire type of one field, in the words of the Kafka protocol guide.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// INT8 and BOOLEAN.
    I8,
    I16,
    I32,
    I64,
    Uuid,
    /// STRING and NULLABLE_STRING (COMPACT_ forms in flexible versions).
    Str,
    /// BYTES, NULLABLE_BYTES and RECORDS (COMPACT_ forms in flexible versions).
    Bytes,
    /// ARRAY of INT32.
    Int32s,
    /// ARRAY of STRING (group names, coordinator keys, state filters).
    Strs,
    /// ARRAY of structs with these fields.
    Structs(&'static [Field]),
}

/// A field present in versions `since..=until`.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    since: i16,
    until: i16,
    ty: Ty,
}

/// A field from version `since` on.
pub const fn from(since: i16, ty: Ty) -> Field {
    Field {
        since,
        until: i16::MAX,
        ty,
    }
}

/// A field in versions `since..=until` only.
pub const fn between(since: i16, until: i16, ty: Ty) -> Field {
    Field { since, until, ty }
}

/// The body of one request type: its fields and the first flexible version (compact lengths
/// and tagged fields, KIP-482).
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub flexible_since: i16,
    pub fields: &'static [Field],
}

/// Walks `body` as a `version` request of `schema`; returns how many bytes the fields used.
/// Trailing bytes are left alone, as the crate's decoder leaves them.
pub fn check(schema: &Schema, version: i16, body: &[u8]) -> Result<usize, BoundsError> {
    let mut walker = Walker {
        buf: body,
        version,
        flexible: version >= schema.flexible_since,
        elements: 0,
    };
    walker.structure(schema.fields)?;
    Ok(body.len() - walker.buf.len())
}

struct Walker<'a> {
    buf: &'a [u8],
    version: i16,
    flexible: bool,
    elements: usize,
}

impl Walker<'_> {
    fn skip(&mut self, n: usize) -> Result<(), BoundsError> {
        if self.buf.len() < n {
            return Err(BoundsError::Truncated);
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], BoundsError> {
        let Some((head, rest)) = self.buf.split_first_chunk::<N>() else {
            return Err(BoundsError::Truncated);
        };
        self.buf = rest;
        Ok(*head)
    }

    /// Same semantics as the crate's `UnsignedVarInt`: at most five bytes, high bits dropped.
    fn uvarint(&mut self) -> Result<u32, BoundsError> {
        let mut value = 0u32;
        for i in 0..5 {
            let [b] = self.fixed::<1>()?;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length prefix of a string or bytes field; `None` means null.
    fn length(&mut self, wide: bool) -> Result<Option<usize>, BoundsError> {
        if self.flexible {
            return Ok(match self.uvarint()? {
                0 => None,
                n => Some(n as usize - 1),
            });
        }
        let n = if wide {
            i32::from_be_bytes(self.fixed::<4>()?)
        } else {
            i32::from(i16::from_be_bytes(self.fixed::<2>()?))
        };
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(BoundsError::NegativeLength(n)),
            n => Ok(Some(n as usize)),
        }
    }

    /// An array's element count, refused before anything is walked if it cannot fit.
    fn count(&mut self) -> Result<usize, BoundsError> {
        let count = if self.flexible {
            match self.uvarint()? {
                0 => 0,
                n => u64::from(n) - 1,
            }
        } else {
            match i32::from_be_bytes(self.fixed::<4>()?) {
                -1 => 0,
                n if n < 0 => return Err(BoundsError::NegativeLength(n)),
                n => n as u64,
            }
        };
        if count > self.buf.len() as u64 {
            return Err(BoundsError::ArrayTooLong {
                count,
                remaining: self.buf.len(),
            });
        }
        // Fits in usize: it is at most the remaining length of a slice.
        let count = count as usize;
        self.elements = self.elements.saturating_add(count);
        if self.elements > MAX_ELEMENTS {
            return Err(BoundsError::TooManyElements);
        }
        Ok(count)
    }

    fn structure(&mut self, fields: &'static [Field]) -> Result<(), BoundsError> {
        for field in fields {
            if (field.since..=field.until).contains(&self.version) {
                self.field(field.ty)?;
            }
        }
        if self.flexible {
            self.tagged_fields()?;
        }
        Ok(())
    }

    fn field(&mut self, ty: Ty) -> Result<(), BoundsError> {
        match ty {
            Ty::I8 => self.skip(1),
            Ty::I16 => self.skip(2),
            Ty::I32 => self.skip(4),
            Ty::I64 => self.skip(8),
            Ty::Uuid => self.skip(16),
            Ty::Str => {
                let len = self.length(false)?;
                self.skip(len.unwrap_or(0))
            }
            Ty::Bytes => {
                let len = self.length(true)?;
                self.skip(len.unwrap_or(0))
            }
            Ty::Int32s => {
                let n = self.count()?;
                self.skip(n.checked_mul(4).ok_or(BoundsError::Truncated)?)
            }
            Ty::Strs => {
                for _ in 0..self.count()? {
                    self.field(Ty::Str)?;
                }
                Ok(())
            }
            Ty::Structs(fields) => {
                for _ in 0..self.count()? {
                    self.structure(fields)?;
                }
                Ok(())
            }
        }
    }

    /// Tagged fields are skipped by their size. The crate decodes a few known tags in place
    /// instead (Fetch's cluster id); none of those holds an array, and in the versions Headwater
    /// accepts they all sit at the end of the message, so skipping cannot hide an array from
    /// this walk.
    fn tagged_fields(&mut self) -> Result<(), BoundsError> {
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            self.skip(size as usize)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    const NESTED: Schema = Schema {
        flexible_since: 1,
        fields: &[
            from(0, Ty::I16),
            from(0, Ty::Structs(&[from(0, Ty::Str), from(0, Ty::Int32s)])),
        ],
    };

    #[test]
    fn huge_counts_are_refused_before_walking() {
        // The 9-byte reproducer of kafka-protocol-rs PR #152 (Metadata v0 with 54 million topics).
        let body = [0x03, 0x3c, 0x0c, 0x00, 0xb6];
        let err = check(&crate::kafka::metadata::SCHEMA, 0, &body).unwrap_err();
        assert!(matches!(
            err,
            BoundsError::ArrayTooLong {
                count: 0x033c_0c00,
                ..
            }
        ));
        // Compact form: u32::MAX - 1 elements.
        let body = [0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            check(&NESTED, 1, &body),
            Err(BoundsError::ArrayTooLong { .. })
        ));
    }

    #[test]
    fn element_total_is_capped() {
        // 60 000 structs with an empty string and an empty INT32 array each: fits byte-wise,
        // but the nested arrays push the element total past the cap.
        let mut body = vec![0, 0];
        body.extend_from_slice(&60_000i32.to_be_bytes());
        for _ in 0..60_000 {
            body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(check(&NESTED, 0, &body), Ok(body.len()));
        let mut bigger = vec![0, 0];
        bigger.extend_from_slice(&60_000i32.to_be_bytes());
        for _ in 0..60_000 {
            bigger.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 7]);
        }
        assert_eq!(
            check(&NESTED, 0, &bigger),
            Err(BoundsError::TooManyElements)
        );
    }

    #[test]
    fn truncation_and_negative_lengths_are_errors() {
        assert_eq!(check(&NESTED, 0, &[0]), Err(BoundsError::Truncated));
        let body = [0, 0, 0, 0, 0, 1, 0xff, 0xfe];
        assert_eq!(
            check(&NESTED, 0, &body),
            Err(BoundsError::NegativeLength(-2))
        );
    }

    /// Topics with partitions: (name, [(partition, offset or timestamp, records)]).
    type Shape = Vec<(String, Vec<(i32, i64, Option<Vec<u8>>)>)>;

    fn shape() -> impl proptest::strategy::Strategy<Value = Shape> {
        use proptest::prelude::*;
        proptest::collection::vec(
            (
                "[a-z0-9._-]{1,20}",
                proptest::collection::vec(
                    (
                        any::<i32>(),
                        any::<i64>(),
                        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                    ),
                    0..4,
                ),
            ),
            0..4,
        )
    }

    /// Every supported request, in every supported version, built from `shape` and encoded
    /// by `kafka-protocol`.
    fn encoded_requests(shape: &Shape) -> Vec<(ApiKey, i16, Vec<u8>)> {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let name = |s: &String| TopicName(StrBytes::from_string(s.clone()));
        let mut out = Vec::new();
        for api in crate::kafka::request::APIS.iter() {
            for version in api.min..=api.max {
                let mut buf = bytes::BytesMut::new();
                match api.key {
                    ApiKey::Produce => {
                        let mut r = ProduceRequest::default();
                        r.transactional_id = shape
                            .first()
                            .map(|t| TransactionalId(StrBytes::from_string(t.0.clone())));
                        r.topic_data = shape
                            .iter()
                            .map(|(t, ps)| {
                                let mut td = produce_request::TopicProduceData::default();
                                td.name = name(t);
                                td.partition_data = ps
                                    .iter()
                                    .map(|(p, _, rec)| {
                                        let mut pd =
                                            produce_request::PartitionProduceData::default();
                                        pd.index = *p;
                                        pd.records = rec.clone().map(bytes::Bytes::from);
                                        pd
                                    })
                                    .collect();
                                td
                            })
                            .collect();
                        r.encode(&mut buf, version).unwrap();
                    }
                    ApiKey::Fetch => {
                        let mut r = FetchRequest::default();
                        r.topics = shape
                            .iter()
                            .map(|(t, ps)| {
                                let mut ft = fetch_request::FetchTopic::default();
                                ft.topic = name(t);
                                ft.partitions = ps
                                    .iter()
                                    .map(|(p, o, _)| {
                                        let mut fp = fetch_request::FetchPartition::default();
                                        fp.partition = *p;
                                        fp.fetch_offset = *o;
                                        fp
                                    })
                                    .collect();
                                ft
                            })
                            .collect();
                        if version >= 7 {
                            r.forgotten_topics_data = shape
                                .iter()
                                .map(|(t, ps)| {
                                    let mut f = fetch_request::ForgottenTopic::default();
                                    f.topic = name(t);
                                    f.partitions = ps.iter().map(|p| p.0).collect();
                                    f
                                })
                                .collect();
                        }
                        if version >= 11 {
                            r.rack_id = StrBytes::from_static_str("rack-1");
                        }
                        r.encode(&mut buf, version).unwrap();
                    }
                    ApiKey::ListOffsets => {
                        let mut r = ListOffsetsRequest::default();
                        r.topics = shape
                            .iter()
                            .map(|(t, ps)| {
                                let mut lt = list_offsets_request::ListOffsetsTopic::default();
                                lt.name = name(t);
                                lt.partitions = ps
                                    .iter()
                                    .map(|(p, ts, _)| {
                                        let mut lp =
                                            list_offsets_request::ListOffsetsPartition::default();
                                        lp.partition_index = *p;
                                        lp.timestamp = *ts;
                                        lp
                                    })
                                    .collect();
                                lt
                            })
                            .collect();
                        r.encode(&mut buf, version).unwrap();
                    }
                    ApiKey::Metadata => {
                        let mut r = MetadataRequest::default();
                        r.topics = Some(
                            shape
                                .iter()
                                .map(|(t, _)| {
                                    let mut mt = metadata_request::MetadataRequestTopic::default();
                                    mt.name = Some(name(t));
                                    mt
                                })
                                .collect(),
                        );
                        r.encode(&mut buf, version).unwrap();
                    }
                    ApiKey::ApiVersions => {
                        let mut r = ApiVersionsRequest::default();
                        if version >= 3 {
                            r.client_software_name = StrBytes::from_static_str("test-client");
                            r.client_software_version = StrBytes::from_static_str("1.0");
                        }
                        r.encode(&mut buf, version).unwrap();
                    }
                    ApiKey::InitProducerId => {
                        let mut r = kafka_protocol::messages::InitProducerIdRequest::default();
                        r.transactional_id = shape
                            .first()
                            .map(|(t, _)| StrBytes::from_string(t.clone()).into());
                        r.transaction_timeout_ms = shape.len() as i32;
                        if version >= 3 {
                            r.producer_id = (shape.len() as i64).into();
                            r.producer_epoch = 2;
                        }
                        r.encode(&mut buf, version).unwrap();
                    }
                    ApiKey::SaslHandshake => {
                        let mut r = SaslHandshakeRequest::default();
                        r.mechanism = StrBytes::from_static_str("SCRAM-SHA-512");
                        r.encode(&mut buf, version).unwrap();
                    }
                    ApiKey::SaslAuthenticate => {
                        let mut r = SaslAuthenticateRequest::default();
                        r.auth_bytes = bytes::Bytes::from(shape.len().to_string().repeat(40));
                        r.encode(&mut buf, version).unwrap();
                    }
                    other => match crate::kafka::group::schema_tests::encode(other, version, shape)
                        .or_else(|| {
                            crate::kafka::admin::schema_tests::encode(other, version, shape)
                        }) {
                        Some(body) => buf.extend_from_slice(&body),
                        None => panic!("no test request for {other:?} v{version}"),
                    },
                }
                out.push((api.key, version, buf.to_vec()));
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn schemas_walk_exactly_what_the_codec_encodes(shape in shape()) {
            for (key, version, body) in encoded_requests(&shape) {
                let api = crate::kafka::request::api(key).unwrap();
                proptest::prop_assert_eq!(
                    check(api.schema, version, &body),
                    Ok(body.len()),
                    "{:?} v{}", key, version
                );
            }
        }

        #[test]
        fn truncated_requests_are_refused(shape in shape(), cut in 0usize..1000) {
            for (key, version, body) in encoded_requests(&shape) {
                let api = crate::kafka::request::api(key).unwrap();
                let cut = cut % body.len().max(1);
                if cut < body.len() {
                    proptest::prop_assert!(check(api.schema, version, &body[..cut]).is_err());
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256), version in 0i16..20) {
            for api in crate::kafka::request::APIS.iter() {
                let _ = check(api.schema, version, &data);
            }
        }
    }
}
