//! Writes batches and outputs (layout in `ABI.md`) straight into a byte vector: definite lengths
//! and the shortest heads. minicbor's encoder goes through its `Write` trait and a `Result` per
//! item; for batches of small records that plumbing cost more than the bytes themselves, on the
//! host (every batch) and in the guest (every output). `fast.rs` is the reading side; the
//! general decoder in `wire.rs` reads anything valid.

use alloc::vec::Vec;

use crate::kept::Inputs;
use crate::record::{Batch, Header, OutRecord, Output, Record};

const UINT: u8 = 0;
const NEGATIVE: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const NULL: u8 = 0xf6;
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;

/// Where encoded bytes go: a growing vector, or a slice sized in advance ([`SliceSink`]).
pub trait Sink {
    fn put(&mut self, byte: u8);
    fn put_all(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn put(&mut self, byte: u8) {
        self.push(byte);
    }

    #[inline(always)]
    fn put_all(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes into a slice that [`batch_len`] sized, such as a guest's input buffer, so a host
/// encodes a batch in place instead of into a vector it then copies. Bytes that do not fit are
/// counted, not written: [`SliceSink::filled`] tells whether the sizes agreed.
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> SliceSink<'a> {
    pub fn new(buf: &'a mut [u8]) -> SliceSink<'a> {
        SliceSink { buf, pos: 0 }
    }

    /// Whether exactly the whole slice was written.
    pub fn filled(&self) -> bool {
        self.pos == self.buf.len()
    }
}

impl Sink for SliceSink<'_> {
    #[inline(always)]
    fn put(&mut self, byte: u8) {
        if let Some(b) = self.buf.get_mut(self.pos) {
            *b = byte;
        }
        self.pos += 1;
    }

    #[inline(always)]
    fn put_all(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }
}

/// Bytes a head with argument `n` takes (the shortest form, as [`Writer`] writes it).
#[inline(always)]
const fn head_len(n: u64) -> usize {
    match n {
        0..24 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

const fn int_len(n: i64) -> usize {
    head_len(if n >= 0 { n as u64 } else { !(n as u64) })
}

fn opt_int_len(n: Option<i64>) -> usize {
    n.map_or(1, int_len)
}

fn opt_bytes_len(b: Option<&[u8]>) -> usize {
    b.map_or(1, |b| head_len(b.len() as u64) + b.len())
}

pub(crate) struct Writer<'a, S: Sink = Vec<u8>> {
    buf: &'a mut S,
}

impl<'a, S: Sink> Writer<'a, S> {
    pub(crate) fn new(buf: &'a mut S) -> Writer<'a, S> {
        Writer { buf }
    }

    /// Inlined, as is every size (in a wasm guest every call also costs an epoch check).
    #[inline(always)]
    fn head(&mut self, major: u8, n: u64) {
        if n < 24 {
            self.buf.put(major << 5 | n as u8);
        } else {
            self.long_head(major, n);
        }
    }

    #[inline(always)]
    fn long_head(&mut self, major: u8, n: u64) {
        let major = major << 5;
        if n <= u64::from(u8::MAX) {
            self.buf.put_all(&[major | 24, n as u8]);
        } else if n <= u64::from(u16::MAX) {
            self.buf.put(major | 25);
            self.buf.put_all(&(n as u16).to_be_bytes());
        } else if n <= u64::from(u32::MAX) {
            self.buf.put(major | 26);
            self.buf.put_all(&(n as u32).to_be_bytes());
        } else {
            self.buf.put(major | 27);
            self.buf.put_all(&n.to_be_bytes());
        }
    }

    #[inline(always)]
    pub(crate) fn array(&mut self, len: usize) {
        self.head(ARRAY, len as u64);
    }

    #[inline(always)]
    pub(crate) fn uint(&mut self, n: u64) {
        self.head(UINT, n);
    }

    #[inline(always)]
    pub(crate) fn int(&mut self, n: i64) {
        match u64::try_from(n) {
            Ok(n) => self.head(UINT, n),
            // CBOR stores -1 - n for a negative n.
            Err(_) => self.head(NEGATIVE, !(n as u64)),
        }
    }

    #[inline(always)]
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.head(BYTES, b.len() as u64);
        self.buf.put_all(b);
    }

    #[inline(always)]
    pub(crate) fn text(&mut self, s: &str) {
        self.head(TEXT, s.len() as u64);
        self.buf.put_all(s.as_bytes());
    }

    #[inline(always)]
    pub(crate) fn null(&mut self) {
        self.buf.put(NULL);
    }

    #[inline(always)]
    pub(crate) fn bool(&mut self, b: bool) {
        self.buf.put(if b { TRUE } else { FALSE });
    }

    #[inline(always)]
    pub(crate) fn opt_int(&mut self, n: Option<i64>) {
        match n {
            Some(n) => self.int(n),
            None => self.null(),
        }
    }

    #[inline(always)]
    pub(crate) fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bytes(b),
            None => self.null(),
        }
    }

    /// `header = [name, value / null]`
    #[inline(always)]
    pub(crate) fn header(&mut self, name: &str, value: Option<&[u8]>) {
        self.array(2);
        self.text(name);
        self.opt_bytes(value);
    }

    #[inline(always)]
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

impl RecordFields<'_> {
    /// Bytes this record takes in a batch with these headers, exactly as
    /// [`BatchWriter::record`] writes it.
    pub fn encoded_len<'h>(
        &self,
        headers: impl ExactSizeIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) -> usize {
        let header = |(name, value): (&str, Option<&[u8]>)| {
            1 + head_len(name.len() as u64) + name.len() + opt_bytes_len(value)
        };
        1 + head_len(self.topic.len() as u64)
            + self.topic.len()
            + opt_int_len(self.partition.map(i64::from))
            + opt_int_len(self.offset)
            + int_len(self.timestamp)
            + opt_bytes_len(self.key)
            + opt_bytes_len(self.value)
            + head_len(headers.len() as u64)
            + headers.map(header).sum::<usize>()
    }
}

