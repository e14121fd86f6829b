//! Masks or removes fields of JSON records (and, optionally, record headers) before they are
//! stored or forwarded: e-mail addresses, names, serial numbers that must not leave the edge.
//!
//! Config (the `config` table of the `[[plugins]]` entry):
//! - `fields` (array of text, required, not empty): the fields to redact; dots descend into
//!   nested objects, so `"owner.email"` reads `{"owner": {"email": "..."}}`. A path does not
//!   descend into arrays.
//! - `mode` (text, default `"mask"`): `"mask"` replaces the value (whatever it is, objects
//!   included) with the text in `mask`; `"remove"` deletes the key.
//! - `mask` (text, default `"***"`): the replacement; only with `mode = "mask"`.
//! - `headers` (array of text, default none): record headers to redact the same way, matched by
//!   exact name. Masking leaves a null header value null.
//!
//! A record whose value is not one JSON object is reported as a per-record error (the broker
//! sends it to the plugin's dead-letter topic, unredacted, with the reason below). A record that
//! holds none of the fields is kept byte for byte; a tombstone (no value) is kept, with its
//! headers redacted. How redacted values are written is explained in `rewrite.rs`.

#![forbid(unsafe_code)]

mod rewrite;
mod settings;

use std::borrow::Cow;

use headwater_sdk::{Batch, Config, Header, OutRecord, Output, Plugin, Record};

use rewrite::{redact, Refused};
use settings::{Action, Settings};

pub struct Redact {
    settings: Settings,
    /// The mask as a JSON string literal (quoted, escaped), encoded once instead of per record.
    mask_json: String,
}

impl Redact {
    fn redact_record<'a>(&self, record: Record<'a>) -> Result<OutRecord<'a>, Refused> {
        let mut out = record.keep();
        if let Some(value) = &out.value {
            let s = &self.settings;
            if let Some(redacted) = redact(value, &s.fields, &s.action, &self.mask_json)? {
                out.value = Some(Cow::Owned(redacted));
            }
        }
        self.redact_headers(&mut out.headers);
        Ok(out)
    }

    fn redact_headers(&self, headers: &mut Vec<Header<'_>>) {
        let listed = |h: &Header<'_>| self.settings.headers.iter().any(|n| *n == h.name);
        match &self.settings.action {
            Action::Remove => headers.retain(|h| !listed(h)),
            Action::Mask(mask) => {
                for h in headers.iter_mut() {
                    if h.value.is_some() && listed(h) {
                        h.value = Some(Cow::Owned(mask.as_bytes().to_vec()));
                    }
                }
            }
        }
    }
}

impl Plugin for Redact {
    fn init(config: &Config) -> Result<Self, String> {
        let settings = Settings::from_config(config)?;
        let mask_json = match &settings.action {
            Action::Mask(mask) => serde_json::to_string(mask).map_err(|e| e.to_string())?,
            Action::Remove => String::new(),
        };
        Ok(Redact {
            settings,
            mask_json,
        })
    }

    fn process<'a>(&mut self, batch: Batch<'a>) -> Output<'a> {
        batch.try_filter_map(|r| self.redact_record(r).map(Some))
    }
}

