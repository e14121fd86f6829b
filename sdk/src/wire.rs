//! The CBOR encoding of ABI v1 (layout in `sdk/ABI.md`), shared by the broker and every guest.
//!
//! Each struct is a CBOR array of its fields in a fixed order. The impls are written by hand
//! rather than derived because (1) minicbor's derive copies `Cow` fields, while borrowing from
//! the input is what makes a batch cheap to decode in the guest, and (2) the layout is a public
//! contract that C or Go plugins implement from `ABI.md`, so it is spelled out here field by
//! field instead of following the derive's rules. Decoding is deliberately tolerant where that
//! costs nothing: arrays and strings may be definite or indefinite, extra trailing array
//! elements are skipped (room for additions within v1), and a nullable field may be left out at
//! the end of an array. Nothing is pre-allocated from a length read off the wire beyond what the
//! remaining input could hold.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use minicbor::data::Type;
use minicbor::decode::{Decoder, Error as DecodeError};
use minicbor::encode::{Encoder, Error as EncodeError, Write};
use minicbor::{Decode, Encode};

use crate::record::{Batch, Header, OutRecord, Output, Record, RecordError};

/// Encodes a batch, appending to `buf`.
pub fn encode_batch(batch: &Batch<'_>, buf: &mut Vec<u8>) {
    encode_into(batch, buf)
}

/// Decodes a batch, borrowing from `bytes`. The whole input must be one batch.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch<'_>, DecodeError> {
    match crate::fast::batch(bytes) {
        Some(batch) => Ok(batch),
        None => decode_all(bytes),
    }
}

/// Encodes an output, appending to `buf`.
pub fn encode_output(output: &Output<'_>, buf: &mut Vec<u8>) {
    encode_into(output, buf)
}

/// Decodes an output, borrowing from `bytes`. The whole input must be one output.
pub fn decode_output(bytes: &[u8]) -> Result<Output<'_>, DecodeError> {
    match crate::fast::output(bytes) {
        Some(output) => Ok(output),
        None => decode_all(bytes),
    }
}

/// The general decoders alone, without the fast path (for tests that compare the two).
#[cfg(test)]
pub(crate) fn decode_batch_general(bytes: &[u8]) -> Result<Batch<'_>, DecodeError> {
    decode_all(bytes)
}

#[cfg(test)]
pub(crate) fn decode_output_general(bytes: &[u8]) -> Result<Output<'_>, DecodeError> {
    decode_all(bytes)
}

pub(crate) fn encode_into<T: Encode<()>>(value: &T, buf: &mut Vec<u8>) {
    // Writing to a Vec cannot fail (its error type is Infallible) and none of our Encode impls
    // produce errors of their own, so there is nothing to report.
    let _ = minicbor::encode(value, &mut *buf);
}

pub(crate) fn decode_all<'b, T: Decode<'b, ()>>(bytes: &'b [u8]) -> Result<T, DecodeError> {
    let mut d = Decoder::new(bytes);
    let value = T::decode(&mut d, &mut ())?;
    if d.position() != bytes.len() {
        return Err(DecodeError::message("trailing bytes after the value").at(d.position()));
    }
    Ok(value)
}

/// Walks the elements of a CBOR array, definite or indefinite.
pub(crate) struct Seq {
    /// Elements left in a definite array; `None` for an indefinite one.
    left: Option<u64>,
    /// An indefinite array's break byte has been consumed.
    ended: bool,
}

impl Seq {
    pub(crate) fn begin(d: &mut Decoder<'_>) -> Result<Seq, DecodeError> {
        Ok(Seq {
            left: d.array()?,
            ended: false,
        })
    }

    /// The number of elements, if the array says so (used only as a capacity hint).
    pub(crate) fn hint(&self) -> Option<u64> {
        self.left
    }

