//! Redacts fields of a JSON object without building a tree of it.
//!
//! An object is read as a list of `(key, raw value)` pairs, where a raw value is the exact text
//! of the input ([`RawValue`]). Only the values on a configured path are looked into (parsed
//! again, one level down); everything else is copied as it was written. So a redacted record
//! keeps its key order, its numbers keep their digits (no round trip through `f64`), and a record
//! with nothing to redact is not rewritten at all. Levels that did change are written compactly.
//!
//! Every occurrence of a duplicated key is redacted: JSON readers disagree on which one wins, so
//! leaving any of them would leak the value to some reader.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::settings::{Action, Fields, Node};

/// Why a record value cannot be redacted.
#[derive(Debug)]
pub enum Refused {
    NotJson(serde_json::Error),
    /// Well-formed JSON, but not an object; names what it is.
    NotObject(&'static str),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotJson(e) => write!(f, "value is not JSON: {e}"),
            Refused::NotObject(kind) => write!(f, "value is not a JSON object (found {kind})"),
        }
    }
}

/// The redacted document, or `None` when no configured field is in it (the caller then keeps
/// the input bytes as they are).
///
/// `mask_json` is the mask as JSON text (quoted and escaped), used with [`Action::Mask`].
pub fn redact(
    json: &[u8],
    fields: &Fields,
    action: &Action,
    mask_json: &str,
) -> Result<Option<Vec<u8>>, Refused> {
    let parsed = parse(serde_json::Deserializer::from_slice(json)).map_err(Refused::NotJson)?;
    match parsed {
        Parsed::Object(entries) => object(&entries, fields, action, mask_json),
        Parsed::Other(kind) => Err(Refused::NotObject(kind)),
    }
}

