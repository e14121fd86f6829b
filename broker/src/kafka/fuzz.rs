//! The fuzz entry point: everything that parses untrusted bytes, without a socket.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

use super::request::{self, RequestError};
use super::{api_versions, frame, response};

/// Largest frame [`fuzz_decode_request`] accepts: big enough for any interesting input.
const FUZZ_MAX_FRAME: usize = 1 << 20;

/// Fuzz entry point: runs framing, header and request decoding (with the bounds check) on
/// arbitrary bytes, both as one unframed request and as a framed stream, answering an unknown
/// ApiVersions version as the connection would. It must never panic, abort or allocate in
/// proportion to a length read off the input. For a libFuzzer target:
/// `fuzz_target!(|data: &[u8]| headwater::kafka::fuzz_decode_request(data));`
pub fn fuzz_decode_request(data: &[u8]) {
    let _ = request::decode(Bytes::copy_from_slice(data));
    let mut buf = BytesMut::from(data);
    while let Ok(frame::Progress::Frame(frame)) = frame::decode(&mut buf, FUZZ_MAX_FRAME) {
        if let Err(RequestError::UnsupportedVersion {
            api: ApiKey::ApiVersions,
            correlation_id,
            ..
        }) = request::decode(frame)
        {
            let mut out = BytesMut::new();
            let _ = response::encode(
                &mut out,
                ApiKey::ApiVersions,
                0,
                correlation_id,
                &api_versions::unsupported_version(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use proptest::prelude::*;

    use crate::kafka::request::APIS;

    /// A valid header for one of the supported (API, version) pairs followed by `body`, so
    /// random bodies reach the body decoders instead of stopping at the header.
    fn with_header(pick: usize, body: &[u8]) -> Vec<u8> {
        let pairs: Vec<(ApiKey, i16)> = APIS
            .iter()
            .flat_map(|a| (a.min..=a.max).map(move |v| (a.key, v)))
            .collect();
        let (key, version) = pairs[pick % pairs.len()];
        let mut out = BytesMut::new();
        out.put_i16(key as i16);
        out.put_i16(version);
        out.put_i32(1);
        out.put_i16(-1); // client id
        if key.request_header_version(version) >= 2 {
            out.put_u8(0);
        }
        out.extend_from_slice(body);
        out.to_vec()
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz_decode_request(&data);
        }

        #[test]
        fn random_bodies_behind_valid_headers_never_panic(
            pick in any::<usize>(),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let request = with_header(pick, &body);
            fuzz_decode_request(&request);
            let mut framed = (request.len() as i32).to_be_bytes().to_vec();
            framed.extend_from_slice(&request);
            fuzz_decode_request(&framed);
        }

        #[test]
        fn huge_counts_behind_valid_headers_are_refused(
            pick in any::<usize>(),
            prefix in proptest::collection::vec(any::<u8>(), 0..24),
            count in 0x0100_0000i32..i32::MAX,
        ) {
            // Any field position may be read as an array count; none may allocate for it.
            let mut body = prefix;
            body.extend_from_slice(&count.to_be_bytes());
            body.extend_from_slice(&[0xff; 5]);
            fuzz_decode_request(&with_header(pick, &body));
        }
    }
}
