//! Kafka request frames: framing, header, element-count bounds and body decoding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| headwater::kafka::fuzz_decode_request(data));