headwater_sdk::export_plugin!(Redact);

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use headwater_sdk::Value;

    fn texts(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::Text(s.to_string())).collect())
    }

    fn plugin(entries: &[(&str, Value)]) -> Result<Redact, String> {
        let mut config = Config::new();
        for (k, v) in entries {
            config.insert(*k, v.clone());
        }
        Redact::init(&config)
    }

    fn record(value: Option<&str>) -> Record<'_> {
        Record {
            topic: "people".into(),
            partition: None,
            offset: None,
            timestamp: 7,
            key: Some(b"k".as_slice().into()),
            value: value.map(|v| v.as_bytes().into()),
            headers: vec![
                Header::new("user", b"alice".as_slice()),
                Header::new("trace", b"t1".as_slice()),
                Header {
                    name: "user".into(),
                    value: None,
                },
            ],
        }
    }

    fn value<'o>(out: &'o Output<'_>, i: usize) -> &'o str {
        std::str::from_utf8(out.records[i].value.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn masks_fields_keeps_the_rest_and_reports_what_is_not_an_object() {
        let mut p = plugin(&[("fields", texts(&["owner.email", "ssn"]))]).unwrap();
        let values = [
            r#"{"id": 1, "owner": {"email": "a@b.c", "name": "A"}, "ssn": "123"}"#,
            r#"{"id": 2, "owner": {"name": "B"}}"#,
            "[1, 2]",
            "not json",
            r#"{"id": 3, "ssn": null}"#,
        ];
        let out = p.process(Batch::new(values.iter().map(|v| record(Some(v))).collect()));
        assert_eq!(out.records.len(), 3);
        assert_eq!(
            value(&out, 0),
            r#"{"id":1,"owner":{"email":"***","name":"A"},"ssn":"***"}"#
        );
        // Nothing to redact: the very bytes of the input, not a copy.
        assert!(matches!(out.records[1].value, Some(Cow::Borrowed(_))));
        assert_eq!(value(&out, 1), values[1]);
        assert_eq!(value(&out, 2), r#"{"id":3,"ssn":"***"}"#);
        assert_eq!(out.records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(out.records[0].timestamp, 7);
        assert_eq!(out.records[0].headers, record(None).headers);

        let errors: Vec<_> = out
            .errors
            .iter()
            .map(|e| (e.index, e.message.as_ref()))
            .collect();
        assert_eq!(
            errors[0],
            (2, "value is not a JSON object (found an array)")
        );
        assert_eq!(errors[1].0, 3);
        assert!(
            errors[1].1.starts_with("value is not JSON: "),
            "{}",
            errors[1].1
        );
        assert!(out.failure.is_none());
    }

    #[test]
    fn remove_mode_deletes_fields_and_headers() {
        let mut p = plugin(&[
            ("fields", texts(&["a", "b.c"])),
            ("mode", Value::Text("remove".into())),
            ("headers", texts(&["user"])),
        ])
        .unwrap();
        let out = p.process(Batch::new(vec![record(Some(
            r#"{"a": 1, "b": {"c": 2, "d": 3}, "e": 4}"#,
        ))]));
        assert_eq!(value(&out, 0), r#"{"b":{"d":3},"e":4}"#);
        assert_eq!(
            out.records[0].headers,
            [Header::new("trace", b"t1".as_slice())]
        );
    }

    #[test]
    fn mask_mode_masks_headers_and_uses_the_configured_mask() {
        let mut p = plugin(&[
            ("fields", texts(&["a"])),
            ("mask", Value::Text("<\"gone\">".into())),
            ("headers", texts(&["user", "absent"])),
        ])
        .unwrap();
        let out = p.process(Batch::new(vec![record(Some(r#"{"a": {"x": 1}}"#))]));
        assert_eq!(value(&out, 0), r#"{"a":"<\"gone\">"}"#);
        let headers = &out.records[0].headers;
        assert_eq!(headers[0], Header::new("user", b"<\"gone\">".as_slice()));
        assert_eq!(headers[1], Header::new("trace", b"t1".as_slice()));
        assert_eq!(headers[2].value, None, "a null header stays null");
    }

    #[test]
    fn tombstones_are_kept_with_their_headers_redacted() {
        let mut p = plugin(&[("fields", texts(&["a"])), ("headers", texts(&["user"]))]).unwrap();
        let out = p.process(Batch::new(vec![record(None)]));
        assert!(out.errors.is_empty());
        assert_eq!(out.records[0].value, None);
        assert_eq!(
            out.records[0].headers[0].value.as_deref(),
            Some(&b"***"[..])
        );
    }

    #[test]
    fn an_empty_value_is_not_a_json_object() {
        let mut p = plugin(&[("fields", texts(&["a"]))]).unwrap();
        let out = p.process(Batch::new(vec![record(Some(""))]));
        assert!(out.records.is_empty());
        assert!(out.errors[0].message.starts_with("value is not JSON"));
    }

    #[test]
    fn bad_configs_are_refused() {
        // The cases are in settings.rs; this checks init passes the message on.
        let err = plugin(&[("fields", texts(&["a"])), ("mode", Value::Bool(true))])
            .err()
            .unwrap();
        assert_eq!(err, "config key `mode` must be text, found a boolean");
    }
}
