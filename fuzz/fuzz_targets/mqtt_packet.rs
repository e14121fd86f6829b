//! MQTT packets as the broker's codec reads them from a connection.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| headwater::mqtt::fuzz_decode(data));