/// Bytes a batch of `records` records, taking `records_len` bytes together
/// ([`RecordFields::encoded_len`]), with `state` takes: what a host asks `hw_alloc` for before
/// writing the batch into the buffer with [`BatchWriter::new`] over a [`SliceSink`].
pub fn batch_len(records: usize, records_len: usize, state: Option<&[u8]>) -> usize {
    1 + head_len(records as u64) + records_len + opt_bytes_len(state) + 1
}

/// Writes a batch record by record, so a host can encode its own record type without building
/// [`Record`](crate::Record)s first. The batch tells the guest that its writer accepts kept
/// records by index (ABI.md, "Kept records").
pub struct BatchWriter<'a, S: Sink = Vec<u8>> {
    w: Writer<'a, S>,
    left: usize,
}

impl<'a, S: Sink> BatchWriter<'a, S> {
    /// Starts a batch of exactly `records` records, appending to `buf`.
    pub fn new(buf: &'a mut S, records: usize) -> BatchWriter<'a, S> {
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

impl<'r> RecordFields<'r> {
    /// The fields of an SDK record.
    pub(crate) fn of(r: &'r Record<'_>) -> RecordFields<'r> {
        RecordFields {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
        }
    }
}

/// The headers of an SDK record, as [`BatchWriter::record`] takes them.
pub(crate) fn headers_of<'r>(
    r: &'r Record<'_>,
) -> impl ExactSizeIterator<Item = (&'r str, Option<&'r [u8]>)> {
    r.headers.iter().map(header_fields)
}

pub(crate) fn batch(batch: &Batch<'_>, buf: &mut Vec<u8>) {
    let mut writer = BatchWriter::new(buf, batch.records.len());
    for r in &batch.records {
        writer.record(RecordFields::of(r), headers_of(r));
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
