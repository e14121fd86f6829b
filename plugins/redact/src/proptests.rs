//! Property tests: the rewriter against a model that redacts a parsed tree, on generated
//! documents whose keys are drawn from a few letters so that they often meet the fields.

use proptest::prelude::*;

use headwater_sdk::{Config, Value};

use crate::rewrite::redact;
use crate::settings::{Action, Fields, Node, Settings};

/// A JSON document as the tests build it: objects keep their entries in order, duplicates too.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    Array(Vec<J>),
    Object(Vec<(String, J)>),
}

/// Compact JSON text, with strings escaped as serde_json escapes them.
fn text(j: &J) -> String {
    match j {
        J::Null => "null".into(),
        J::Bool(b) => b.to_string(),
        J::Int(i) => i.to_string(),
        J::Text(s) => serde_json::to_string(s).unwrap(),
        J::Array(items) => format!("[{}]", items.iter().map(text).collect::<Vec<_>>().join(",")),
        J::Object(entries) => object_text(entries),
    }
}

fn object_text(entries: &[(String, J)]) -> String {
    let entries: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), text(v)))
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// The model: redacts the tree; the flag says whether any field was there.
fn model(entries: &[(String, J)], fields: &Fields, mask: Option<&str>) -> (Vec<(String, J)>, bool) {
    let mut touched = false;
    let mut out = Vec::new();
    for (k, v) in entries {
        match (fields.get(k), v) {
            (None, _) => out.push((k.clone(), v.clone())),
            (Some(Node::Redact), _) => {
                touched = true;
                if let Some(mask) = mask {
                    out.push((k.clone(), J::Text(mask.to_string())));
                }
            }
            (Some(Node::Descend(inner)), J::Object(nested)) => {
                let (nested, t) = model(nested, inner, mask);
                touched |= t;
                out.push((k.clone(), J::Object(nested)));
            }
            (Some(Node::Descend(_)), _) => out.push((k.clone(), v.clone())),
        }
    }
    (out, touched)
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[abc]", 1 => "[ab]{2}", 1 => any::<String>()]
}

fn json() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::Int),
        any::<String>().prop_map(J::Text),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            prop::collection::vec((key(), inner), 0..5).prop_map(J::Object),
        ]
    })
}

fn object() -> impl Strategy<Value = Vec<(String, J)>> {
    prop::collection::vec((key(), json()), 0..6)
}

fn paths() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::collection::vec("[abc]", 1..4).prop_map(|p| p.join(".")),
        1..4,
    )
}

fn fields(paths: &[String]) -> Fields {
    let mut config = Config::new();
    config.insert(
        "fields",
        Value::Array(paths.iter().map(|p| Value::Text(p.clone())).collect()),
    );
    Settings::from_config(&config).unwrap().fields
}

proptest! {
    #[test]
    fn matches_the_model(doc in object(), paths in paths(), remove in any::<bool>()) {
        let fields = fields(&paths);
        let (action, mask) = if remove {
            (Action::Remove, None)
        } else {
            (Action::Mask("<m>".into()), Some("<m>"))
        };
        let input = object_text(&doc);
        let out = redact(input.as_bytes(), &fields, &action, "\"<m>\"").unwrap();
        let (expected, touched) = model(&doc, &fields, mask);
        prop_assert_eq!(out.is_some(), touched);
        let out = out.map(|o| String::from_utf8(o).unwrap()).unwrap_or(input);
        prop_assert_eq!(out, object_text(&expected));
    }

    #[test]
    fn redacting_twice_changes_nothing_more(doc in object(), paths in paths(), remove in any::<bool>()) {
        let fields = fields(&paths);
        let action = if remove { Action::Remove } else { Action::Mask("x".into()) };
        let once = redact(object_text(&doc).as_bytes(), &fields, &action, "\"x\"").unwrap();
        if let Some(once) = once {
            let twice = redact(&once, &fields, &action, "\"x\"").unwrap();
            prop_assert!(twice.is_none() || twice.as_ref() == Some(&once));
        }
    }

    #[test]
    fn spaced_input_gives_valid_json(doc in object(), paths in paths()) {
        // Spaces around every separator (inside strings too, which only changes their text).
        let spaced = object_text(&doc).replace(',', " , ").replace(':', " : ");
        let out = redact(spaced.as_bytes(), &fields(&paths), &Action::Remove, "").unwrap();
        let out = out.map(|o| String::from_utf8(o).unwrap()).unwrap_or(spaced);
        prop_assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok(), "{}", out);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = redact(&bytes, &fields(&["a".into(), "b.c".into()]), &Action::Remove, "");
    }
}
