//! The plugin's config, checked once in `init`: every mistake is refused there with a message for
//! the operator, so `process` has nothing left to validate.

use headwater_sdk::{Config, Value};

/// `mask` when the config sets none.
pub const DEFAULT_MASK: &str = "***";

/// The keys `init` accepts; anything else is a typo and refused.
const KNOWN_KEYS: &[&str] = &["fields", "mode", "mask", "headers"];

/// What happens to a redacted field or header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Replace the value with the mask text.
    Mask(String),
    /// Delete the key (or the header).
    Remove,
}

/// The configured fields as a tree, so that one pass over an object handles every field under
/// it: `["owner.email", "owner.phone", "ssn"]` is `owner -> {email, phone}, ssn`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    /// Keys of this object level, in config order (a handful: a linear search beats hashing).
    children: Vec<(String, Node)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// The value under this key is redacted, whatever it is.
    Redact,
    /// Only some fields inside the value (when it is an object) are.
    Descend(Fields),
}

impl Fields {
    /// What the config says about `key` at this level.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, node)| node)
    }

    /// Adds one dotted path; a path under one already redacted whole adds nothing.
    fn add(&mut self, path: &[&str]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let at = match self.children.iter().position(|(k, _)| k == first) {
            Some(at) => at,
            None => {
                let node = if rest.is_empty() {
                    Node::Redact
                } else {
                    Node::Descend(Fields::default())
                };
                self.children.push((first.to_string(), node));
                self.children.len() - 1
            }
        };
        // `at` was found in, or just pushed onto, `children`.
        let node = &mut self.children[at].1;
        match node {
            Node::Redact => {}
            Node::Descend(_) if rest.is_empty() => *node = Node::Redact,
            Node::Descend(inner) => inner.add(rest),
        }
    }
}

/// The checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub fields: Fields,
    pub action: Action,
    /// Header names to redact, matched exactly (Kafka header names are case-sensitive).
    pub headers: Vec<String>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        config.deny_unknown(KNOWN_KEYS)?;
        let paths = text_list(config, "fields")?.ok_or("config key `fields` is missing")?;
        if paths.is_empty() {
            return Err("config key `fields` must name at least one field".to_string());
        }
        let mut fields = Fields::default();
        for path in paths {
            let segments: Vec<&str> = path.split('.').collect();
            if segments.iter().any(|s| s.is_empty()) {
                return Err(format!(
                    "config key `fields` holds an invalid path: {path:?} \
                     (dots separate non-empty keys, as in \"owner.email\")"
                ));
            }
            fields.add(&segments);
        }

        let mask = config.string("mask")?;
        let action = match config.string("mode")?.unwrap_or("mask") {
            "mask" => Action::Mask(mask.unwrap_or(DEFAULT_MASK).to_string()),
            "remove" if mask.is_some() => {
                return Err(
                    "config key `mask` is only used with mode = \"mask\", not \"remove\""
                        .to_string(),
                )
            }
            "remove" => Action::Remove,
            other => {
                return Err(format!(
                    "config key `mode` must be \"mask\" or \"remove\", found {other:?}"
                ))
            }
        };

        let headers: Vec<String> = text_list(config, "headers")?
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect();
        if headers.iter().any(String::is_empty) {
            return Err("config key `headers` holds an empty header name".to_string());
        }
        Ok(Settings {
            fields,
            action,
            headers,
        })
    }
}

/// An array of text under `key`, if present.
fn text_list<'c>(config: &'c Config, key: &str) -> Result<Option<Vec<&'c str>>, String> {
    let items = match config.get(key) {
        None => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "config key `{key}` must be an array of text, found {}",
                other.kind()
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str().ok_or_else(|| {
                format!(
                    "config key `{key}` must be an array of text, found {} at position {i}",
                    item.kind()
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::Text(s.to_string())).collect())
    }

    fn settings(entries: &[(&str, Value)]) -> Result<Settings, String> {
        let mut config = Config::new();
        for (k, v) in entries {
            config.insert(*k, v.clone());
        }
        Settings::from_config(&config)
    }

    #[test]
    fn defaults_to_masking_with_three_stars() {
        let s = settings(&[("fields", texts(&["a"]))]).unwrap();
        assert_eq!(s.action, Action::Mask("***".into()));
        assert!(s.headers.is_empty());
        assert_eq!(s.fields.get("a"), Some(&Node::Redact));
        assert_eq!(s.fields.get("b"), None);
    }

    #[test]
    fn paths_build_one_tree_and_a_whole_field_covers_its_subfields() {
        let s = settings(&[(
            "fields",
            texts(&["owner.email", "owner.phone", "a.b.c", "a.b", "ssn", "ssn.x"]),
        )])
        .unwrap();
        let Some(Node::Descend(owner)) = s.fields.get("owner") else {
            panic!("{:?}", s.fields)
        };
        assert_eq!(owner.get("email"), Some(&Node::Redact));
        assert_eq!(owner.get("phone"), Some(&Node::Redact));
        let Some(Node::Descend(a)) = s.fields.get("a") else {
            panic!("{:?}", s.fields)
        };
        assert_eq!(a.get("b"), Some(&Node::Redact));
        assert_eq!(s.fields.get("ssn"), Some(&Node::Redact));
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let refused = |entries: &[(&str, Value)]| settings(entries).unwrap_err();
        assert_eq!(refused(&[]), "config key `fields` is missing");
        assert_eq!(
            refused(&[("fields", Value::Text("a".into()))]),
            "config key `fields` must be an array of text, found text"
        );
        assert_eq!(
            refused(&[("fields", texts(&[]))]),
            "config key `fields` must name at least one field"
        );
        assert_eq!(
            refused(&[(
                "fields",
                Value::Array(vec![Value::Text("a".into()), Value::Int(3)])
            )]),
            "config key `fields` must be an array of text, found an integer at position 1"
        );
        for path in ["", "a.", ".a", "a..b"] {
            assert!(
                refused(&[("fields", texts(&[path]))]).contains("invalid path"),
                "{path:?}"
            );
        }
        let fields = ("fields", texts(&["a"]));
        assert_eq!(
            refused(&[fields.clone(), ("mode", Value::Text("hide".into()))]),
            "config key `mode` must be \"mask\" or \"remove\", found \"hide\""
        );
        assert!(refused(&[
            fields.clone(),
            ("mode", Value::Text("remove".into())),
            ("mask", Value::Text("x".into()))
        ])
        .contains("only used with mode = \"mask\""));
        assert_eq!(
            refused(&[fields.clone(), ("mask", Value::Int(0))]),
            "config key `mask` must be text, found an integer"
        );
        assert_eq!(
            refused(&[fields.clone(), ("headers", texts(&["ok", ""]))]),
            "config key `headers` holds an empty header name"
        );
        assert!(refused(&[fields, ("field", texts(&["a"]))])
            .starts_with("unknown config key `field` (known keys: fields, mode, mask, headers)"));
    }
}
