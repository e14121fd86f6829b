//! The plugin's configuration: the `config = { ... }` table of its `[[plugins]]` entry, handed to
//! `hw_init` as a plain CBOR map with text keys.
//!
//! Unlike the record types this is "natural" CBOR (maps, text, numbers), so that a plugin in any
//! language can read it with any CBOR library. Values nest (arrays, tables); decoding stops at
//! [`MAX_DEPTH`] so a hostile input cannot exhaust the guest's stack.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use minicbor::data::Type;
use minicbor::decode::{Decoder, Error as DecodeError};
use minicbor::encode::{Encoder, Error as EncodeError, Write};
use minicbor::{Decode, Encode};

use crate::wire;

/// Deepest nesting of arrays and maps accepted in a config.
pub const MAX_DEPTH: usize = 32;

/// One config value. TOML datetimes arrive as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    /// A nested table, in key order as written by the host.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// Name of the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "an array",
            Value::Map(_) => "a table",
        }
    }

    /// Integers and floats both count as numbers (TOML `min = -40` is an integer).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// A configuration error with a message meant for the operator, e.g.
/// "config key `min` must be a number, found text".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.0
    }
}

/// The config map, in key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    entries: Vec<(String, Value)>,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// Sets `key`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A number (integer or float), if the key is present. Present with another type is an error.
    pub fn number(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.typed(key, "a number", Value::as_f64)
    }

    /// A required number.
    pub fn require_number(&self, key: &str) -> Result<f64, ConfigError> {
        self.number(key)?.ok_or_else(|| missing(key))
    }

    /// An integer, if present.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        self.typed(key, "an integer", Value::as_i64)
    }

    /// A required integer.
    pub fn require_integer(&self, key: &str) -> Result<i64, ConfigError> {
        self.integer(key)?.ok_or_else(|| missing(key))
    }

    /// Text, if present.
    pub fn string(&self, key: &str) -> Result<Option<&str>, ConfigError> {
        self.typed(key, "text", Value::as_str)
    }

    /// Required text.
    pub fn require_string(&self, key: &str) -> Result<&str, ConfigError> {
        self.string(key)?.ok_or_else(|| missing(key))
    }

    /// A boolean, if present.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.typed(key, "a boolean", Value::as_bool)
    }

    /// Refuses keys the plugin does not know, so a typo (`minimum` for `min`) is an error at
    /// startup instead of a silently ignored setting.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self
            .entries
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(ConfigError(format!(
                "unknown config key `{k}` (known keys: {})",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        what: &str,
        get: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match get(v) {
                Some(t) => Ok(Some(t)),
                None => Err(ConfigError(format!(
                    "config key `{key}` must be {what}, found {}",
                    v.kind()
                ))),
            },
        }
    }

    /// The CBOR map handed to `hw_init`.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        wire::encode_into(self, &mut buf);
        buf
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<Config, DecodeError> {
        wire::decode_all(bytes)
    }
}

fn missing(key: &str) -> ConfigError {
    ConfigError(format!("config key `{key}` is missing"))
}

impl<C> Encode<C> for Config {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncodeError<W::Error>> {
        encode_map(e, &self.entries)
    }
}

impl<'b, C> Decode<'b, C> for Config {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        Ok(Config {
            entries: decode_map(d, MAX_DEPTH)?,
        })
    }
}

impl<C> Encode<C> for Value {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncodeError<W::Error>> {
        match self {
            Value::Null => e.null()?,
            Value::Bool(b) => e.bool(*b)?,
            Value::Int(i) => e.i64(*i)?,
            Value::Float(f) => e.f64(*f)?,
            Value::Text(s) => e.str(s)?,
            Value::Bytes(b) => e.bytes(b)?,
            Value::Array(items) => {
                e.array(items.len() as u64)?;
                for v in items {
                    v.encode(e, &mut ())?;
                }
                e
            }
            Value::Map(entries) => {
                encode_map(e, entries)?;
                e
            }
        };
        Ok(())
    }
}

