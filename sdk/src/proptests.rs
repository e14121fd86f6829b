//! Property tests of the wire encoding: every batch, output and config survives a round trip,
//! indefinite-length encodings decode to the same values, and no input makes a decoder panic.

extern crate std;

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use minicbor::Encoder;
use proptest::prelude::*;

use crate::config::{Config, Value};
use crate::kept::Inputs;
use crate::record::{
    Batch, DecodedOutput, Header, OutEntry, OutRecord, Output, Record, RecordError,
};
use crate::wire;

fn bytes() -> impl Strategy<Value = Cow<'static, [u8]>> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(Cow::Owned)
}

fn text() -> impl Strategy<Value = Cow<'static, str>> {
    ".{0,20}".prop_map(|s: String| Cow::Owned(s))
}

fn header() -> impl Strategy<Value = Header<'static>> {
    (text(), proptest::option::of(bytes())).prop_map(|(name, value)| Header { name, value })
}

fn headers() -> impl Strategy<Value = Vec<Header<'static>>> {
    proptest::collection::vec(header(), 0..4)
}

prop_compose! {
    fn record()(
        topic in text(),
        partition in proptest::option::of(any::<i32>()),
        offset in proptest::option::of(any::<i64>()),
        timestamp in any::<i64>(),
        key in proptest::option::of(bytes()),
        value in proptest::option::of(bytes()),
        headers in headers(),
    ) -> Record<'static> {
        Record { topic, partition, offset, timestamp, key, value, headers }
    }
}

prop_compose! {
    fn out_record()(
        topic in proptest::option::of(text()),
        timestamp in any::<i64>(),
        key in proptest::option::of(bytes()),
        value in proptest::option::of(bytes()),
        headers in headers(),
    ) -> OutRecord<'static> {
        OutRecord { topic, timestamp, key, value, headers }
    }
}

prop_compose! {
    fn output()(
        records in proptest::collection::vec(out_record(), 0..8),
        errors in proptest::collection::vec(
            (any::<u32>(), text()).prop_map(|(index, message)| RecordError { index, message }),
            0..4,
        ),
        failure in proptest::option::of(text()),
        state in proptest::option::of(bytes()),
    ) -> Output<'static> {
        Output { records, errors, failure, state }
    }
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        // NaN != NaN would fail the equality check for reasons unrelated to the codec.
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        ".{0,10}".prop_map(Value::Text),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Map(m.into_iter().collect())),
        ]
    })
}

/// Re-encodes a record with indefinite-length arrays and chunked strings everywhere.
fn encode_record_indefinite(r: &Record<'_>, e: &mut Encoder<&mut Vec<u8>>) {
    let chunked_str = |e: &mut Encoder<&mut Vec<u8>>, s: &str| {
        e.begin_str().unwrap();
        // Split at a char boundary so every chunk is valid UTF-8, as CBOR requires.
        let mid = (0..=s.len() / 2)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        e.str(&s[..mid])
            .unwrap()
            .str(&s[mid..])
            .unwrap()
            .end()
            .unwrap();
    };
    let chunked_bytes = |e: &mut Encoder<&mut Vec<u8>>, b: &Option<Cow<'_, [u8]>>| match b {
        Some(b) => {
            let mid = b.len() / 2;
            e.begin_bytes().unwrap().bytes(&b[..mid]).unwrap();
            e.bytes(&b[mid..]).unwrap().end().unwrap();
        }
        None => {
            e.null().unwrap();
        }
    };
    e.begin_array().unwrap();
    chunked_str(e, &r.topic);
    match r.partition {
        Some(p) => e.i32(p).unwrap(),
        None => e.null().unwrap(),
    };
    match r.offset {
        Some(o) => e.i64(o).unwrap(),
        None => e.null().unwrap(),
    };
    e.i64(r.timestamp).unwrap();
    chunked_bytes(e, &r.key);
    chunked_bytes(e, &r.value);
    e.begin_array().unwrap();
    for h in &r.headers {
        e.begin_array().unwrap();
        chunked_str(e, &h.name);
        chunked_bytes(e, &h.value);
        e.end().unwrap();
    }
    e.end().unwrap();
    // An element a later version might add: must be skipped.
    e.str("future field").unwrap();
    e.end().unwrap();
}

/// Writes `batch` into `buf` as a host does into a guest's buffer; whether it filled it exactly.
fn write_in_place(batch: &Batch<'_>, buf: &mut [u8]) -> bool {
    let mut sink = wire::SliceSink::new(buf);
    let mut writer = wire::BatchWriter::new(&mut sink, batch.records.len());
    for r in &batch.records {
        writer.record(wire::RecordFields::of(r), crate::encode::headers_of(r));
    }
    writer.finish(batch.state.as_deref());
    sink.filled()
}

