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

use crate::kept::Inputs;
use crate::record::{
    Batch, DecodedOutput, Entry, Header, OutEntry, OutRecord, Record, RecordError,
};
use crate::wire::Input;

struct Reader<'b> {
    buf: &'b [u8],
    pos: usize,
}

const NULL: u8 = 0xf6;
const EMPTY_ARRAY: u8 = 0x80;

impl<'b> Reader<'b> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Major type and argument of the next item; `None` for indefinite or reserved lengths.
    /// Inlined for the one-byte heads most items have (small arrays, lengths, integers), as
    /// are the other small readers: in a wasm guest every call also costs an epoch check.
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

    #[inline(always)]
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

    #[inline(always)]
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    #[inline(always)]
    fn null(&mut self) -> bool {
        if self.peek() == Some(NULL) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    #[inline(always)]
    fn array(&mut self) -> Option<u64> {
        match self.head()? {
            (4, n) => Some(n),
            _ => None,
        }
    }

    #[inline(always)]
    fn i64(&mut self) -> Option<i64> {
        match self.head()? {
            (0, n) => i64::try_from(n).ok(),
            (1, n) => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    #[inline(always)]
    fn u32(&mut self) -> Option<u32> {
        match self.head()? {
            (0, n) => u32::try_from(n).ok(),
            _ => None,
        }
    }

    #[inline(always)]
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
    #[inline(always)]
    fn text_bytes(&mut self) -> Option<&'b [u8]> {
        match self.head()? {
            (3, n) => self.take(usize::try_from(n).ok()?),
            _ => None,
        }
    }

    #[inline(always)]
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() {
            Some(None)
        } else {
            f(self).map(Some)
        }
    }

    /// `opt(bytes)` and `opt(i64)` written out: a closure passed to `opt` is not always inlined
    /// in a wasm build, and these run for every record.
    #[inline(always)]
    fn opt_bytes(&mut self) -> Option<Option<&'b [u8]>> {
        if self.null() {
            Some(None)
        } else {
            self.bytes().map(Some)
        }
    }

    #[inline(always)]
    fn opt_i64(&mut self) -> Option<Option<i64>> {
        if self.null() {
            Some(None)
        } else {
            self.i64().map(Some)
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
    #[inline(always)]
    fn count(&mut self) -> Option<usize> {
        let n = self.array()?;
        (n <= (self.buf.len() - self.pos) as u64).then_some(n as usize)
    }

    #[inline(always)]
    fn headers(&mut self) -> Option<Vec<Header<'b>>> {
        // Most records carry none: an empty array needs none of the list machinery.
        if self.peek() == Some(EMPTY_ARRAY) {
            self.pos += 1;
            return Some(Vec::new());
        }
        self.header_list()
    }

    fn header_list(&mut self) -> Option<Vec<Header<'b>>> {
        self.list(|r| {
            if r.array()? != 2 {
                return None;
            }
            Some(Header {
                name: Cow::Borrowed(r.text()?),
                value: r.opt(|r| r.bytes())?.map(Cow::Borrowed),
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
        if !same_bytes(raw, last_topic.as_bytes()) {
            *last_topic = core::str::from_utf8(raw).ok()?;
        }
        let topic = *last_topic;
        Some(Record {
            topic: Cow::Borrowed(topic),
            partition: match self.opt_i64()? {
                Some(p) => Some(i32::try_from(p).ok()?),
                None => None,
            },
            offset: self.opt_i64()?,
            timestamp: self.i64()?,
            key: self.opt_bytes()?.map(Cow::Borrowed),
            value: self.opt_bytes()?.map(Cow::Borrowed),
            headers: self.headers()?,
        })
    }

    fn out_record(&mut self) -> Option<OutRecord<'b>> {
        if self.array()? != 5 {
            return None;
        }
        Some(OutRecord {
            topic: self.opt(|r| r.text())?.map(Cow::Borrowed),
            timestamp: self.i64()?,
            key: self.opt_bytes()?.map(Cow::Borrowed),
            value: self.opt_bytes()?.map(Cow::Borrowed),
            headers: self.opt(Reader::headers)?.unwrap_or_default(),
        })
    }

    fn record_error(&mut self) -> Option<RecordError<'b>> {
        if self.array()? != 2 {
            return None;
        }
        Some(RecordError {
            index: self.u32()?,
            message: self.opt(|r| r.text())?.unwrap_or("").into(),
        })
    }

    /// `Some` only if the value ended exactly at the end of the input.
    fn finish<T>(self, value: T) -> Option<T> {
        (self.pos == self.buf.len()).then_some(value)
    }
}

/// `a == b` for the short topic names every record repeats, compared eight bytes at a time:
/// slice equality calls `memcmp`, which in a wasm guest is an out-of-line byte loop.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_equal = a_words.remainder().iter().eq(b_words.remainder());
    tails_equal
        && a_words.zip(b_words).all(|(x, y)| {
            u64::from_ne_bytes(x.try_into().unwrap()) == u64::from_ne_bytes(y.try_into().unwrap())
        })
}

/// The batch, if it has the common shape. With `inputs`, each record's identity is noted there
/// as it is decoded (on `None`, what was noted is incomplete).
pub(crate) fn batch<'b>(bytes: &'b [u8], mut inputs: Option<&mut Inputs>) -> Option<Input<'b>> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let fields = r.array()?;
    if !(1..=3).contains(&fields) {
        return None;
    }
    let mut last_topic = "";
    if let Some(inputs) = inputs.as_deref_mut() {
        inputs.clear();
    }
    let records = r.list(|r| {
        let record = r.record(&mut last_topic)?;
        if let Some(inputs) = inputs.as_deref_mut() {
            inputs.note(&record);
        }
        Some(record)
    })?;
    let state = if fields >= 2 {
        r.opt(|r| r.bytes())?.map(Cow::Borrowed)
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
        // A kept record (an index) goes straight in; most outputs are nothing else.
        if r.peek()? >> 5 == 0 {
            out.entries.push(OutEntry::Input(r.u32()?));
        } else {
            out.push(Entry::Written(r.out_record()?));
        }
    }
    out.errors = r.opt(|r| r.list(Reader::record_error))?.unwrap_or_default();
    out.failure = r.opt(|r| r.text())?.map(Cow::Borrowed);
    if fields == 4 {
        out.state = r.opt(|r| r.bytes())?.map(Cow::Borrowed);
    }
    r.finish(out)
}