    /// True if another element follows; consumes the break of an indefinite array.
    pub(crate) fn next(&mut self, d: &mut Decoder<'_>) -> Result<bool, DecodeError> {
        match &mut self.left {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None if self.ended => Ok(false),
            None => {
                if d.datatype()? == Type::Break {
                    // The break is the single byte 0xff.
                    d.set_position(d.position() + 1);
                    self.ended = true;
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    /// A field that must be present.
    pub(crate) fn required<'b, T>(
        &mut self,
        d: &mut Decoder<'b>,
        name: &'static str,
        f: impl FnOnce(&mut Decoder<'b>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let at = d.position();
        if !self.next(d)? {
            return Err(DecodeError::message(name).at(at));
        }
        f(d)
    }

    /// A nullable field: `None` if null or if the array ended before it.
    pub(crate) fn nullable<'b, T>(
        &mut self,
        d: &mut Decoder<'b>,
        f: impl FnOnce(&mut Decoder<'b>) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if !self.next(d)? {
            return Ok(None);
        }
        if d.datatype()? == Type::Null {
            d.null()?;
            return Ok(None);
        }
        f(d).map(Some)
    }

    /// Skips elements this version does not know.
    pub(crate) fn finish(mut self, d: &mut Decoder<'_>) -> Result<(), DecodeError> {
        while self.next(d)? {
            d.skip()?;
        }
        Ok(())
    }
}

/// Decodes an array of `T`s.
pub(crate) fn list<'b, T>(
    d: &mut Decoder<'b>,
    mut item: impl FnMut(&mut Decoder<'b>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut seq = Seq::begin(d)?;
    // Every element takes at least one byte, so the rest of the input bounds the capacity.
    let room = (d.input().len() - d.position()) as u64;
    let mut items = Vec::with_capacity(seq.hint().unwrap_or(0).min(room) as usize);
    while seq.next(d)? {
        items.push(item(d)?);
    }
    Ok(items)
}

/// Text, borrowed unless it came in indefinite-length chunks.
pub(crate) fn text<'b>(d: &mut Decoder<'b>) -> Result<Cow<'b, str>, DecodeError> {
    if d.datatype()? == Type::StringIndef {
        let mut s = String::new();
        for part in d.str_iter()? {
            s.push_str(part?);
        }
        return Ok(Cow::Owned(s));
    }
    d.str().map(Cow::Borrowed)
}

/// Bytes, borrowed unless they came in indefinite-length chunks.
pub(crate) fn bytes<'b>(d: &mut Decoder<'b>) -> Result<Cow<'b, [u8]>, DecodeError> {
    if d.datatype()? == Type::BytesIndef {
        let mut v = Vec::new();
        for part in d.bytes_iter()? {
            v.extend_from_slice(part?);
        }
        return Ok(Cow::Owned(v));
    }
    d.bytes().map(Cow::Borrowed)
}

fn opt_bytes<W: Write>(
    e: &mut Encoder<W>,
    v: &Option<Cow<'_, [u8]>>,
) -> Result<(), EncodeError<W::Error>> {
    match v {
        Some(b) => e.bytes(b)?,
        None => e.null()?,
    };
    Ok(())
}

fn headers<'b>(d: &mut Decoder<'b>) -> Result<Vec<Header<'b>>, DecodeError> {
    list(d, |d| Header::decode(d, &mut ()))
}

fn encode_headers<W: Write>(
    e: &mut Encoder<W>,
    headers: &[Header<'_>],
) -> Result<(), EncodeError<W::Error>> {
    e.array(headers.len() as u64)?;
    for h in headers {
        h.encode(e, &mut ())?;
    }
    Ok(())
}

// Header = [name: tstr, value: bstr / null]
impl<C> Encode<C> for Header<'_> {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncodeError<W::Error>> {
        e.array(2)?.str(&self.name)?;
        opt_bytes(e, &self.value)
    }
}

impl<'b, C> Decode<'b, C> for Header<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        let mut s = Seq::begin(d)?;
        let name = s.required(d, "header: missing name", text)?;
        let value = s.nullable(d, bytes)?;
        s.finish(d)?;
        Ok(Header { name, value })
    }
}

// Record = [topic, partition / null, offset / null, timestamp, key / null, value / null, headers]
impl<C> Encode<C> for Record<'_> {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncodeError<W::Error>> {
        e.array(7)?.str(&self.topic)?;
        match self.partition {
            Some(p) => e.i32(p)?,
            None => e.null()?,
        };
        match self.offset {
            Some(o) => e.i64(o)?,
            None => e.null()?,
        };
        e.i64(self.timestamp)?;
        opt_bytes(e, &self.key)?;
        opt_bytes(e, &self.value)?;
        encode_headers(e, &self.headers)
    }
}

