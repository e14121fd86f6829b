//! A fast path for decoding batches and outputs in the shape writers actually produce: definite
//! lengths everywhere, no tags, every field present. It reads the bytes directly, with `Option`
//! results, where the general decoder in `wire` goes through minicbor's `Result`s with their
//! large error type and peeks at each item's type twice; on batches of small records that
//! made decoding the main cost of a plugin call, on both sides of the boundary.
//!
//! Anything else (indefinite lengths, extra or missing trailing fields, tags, and every error)
//! makes the fast path give up with `None`, and the caller runs the general decoder, which
//! accepts every valid encoding and reports errors precisely. The two must agree on every input
//! they both accept; `proptests` checks that.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use crate::record::{Batch, DecodedOutput, Entry, Header, OutRecord, Record, RecordError};
use crate::wire::Input;

struct Reader<'b> {
    buf: &'b [u8],
    pos: usize,
}

const NULL: u8 = 0xf6;

impl<'b> Reader<'b> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Major type and argument of the next item; `None` for indefinite or reserved lengths.
    /// Inlined for the one-byte heads most items have (small arrays, lengths, integers).
    #[inline(always)]
    fn head(&mut self) -> Option<(u8, u64)> {
        let initial = self.peek()?;
        self.pos += 1;
        let (major, info) = (initial >> 5, initial & 0x1f);
        if info < 24 {
            return Some((major, u64::from(info)));
        }
        self.long_argument(major, info)
    }

    fn long_argument(&mut self, major: u8, info: u8) -> Option<(u8, u64)> {
        let arg = match info {
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().ok()?),
            _ => return None,
        };
        Some((major, arg))
    }

    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn null(&mut self) -> bool {
        if self.peek() == Some(NULL) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn array(&mut self) -> Option<u64> {
        match self.head()? {
            (4, n) => Some(n),
            _ => None,
        }
    }

    fn i64(&mut self) -> Option<i64> {
        match self.head()? {
            (0, n) => i64::try_from(n).ok(),
            (1, n) => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    fn u32(&mut self) -> Option<u32> {
        match self.head()? {
            (0, n) => u32::try_from(n).ok(),
            _ => None,
        }
    }

    fn bytes(&mut self) -> Option<&'b [u8]> {
        match self.head()? {
            (2, n) => self.take(usize::try_from(n).ok()?),
            _ => None,
        }
    }

    fn text(&mut self) -> Option<&'b str> {
        core::str::from_utf8(self.text_bytes()?).ok()
    }

    /// A text string's bytes, not yet checked to be UTF-8.
    fn text_bytes(&mut self) -> Option<&'b [u8]> {
        match self.head()? {
            (3, n) => self.take(usize::try_from(n).ok()?),
            _ => None,
        }
    }

    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() {
            Some(None)
        } else {
            f(self).map(Some)
        }
    }

    /// An array of `item`s, allocating no more than the remaining input could hold.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let n = self.count()?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(item(self)?);
        }
        Some(items)
    }

    /// An array's element count; `None` when the rest of the input could not hold that many
    /// (every element takes at least a byte), so nothing is allocated from a bogus length.
    fn count(&mut self) -> Option<usize> {
        let n = self.array()?;
        (n <= (self.buf.len() - self.pos) as u64).then_some(n as usize)
    }

    fn headers(&mut self) -> Option<Vec<Header<'b>>> {
        self.list(|r| {
            if r.array()? != 2 {
                return None;
            }
            Some(Header {
                name: Cow::Borrowed(r.text()?),
                value: r.opt(Reader::bytes)?.map(Cow::Borrowed),
            })
        })
    }

    /// A record; `last_topic` is the previous record's topic, which the next one (of the same
    /// batch, so usually the same topic) reuses instead of checking the same UTF-8 again.
    fn record(&mut self, last_topic: &mut &'b str) -> Option<Record<'b>> {
        if self.array()? != 7 {
            return None;
        }
        let raw = self.text_bytes()?;
        if raw != last_topic.as_bytes() {
            *last_topic = core::str::from_utf8(raw).ok()?;
        }
        let topic = *last_topic;
        Some(Record {
            topic: Cow::Borrowed(topic),
            partition: self.opt(|r| i32::try_from(r.i64()?).ok())?,
            offset: self.opt(Reader::i64)?,
            timestamp: self.i64()?,
            key: self.opt(Reader::bytes)?.map(Cow::Borrowed),
            value: self.opt(Reader::bytes)?.map(Cow::Borrowed),
            headers: self.headers()?,
        })
    }

    fn out_record(&mut self) -> Option<OutRecord<'b>> {
        if self.array()? != 5 {
            return None;
        }
        Some(OutRecord {
            topic: self.opt(Reader::text)?.map(Cow::Borrowed),
            timestamp: self.i64()?,
            key: self.opt(Reader::bytes)?.map(Cow::Borrowed),
            value: self.opt(Reader::bytes)?.map(Cow::Borrowed),
            headers: self.opt(Reader::headers)?.unwrap_or_default(),
        })
    }

    /// An output entry: an input index (unsigned integer) or an out-record.
    fn out_entry(&mut self) -> Option<Entry<'b>> {
        match self.peek()? >> 5 {
            0 => self.u32().map(Entry::Input),
            _ => self.out_record().map(Entry::Written),
        }
    }

    fn record_error(&mut self) -> Option<RecordError<'b>> {
        if self.array()? != 2 {
            return None;
        }
        Some(RecordError {
            index: self.u32()?,
            message: self.opt(Reader::text)?.unwrap_or("").into(),
        })
    }

    /// `Some` only if the value ended exactly at the end of the input.
    fn finish<T>(self, value: T) -> Option<T> {
        (self.pos == self.buf.len()).then_some(value)
    }
}

/// The batch, if it has the common shape.
pub(crate) fn batch(bytes: &[u8]) -> Option<Input<'_>> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let fields = r.array()?;
    if !(1..=3).contains(&fields) {
        return None;
    }
    let mut last_topic = "";
    let records = r.list(|r| r.record(&mut last_topic))?;
    let state = if fields >= 2 {
        r.opt(Reader::bytes)?.map(Cow::Borrowed)
    } else {
        None
    };
    let keeps_by_index = if fields == 3 {
        match r.head()? {
            (7, 20) => false,
            (7, 21) => true,
            _ => return None,
        }
    } else {
        false
    };
    r.finish(Input {
        batch: Batch { records, state },
        keeps_by_index,
    })
}

/// The output, if it has the common shape (records, errors and failure present).
pub(crate) fn output(bytes: &[u8]) -> Option<DecodedOutput<'_>> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let fields = r.array()?;
    if !(3..=4).contains(&fields) {
        return None;
    }
    let mut out = DecodedOutput::default();
    let n = r.count()?;
    out.entries.reserve_exact(n);
    for _ in 0..n {
        out.push(r.out_entry()?);
    }
    out.errors = r.opt(|r| r.list(Reader::record_error))?.unwrap_or_default();
    out.failure = r.opt(Reader::text)?.map(Cow::Borrowed);
    if fields == 4 {
        out.state = r.opt(Reader::bytes)?.map(Cow::Borrowed);
    }
    r.finish(out)
}
