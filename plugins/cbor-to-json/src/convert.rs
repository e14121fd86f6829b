//! CBOR in, JSON text out, in one pass: minicbor reads the items, and each is written as JSON as
//! soon as it is read, so no tree of the document is built and map entries keep their order.
//!
//! The mapping, for the README and the tests:
//!
//! | CBOR                                | JSON                                               |
//! |-------------------------------------|----------------------------------------------------|
//! | unsigned / negative integer         | number, if it fits `u64` / `i64`; else an error    |
//! | bignum (tag 2/3 on a byte string)   | number, if it fits `u64` / `i64`; else an error    |
//! | float (half, single, double)        | number; NaN and ±Infinity become `null`            |
//! | `true`, `false`                     | `true`, `false`                                    |
//! | `null`, `undefined`                 | `null`                                             |
//! | other simple values                 | an error                                           |
//! | text string (definite or chunked)   | string                                             |
//! | byte string (definite or chunked)   | string: base64 (RFC 4648, padded) or lowercase hex |
//! | array                               | array                                              |
//! | map                                 | object; integer keys as decimal text; other keys, and keys that repeat, are errors |
//! | any other tag (1 = epoch time, ...) | the tagged value itself; the tag is dropped        |
//!
//! Arrays and maps nest at most [`MAX_DEPTH`] deep, so a hostile payload cannot exhaust the
//! guest's stack; tags are read in a loop, so chains of them do not recurse.

use std::borrow::Cow;
use std::fmt;

use minicbor::data::Type;
use minicbor::decode::{Decoder, Error as DecodeError};

use crate::binary::{self, BytesAs};

/// Deepest nesting of arrays and maps converted; deeper is a per-record error. Sensor payloads
/// nest a few levels; 64 frames of this converter are a few KiB of the guest's 1 MiB stack.
pub const MAX_DEPTH: usize = 64;

/// Why a value cannot be converted. Positions are byte offsets into the value.
#[derive(Debug)]
pub enum Error {
    /// Not well-formed CBOR (truncated, a bad length, invalid UTF-8 in text, ...).
    Cbor(DecodeError),
    /// One complete item, followed by more bytes.
    Trailing {
        at: usize,
        len: usize,
    },
    TooDeep {
        at: usize,
    },
    /// An integer (or bignum) outside `i64::MIN..=u64::MAX`.
    OutOfRange {
        at: usize,
        value: Option<String>,
    },
    /// A map key that is neither text nor an integer.
    KeyType {
        at: usize,
        found: &'static str,
    },
    /// The same key twice in one map (after integer keys are turned into text).
    DuplicateKey {
        at: usize,
        key: String,
    },
    /// A simple value other than `false`, `true`, `null` and `undefined`.
    Simple {
        at: usize,
        value: u8,
    },
    /// Something that cannot start an item here (a stray break, a reserved byte).
    Unexpected {
        at: usize,
        found: Type,
    },
    /// Writing JSON failed; `serde_json` into a `Vec` does not, so this is never seen.
    Json(serde_json::Error),
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Error {
        Error::Cbor(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cbor(e) => write!(f, "value is not valid CBOR: {e}"),
            Error::Trailing { at, len } => write!(
                f,
                "value has {} bytes after its CBOR item (which ends at byte {at})",
                len - at
            ),
            Error::TooDeep { at } => write!(
                f,
                "CBOR arrays and maps nest deeper than {MAX_DEPTH} levels (at byte {at})"
            ),
            Error::OutOfRange {
                at,
                value: Some(value),
            } => write!(
                f,
                "CBOR integer {value} at byte {at} is out of the 64-bit range"
            ),
            Error::OutOfRange { at, value: None } => {
                write!(f, "CBOR bignum at byte {at} is out of the 64-bit range")
            }
            Error::KeyType { at, found } => write!(
                f,
                "CBOR map key at byte {at} is {found}: only text and integer keys convert to JSON"
            ),
            Error::DuplicateKey { at, key } => write!(
                f,
                "CBOR map at byte {at} has the key {key:?} twice (integer keys count as text)"
            ),
            Error::Simple { at, value } => {
                write!(f, "CBOR simple value {value} at byte {at} has no JSON form")
            }
            Error::Unexpected { at, found } => {
                write!(
                    f,
                    "value is not valid CBOR: unexpected {found} at byte {at}"
                )
            }
            Error::Json(e) => write!(f, "cannot write JSON: {e}"),
        }
    }
}

