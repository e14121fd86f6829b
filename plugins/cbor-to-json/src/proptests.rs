//! Property tests: generated documents, encoded with minicbor's encoder in every form CBOR allows
//! for them (definite or chunked, tagged or not), convert to the JSON a model writes for them;
//! and no input, however broken, makes the converter panic.

use minicbor::data::Tag;
use minicbor::Encoder;
use proptest::prelude::*;

use crate::binary::{self, BytesAs};
use crate::convert::{f16_to_f32, to_json};

/// A CBOR item, with the choices of encoding that must not change its JSON.
#[derive(Debug, Clone)]
enum C {
    Null,
    Undefined,
    Bool(bool),
    Uint(u64),
    Int(i64),
    Half(u16),
    F32(f32),
    F64(f64),
    /// Chunks of text: one chunk and `chunked == false` is a definite string.
    Text(Vec<String>, bool),
    Bytes(Vec<Vec<u8>>, bool),
    Array(Vec<C>, bool),
    Map(Vec<(Key, C)>, bool),
    /// Any tag but the bignum ones (2, 3), which the fixtures cover.
    Tagged(u64, Box<C>),
}

#[derive(Debug, Clone)]
enum Key {
    Text(String),
    Int(i64),
}

impl Key {
    fn text(&self) -> String {
        match self {
            Key::Text(s) => s.clone(),
            Key::Int(i) => i.to_string(),
        }
    }
}

fn encode(c: &C, e: &mut Encoder<Vec<u8>>) {
    match c {
        C::Null => {
            e.null().unwrap();
        }
        C::Undefined => {
            e.undefined().unwrap();
        }
        C::Bool(b) => {
            e.bool(*b).unwrap();
        }
        C::Uint(n) => {
            e.u64(*n).unwrap();
        }
        C::Int(n) => {
            e.i64(*n).unwrap();
        }
        C::Half(bits) => {
            e.writer_mut().push(0xf9);
            e.writer_mut().extend_from_slice(&bits.to_be_bytes());
        }
        C::F32(f) => {
            e.f32(*f).unwrap();
        }
        C::F64(f) => {
            e.f64(*f).unwrap();
        }
        C::Text(chunks, true) => {
            e.begin_str().unwrap();
            for chunk in chunks {
                e.str(chunk).unwrap();
            }
            e.end().unwrap();
        }
        C::Text(chunks, false) => {
            e.str(&chunks.concat()).unwrap();
        }
        C::Bytes(chunks, true) => {
            e.begin_bytes().unwrap();
            for chunk in chunks {
                e.bytes(chunk).unwrap();
            }
            e.end().unwrap();
        }
        C::Bytes(chunks, false) => {
            e.bytes(&chunks.concat()).unwrap();
        }
        C::Array(items, indefinite) => {
            if *indefinite {
                e.begin_array().unwrap();
            } else {
                e.array(items.len() as u64).unwrap();
            }
            for item in items {
                encode(item, e);
            }
            if *indefinite {
                e.end().unwrap();
            }
        }
        C::Map(entries, indefinite) => {
            if *indefinite {
                e.begin_map().unwrap();
            } else {
                e.map(entries.len() as u64).unwrap();
            }
            for (key, value) in entries {
                match key {
                    Key::Text(s) => {
                        e.str(s).unwrap();
                    }
                    Key::Int(i) => {
                        e.i64(*i).unwrap();
                    }
                }
                encode(value, e);
            }
            if *indefinite {
                e.end().unwrap();
            }
        }
        C::Tagged(tag, inner) => {
            e.tag(Tag::new(*tag)).unwrap();
            encode(inner, e);
        }
    }
}

fn cbor(c: &C) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    encode(c, &mut e);
    e.into_writer()
}

