//! ApiVersions (key 18): which APIs and versions Headwater implements.
//!
//! The list comes from [`super::request::APIS`], each range already intersected with what
//! `kafka-protocol` can decode and encode (checked by a test), so a client never picks a version
//! that the broker would then refuse. Two compatibility details:
//! - Kafka answers an ApiVersions request of a version it does not know with error
//!   UNSUPPORTED_VERSION in the v0 format, listing its ApiVersions range so the client can retry
//!   with a version both support; librdkafka relies on that. [`unsupported_version`] does the same.
//! - librdkafka 2.0.2 (Debian's kcat) mis-parses an ApiVersions v3 response that carries tagged
//!   fields with default values (`FinalizedFeaturesEpoch = -1`, empty feature lists). Apache
//!   Kafka omits them, and so does `kafka-protocol`'s encoder: a test below pins the exact bytes.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::bounds::{from, Schema, Ty};
use super::request::APIS;

/// ApiVersionsRequest: client software name and version from v3 (flexible from v3).
pub const SCHEMA: Schema = Schema {
    flexible_since: 3,
    fields: &[from(3, Ty::Str), from(3, Ty::Str)],
};

/// The full answer: every implemented API with its version range.
pub fn handle() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = APIS
        .iter()
        .map(|api| entry(api.key, api.min, api.max))
        .collect();
    response
}

/// The answer to an ApiVersions request of a version Headwater does not implement; always
/// encoded as v0.
pub fn unsupported_version() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = ResponseError::UnsupportedVersion.code();
    response.api_keys = APIS
        .iter()
        .filter(|api| api.key == ApiKey::ApiVersions)
        .map(|api| entry(api.key, api.min, api.max))
        .collect();
    response
}

fn entry(key: ApiKey, min: i16, max: i16) -> ApiVersion {
    let mut v = ApiVersion::default();
    v.api_key = key as i16;
    v.min_version = min;
    v.max_version = max;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn advertised_ranges_are_within_what_the_codec_supports() {
        for api in APIS.iter() {
            let codec = api.key.valid_versions();
            assert!(
                codec.min <= api.min && api.min <= api.max && api.max <= codec.max,
                "{:?} v{}..=v{} is outside kafka-protocol's v{}..=v{}",
                api.key,
                api.min,
                api.max,
                codec.min,
                codec.max
            );
        }
    }

    #[test]
    fn v3_response_has_no_tagged_fields_beyond_the_empty_tag_buffer() {
        let response = handle();
        let mut buf = BytesMut::new();
        response.encode(&mut buf, 3).unwrap();
        let mut expected = vec![0, 0]; // error_code
        expected.push(APIS.len() as u8 + 1); // compact array length
        for api in APIS.iter() {
            expected.extend_from_slice(&(api.key as i16).to_be_bytes());
            expected.extend_from_slice(&api.min.to_be_bytes());
            expected.extend_from_slice(&api.max.to_be_bytes());
            expected.push(0); // the entry's empty tag buffer
        }
        expected.extend_from_slice(&[0, 0, 0, 0]); // throttle_time_ms
        expected.push(0); // top-level empty tag buffer: no features, no epoch, no zk flag
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn unsupported_version_answer_lists_only_api_versions_in_v0_format() {
        let response = unsupported_version();
        let mut buf = BytesMut::new();
        response.encode(&mut buf, 0).unwrap();
        let api = APIS.iter().find(|a| a.key == ApiKey::ApiVersions).unwrap();
        let mut expected = vec![0, 35, 0, 0, 0, 1, 0, 18];
        expected.extend_from_slice(&api.min.to_be_bytes());
        expected.extend_from_slice(&api.max.to_be_bytes());
        assert_eq!(&buf[..], &expected[..]);
    }
}
