//! Keeps JSON records whose numeric field lies in `[min, max]` and drops the others.
//!
//! Config (the `config` table of the `[[plugins]]` entry):
//! - `field` (text, required): the field to check; dots descend into nested objects, so
//!   `"sensor.temp"` reads `{"sensor": {"temp": 21.5}}`.
//! - `min`, `max` (numbers, at least one): the inclusive bounds; a missing one is unbounded.
//!
//! A record whose value is not JSON, lacks the field, or holds something other than a number
//! there is not dropped silently: it is reported as a per-record error, which the broker sends
//! to the plugin's dead-letter topic with the message below.

#![forbid(unsafe_code)]

mod field;

use headwater_sdk::{Batch, Config, Output, Plugin};

use field::{find_number, Found};

pub struct JsonRange {
    /// `field` split at the dots.
    path: Vec<String>,
    /// The field as configured, for error messages.
    field: String,
    min: f64,
    max: f64,
}

impl JsonRange {
    /// `Ok(true)`: keep; `Ok(false)`: drop; `Err`: the record cannot be judged.
    fn in_range(&self, value: &[u8]) -> Result<bool, String> {
        match find_number(value, &self.path) {
            Ok(Found::Number(n)) => Ok(self.min <= n && n <= self.max),
            Ok(Found::Missing) => Err(format!("field `{}` is missing", self.field)),
            Ok(Found::Other(kind)) => Err(format!(
                "field `{}` is not a number (found {kind})",
                self.field
            )),
            Err(e) => Err(format!("value is not JSON: {e}")),
        }
    }
}

impl Plugin for JsonRange {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["field", "min", "max"])?;
        let field = config.require_string("field")?;
        let path: Vec<String> = field.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("config key `field` is not a valid path: {field:?}"));
        }
        let (min, max) = (config.number("min")?, config.number("max")?);
        if min.is_none() && max.is_none() {
            return Err("set `min`, `max` or both".to_string());
        }
        let min = min.unwrap_or(f64::NEG_INFINITY);
        let max = max.unwrap_or(f64::INFINITY);
        if min.is_nan() || max.is_nan() || min > max {
            return Err(format!(
                "`min` ({min}) must not be greater than `max` ({max})"
            ));
        }
        Ok(JsonRange {
            path,
            field: field.to_string(),
            min,
            max,
        })
    }

    fn process<'a>(&mut self, batch: Batch<'a>) -> Output<'a> {
        batch.try_filter(|r| self.in_range(r.value_bytes()))
    }
}

headwater_sdk::export_plugin!(JsonRange);

#[cfg(test)]
mod tests {
    use super::*;
    use headwater_sdk::{Record, Value};

    fn plugin(entries: &[(&str, Value)]) -> Result<JsonRange, String> {
        let mut config = Config::new();
        for (k, v) in entries {
            config.insert(*k, v.clone());
        }
        JsonRange::init(&config)
    }

    fn record(value: &str) -> Record<'_> {
        Record {
            topic: "sensors".into(),
            partition: None,
            offset: None,
            timestamp: 0,
            key: None,
            value: Some(value.as_bytes().into()),
            headers: Vec::new(),
        }
    }

    #[test]
    fn keeps_in_range_drops_out_of_range_and_reports_the_rest() {
        let mut p = plugin(&[
            ("field", Value::Text("temp".into())),
            ("min", Value::Int(-40)),
            ("max", Value::Float(125.0)),
        ])
        .unwrap();
        let values = [
            r#"{"temp": 21.5}"#,
            r#"{"temp": 300}"#,
            r#"{"temp": -40}"#,
            "not json",
            r#"{"hum": 3}"#,
            r#"{"temp": "hot"}"#,
            r#"{"temp": 125, "x": [1, {"temp": 999}]}"#,
        ];
        let out = p.process(Batch::new(values.iter().map(|v| record(v)).collect()));
        let kept: Vec<_> = out
            .records
            .iter()
            .map(|r| r.value.as_deref().unwrap())
            .collect();
        assert_eq!(
            kept,
            [
                values[0].as_bytes(),
                values[2].as_bytes(),
                values[6].as_bytes()
            ]
        );
        let errors: Vec<_> = out
            .errors
            .iter()
            .map(|e| (e.index, e.message.as_ref()))
            .collect();
        assert_eq!(errors[0].0, 3);
        assert!(
            errors[0].1.starts_with("value is not JSON"),
            "{}",
            errors[0].1
        );
        assert_eq!(errors[1], (4, "field `temp` is missing"));
        assert_eq!(errors[2], (5, "field `temp` is not a number (found text)"));
    }

    #[test]
    fn dotted_fields_descend_into_objects() {
        let mut p = plugin(&[
            ("field", Value::Text("sensor.temp".into())),
            ("max", Value::Int(30)),
        ])
        .unwrap();
        let out = p.process(Batch::new(vec![
            record(r#"{"sensor": {"temp": 20}}"#),
            record(r#"{"sensor": {"temp": 40}}"#),
            record(r#"{"sensor": 20}"#),
        ]));
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].message, "field `sensor.temp` is missing");
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let err = plugin(&[("min", Value::Int(0))]).err().unwrap();
        assert_eq!(err, "config key `field` is missing");
        let err = plugin(&[("field", Value::Text("t".into()))]).err().unwrap();
        assert!(err.contains("`min`, `max`"));
        let err = plugin(&[
            ("field", Value::Text("t".into())),
            ("min", Value::Int(2)),
            ("max", Value::Int(1)),
        ])
        .err()
        .unwrap();
        assert!(err.contains("must not be greater"));
        let err = plugin(&[("field", Value::Text("t".into())), ("mni", Value::Int(2))])
            .err()
            .unwrap();
        assert!(err.contains("unknown config key `mni`"));
    }
}