/// Converts one CBOR item, which must span all of `cbor`, into JSON text.
pub fn to_json(cbor: &[u8], bytes_as: BytesAs) -> Result<Vec<u8>, Error> {
    let mut d = Decoder::new(cbor);
    // Text grows by its quotes, byte strings by a third (base64) or double (hex): sized on the
    // input already in memory, never on a length read from it.
    let mut w = Writer {
        out: Vec::with_capacity(cbor.len() + cbor.len() / 2 + 2),
        bytes_as,
    };
    w.item(&mut d, MAX_DEPTH)?;
    if d.position() < cbor.len() {
        return Err(Error::Trailing {
            at: d.position(),
            len: cbor.len(),
        });
    }
    Ok(w.out)
}

struct Writer {
    out: Vec<u8>,
    bytes_as: BytesAs,
}

impl Writer {
    /// Converts the item at the decoder's position; `depth` is how many more arrays or maps
    /// may open.
    fn item(&mut self, d: &mut Decoder<'_>, depth: usize) -> Result<(), Error> {
        let mut at = d.position();
        // Tags only annotate the item they enclose: drop them (in a loop, so that a long chain
        // of tags costs no stack), except that a bignum tag on bytes means an integer.
        let mut bignum = None;
        while d.datatype()? == Type::Tag {
            bignum = match d.tag()?.as_u64() {
                2 => Some(false),
                3 => Some(true),
                _ => None,
            };
            at = d.position();
        }
        let ty = d.datatype()?;
        if let (Some(negative), Type::Bytes | Type::BytesIndef) = (bignum, ty) {
            return self.bignum(d, negative, at);
        }
        match ty {
            Type::Bool => {
                let b = d.bool()?;
                self.raw(if b { "true" } else { "false" });
            }
            Type::Null => {
                d.null()?;
                self.raw("null");
            }
            Type::Undefined => {
                d.undefined()?;
                self.raw("null");
            }
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => self.json(&d.u64()?)?,
            Type::I8 | Type::I16 | Type::I32 | Type::I64 => self.json(&d.i64()?)?,
            Type::Int => {
                let value = d.int()?.to_string();
                return Err(Error::OutOfRange {
                    at,
                    value: Some(value),
                });
            }
            Type::F16 => self.float32(half(d)?)?,
            Type::F32 => self.float32(d.f32()?)?,
            Type::F64 => self.float64(d.f64()?)?,
            Type::String => self.json(d.str()?)?,
            Type::StringIndef => self.json(&chunked_text(d)?)?,
            Type::Bytes => self.bytes(d.bytes()?),
            Type::BytesIndef => self.bytes(&chunked_bytes(d)?),
            Type::Array | Type::ArrayIndef | Type::Map | Type::MapIndef if depth == 0 => {
                return Err(Error::TooDeep { at });
            }
            Type::Array | Type::ArrayIndef => self.array(d, depth - 1)?,
            Type::Map | Type::MapIndef => self.map(d, depth - 1, at)?,
            Type::Simple => {
                let value = d.simple()?;
                return Err(Error::Simple { at, value });
            }
            found @ (Type::Tag | Type::Break | Type::Unknown(_)) => {
                return Err(Error::Unexpected { at, found });
            }
        }
        Ok(())
    }

    fn array(&mut self, d: &mut Decoder<'_>, depth: usize) -> Result<(), Error> {
        let len = d.array()?;
        self.out.push(b'[');
        let mut n = 0;
        while more(d, len, n)? {
            if n > 0 {
                self.out.push(b',');
            }
            self.item(d, depth)?;
            n += 1;
        }
        self.out.push(b']');
        Ok(())
    }