impl<'b, C> Decode<'b, C> for Value {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        decode_value(d, MAX_DEPTH)
    }
}

fn encode_map<W: Write>(
    e: &mut Encoder<W>,
    entries: &[(String, Value)],
) -> Result<(), EncodeError<W::Error>> {
    e.map(entries.len() as u64)?;
    for (k, v) in entries {
        e.str(k)?;
        v.encode(e, &mut ())?;
    }
    Ok(())
}

fn decode_map(d: &mut Decoder<'_>, depth: usize) -> Result<Vec<(String, Value)>, DecodeError> {
    let at = d.position();
    let len = d.map()?;
    let mut entries: Vec<(String, Value)> = Vec::new();
    let mut i = 0u64;
    loop {
        match len {
            Some(n) if i == n => break,
            None if d.datatype()? == Type::Break => {
                d.set_position(d.position() + 1);
                break;
            }
            _ => {}
        }
        let key = wire::text(d)?.to_string();
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(DecodeError::message("config: duplicate key").at(at));
        }
        let value = decode_value(d, depth)?;
        entries.push((key, value));
        i += 1;
    }
    Ok(entries)
}

fn decode_value(d: &mut Decoder<'_>, depth: usize) -> Result<Value, DecodeError> {
    let at = d.position();
    Ok(match d.datatype()? {
        Type::Null => {
            d.null()?;
            Value::Null
        }
        Type::Bool => Value::Bool(d.bool()?),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 | Type::I8 | Type::I16 | Type::I32 => {
            Value::Int(d.i64()?)
        }
        Type::I64 | Type::Int => Value::Int(d.i64()?),
        Type::F32 | Type::F64 => Value::Float(d.f64()?),
        Type::String | Type::StringIndef => Value::Text(wire::text(d)?.to_string()),
        Type::Bytes | Type::BytesIndef => Value::Bytes(wire::bytes(d)?.into_owned()),
        Type::Array | Type::ArrayIndef | Type::Map | Type::MapIndef if depth == 0 => {
            return Err(DecodeError::message("config: nested too deeply").at(at));
        }
        Type::Array | Type::ArrayIndef => {
            Value::Array(wire::list(d, |d| decode_value(d, depth - 1))?)
        }
        Type::Map | Type::MapIndef => Value::Map(decode_map(d, depth - 1)?),
        _ => return Err(DecodeError::message("config: unsupported CBOR value").at(at)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn accessors_accept_ints_as_numbers_and_name_bad_keys() {
        let mut c = Config::new();
        c.insert("min", Value::Int(-40));
        c.insert("max", Value::Float(125.5));
        c.insert("field", Value::Text("temp".into()));
        let c = Config::from_cbor(&c.to_cbor()).unwrap();
        assert_eq!(c.require_number("min").unwrap(), -40.0);
        assert_eq!(c.number("max").unwrap(), Some(125.5));
        assert_eq!(c.require_string("field").unwrap(), "temp");
        assert_eq!(
            c.require_number("field").unwrap_err().0,
            "config key `field` must be a number, found text"
        );
        assert_eq!(
            c.require_string("nope").unwrap_err().0,
            "config key `nope` is missing"
        );
        assert!(c.deny_unknown(&["min", "max", "field"]).is_ok());
        assert!(c
            .deny_unknown(&["min", "max"])
            .unwrap_err()
            .0
            .contains("`field`"));
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_not_a_stack_overflow() {
        // {"k": [[[[...]]]]} nested far deeper than MAX_DEPTH.
        let mut bytes = vec![0xa1, 0x61, b'k'];
        bytes.extend(core::iter::repeat_n(0x81, 10_000));
        bytes.push(0x00);
        assert!(Config::from_cbor(&bytes).is_err());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        // {"a": 1, "a": 2}
        let bytes = [0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02];
        assert!(Config::from_cbor(&bytes).is_err());
    }
}
