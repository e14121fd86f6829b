//! What a plugin hands back to the host (CBOR, untrusted), and the input batch format.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = headwater_sdk::wire::decode_output(data);
    let _ = headwater_sdk::wire::decode_batch(data);
});
