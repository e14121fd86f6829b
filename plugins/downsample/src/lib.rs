//! Keeps at most one record per key per interval: a record is kept when its key has had no kept
//! record yet, or when its timestamp is at least `interval_ms` after the last kept one; the
//! others are dropped. Meant for the upstream attach point, where a gateway sends the central
//! cluster one reading per sensor per minute while its own log keeps every reading.
//!
//! The last kept timestamp of each key is the plugin's state, kept by the host (an
//! [`Aggregate`]): for upstream plugins it is committed with the replication cursor, so a crash
//! or a failed upstream produce neither lets an extra record through nor loses one.
//!
//! Config:
//! - `interval_ms` (integer, required, > 0);
//! - `max_keys` (integer, default 10,000): keys remembered at most; past it, the key kept longest
//!   ago is forgotten (its next record is kept).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use headwater_sdk::minicbor::bytes::ByteVec;
use headwater_sdk::{Aggregate, Batch, Config, Output};

pub struct Downsample {
    interval_ms: i64,
    max_keys: usize,
}

/// Last kept timestamp per key (a record without a key counts as the empty key).
pub type LastKept = BTreeMap<ByteVec, i64>;

impl Aggregate for Downsample {
    type State = LastKept;

    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["interval_ms", "max_keys"])?;
        let interval_ms = config.require_integer("interval_ms")?;
        if interval_ms <= 0 {
            return Err(format!("`interval_ms` must be > 0, not {interval_ms}"));
        }
        let max_keys = config.integer("max_keys")?.unwrap_or(10_000);
        let max_keys = usize::try_from(max_keys)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("`max_keys` must be > 0, not {max_keys}"))?;
        Ok(Downsample {
            interval_ms,
            max_keys,
        })
    }

    fn process<'a>(&mut self, last: &mut LastKept, batch: Batch<'a>) -> Output<'a> {
        batch.filter(|r| {
            let key = ByteVec::from(r.key_bytes().to_vec());
            let due = match last.get(&key) {
                Some(&t) => r.timestamp >= t.saturating_add(self.interval_ms),
                None => true,
            };
            if due {
                last.insert(key, r.timestamp);
                if last.len() > self.max_keys {
                    forget_oldest(last);
                }
            }
            due
        })
    }
}

/// Forgets the key whose record was kept longest ago.
fn forget_oldest(last: &mut LastKept) {
    if let Some(key) = last.iter().min_by_key(|(_, &t)| t).map(|(k, _)| k.clone()) {
        last.remove(&key);
    }
}

headwater_sdk::export_plugin!(headwater_sdk::Stateful<Downsample>);

#[cfg(test)]
mod tests {
    use super::*;
    use headwater_sdk::{Plugin, Record, Stateful, Value};

    fn config(pairs: &[(&str, Value)]) -> Config {
        let mut c = Config::new();
        for (k, v) in pairs {
            c.insert(k.to_string(), v.clone());
        }
        c
    }

    fn record(key: &'static str, timestamp: i64) -> Record<'static> {
        Record {
            topic: "t".into(),
            partition: Some(0),
            offset: None,
            timestamp,
            key: Some(key.as_bytes().into()),
            value: Some(b"v".as_slice().into()),
            headers: Vec::new(),
        }
    }

    fn kept(out: &Output<'_>) -> Vec<(String, i64)> {
        out.records
            .iter()
            .map(|r| {
                let key = String::from_utf8(r.key.as_deref().unwrap().to_vec()).unwrap();
                (key, r.timestamp)
            })
            .collect()
    }

    fn every_second() -> Downsample {
        Downsample::init(&config(&[("interval_ms", Value::Int(1000))])).unwrap()
    }

    #[test]
    fn one_record_per_key_per_interval() {
        let mut plugin = every_second();
        let mut state = LastKept::default();
        let batch = Batch::new(vec![
            record("a", 0),
            record("b", 10),
            record("a", 500),
            record("a", 1000),
            record("b", 999),
            record("b", 1010),
        ]);
        let out = plugin.process(&mut state, batch);
        assert_eq!(
            kept(&out),
            [
                ("a".into(), 0),
                ("b".into(), 10),
                ("a".into(), 1000),
                ("b".into(), 1010)
            ]
        );
        // The next batch continues from the state.
        let out = plugin.process(
            &mut state,
            Batch::new(vec![record("a", 1999), record("a", 2000)]),
        );
        assert_eq!(kept(&out), [("a".into(), 2000)]);
    }

    #[test]
    fn the_state_travels_through_the_batch_and_the_output() {
        let mut plugin =
            Stateful::<Downsample>::init(&config(&[("interval_ms", Value::Int(1000))])).unwrap();
        let out = plugin.process(Batch::new(vec![record("a", 0)]));
        let state = out.state.clone().expect("state returned");
        assert_eq!(kept(&out).len(), 1);
        // Given back the state, the plugin remembers "a"; without it, it does not.
        let mut batch = Batch::new(vec![record("a", 500)]);
        batch.state = Some(state);
        assert!(plugin.process(batch).records.is_empty());
        assert_eq!(
            plugin
                .process(Batch::new(vec![record("a", 500)]))
                .records
                .len(),
            1
        );
        // A state it cannot read (another plugin version) starts afresh instead of failing.
        let mut batch = Batch::new(vec![record("a", 500)]);
        batch.state = Some(b"\xff garbage".as_slice().into());
        let out = plugin.process(batch);
        assert!(out.failure.is_none());
        assert_eq!(out.records.len(), 1);
    }

    #[test]
    fn past_max_keys_the_oldest_key_is_forgotten() {
        let mut plugin = Downsample::init(&config(&[
            ("interval_ms", Value::Int(1000)),
            ("max_keys", Value::Int(2)),
        ]))
        .unwrap();
        let mut state = LastKept::default();
        let batch = Batch::new(vec![record("a", 0), record("b", 1), record("c", 2)]);
        assert_eq!(kept(&plugin.process(&mut state, batch)).len(), 3);
        assert_eq!(state.len(), 2);
        assert!(!state.contains_key(&ByteVec::from(b"a".to_vec())));
    }

    #[test]
    fn bad_configs_are_refused() {
        for (pairs, expected) in [
            (vec![], "interval_ms"),
            (vec![("interval_ms", Value::Int(0))], "must be > 0"),
            (
                vec![
                    ("interval_ms", Value::Int(10)),
                    ("max_keys", Value::Int(-1)),
                ],
                "max_keys",
            ),
            (
                vec![("interval_ms", Value::Int(10)), ("every", Value::Int(1))],
                "every",
            ),
        ] {
            let err = Downsample::init(&config(&pairs)).err().expect("refused");
            assert!(err.contains(expected), "{err}");
        }
    }
}
