//! Finds one number in a JSON document without building a tree: a serde visitor walks the
//! document, descends only into the keys on the path and skips everything else.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What sits at the path.
#[derive(Debug, PartialEq)]
pub enum Found {
    Number(f64),
    /// The path leads nowhere (a key is absent or an intermediate value is not an object).
    Missing,
    /// Something other than a number, named for the error message.
    Other(&'static str),
}

/// Looks up `path` in `json`; an `Err` means `json` is not one well-formed JSON document.
pub fn find_number(json: &[u8], path: &[String]) -> Result<Found, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let found = Seek { path }.deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

struct Seek<'p> {
    path: &'p [String],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Found;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_any(self)
    }
}

impl Seek<'_> {
    /// A scalar of kind `kind` was found where the path continues or ends.
    fn scalar(&self, kind: &'static str) -> Found {
        if self.path.is_empty() {
            Found::Other(kind)
        } else {
            Found::Missing
        }
    }

    fn number(&self, n: f64) -> Found {
        if self.path.is_empty() {
            Found::Number(n)
        } else {
            Found::Missing
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_u64<E>(self, v: u64) -> Result<Found, E> {
        Ok(self.number(v as f64))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Found, E> {
        Ok(self.number(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Found, E> {
        Ok(self.number(v))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Found, E> {
        Ok(self.scalar("a boolean"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Found, E> {
        Ok(self.scalar("text"))
    }

    fn visit_unit<E>(self) -> Result<Found, E> {
        Ok(self.scalar("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.scalar("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Found::Other("an object"));
        };
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(first))? {
            // The first occurrence of a duplicated key wins; later ones are skipped.
            if matches && found.is_none() {
                found = Some(map.next_value_seed(Seek { path: rest })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found.unwrap_or(Found::Missing))
    }
}

/// Compares an object key with the wanted one without allocating it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(json: &str, path: &str) -> Result<Found, serde_json::Error> {
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        find_number(json.as_bytes(), &path)
    }

    #[test]
    fn finds_numbers_and_names_what_else_is_there() {
        assert_eq!(find(r#"{"a": 1.5}"#, "a").unwrap(), Found::Number(1.5));
        assert_eq!(find(r#"{"a": -3}"#, "a").unwrap(), Found::Number(-3.0));
        assert_eq!(
            find(r#"{"b": {"a": 2}}"#, "b.a").unwrap(),
            Found::Number(2.0)
        );
        assert_eq!(find(r#"{"a\u0062": 4}"#, "ab").unwrap(), Found::Number(4.0));
        assert_eq!(find(r#"{"a": null}"#, "a").unwrap(), Found::Other("null"));
        assert_eq!(
            find(r#"{"a": [1]}"#, "a").unwrap(),
            Found::Other("an array")
        );
        assert_eq!(
            find(r#"{"a": {}}"#, "a").unwrap(),
            Found::Other("an object")
        );
        assert_eq!(find(r#"{"b": 1}"#, "a").unwrap(), Found::Missing);
        assert_eq!(find(r#"[1, 2]"#, "a").unwrap(), Found::Missing);
        assert_eq!(
            find(r#"{"a": 1, "a": 2}"#, "a").unwrap(),
            Found::Number(1.0)
        );
    }

    #[test]
    fn malformed_or_trailing_input_is_an_error() {
        assert!(find("", "a").is_err());
        assert!(find(r#"{"a": 1"#, "a").is_err());
        assert!(find(r#"{"a": 1} x"#, "a").is_err());
        assert!(find(r#"{"a": 1, "b": [}"#, "a").is_err());
    }
}
