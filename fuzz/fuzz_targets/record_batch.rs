//! Kafka v2 record batches: header validation, splitting, and record decoding (all codecs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let _ = headwater::log::batch::split(bytes.clone());
    let _ = headwater::log::batch::decode(&bytes);
});