/// One object level: `None` when nothing in it changed.
fn object(
    entries: &[(Cow<'_, str>, &RawValue)],
    fields: &Fields,
    action: &Action,
    mask_json: &str,
) -> Result<Option<Vec<u8>>, Refused> {
    // What becomes of each entry; `None` until the first change, so that an object with nothing
    // to redact costs no allocation.
    let mut edits: Option<Vec<Edit>> = None;
    for (i, (key, raw)) in entries.iter().enumerate() {
        let edit = match fields.get(key) {
            None => continue,
            Some(Node::Redact) => match action {
                Action::Mask(_) => Edit::Replace(mask_json.as_bytes().to_vec()),
                Action::Remove => Edit::Drop,
            },
            Some(Node::Descend(inner)) => {
                // The value was validated when the outer level was read; only its kind is new.
                let parsed = parse(serde_json::Deserializer::from_str(raw.get()))
                    .map_err(Refused::NotJson)?;
                match parsed {
                    Parsed::Object(nested) => match object(&nested, inner, action, mask_json)? {
                        Some(rewritten) => Edit::Replace(rewritten),
                        None => continue,
                    },
                    // The path leads nowhere: the field is absent, nothing to redact.
                    Parsed::Other(_) => continue,
                }
            }
        };
        // `i` indexes `entries`, and the vector has one edit per entry: in bounds.
        edits.get_or_insert_with(|| vec![Edit::Keep; entries.len()])[i] = edit;
    }
    let Some(edits) = edits else {
        return Ok(None);
    };

    let mut out = Vec::with_capacity(
        entries
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum(),
    );
    out.push(b'{');
    let mut first = true;
    for ((key, raw), edit) in entries.iter().zip(edits) {
        let value = match &edit {
            Edit::Keep => raw.get().as_bytes(),
            Edit::Replace(text) => text,
            Edit::Drop => continue,
        };
        if !first {
            out.push(b',');
        }
        first = false;
        write_key(&mut out, key);
        out.push(b':');
        out.extend_from_slice(value);
    }
    out.push(b'}');
    Ok(Some(out))
}

#[derive(Clone)]
enum Edit {
    Keep,
    Replace(Vec<u8>),
    Drop,
}

/// Writes `key` as a JSON string.
fn write_key(out: &mut Vec<u8>, key: &str) {
    // Cannot fail: a `Vec` has no I/O error and every `str` has a JSON form. Were it to, an
    // empty key keeps the output valid JSON where an `unwrap` would trap the whole batch.
    if serde_json::to_writer(&mut *out, key).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// What a JSON document is, at its top level.
enum Parsed<'a> {
    Object(Vec<(Cow<'a, str>, &'a RawValue)>),
    Other(&'static str),
}

/// Reads one whole document (trailing characters are an error).
fn parse<'a, R: serde_json::de::Read<'a>>(
    mut de: serde_json::Deserializer<R>,
) -> Result<Parsed<'a>, serde_json::Error> {
    let parsed = (&mut de).deserialize_any(Top)?;
    de.end()?;
    Ok(parsed)
}

struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Parsed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Parsed<'de>, E> {
        Ok(Parsed::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Parsed<'de>, E> {
        Ok(Parsed::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Parsed<'de>, E> {
        Ok(Parsed::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Parsed<'de>, E> {
        Ok(Parsed::Other("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Parsed<'de>, E> {
        Ok(Parsed::Other("text"))
    }

    fn visit_unit<E>(self) -> Result<Parsed<'de>, E> {
        Ok(Parsed::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Parsed::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value::<&'de RawValue>()?));
        }
        Ok(Parsed::Object(entries))
    }
}

/// An object key, borrowed from the input unless it had escapes to decode.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use headwater_sdk::{Config, Value};

    fn fields(paths: &[&str]) -> Fields {
        let mut config = Config::new();
        config.insert(
            "fields",
            Value::Array(paths.iter().map(|p| Value::Text(p.to_string())).collect()),
        );
        Settings::from_config(&config).unwrap().fields
    }

    fn mask(json: &str, paths: &[&str]) -> Result<Option<String>, Refused> {
        let out = redact(
            json.as_bytes(),
            &fields(paths),
            &Action::Mask("***".into()),
            "\"***\"",
        )?;
        Ok(out.map(|v| String::from_utf8(v).unwrap()))
    }

    fn remove(json: &str, paths: &[&str]) -> Result<Option<String>, Refused> {
        let out = redact(json.as_bytes(), &fields(paths), &Action::Remove, "")?;
        Ok(out.map(|v| String::from_utf8(v).unwrap()))
    }

    #[test]
    fn masks_and_removes_keeping_order_and_untouched_text() {
        let json = r#"{"z": 1.50, "email": "a@b.c", "n": {"x" : [1, 2]}, "big": 123456789012345678901234}"#;
        assert_eq!(
            mask(json, &["email"]).unwrap().unwrap(),
            r#"{"z":1.50,"email":"***","n":{"x" : [1, 2]},"big":123456789012345678901234}"#
        );
        assert_eq!(
            remove(json, &["email", "z"]).unwrap().unwrap(),
            r#"{"n":{"x" : [1, 2]},"big":123456789012345678901234}"#
        );
        assert_eq!(
            remove(json, &["z", "email", "n", "big"]).unwrap().unwrap(),
            "{}"
        );
    }

    #[test]
    fn dotted_paths_descend_into_objects_only() {
        let json = r#"{"owner": {"email": "a@b.c", "name": "A"}, "id": 7}"#;
        assert_eq!(
            mask(json, &["owner.email"]).unwrap().unwrap(),
            r#"{"owner":{"email":"***","name":"A"},"id":7}"#
        );
        assert_eq!(
            remove(json, &["owner.email", "owner.name"])
                .unwrap()
                .unwrap(),
            r#"{"owner":{},"id":7}"#
        );
        // A whole object is replaced by the mask.
        assert_eq!(
            mask(json, &["owner"]).unwrap().unwrap(),
            r#"{"owner":"***","id":7}"#
        );
        // Paths through something other than an object lead nowhere.
        assert_eq!(mask(r#"{"owner": "x"}"#, &["owner.email"]).unwrap(), None);
        assert_eq!(
            mask(r#"{"owner": [{"email": 1}]}"#, &["owner.email"]).unwrap(),
            None
        );
    }

    #[test]
    fn absent_fields_leave_the_document_alone() {
        assert_eq!(mask(r#"{"a": 1}"#, &["b", "a.b"]).unwrap(), None);
        assert_eq!(mask(r#"{"a": {"c": 1}}"#, &["a.b"]).unwrap(), None);
        assert_eq!(mask("{}", &["a"]).unwrap(), None);
    }

    #[test]
    fn every_occurrence_of_a_duplicated_key_is_redacted() {
        assert_eq!(
            mask(r#"{"a": 1, "b": 2, "a": 3}"#, &["a"])
                .unwrap()
                .unwrap(),
            r#"{"a":"***","b":2,"a":"***"}"#
        );
    }

    #[test]
    fn escaped_keys_match_and_are_written_back_escaped() {
        assert_eq!(
            mask(r#"{"e\u006dail": 1, "q\"k": 2}"#, &["email"])
                .unwrap()
                .unwrap(),
            r#"{"email":"***","q\"k":2}"#
        );
    }

    #[test]
    fn deep_nesting_off_the_paths_is_copied_not_recursed_into() {
        let deep = format!("{}0{}", "[".repeat(100_000), "]".repeat(100_000));
        let json = format!(r#"{{"a": {deep}, "b": 1}}"#);
        assert_eq!(
            mask(&json, &["b", "a.x"]).unwrap().unwrap(),
            format!(r#"{{"a":{deep},"b":"***"}}"#)
        );
    }

    #[test]
    fn refuses_what_is_not_one_json_object() {
        let refused = |json: &str| mask(json, &["a"]).unwrap_err().to_string();
        assert_eq!(
            refused("[1]"),
            "value is not a JSON object (found an array)"
        );
        assert_eq!(refused("3"), "value is not a JSON object (found a number)");
        assert_eq!(refused("\"a\""), "value is not a JSON object (found text)");
        assert_eq!(refused("null"), "value is not a JSON object (found null)");
        assert_eq!(
            refused("true"),
            "value is not a JSON object (found a boolean)"
        );
        for bad in ["", "{", r#"{"a": 1} {}"#, r#"{"a": tru}"#, r#"{"b": [}"#] {
            assert!(refused(bad).starts_with("value is not JSON: "), "{bad:?}");
        }
        let invalid_utf8 = redact(b"{\"a\": \"\xff\"}", &fields(&["a"]), &Action::Remove, "");
        assert!(matches!(invalid_utf8, Err(Refused::NotJson(_))));
    }
}
