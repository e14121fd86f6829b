//! Fixtures: the encoded examples of RFC 8949 Appendix A (what real encoders emit), the
//! error cases, and the plugin around the converter.

use super::*;
use crate::convert::{f16_to_f32, MAX_DEPTH};
use headwater_sdk::{Header, Value};

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn json(hex: &str) -> Result<String, String> {
    to_json(&unhex(hex), BytesAs::Base64)
        .map(|j| String::from_utf8(j).unwrap())
        .map_err(|e| e.to_string())
}

#[test]
fn rfc_8949_appendix_a_examples_convert() {
    let cases = [
        ("00", "0"),
        ("17", "23"),
        ("1818", "24"),
        ("1903e8", "1000"),
        ("1a000f4240", "1000000"),
        ("1b000000e8d4a51000", "1000000000000"),
        ("1bffffffffffffffff", "18446744073709551615"),
        ("20", "-1"),
        ("3863", "-100"),
        ("3903e7", "-1000"),
        ("3b7fffffffffffffff", "-9223372036854775808"),
        ("f90000", "0.0"),
        ("f98000", "-0.0"),
        ("f93c00", "1.0"),
        ("fb3ff199999999999a", "1.1"),
        ("f93e00", "1.5"),
        ("f97bff", "65504.0"),
        ("fa47c35000", "100000.0"),
        ("fa7f7fffff", "3.4028235e+38"),
        ("fb7e37e43c8800759c", "1e+300"),
        ("f90001", "5.9604645e-8"),
        ("f90400", "0.000061035156"),
        ("f9c400", "-4.0"),
        ("fbc010666666666666", "-4.1"),
        ("f4", "false"),
        ("f5", "true"),
        ("f6", "null"),
        ("f7", "null"),
        // Tags are dropped: epoch time, a date string, an encoding hint, a URI.
        ("c11a514b67b0", "1363896240"),
        ("c1fb41d452d9ec200000", "1363896240.5"),
        (
            "c074323031332d30332d32315432303a30343a30305a",
            "\"2013-03-21T20:04:00Z\"",
        ),
        ("d74401020304", "\"AQIDBA==\""),
        (
            "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
            "\"http://www.example.com\"",
        ),
        ("40", "\"\""),
        ("4401020304", "\"AQIDBA==\""),
        ("60", "\"\""),
        ("6449455446", "\"IETF\""),
        ("62225c", r#""\"\\""#),
        ("62c3bc", "\"\u{fc}\""),
        ("64f0908591", "\"\u{10151}\""),
        ("80", "[]"),
        ("8301820203820405", "[1,[2,3],[4,5]]"),
        (
            "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
            "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25]",
        ),
        ("a0", "{}"),
        ("a201020304", r#"{"1":2,"3":4}"#),
        ("a26161016162820203", r#"{"a":1,"b":[2,3]}"#),
        ("826161a161626163", r#"["a",{"b":"c"}]"#),
        ("5f42010243030405ff", "\"AQIDBAU=\""),
        ("7f657374726561646d696e67ff", "\"streaming\""),
        ("9fff", "[]"),
        ("9f018202039f0405ffff", "[1,[2,3],[4,5]]"),
        ("83019f0203ff820405", "[1,[2,3],[4,5]]"),
        ("bf61610161629f0203ffff", r#"{"a":1,"b":[2,3]}"#),
        ("bf6346756ef563416d7421ff", r#"{"Fun":true,"Amt":-2}"#),
        // Keys keep their order; not sorted.
        ("a2617a01616102", r#"{"z":1,"a":2}"#),
    ];
    for (hex, expected) in cases {
        assert_eq!(json(hex).as_deref(), Ok(expected), "{hex}");
    }
}

#[test]
fn non_finite_floats_become_null() {
    for hex in [
        "f97c00",
        "f97e00",
        "f9fc00",
        "fa7f800000",
        "fa7fc00000",
        "faff800000",
        "fb7ff0000000000000",
        "fb7ff8000000000000",
        "fbfff0000000000000",
    ] {
        assert_eq!(json(hex).as_deref(), Ok("null"), "{hex}");
    }
}

#[test]
fn bignums_convert_when_they_fit_64_bits() {
    assert_eq!(json("c240").as_deref(), Ok("0"));
    assert_eq!(json("c2420100").as_deref(), Ok("256"));
    // Leading zero bytes do not count.
    assert_eq!(
        json("c249000000000000000001").as_deref(),
        Ok("1"),
        "nine bytes with a zero in front"
    );
    assert_eq!(
        json("c248ffffffffffffffff").as_deref(),
        Ok("18446744073709551615")
    );
    assert_eq!(json("c341ff").as_deref(), Ok("-256"));
    assert_eq!(
        json("c3487fffffffffffffff").as_deref(),
        Ok("-9223372036854775808")
    );
    // Chunked bytes are a bignum too; a bignum tag on something else is just a tag.
    assert_eq!(json("c25f4101ff").as_deref(), Ok("1"));
    assert_eq!(json("c26161").as_deref(), Ok("\"a\""));
}

#[test]
fn integers_beyond_64_bits_are_errors() {
    // 2^64 and -2^64 - 1 as bignums (RFC 8949 Appendix A), -2^64 and -2^63 - 1 as integers.
    assert_eq!(
        json("c249010000000000000000").unwrap_err(),
        "CBOR bignum at byte 1 is out of the 64-bit range"
    );
    assert!(json("c349010000000000000000")
        .unwrap_err()
        .contains("out of the 64-bit range"));
    assert_eq!(
        json("3bffffffffffffffff").unwrap_err(),
        "CBOR integer -18446744073709551616 at byte 0 is out of the 64-bit range"
    );
    assert_eq!(
        json("823b8000000000000000").unwrap_err(),
        "CBOR integer -9223372036854775809 at byte 1 is out of the 64-bit range"
    );
    assert!(json("c3488000000000000000")
        .unwrap_err()
        .contains("out of the 64-bit range"));
}

#[test]
fn malformed_or_trailing_input_is_an_error() {
    for (hex, start) in [
        ("", "value is not valid CBOR: end of input"),
        ("18", "value is not valid CBOR: end of input"),
        ("830102", "value is not valid CBOR: end of input"),
        ("9f01", "value is not valid CBOR: end of input"),
        ("a16161", "value is not valid CBOR: end of input"),
        ("62c3", "value is not valid CBOR: end of input"),
        ("f9", "value is not valid CBOR: end of input"),
        ("f97c", "value is not valid CBOR: end of input"),
        ("61ff", "value is not valid CBOR: invalid utf-8"),
        ("ff", "value is not valid CBOR: unexpected break at byte 0"),
        ("1c", "value is not valid CBOR: unexpected 0x1c at byte 0"),
        ("c1", "value is not valid CBOR: end of input"),
        // A chunk of the wrong type inside chunked text.
        ("7f4161ff", "value is not valid CBOR: unexpected type bytes"),
        (
            "0000",
            "value has 1 bytes after its CBOR item (which ends at byte 1)",
        ),
        (
            "a0ff",
            "value has 1 bytes after its CBOR item (which ends at byte 1)",
        ),
    ] {
        let err = json(hex).unwrap_err();
        assert!(err.starts_with(start), "{hex}: {err}");
    }
}

#[test]
fn what_json_cannot_say_is_an_error() {
    assert_eq!(
        json("f0").unwrap_err(),
        "CBOR simple value 16 at byte 0 has no JSON form"
    );
    assert_eq!(
        json("f8ff").unwrap_err(),
        "CBOR simple value 255 at byte 0 has no JSON form"
    );
    assert_eq!(
        json("a1f401").unwrap_err(),
        "CBOR map key at byte 1 is a boolean: only text and integer keys convert to JSON"
    );
    assert!(json("a1420102f6").unwrap_err().contains("is a byte string"));
    assert!(json("a18000f6").unwrap_err().contains("is an array"));
    assert!(json("a1f93c0001").unwrap_err().contains("is a float"));
    assert!(json("a1c16161f6").unwrap_err().contains("is a tagged item"));
    // {"a": 1, "a": 2} and {1: 1, "1": 2}
    assert_eq!(
        json("a2616101616102").unwrap_err(),
        "CBOR map at byte 0 has the key \"a\" twice (integer keys count as text)"
    );
    assert!(json("a20101613102")
        .unwrap_err()
        .contains("key \"1\" twice"));
    assert!(json("81a2616101616102")
        .unwrap_err()
        .starts_with("CBOR map at byte 1"));
}

#[test]
fn negative_integer_keys_are_text_too() {
    assert_eq!(json("a1206161").as_deref(), Ok(r#"{"-1":"a"}"#));
    assert_eq!(json("a17f6161ff01").as_deref(), Ok(r#"{"a":1}"#));
}

#[test]
fn nesting_stops_at_the_limit_not_at_the_stack() {
    let nested = |depth: usize, open: u8| {
        let mut bytes = vec![open; depth];
        if open == 0x81 {
            bytes.push(0x00);
        } else {
            bytes.push(0xa0);
        }
        bytes
    };
    // MAX_DEPTH arrays hold a zero; MAX_DEPTH - 1 one-entry maps `{"": ...}` hold `{}`.
    assert!(to_json(&nested(MAX_DEPTH, 0x81), BytesAs::Hex).is_ok());
    let err = to_json(&nested(MAX_DEPTH + 1, 0x81), BytesAs::Hex).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("CBOR arrays and maps nest deeper than 64 levels (at byte {MAX_DEPTH})")
    );
    let err = to_json(&nested(1_000_000, 0x81), BytesAs::Hex).unwrap_err();
    assert!(err.to_string().contains("nest deeper"));
    let mut maps: Vec<u8> = [0xa1, 0x60].repeat(MAX_DEPTH - 1);
    maps.push(0xa0);
    assert!(to_json(&maps, BytesAs::Hex).is_ok());
    maps.splice(0..0, [0xa1, 0x60]);
    assert!(to_json(&maps, BytesAs::Hex).is_err());
    // A long chain of tags is read in a loop.
    let mut tags = vec![0xc1; 1_000_000];
    tags.push(0x01);
    assert_eq!(to_json(&tags, BytesAs::Hex).unwrap(), b"1");
}

#[test]
fn halves_widen_exactly() {
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc400), -4.0);
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
    assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
    assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    assert!(f16_to_f32(0x8000).is_sign_negative());
    assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
    // Every half: NaN exactly when the exponent is all ones with a fraction, and the finite
    // ones in increasing order of their bits (positive) or decreasing (negative).
    let mut previous = -1.0f32;
    for bits in 0..0x7c00u16 {
        let f = f16_to_f32(bits);
        assert!(f > previous || (bits == 0 && f == 0.0), "{bits:#x}");
        assert_eq!(f16_to_f32(bits | 0x8000), -f, "{bits:#x}");
        previous = f;
    }
    for bits in 0x7c01..=0x7fffu16 {
        assert!(f16_to_f32(bits).is_nan() && f16_to_f32(bits | 0x8000).is_nan());
    }
}

#[test]
fn hex_is_the_other_bytes_form() {
    let out = to_json(&unhex("a1616b4401020aff"), BytesAs::Hex).unwrap();
    assert_eq!(out, br#"{"k":"01020aff"}"#);
}

// The plugin around the converter.

fn plugin(entries: &[(&str, Value)]) -> Result<CborToJson, String> {
    let mut config = Config::new();
    for (k, v) in entries {
        config.insert(*k, v.clone());
    }
    CborToJson::init(&config)
}

fn record(value: Option<Vec<u8>>) -> Record<'static> {
    Record {
        topic: "sensors".into(),
        partition: None,
        offset: None,
        timestamp: 5,
        key: Some(b"dev".as_slice().into()),
        value: value.map(Into::into),
        headers: vec![
            Header::new("Content-Type", b"application/cbor".as_slice()),
            Header::new("origin", b"gw".as_slice()),
        ],
    }
}

#[test]
fn converts_records_and_dead_letters_the_rest() {
    let mut p = plugin(&[]).unwrap();
    let out = p.process(Batch::new(vec![
        record(Some(unhex("a26474656d70f94d6063686578820102"))),
        record(Some(b"{\"not\": \"cbor\"}".to_vec())),
        record(None),
        record(Some(unhex("a1f401"))),
        record(Some(unhex("f5"))),
    ]));
    assert!(out.failure.is_none());
    assert_eq!(out.records.len(), 3);
    let first = &out.records[0];
    assert_eq!(
        first.value.as_deref(),
        Some(&br#"{"temp":21.5,"hex":[1,2]}"#[..])
    );
    assert_eq!(first.key.as_deref(), Some(&b"dev"[..]));
    assert_eq!(first.timestamp, 5);
    assert_eq!(
        first.headers,
        [
            Header::new("origin", b"gw".as_slice()),
            Header::new("content-type", b"application/json".as_slice()),
        ]
    );
    // The tombstone is kept as it is, headers included.
    assert_eq!(out.records[1].value, None);
    assert_eq!(out.records[1].headers, record(None).headers);
    assert_eq!(out.records[2].value.as_deref(), Some(&b"true"[..]));

    let errors: Vec<_> = out
        .errors
        .iter()
        .map(|e| (e.index, e.message.as_ref()))
        .collect();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].0, 1);
    assert!(
        errors[0].1.starts_with("value is not valid CBOR: "),
        "{}",
        errors[0].1
    );
    assert_eq!(errors[1].0, 3);
    assert!(errors[1].1.contains("only text and integer keys"));
}

#[test]
fn config_picks_hex_and_can_leave_headers_alone() {
    let mut p = plugin(&[
        ("bytes", Value::Text("hex".into())),
        ("set_content_type", Value::Bool(false)),
    ])
    .unwrap();
    let out = p.process(Batch::new(vec![record(Some(unhex("42beef")))]));
    assert_eq!(out.records[0].value.as_deref(), Some(&br#""beef""#[..]));
    assert_eq!(out.records[0].headers, record(None).headers);
}

#[test]
fn bad_configs_are_refused_with_a_reason() {
    let refused = |entries: &[(&str, Value)]| plugin(entries).err().unwrap();
    assert_eq!(
        refused(&[("bytes", Value::Text("base32".into()))]),
        "config key `bytes` must be \"base64\" or \"hex\", found \"base32\""
    );
    assert_eq!(
        refused(&[("bytes", Value::Int(64))]),
        "config key `bytes` must be text, found an integer"
    );
    assert_eq!(
        refused(&[("set_content_type", Value::Text("yes".into()))]),
        "config key `set_content_type` must be a boolean, found text"
    );
    assert_eq!(
        refused(&[("content_type", Value::Bool(true))]),
        "unknown config key `content_type` (known keys: bytes, set_content_type)"
    );
}