proptest! {
    #[test]
    fn topic_comparison_is_equality(
        a in proptest::collection::vec(0u8..3, 0..20),
        b in proptest::collection::vec(0u8..3, 0..20),
    ) {
        prop_assert_eq!(crate::fast::same_bytes(&a, &b), a == b);
        prop_assert!(crate::fast::same_bytes(&a, &a.clone()));
    }

    #[test]
    fn batch_round_trips(
        records in proptest::collection::vec(record(), 0..16),
        state in proptest::option::of(bytes()),
    ) {
        let batch = Batch { records, state };
        let mut buf = Vec::new();
        wire::encode_batch(&batch, &mut buf);
        prop_assert_eq!(wire::decode_batch(&buf).unwrap(), batch);
    }

    #[test]
    fn batches_written_in_place_take_their_computed_size(
        records in proptest::collection::vec(record(), 0..16),
        state in proptest::option::of(bytes()),
    ) {
        let batch = Batch { records, state };
        let mut expected = Vec::new();
        wire::encode_batch(&batch, &mut expected);

        let records_len = batch
            .records
            .iter()
            .map(|r| wire::RecordFields::of(r).encoded_len(crate::encode::headers_of(r)))
            .sum();
        let state = batch.state.as_deref();
        let len = wire::batch_len(batch.records.len(), records_len, state);
        prop_assert_eq!(len, expected.len());

        let mut buf = vec![0u8; len];
        prop_assert!(write_in_place(&batch, &mut buf));
        prop_assert_eq!(buf, expected);
    }

    #[test]
    fn a_slice_too_short_or_too_long_is_not_filled(
        records in proptest::collection::vec(record(), 1..4),
        shorter in any::<bool>(),
    ) {
        let batch = Batch::new(records);
        let mut expected = Vec::new();
        wire::encode_batch(&batch, &mut expected);
        let len = if shorter { expected.len() - 1 } else { expected.len() + 1 };
        prop_assert!(!write_in_place(&batch, &mut vec![0u8; len]));
    }

    #[test]
    fn output_round_trips(out in output()) {
        let mut buf = Vec::new();
        wire::encode_output(&out, &mut buf);
        prop_assert_eq!(wire::decode_output(&buf).unwrap(), DecodedOutput::from(out));
    }

    #[test]
    fn kept_records_go_by_index_and_resolve_to_the_same_output(
        records in proptest::collection::vec(record(), 0..12),
        actions in proptest::collection::vec(0u8..6, 12),
        reverse in any::<bool>(),
        noted_while_decoding in any::<bool>(),
    ) {
        let mut buf = Vec::new();
        wire::encode_batch(&Batch::new(records), &mut buf);
        // The guest notes identities as it decodes; `fill` does it afterwards (general decoder).
        let mut inputs = Inputs::new();
        let input = if noted_while_decoding {
            wire::decode_input_noting(&buf, &mut inputs).unwrap()
        } else {
            let input = wire::decode_input(&buf).unwrap();
            inputs.fill(&input.batch);
            input
        };
        prop_assert!(input.keeps_by_index);
        // What a plugin might do with each record; `Some(i)`: kept unchanged, input `i`.
        let mut out = Output::new();
        let mut unchanged = Vec::new();
        for (i, r) in input.batch.records.iter().enumerate() {
            let kept = r.clone().keep();
            match actions[i] {
                0 => { out.keep(kept); unchanged.push(Some(i as u32)); }
                1 => {}
                2 => {
                    // Equal bytes at another address (or a tombstone made empty): sent in full.
                    let copy = kept.value.as_deref().unwrap_or_default().to_vec();
                    out.keep(OutRecord { value: Some(Cow::Owned(copy)), ..kept });
                    unchanged.push(None);
                }
                3 => { out.keep(kept.to_topic("elsewhere")); unchanged.push(None); }
                4 => {
                    out.keep(kept.clone());
                    out.keep(kept);
                    unchanged.extend([Some(i as u32), Some(i as u32)]);
                }
                _ => {
                    out.keep(OutRecord { timestamp: kept.timestamp.wrapping_add(1), ..kept });
                    unchanged.push(None);
                }
            }
        }
        if reverse {
            out.records.reverse();
            unchanged.reverse();
        }
        let mut encoded = Vec::new();
        wire::encode_output_keeping(&out, &mut inputs, &mut encoded);
        let decoded = wire::decode_output(&encoded).unwrap();
        for (entry, unchanged) in decoded.entries.iter().zip(&unchanged) {
            match (entry, unchanged) {
                (OutEntry::Input(i), Some(expected)) => prop_assert_eq!(i, expected),
                (OutEntry::Input(i), None) => prop_assert!(false, "changed record sent as index {}", i),
                // Found by address; a record with neither key nor value only where expected.
                (OutEntry::Written(_), Some(i)) => {
                    let r = &input.batch.records[*i as usize];
                    prop_assert!(r.key.is_none() && r.value.is_none(), "unchanged record {} sent in full", i);
                }
                (OutEntry::Written(_), None) => {}
            }
        }
        prop_assert_eq!(decoded.resolve(&input.batch.records), Some(out));
    }

    #[test]
    fn config_round_trips(entries in proptest::collection::btree_map("[a-z_]{1,8}", value(), 0..8)) {
        let mut config = Config::new();
        for (k, v) in entries {
            config.insert(k, v);
        }
        prop_assert_eq!(Config::from_cbor(&config.to_cbor()).unwrap(), config);
    }

    #[test]
    fn indefinite_lengths_and_unknown_trailing_fields_decode_the_same(
        records in proptest::collection::vec(record(), 0..6)
    ) {
        let mut buf = Vec::new();
        let mut e = Encoder::new(&mut buf);
        e.begin_array().unwrap().begin_array().unwrap();
        for r in &records {
            encode_record_indefinite(r, &mut e);
        }
        e.end().unwrap().end().unwrap();
        prop_assert_eq!(wire::decode_batch(&buf).unwrap(), Batch::new(records));
    }

    #[test]
    fn the_fast_path_takes_what_the_encoders_write(
        records in proptest::collection::vec(record(), 0..8),
        state in proptest::option::of(bytes()),
        out in output(),
    ) {
        let mut buf = Vec::new();
        wire::encode_batch(&Batch { records, state }, &mut buf);
        prop_assert!(crate::fast::batch(&buf, None).is_some());
        buf.clear();
        wire::encode_output(&out, &mut buf);
        prop_assert!(crate::fast::output(&buf).is_some());
    }

    #[test]
    fn the_fast_path_agrees_with_the_general_decoder_on_damaged_input(
        records in proptest::collection::vec(record(), 1..6),
        out in output(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut batch = Vec::new();
        wire::encode_batch(&Batch::new(records), &mut batch);
        let mut output = Vec::new();
        wire::encode_output(&out, &mut output);
        for (at, byte) in &damage {
            let i = at.index(batch.len());
            batch[i] = *byte;
            let i = at.index(output.len());
            output[i] = *byte;
        }
        if let Some(fast) = crate::fast::batch(&batch, None) {
            prop_assert_eq!(Some(fast), wire::decode_input_general(&batch).ok());
        }
        if let Some(fast) = crate::fast::output(&output) {
            prop_assert_eq!(Some(fast), wire::decode_output_general(&output).ok());
        }
    }

    #[test]
    fn decoders_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = wire::decode_batch(&bytes);
        let _ = wire::decode_output(&bytes);
        let _ = crate::fast::batch(&bytes, None);
        let _ = crate::fast::output(&bytes);
        let _ = Config::from_cbor(&bytes);
    }

    #[test]
    fn truncated_batches_are_errors_not_panics(
        records in proptest::collection::vec(record(), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        wire::encode_batch(&Batch::new(records), &mut buf);
        let cut = cut.index(buf.len());
        prop_assert!(wire::decode_batch(&buf[..cut]).is_err());
    }
}

#[test]
fn a_huge_declared_length_does_not_allocate() {
    // [ array(2^32-1) ] with nothing after it: must fail fast, not reserve 4 G records.
    let bytes = [0x81, 0x9a, 0xff, 0xff, 0xff, 0xff];
    assert!(wire::decode_batch(&bytes).is_err());
    let bytes = [0x83, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(wire::decode_output(&bytes).is_err());
}

#[test]
fn an_output_may_leave_out_trailing_nullable_fields() {
    // [[[null, 5]]]: one output record with only topic and timestamp, no errors, no failure.
    let bytes = [0x81, 0x81, 0x82, 0xf6, 0x05];
    let out = wire::decode_output(&bytes).unwrap();
    assert_eq!(out.entries, [OutEntry::Written(0)]);
    let record = &out.written[0];
    assert_eq!(record.timestamp, 5);
    assert!(record.value.is_none() && out.errors.is_empty() && out.failure.is_none());
}

#[test]
fn decoding_borrows_from_the_input() {
    let batch = Batch::new(alloc::vec![Record {
        topic: "t".into(),
        partition: None,
        offset: None,
        timestamp: 0,
        key: None,
        value: Some(Cow::Owned(alloc::vec![1, 2, 3])),
        headers: Vec::new(),
    }]);
    let mut buf = Vec::new();
    wire::encode_batch(&batch, &mut buf);
    let decoded = wire::decode_batch(&buf).unwrap();
    assert!(matches!(decoded.records[0].value, Some(Cow::Borrowed(_))));
    assert!(matches!(decoded.records[0].topic, Cow::Borrowed(_)));
}
