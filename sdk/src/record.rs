//! The values that cross the boundary: a [`Batch`] of input [`Record`]s goes in, an [`Output`]
//! of [`OutRecord`]s and per-record [`RecordError`]s comes back.
//!
//! Every byte and text field is a `Cow`: decoding borrows from the buffer the host wrote (no copy
//! per record inside the guest), and a plugin that passes a record through hands the same slices
//! back to the encoder. A plugin that builds a new value puts a `Cow::Owned` in its place.

use alloc::borrow::Cow;
use alloc::string::ToString;
use alloc::vec::Vec;
use core::fmt::Display;

/// One record header. Kafka allows a null header value, so the value is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: Cow<'a, str>,
    pub value: Option<Cow<'a, [u8]>>,
}

impl<'a> Header<'a> {
    pub fn new(name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, [u8]>>) -> Header<'a> {
        Header {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

/// An input record, as the host hands it to `process`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The topic the record was written to (ingest) or read from (upstream).
    pub topic: Cow<'a, str>,
    /// Partition of the record; `None` for ingest plugins, which run before the log picks one.
    pub partition: Option<i32>,
    /// Offset of the record in its partition; `None` before the record is in the log.
    pub offset: Option<i64>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub key: Option<Cow<'a, [u8]>>,
    /// `None` is a Kafka tombstone.
    pub value: Option<Cow<'a, [u8]>>,
    pub headers: Vec<Header<'a>>,
}

impl<'a> Record<'a> {
    /// The value, or an empty slice for a tombstone.
    pub fn value_bytes(&self) -> &[u8] {
        self.value.as_deref().unwrap_or(&[])
    }

    /// The key, or an empty slice when there is none.
    pub fn key_bytes(&self) -> &[u8] {
        self.key.as_deref().unwrap_or(&[])
    }

    /// The value of the first header with this name (`None` if absent or null).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
    }

    /// This record, kept as it is in its own topic.
    pub fn keep(self) -> OutRecord<'a> {
        OutRecord::from(self)
    }
}

/// The input of one `process` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch<'a> {
    pub records: Vec<Record<'a>>,
    /// The state the plugin returned with its last output for this topic and partition, as the
    /// host keeps it (see [`Output::state`]); `None` when there is none.
    pub state: Option<Cow<'a, [u8]>>,
}

impl<'a> Batch<'a> {
    pub fn new(records: Vec<Record<'a>>) -> Batch<'a> {
        Batch {
            records,
            state: None,
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Keeps the records for which `keep` is true, unchanged; drops the others.
    pub fn filter(self, mut keep: impl FnMut(&Record<'a>) -> bool) -> Output<'a> {
        self.try_filter_map(|r| Ok::<_, &str>(if keep(&r) { Some(r.keep()) } else { None }))
    }

    /// Like [`Batch::filter`], but a record the predicate cannot judge (`Err`) becomes a
    /// per-record error, which the broker sends to the dead-letter topic.
    pub fn try_filter<E: Display>(
        self,
        mut keep: impl FnMut(&Record<'a>) -> Result<bool, E>,
    ) -> Output<'a> {
        self.try_filter_map(|r| Ok::<_, E>(if keep(&r)? { Some(r.keep()) } else { None }))
    }

    /// Replaces every record by what `f` makes of it.
    pub fn map(self, mut f: impl FnMut(Record<'a>) -> OutRecord<'a>) -> Output<'a> {
        self.try_filter_map(|r| Ok::<_, &str>(Some(f(r))))
    }

    /// The general form: for each record, `Ok(Some(out))` keeps `out`, `Ok(None)` drops the
    /// record, `Err(message)` reports it as failed.
    pub fn try_filter_map<E: Display>(
        self,
        mut f: impl FnMut(Record<'a>) -> Result<Option<OutRecord<'a>>, E>,
    ) -> Output<'a> {
        let mut out = Output::with_capacity(self.records.len());
        for (index, record) in self.records.into_iter().enumerate() {
            match f(record) {
                Ok(Some(r)) => out.keep(r),
                Ok(None) => {}
                Err(e) => out.error(index as u32, e.to_string()),
            }
        }
        out
    }
}

/// A record the plugin keeps. With `topic: None` it stays in the source topic; naming a topic
/// routes it there instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord<'a> {
    pub topic: Option<Cow<'a, str>>,
    pub timestamp: i64,
    pub key: Option<Cow<'a, [u8]>>,
    pub value: Option<Cow<'a, [u8]>>,
    pub headers: Vec<Header<'a>>,
}

impl<'a> OutRecord<'a> {
    /// Routes this record to another topic.
    pub fn to_topic(mut self, topic: impl Into<Cow<'a, str>>) -> OutRecord<'a> {
        self.topic = Some(topic.into());
        self
    }

    /// Replaces the value.
    pub fn with_value(mut self, value: impl Into<Cow<'a, [u8]>>) -> OutRecord<'a> {
        self.value = Some(value.into());
        self
    }

    /// Adds a header.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, [u8]>>,
    ) -> OutRecord<'a> {
        self.headers.push(Header::new(name, value));
        self
    }
}

impl<'a> From<Record<'a>> for OutRecord<'a> {
    fn from(r: Record<'a>) -> OutRecord<'a> {
        OutRecord {
            topic: None,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }
    }
}

/// A record the plugin could not handle: `index` is its position in the input batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError<'a> {
    pub index: u32,
    pub message: Cow<'a, str>,
}

/// What `process` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output<'a> {
    /// Records to write, in order.
    pub records: Vec<OutRecord<'a>>,
    /// Input records that failed; the broker sends them to the plugin's dead-letter topic.
    pub errors: Vec<RecordError<'a>>,
    /// Set when the whole batch failed (the SDK sets it when it cannot decode the input, for
    /// example): the broker then dead-letters every input record, as after a trap.
    pub failure: Option<Cow<'a, str>>,
    /// State for the host to keep and hand back with the next batch of the same topic and
    /// partition (`None`: no state). Upstream plugins' state is committed with the replication
    /// cursor, so it always matches the records already handled.
    pub state: Option<Cow<'a, [u8]>>,
}

impl<'a> Output<'a> {
    pub fn new() -> Output<'a> {
        Output::default()
    }

    pub fn with_capacity(records: usize) -> Output<'a> {
        Output {
            records: Vec::with_capacity(records),
            ..Output::default()
        }
    }