impl<'b, C> Decode<'b, C> for Record<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        let mut s = Seq::begin(d)?;
        let topic = s.required(d, "record: missing topic", text)?;
        let partition = s.nullable(d, |d| d.i32())?;
        let offset = s.nullable(d, |d| d.i64())?;
        let timestamp = s.required(d, "record: missing timestamp", |d| d.i64())?;
        let key = s.nullable(d, bytes)?;
        let value = s.nullable(d, bytes)?;
        let headers = s.required(d, "record: missing headers", headers)?;
        s.finish(d)?;
        Ok(Record {
            topic,
            partition,
            offset,
            timestamp,
            key,
            value,
            headers,
        })
    }
}

// Batch = [records: [* Record], ? state: bstr / null]
impl<C> Encode<C> for Batch<'_> {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncodeError<W::Error>> {
        // Without state, the one-element form every v1 guest has always read.
        e.array(if self.state.is_some() { 2 } else { 1 })?;
        e.array(self.records.len() as u64)?;
        for r in &self.records {
            r.encode(e, &mut ())?;
        }
        if let Some(state) = &self.state {
            e.bytes(state)?;
        }
        Ok(())
    }
}

impl<'b, C> Decode<'b, C> for Batch<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        let mut s = Seq::begin(d)?;
        let records = s.required(d, "batch: missing records", |d| {
            list(d, |d| Record::decode(d, &mut ()))
        })?;
        let state = s.nullable(d, bytes)?;
        s.finish(d)?;
        Ok(Batch { records, state })
    }
}

// OutRecord = [topic / null, timestamp, key / null, value / null, headers]
impl<C> Encode<C> for OutRecord<'_> {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncodeError<W::Error>> {
        e.array(5)?;
        match &self.topic {
            Some(t) => e.str(t)?,
            None => e.null()?,
        };
        e.i64(self.timestamp)?;
        opt_bytes(e, &self.key)?;
        opt_bytes(e, &self.value)?;
        encode_headers(e, &self.headers)
    }
}

impl<'b, C> Decode<'b, C> for OutRecord<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        let mut s = Seq::begin(d)?;
        let topic = s.nullable(d, text)?;
        let timestamp = s.required(d, "output record: missing timestamp", |d| d.i64())?;
        let key = s.nullable(d, bytes)?;
        let value = s.nullable(d, bytes)?;
        let headers = s.nullable(d, headers)?.unwrap_or_default();
        s.finish(d)?;
        Ok(OutRecord {
            topic,
            timestamp,
            key,
            value,
            headers,
        })
    }
}

// RecordError = [index: uint, message: tstr]
impl<C> Encode<C> for RecordError<'_> {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncodeError<W::Error>> {
        e.array(2)?.u32(self.index)?.str(&self.message)?;
        Ok(())
    }
}

impl<'b, C> Decode<'b, C> for RecordError<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        let mut s = Seq::begin(d)?;
        let index = s.required(d, "record error: missing index", |d| d.u32())?;
        let message = s.nullable(d, text)?.unwrap_or(Cow::Borrowed(""));
        s.finish(d)?;
        Ok(RecordError { index, message })
    }
}

// Output = [records: [* OutRecord], errors: [* RecordError] / null, failure: tstr / null,
//           ? state: bstr / null]
impl<C> Encode<C> for Output<'_> {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncodeError<W::Error>> {
        e.array(if self.state.is_some() { 4 } else { 3 })?;
        e.array(self.records.len() as u64)?;
        for r in &self.records {
            r.encode(e, &mut ())?;
        }
        e.array(self.errors.len() as u64)?;
        for err in &self.errors {
            err.encode(e, &mut ())?;
        }
        match &self.failure {
            Some(f) => e.str(f)?,
            None => e.null()?,
        };
        if let Some(state) = &self.state {
            e.bytes(state)?;
        }
        Ok(())
    }
}

impl<'b, C> Decode<'b, C> for Output<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        let mut s = Seq::begin(d)?;
        let records = s.required(d, "output: missing records", |d| {
            list(d, |d| OutRecord::decode(d, &mut ()))
        })?;
        let errors = s
            .nullable(d, |d| list(d, |d| RecordError::decode(d, &mut ())))?
            .unwrap_or_default();
        let failure = s.nullable(d, text)?;
        let state = s.nullable(d, bytes)?;
        s.finish(d)?;
        Ok(Output {
            records,
            errors,
            failure,
            state,
        })
    }
}