    fn map(&mut self, d: &mut Decoder<'_>, depth: usize, at: usize) -> Result<(), Error> {
        let len = d.map()?;
        self.out.push(b'{');
        // Kept to find repeated keys once the map is read; the texts borrow from the input
        // unless they were integers or chunked.
        let mut keys: Vec<Cow<'_, str>> = Vec::new();
        while more(d, len, keys.len() as u64)? {
            if !keys.is_empty() {
                self.out.push(b',');
            }
            let key = key(d)?;
            self.json(&*key)?;
            self.out.push(b':');
            self.item(d, depth)?;
            keys.push(key);
        }
        self.out.push(b'}');
        keys.sort_unstable();
        // `windows(2)` yields pairs, so both indexes exist.
        match keys.windows(2).find(|pair| pair[0] == pair[1]) {
            Some(pair) => Err(Error::DuplicateKey {
                at,
                key: pair[0].to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The integer a bignum's bytes spell (big-endian), if it fits 64 bits.
    fn bignum(&mut self, d: &mut Decoder<'_>, negative: bool, at: usize) -> Result<(), Error> {
        let mut n: u64 = 0;
        for chunk in d.bytes_iter()? {
            for &b in chunk? {
                if n > u64::MAX >> 8 {
                    return Err(Error::OutOfRange { at, value: None });
                }
                n = (n << 8) | u64::from(b);
            }
        }
        if !negative {
            return self.json(&n);
        }
        // Tag 3 holds n for the integer -1 - n.
        match i64::try_from(n) {
            Ok(n) => self.json(&(-1 - n)),
            Err(_) => Err(Error::OutOfRange { at, value: None }),
        }
    }

    fn raw(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    /// A string or a number, written by serde_json.
    fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        serde_json::to_writer(&mut self.out, value).map_err(Error::Json)
    }

    /// Floats print in their own precision (a single-precision 21.7 stays "21.7").
    fn float32(&mut self, f: f32) -> Result<(), Error> {
        if f.is_finite() {
            self.json(&f)
        } else {
            self.raw("null");
            Ok(())
        }
    }

    fn float64(&mut self, f: f64) -> Result<(), Error> {
        if f.is_finite() {
            self.json(&f)
        } else {
            self.raw("null");
            Ok(())
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.out.push(b'"');
        match self.bytes_as {
            BytesAs::Base64 => binary::base64(&mut self.out, bytes),
            BytesAs::Hex => binary::hex(&mut self.out, bytes),
        }
        self.out.push(b'"');
    }
}

/// Whether another element follows in an array or map of `len` elements (`None`: indefinite,
/// ended by a break, which this consumes) of which `read` are read.
fn more(d: &mut Decoder<'_>, len: Option<u64>, read: u64) -> Result<bool, Error> {
    match len {
        Some(len) => Ok(read < len),
        None if d.datatype()? == Type::Break => {
            d.set_position(d.position() + 1);
            Ok(false)
        }
        None => Ok(true),
    }
}

/// A map key as JSON object keys must be: text.
fn key<'b>(d: &mut Decoder<'b>) -> Result<Cow<'b, str>, Error> {
    let at = d.position();
    Ok(match d.datatype()? {
        Type::String => Cow::Borrowed(d.str()?),
        Type::StringIndef => Cow::Owned(chunked_text(d)?),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Cow::Owned(d.u64()?.to_string()),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Cow::Owned(d.i64()?.to_string()),
        Type::Int => {
            let value = d.int()?.to_string();
            return Err(Error::OutOfRange {
                at,
                value: Some(value),
            });
        }
        other => {
            return Err(Error::KeyType {
                at,
                found: kind(other),
            })
        }
    })
}

fn chunked_text(d: &mut Decoder<'_>) -> Result<String, Error> {
    let mut text = String::new();
    for chunk in d.str_iter()? {
        text.push_str(chunk?);
    }
    Ok(text)
}

fn chunked_bytes(d: &mut Decoder<'_>) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    for chunk in d.bytes_iter()? {
        bytes.extend_from_slice(chunk?);
    }
    Ok(bytes)
}

/// A half-precision float, widened to `f32` (which holds every half exactly). minicbor decodes
/// halves only with its `half` feature, whose crate brings a derive-macro tree into a plugin
/// that needs nothing of it but these few lines.
fn half(d: &mut Decoder<'_>) -> Result<f32, Error> {
    let at = d.position();
    // The initial byte 0xf9 (checked by the caller's `datatype`), then two bytes, big-endian.
    let [hi, lo] = *d
        .input()
        .get(at + 1..at + 3)
        .and_then(|b| <&[u8; 2]>::try_from(b).ok())
        .ok_or_else(|| DecodeError::end_of_input().at(at))?;
    d.set_position(at + 3);
    Ok(f16_to_f32(u16::from_be_bytes([hi, lo])))
}

/// IEEE 754 binary16 (1 sign bit, 5 exponent bits with bias 15, 10 fraction bits) to `f32`.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f32::from(bits & 0x3ff);
    sign * match exponent {
        // Subnormal: 0.fraction × 2^-14 = fraction × 2^-24.
        0 => fraction * 2f32.powi(-24),
        31 if fraction == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        // Normal: 1.fraction × 2^(exponent - 15) = (1024 + fraction) × 2^(exponent - 25).
        _ => (1024.0 + fraction) * 2f32.powi(exponent - 25),
    }
}

/// The kind of a CBOR item, for messages.
fn kind(ty: Type) -> &'static str {
    match ty {
        Type::Bool => "a boolean",
        Type::Null | Type::Undefined => "null",
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => "an integer",
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => "an integer",
        Type::F16 | Type::F32 | Type::F64 => "a float",
        Type::Simple => "a simple value",
        Type::Bytes | Type::BytesIndef => "a byte string",
        Type::String | Type::StringIndef => "text",
        Type::Array | Type::ArrayIndef => "an array",
        Type::Map | Type::MapIndef => "a map",
        Type::Tag => "a tagged item",
        Type::Break => "a break",
        Type::Unknown(_) => "a reserved byte",
    }
}