    /// Keeps a record.
    pub fn keep(&mut self, record: impl Into<OutRecord<'a>>) {
        self.records.push(record.into());
    }

    /// Reports input record `index` as failed.
    pub fn error(&mut self, index: u32, message: impl Into<Cow<'a, str>>) {
        self.errors.push(RecordError {
            index,
            message: message.into(),
        });
    }

    /// An output that fails the whole batch.
    pub fn failed(message: impl ToString) -> Output<'a> {
        Output {
            failure: Some(Cow::Owned(message.to_string())),
            ..Output::default()
        }
    }
}

/// One record of an output as the host decodes it: an input record the plugin kept exactly as
/// it came (ABI.md, "Kept records"), or a record written out in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutEntry {
    /// Input record `i` of the batch, unchanged.
    Input(u32),
    /// [`DecodedOutput::written`]`[i]`.
    Written(u32),
}

/// An [`Output`] as decoded from the wire. Kept input records are only named, so an output
/// that keeps what it was given decodes without copying or allocating per record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedOutput<'a> {
    /// The output's records, in order.
    pub entries: Vec<OutEntry>,
    /// The records written out in full, in output order.
    pub written: Vec<OutRecord<'a>>,
    pub errors: Vec<RecordError<'a>>,
    pub failure: Option<Cow<'a, str>>,
    pub state: Option<Cow<'a, [u8]>>,
}

impl<'a> DecodedOutput<'a> {
    /// The output with each entry replaced by the record it stands for; `None` if an entry
    /// names a record outside `inputs` or `written`.
    pub fn resolve(self, inputs: &[Record<'a>]) -> Option<Output<'a>> {
        let records = self
            .entries
            .iter()
            .map(|entry| match *entry {
                OutEntry::Input(i) => inputs.get(i as usize).cloned().map(OutRecord::from),
                OutEntry::Written(i) => self.written.get(i as usize).cloned(),
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Output {
            records,
            errors: self.errors,
            failure: self.failure,
            state: self.state,
        })
    }

    /// Adds an entry, and the record it stands for when it is written out.
    pub(crate) fn push(&mut self, entry: Entry<'a>) {
        match entry {
            Entry::Input(i) => self.entries.push(OutEntry::Input(i)),
            Entry::Written(r) => {
                self.entries
                    .push(OutEntry::Written(self.written.len() as u32));
                self.written.push(r);
            }
        }
    }
}

/// One decoded output record before it is filed into a [`DecodedOutput`].
pub(crate) enum Entry<'a> {
    Input(u32),
    Written(OutRecord<'a>),
}

impl<'a> From<Output<'a>> for DecodedOutput<'a> {
    fn from(o: Output<'a>) -> DecodedOutput<'a> {
        DecodedOutput {
            entries: (0..o.records.len() as u32).map(OutEntry::Written).collect(),
            written: o.records,
            errors: o.errors,
            failure: o.failure,
            state: o.state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: &'static [u8]) -> Record<'static> {
        Record {
            topic: "t".into(),
            partition: None,
            offset: None,
            timestamp: 1,
            key: None,
            value: Some(v.into()),
            headers: Vec::new(),
        }
    }

    #[test]
    fn try_filter_keeps_drops_and_reports_by_input_index() {
        let batch = Batch::new(alloc::vec![rec(b"1"), rec(b"x"), rec(b"0"), rec(b"1")]);
        let out = batch.try_filter(|r| match r.value_bytes() {
            b"1" => Ok(true),
            b"0" => Ok(false),
            _ => Err("not a digit"),
        });
        assert_eq!(out.records.len(), 2);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].index, 1);
        assert_eq!(out.errors[0].message, "not a digit");
        assert!(out.failure.is_none());
    }

    #[test]
    fn map_can_reroute_and_rewrite() {
        let out = Batch::new(alloc::vec![rec(b"a")])
            .map(|r| r.keep().to_topic("other").with_value(b"b".to_vec()));
        assert_eq!(out.records[0].topic.as_deref(), Some("other"));
        assert_eq!(out.records[0].value.as_deref(), Some(&b"b"[..]));
    }
}
