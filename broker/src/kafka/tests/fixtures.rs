//! Requests captured from real clients.

use super::*;

/// Requests captured from real clients (through a logging TCP proxy) while they produced to
/// and consumed from Headwater: kcat 1.7 on Debian's librdkafka 2.0.2 (`kcat -P -z gzip`,
/// `kcat -C`, `kcat -Q`) and the rdkafka crate 0.39 on librdkafka 2.12.1 (producer with
/// acks=all, consumer with an assigned partition). Each is a frame body without its length.
const FIXTURES: &[(&str, &[u8])] = &[
    (
        "librdkafka-2.0.2-api_versions-v3",
        include_bytes!("fixtures/librdkafka-2.0.2-api_versions-v3.bin"),
    ),
    (
        "librdkafka-2.0.2-metadata-v4",
        include_bytes!("fixtures/librdkafka-2.0.2-metadata-v4.bin"),
    ),
    (
        "librdkafka-2.0.2-produce-v7",
        include_bytes!("fixtures/librdkafka-2.0.2-produce-v7.bin"),
    ),
    (
        "librdkafka-2.0.2-list_offsets-v2",
        include_bytes!("fixtures/librdkafka-2.0.2-list_offsets-v2.bin"),
    ),
    (
        "librdkafka-2.0.2-fetch-v11",
        include_bytes!("fixtures/librdkafka-2.0.2-fetch-v11.bin"),
    ),
    (
        "librdkafka-2.12.1-api_versions-v3",
        include_bytes!("fixtures/librdkafka-2.12.1-api_versions-v3.bin"),
    ),
    (
        "librdkafka-2.12.1-metadata-v12",
        include_bytes!("fixtures/librdkafka-2.12.1-metadata-v12.bin"),
    ),
    (
        "librdkafka-2.12.1-produce-v9",
        include_bytes!("fixtures/librdkafka-2.12.1-produce-v9.bin"),
    ),
    (
        "librdkafka-2.12.1-list_offsets-v6",
        include_bytes!("fixtures/librdkafka-2.12.1-list_offsets-v6.bin"),
    ),
    (
        "librdkafka-2.12.1-fetch-v12",
        include_bytes!("fixtures/librdkafka-2.12.1-fetch-v12.bin"),
    ),
];

#[test]
fn real_client_requests_decode_and_pass_the_bounds_check() {
    use crate::kafka::request::{self, Body};
    for (name, bytes) in FIXTURES {
        let request =
            request::decode(Bytes::from_static(bytes)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(name.contains(&format!("-v{}", request.version)), "{name}");
        if let Body::Produce(produce) = request.body {
            for topic in produce.topic_data {
                for partition in topic.partition_data {
                    crate::kafka::produce::validate(partition.records)
                        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                }
            }
        }
    }
}

#[tokio::test]
async fn real_client_requests_are_answered() {
    let broker = broker().await;
    let mut client = Client::connect(broker.addr).await;
    for (name, bytes) in FIXTURES {
        let api = ApiKey::try_from(i16::from_be_bytes([bytes[0], bytes[1]])).unwrap();
        let version = i16::from_be_bytes([bytes[2], bytes[3]]);
        client.send_raw(bytes).await;
        let mut frame = client
            .read_frame()
            .await
            .unwrap_or_else(|| panic!("{name}: closed"));
        ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        match api {
            ApiKey::Produce => {
                let r = ProduceResponse::decode(&mut frame, version).unwrap();
                let p = &r.responses[0].partition_responses[0];
                assert_eq!(p.error_code, 0, "{name}: {:?}", p.error_message);
            }
            ApiKey::Fetch => {
                let r = FetchResponse::decode(&mut frame, version).unwrap();
                let p = &r.responses[0].partitions[0];
                assert_eq!(p.error_code, 0, "{name}");
                assert!(!values(p.records.as_ref().unwrap()).is_empty(), "{name}");
            }
            ApiKey::ListOffsets => {
                let r = ListOffsetsResponse::decode(&mut frame, version).unwrap();
                assert_eq!(r.topics[0].partitions[0].error_code, 0, "{name}");
            }
            ApiKey::Metadata => {
                let r = MetadataResponse::decode(&mut frame, version).unwrap();
                assert_eq!(r.brokers.len(), 1, "{name}");
            }
            _ => {
                let r = ApiVersionsResponse::decode(&mut frame, version).unwrap();
                assert_eq!(r.error_code, 0, "{name}");
            }
        }
    }
}
