//! Writes batches and outputs (layout in `ABI.md`) straight into a byte vector: definite lengths
//! and the shortest heads. minicbor's encoder goes through its `Write` trait and a `Result` per
//! item; for batches of small records that plumbing cost more than the bytes themselves, on the
//! host (every batch) and in the guest (every output). `fast.rs` is the reading side; the
//! general decoder in `wire.rs` reads anything valid.

use alloc::vec::Vec;

use crate::kept::Inputs;
use crate::record::{Batch, Header, OutRecord, Output};

const UINT: u8 = 0;
const NEGATIVE: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const NULL: u8 = 0xf6;
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;

pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Writer<'a> {
        Writer { buf }
    }

    #[inline]
    fn head(&mut self, major: u8, n: u64) {
        let major = major << 5;
        if n < 24 {
            self.buf.push(major | n as u8);
        } else if n <= u64::from(u8::MAX) {
            self.buf.extend_from_slice(&[major | 24, n as u8]);
        } else if n <= u64::from(u16::MAX) {
            self.buf.push(major | 25);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= u64::from(u32::MAX) {
            self.buf.push(major | 26);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            self.buf.push(major | 27);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
    }

    pub(crate) fn array(&mut self, len: usize) {
        self.head(ARRAY, len as u64);
    }

    pub(crate) fn uint(&mut self, n: u64) {
        self.head(UINT, n);
    }

    pub(crate) fn int(&mut self, n: i64) {
        match u64::try_from(n) {
            Ok(n) => self.head(UINT, n),
            // CBOR stores -1 - n for a negative n.
            Err(_) => self.head(NEGATIVE, !(n as u64)),
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.head(BYTES, b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.head(TEXT, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn null(&mut self) {
        self.buf.push(NULL);
    }

    pub(crate) fn bool(&mut self, b: bool) {
        self.buf.push(if b { TRUE } else { FALSE });
    }

    pub(crate) fn opt_int(&mut self, n: Option<i64>) {
        match n {
            Some(n) => self.int(n),
            None => self.null(),
        }
    }

    pub(crate) fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bytes(b),
            None => self.null(),
        }
    }

    /// `header = [name, value / null]`
    pub(crate) fn header(&mut self, name: &str, value: Option<&[u8]>) {
        self.array(2);
        self.text(name);
        self.opt_bytes(value);
    }

    pub(crate) fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }
}

/// The fields of one input record, borrowed from wherever the caller keeps them.
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'r> {
    pub topic: &'r str,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub timestamp: i64,
    pub key: Option<&'r [u8]>,
    pub value: Option<&'r [u8]>,
}

/// Writes a batch record by record, so a host can encode its own record type without building
/// [`Record`](crate::Record)s first. The batch tells the guest that its writer accepts kept
/// records by index (ABI.md, "Kept records").
pub struct BatchWriter<'a> {
    w: Writer<'a>,
    left: usize,
}

impl<'a> BatchWriter<'a> {
    /// Starts a batch of exactly `records` records, appending to `buf`.
    pub fn new(buf: &'a mut Vec<u8>, records: usize) -> BatchWriter<'a> {
        let mut w = Writer::new(buf);
        // batch = [records, state / null, kept-by-index: true]
        w.array(3);
        w.array(records);
        BatchWriter { w, left: records }
    }

    /// Writes the next record: `[topic, partition, offset, timestamp, key, value, headers]`.
    pub fn record<'h>(
        &mut self,
        r: RecordFields<'_>,
        headers: impl ExactSizeIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) {
        assert!(
            self.left > 0,
            "more records than the batch was started with"
        );
        self.left -= 1;
        let w = &mut self.w;
        w.array(7);
        w.text(r.topic);
        w.opt_int(r.partition.map(i64::from));
        w.opt_int(r.offset);
        w.int(r.timestamp);
        w.opt_bytes(r.key);
        w.opt_bytes(r.value);
        w.array(headers.len());
        for (name, value) in headers {
            w.header(name, value);
        }
    }

    /// Ends the batch with the plugin's state for these records.
    pub fn finish(mut self, state: Option<&[u8]>) {
        assert_eq!(
            self.left, 0,
            "fewer records than the batch was started with"
        );
        self.w.opt_bytes(state);
        self.w.bool(true);
    }
}

pub(crate) fn batch(batch: &Batch<'_>, buf: &mut Vec<u8>) {
    let mut writer = BatchWriter::new(buf, batch.records.len());
    for r in &batch.records {
        let fields = RecordFields {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
        };
        writer.record(fields, r.headers.iter().map(header_fields));
    }
    writer.finish(batch.state.as_deref());
}

fn header_fields<'h>(h: &'h Header<'_>) -> (&'h str, Option<&'h [u8]>) {
    (&h.name, h.value.as_deref())
}

/// Writes `output`; with `inputs`, records kept unchanged go as their input index.
pub(crate) fn output(output: &Output<'_>, mut inputs: Option<&mut Inputs>, buf: &mut Vec<u8>) {
    let mut w = Writer::new(buf);
    // output = [records, errors, failure, ? state]
    w.array(if output.state.is_some() { 4 } else { 3 });
    w.array(output.records.len());
    for r in &output.records {
        match inputs.as_deref_mut().and_then(|inputs| inputs.find(r)) {
            Some(index) => w.uint(u64::from(index)),
            None => out_record(&mut w, r),
        }
    }
    w.array(output.errors.len());
    for e in &output.errors {
        w.array(2);
        w.uint(u64::from(e.index));
        w.text(&e.message);
    }
    w.opt_text(output.failure.as_deref());
    if let Some(state) = &output.state {
        w.bytes(state);
    }
}

/// `[topic / null, timestamp, key / null, value / null, headers]`
fn out_record(w: &mut Writer<'_>, r: &OutRecord<'_>) {
    w.array(5);
    w.opt_text(r.topic.as_deref());
    w.int(r.timestamp);
    w.opt_bytes(r.key.as_deref());
    w.opt_bytes(r.value.as_deref());
    w.array(r.headers.len());
    for h in &r.headers {
        let (name, value) = header_fields(h);
        w.header(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_the_shortest_and_agree_with_minicbor() {
        for n in [
            0i64,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as i64,
            i64::MAX,
            -1,
            -24,
            -25,
            -256,
            -257,
            i64::MIN,
        ] {
            let mut ours = Vec::new();
            Writer::new(&mut ours).int(n);
            let mut theirs = Vec::new();
            minicbor::Encoder::new(&mut theirs).i64(n).unwrap();
            assert_eq!(ours, theirs, "{n}");
        }
        for len in [0usize, 23, 24, 300, 70_000] {
            let b = alloc::vec![7u8; len];
            let mut ours = Vec::new();
            Writer::new(&mut ours).bytes(&b);
            let mut theirs = Vec::new();
            minicbor::Encoder::new(&mut theirs).bytes(&b).unwrap();
            assert_eq!(ours, theirs, "{len}");
        }
    }
}
