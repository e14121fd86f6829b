//! MQTT packets as the broker's packet layer reads them from a connection: MQTT 3.1.1, MQTT 5.0
//! (including the CONNECT that switches a connection to it) and the broker's re-encoding of what
//! it decoded.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| headwater::mqtt::fuzz_decode(data));
