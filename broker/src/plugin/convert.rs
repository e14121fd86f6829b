//! Between the broker's types and the ABI's: the TOML config to CBOR, log records to an input
//! batch, and a plugin's output back to log records, checking it on the way.
//!
//! The input batch borrows every key, value and header from the records (the only copy is the
//! one into guest memory). The output is decoded in place from the buffer read out of the guest,
//! and written values are slices of that buffer ([`Bytes::slice_ref`]); records the plugin kept
//! unchanged come back as their index and are the caller's own records again, so the way back
//! copies nothing either.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use headwater_sdk::wire::{BatchWriter, RecordFields, SliceSink};
use headwater_sdk::{wire, Config, OutEntry, Value};

use super::instance::CallError;
use crate::log::NewRecord;

/// Records of one topic on their way into a plugin, with where they came from when that is
/// known. The records stay the log's own type: ingest hands its request's vector over as it is.
#[derive(Debug, Clone, Default)]
pub struct SourceBatch {
    /// The partition of every record: known for upstream plugins; ingest plugins run before the
    /// log picks one.
    pub partition: Option<i32>,
    /// Each record's offset, once the records are in the log (upstream plugins); otherwise
    /// empty.
    pub offsets: Vec<i64>,
    pub records: Vec<NewRecord>,
}

impl SourceBatch {
    /// Records not in the log yet (ingest).
    pub fn new(records: Vec<NewRecord>) -> SourceBatch {
        SourceBatch {
            partition: None,
            offsets: Vec::new(),
            records,
        }
    }

    /// Offset of record `index`, if known.
    pub fn offset(&self, index: usize) -> Option<i64> {
        self.offsets.get(index).copied()
    }
}

/// A plugin's checked output.
pub(crate) struct Decoded {
    /// Kept records, in output order: an input record unchanged, or one of `written`.
    pub kept: Vec<OutEntry>,
    /// Records the plugin wrote out, with the topic each goes to (`None`: the source topic).
    pub written: Vec<(Option<String>, NewRecord)>,
    /// Input records the plugin reported as failed: index into the input, message.
    pub errors: Vec<(usize, String)>,
    /// The state the plugin wants back with its next batch of this topic and partition.
    pub state: Option<Vec<u8>>,
}

/// The `config` table as the CBOR map `hw_init` receives.
pub(crate) fn config_to_cbor(config: &BTreeMap<String, toml::Value>) -> Vec<u8> {
    let mut out = Config::new();
    for (k, v) in config {
        out.insert(k.clone(), toml_to_value(v));
    }
    out.to_cbor()
}

fn toml_to_value(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::Text(s.clone()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::Text(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_value).collect()),
        toml::Value::Table(t) => Value::Map(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_value(v)))
                .collect(),
        ),
    }
}

fn fields<'r>(
    topic: &'r str,
    partition: Option<i32>,
    offset: Option<i64>,
    record: &'r NewRecord,
) -> RecordFields<'r> {
    RecordFields {
        topic,
        partition,
        offset,
        timestamp: record.timestamp,
        key: record.key.as_deref(),
        value: record.value.as_deref(),
    }
}

fn headers(record: &NewRecord) -> impl ExactSizeIterator<Item = (&str, Option<&[u8]>)> {
    record
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_deref()))
}

/// Bytes record `index` of `batch` takes in an input batch of `topic`: exact, since the
/// guest's buffer is sized with it before the batch is written there.
pub(crate) fn encoded_size(topic: &str, batch: &SourceBatch, index: usize) -> usize {
    let record = &batch.records[index];
    fields(topic, batch.partition, batch.offset(index), record).encoded_len(headers(record))
}

/// Bytes of an input batch of `records` records taking `records_len` bytes together, with
/// `state`.
pub(crate) fn input_len(records: usize, records_len: usize, state: Option<&[u8]>) -> usize {
    wire::batch_len(records, records_len, state)
}

/// Writes records of `topic`, with the plugin's `state` for them, as an ABI batch into `buf`
/// (the guest's input buffer, sized by [`input_len`]). False if the batch did not fill `buf`
/// exactly, which would be a bug in the sizes.
pub(crate) fn encode_input(
    topic: &str,
    input: &SourceBatch,
    state: Option<&[u8]>,
    buf: &mut [u8],
) -> bool {
    let mut sink = SliceSink::new(buf);
    let mut batch = BatchWriter::new(&mut sink, input.records.len());
    for (index, record) in input.records.iter().enumerate() {
        let offset = input.offset(index);
        batch.record(
            fields(topic, input.partition, offset, record),
            headers(record),
        );
    }
    batch.finish(state);
    sink.filled()
}