/// The JSON the converter must write, compact, with hex bytes.
fn model(c: &C) -> String {
    let finite = |ok: bool, text: String| if ok { text } else { "null".into() };
    match c {
        C::Null | C::Undefined => "null".into(),
        C::Bool(b) => b.to_string(),
        C::Uint(n) => n.to_string(),
        C::Int(n) => n.to_string(),
        C::Half(bits) => {
            let f = f16_to_f32(*bits);
            finite(f.is_finite(), serde_json::to_string(&f).unwrap())
        }
        C::F32(f) => finite(f.is_finite(), serde_json::to_string(f).unwrap()),
        C::F64(f) => finite(f.is_finite(), serde_json::to_string(f).unwrap()),
        C::Text(chunks, _) => serde_json::to_string(&chunks.concat()).unwrap(),
        C::Bytes(chunks, _) => {
            let mut hex = Vec::new();
            binary::hex(&mut hex, &chunks.concat());
            format!("\"{}\"", String::from_utf8(hex).unwrap())
        }
        C::Array(items, _) => {
            let items: Vec<String> = items.iter().map(model).collect();
            format!("[{}]", items.join(","))
        }
        C::Map(entries, _) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(&k.text()).unwrap(), model(v)))
                .collect();
            format!("{{{}}}", entries.join(","))
        }
        C::Tagged(_, inner) => model(inner),
    }
}

fn item() -> impl Strategy<Value = C> {
    let chunks = |max| prop::collection::vec(any::<String>(), 1..max);
    let leaf = prop_oneof![
        Just(C::Null),
        Just(C::Undefined),
        any::<bool>().prop_map(C::Bool),
        any::<u64>().prop_map(C::Uint),
        any::<i64>().prop_map(C::Int),
        any::<u16>().prop_map(C::Half),
        any::<f32>().prop_map(C::F32),
        any::<f64>().prop_map(C::F64),
        (chunks(4), any::<bool>()).prop_map(|(c, chunked)| C::Text(c, chunked)),
        (
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..4),
            any::<bool>()
        )
            .prop_map(|(c, chunked)| C::Bytes(c, chunked)),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        let key = prop_oneof![
            any::<String>().prop_map(Key::Text),
            "[ab]".prop_map(Key::Text),
            (-3i64..3).prop_map(Key::Int),
            any::<i64>().prop_map(Key::Int),
        ];
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..5), any::<bool>())
                .prop_map(|(items, indefinite)| C::Array(items, indefinite)),
            (
                prop::collection::vec((key, inner.clone()), 0..5),
                any::<bool>()
            )
                .prop_map(|(mut entries, indefinite)| {
                    // JSON keys must differ (the converter refuses repeats; tested apart).
                    let mut seen = std::collections::HashSet::new();
                    entries.retain(|(k, _)| seen.insert(k.text()));
                    C::Map(entries, indefinite)
                }),
            (prop_oneof![0u64..2, 4u64..], inner).prop_map(|(tag, c)| C::Tagged(tag, Box::new(c))),
        ]
    })
}

proptest! {
    #[test]
    fn converts_as_the_model_says(c in item()) {
        let json = to_json(&cbor(&c), BytesAs::Hex).unwrap();
        let json = String::from_utf8(json).unwrap();
        prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{}", json);
        prop_assert_eq!(json, model(&c));
    }

    #[test]
    fn prefixes_and_extensions_are_errors(c in item(), extra in any::<u8>()) {
        // CBOR items are self-delimiting: no strict prefix of one is a whole item.
        let bytes = cbor(&c);
        for len in 0..bytes.len() {
            prop_assert!(to_json(&bytes[..len], BytesAs::Base64).is_err(), "prefix {}", len);
        }
        let mut longer = bytes;
        longer.push(extra);
        prop_assert!(to_json(&longer, BytesAs::Base64).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_converts_is_json(
        bytes in prop::collection::vec(any::<u8>(), 0..96)
    ) {
        if let Ok(json) = to_json(&bytes, BytesAs::Base64) {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
        }
    }
}