/// Decodes and checks the output of a batch of `inputs` records.
pub(crate) fn decode_output(buf: Vec<u8>, inputs: usize) -> Result<Decoded, CallError> {
    let buf = Bytes::from(buf);
    let output = wire::decode_output(&buf)
        .map_err(|e| CallError::BadOutput(format!("cannot decode it: {e}")))?;
    if let Some(failure) = output.failure {
        return Err(CallError::Failed(failure.into_owned()));
    }
    let mut errors = Vec::with_capacity(output.errors.len());
    for e in output.errors {
        let index = e.index as usize;
        if index >= inputs {
            return Err(CallError::BadOutput(format!(
                "an error names record {index}, but the batch had {inputs}"
            )));
        }
        errors.push((index, e.message.into_owned()));
    }
    let bytes = |c: Cow<'_, [u8]>| match c {
        // Borrowed slices point into `buf`: share them instead of copying.
        Cow::Borrowed(s) => buf.slice_ref(s),
        Cow::Owned(v) => Bytes::from(v),
    };
    if let Some(index) = output.entries.iter().find_map(|e| match *e {
        OutEntry::Input(index) if index as usize >= inputs => Some(index),
        _ => None,
    }) {
        return Err(CallError::BadOutput(format!(
            "a kept record names input {index}, but the batch had {inputs}"
        )));
    }
    let mut written = Vec::with_capacity(output.written.len());
    for r in output.written {
        let topic = match r.topic {
            None => None,
            Some(t) => {
                crate::log::validate_topic_name(&t).map_err(|e| {
                    CallError::BadOutput(format!("a record is routed to topic {t:?}: {e}"))
                })?;
                Some(t.into_owned())
            }
        };
        let record = NewRecord {
            timestamp: r.timestamp,
            key: r.key.map(bytes),
            value: r.value.map(bytes),
            headers: r
                .headers
                .into_iter()
                .map(|h| (h.name.into_owned(), h.value.map(bytes)))
                .collect(),
        };
        written.push((topic, record));
    }
    let state = output.state.map(Cow::into_owned);
    Ok(Decoded {
        kept: output.entries,
        written,
        errors,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use headwater_sdk::{OutRecord, Output, RecordError};

    fn record(v: &'static [u8]) -> NewRecord {
        NewRecord {
            timestamp: 5,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(v)),
            headers: vec![("h".into(), None)],
        }
    }

    fn encode(output: &Output<'_>) -> Vec<u8> {
        let mut buf = Vec::new();
        wire::encode_output(output, &mut buf);
        buf
    }

    #[test]
    fn input_batches_carry_every_field() {
        let input = SourceBatch::new(vec![record(b"v")]);
        let len = input_len(1, encoded_size("sensors", &input, 0), None);
        let mut buf = vec![0; len];
        assert!(encode_input("sensors", &input, None, &mut buf));
        assert!(!encode_input(
            "sensors",
            &input,
            None,
            &mut vec![0; len + 1]
        ));
        let batch = wire::decode_batch(&buf).unwrap();
        let r = &batch.records[0];
        assert_eq!(r.topic, "sensors");
        assert_eq!((r.partition, r.offset, r.timestamp), (None, None, 5));
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(r.headers[0].name, "h");
        assert!(r.headers[0].value.is_none());

        let upstream = SourceBatch {
            partition: Some(2),
            offsets: vec![41],
            records: vec![record(b"v")],
        };
        let mut buf = vec![0; input_len(1, encoded_size("sensors", &upstream, 0), None)];
        assert!(encode_input("sensors", &upstream, None, &mut buf));
        let r = &wire::decode_batch(&buf).unwrap().records[0];
        assert_eq!((r.partition, r.offset), (Some(2), Some(41)));
    }

    #[test]
    fn outputs_are_checked() {
        let mut out = Output::new();
        out.keep(OutRecord {
            topic: Some("other".into()),
            timestamp: 1,
            key: None,
            value: Some(b"x".as_slice().into()),
            headers: vec![],
        });
        out.error(0, "bad");
        let decoded = decode_output(encode(&out), 1).unwrap();
        assert_eq!(decoded.kept, [OutEntry::Written(0)]);
        let (topic, record) = &decoded.written[0];
        assert_eq!(topic.as_deref(), Some("other"));
        assert_eq!(record.value.as_deref(), Some(&b"x"[..]));
        assert_eq!(decoded.errors, vec![(0, "bad".to_string())]);

        // A kept index must name a record of the batch: [[1], [], null].
        let decoded = decode_output(vec![0x83, 0x81, 0x01, 0x80, 0xf6], 2).unwrap();
        assert_eq!(decoded.kept, [OutEntry::Input(1)]);
        let e = decode_output(vec![0x83, 0x81, 0x02, 0x80, 0xf6], 2)
            .err()
            .unwrap();
        assert!(e.to_string().contains("names input 2"), "{e}");

        let bad_index = Output {
            errors: vec![RecordError {
                index: 3,
                message: "x".into(),
            }],
            ..Output::new()
        };
        let e = decode_output(encode(&bad_index), 3).err().unwrap();
        assert!(e.to_string().contains("names record 3"), "{e}");

        let mut bad_topic = Output::new();
        bad_topic.keep(OutRecord {
            topic: Some("no/slashes here".into()),
            timestamp: 1,
            key: None,
            value: None,
            headers: vec![],
        });
        assert!(decode_output(encode(&bad_topic), 1).is_err());

        let failed = decode_output(encode(&Output::failed("boom")), 1)
            .err()
            .unwrap();
        assert_eq!(failed.to_string(), "failed the batch: boom");

        assert!(decode_output(vec![0xff], 1).is_err());
    }

    #[test]
    fn toml_config_becomes_a_cbor_map() {
        let table: BTreeMap<String, toml::Value> =
            toml::from_str("field = \"temp\"\nmin = -40\nmax = 125.0\nnested = { a = [1, 2] }")
                .unwrap();
        let config = Config::from_cbor(&config_to_cbor(&table)).unwrap();
        assert_eq!(config.require_string("field").unwrap(), "temp");
        assert_eq!(config.require_number("min").unwrap(), -40.0);
        assert_eq!(config.require_number("max").unwrap(), 125.0);
        assert_eq!(
            config.get("nested"),
            Some(&Value::Map(vec![(
                "a".into(),
                Value::Array(vec![Value::Int(1), Value::Int(2)])
            )]))
        );
    }
}
