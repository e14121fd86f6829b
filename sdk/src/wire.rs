//! The CBOR encoding of ABI v1 (layout in `sdk/ABI.md`), shared by the broker and every guest.
//!
//! Each struct is a CBOR array of its fields in a fixed order. Encoding is in `encode.rs` (a
//! direct writer); decoding first tries the fast path of `fast.rs` for the shape writers produce,
//! then the general decoders here. The decoders are written by hand rather than derived because
//! (1) minicbor's derive copies `Cow` fields, while borrowing from the input is what makes a
//! batch cheap to decode in the guest, and (2) the layout is a public contract that C or Go
//! plugins implement from `ABI.md`, so it is spelled out field by field instead of following the
//! derive's rules. Decoding is deliberately tolerant where that
//! costs nothing: arrays and strings may be definite or indefinite, extra trailing array
//! elements are skipped (room for additions within v1), and a nullable field may be left out at
//! the end of an array. Nothing is pre-allocated from a length read off the wire beyond what the
//! remaining input could hold.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use minicbor::data::Type;
use minicbor::decode::{Decoder, Error as DecodeError};
use minicbor::{Decode, Encode};

use crate::encode;
pub use crate::encode::{batch_len, BatchWriter, RecordFields, Sink, SliceSink};
use crate::kept::Inputs;
use crate::record::{Batch, DecodedOutput, Entry, Header, OutRecord, Output, Record, RecordError};

/// Encodes a batch, appending to `buf`. The batch says that its writer accepts kept records by
/// index in the output (ABI.md, "Kept records"): [`decode_output`] returns them as
/// [`OutEntry::Input`](crate::OutEntry::Input).
pub fn encode_batch(batch: &Batch<'_>, buf: &mut Vec<u8>) {
    encode::batch(batch, buf)
}

/// Decodes a batch, borrowing from `bytes`. The whole input must be one batch.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch<'_>, DecodeError> {
    decode_input(bytes).map(|input| input.batch)
}

/// A batch with what its writer said about the output it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Input<'a> {
    pub batch: Batch<'a>,
    /// The host accepts input records kept unchanged as their index.
    pub keeps_by_index: bool,
}

/// Decodes a batch and its `kept-by-index` flag (false when absent, as from older hosts).
pub(crate) fn decode_input(bytes: &[u8]) -> Result<Input<'_>, DecodeError> {
    match crate::fast::batch(bytes, None) {
        Some(input) => Ok(input),
        None => decode_all(bytes),
    }
}

/// [`decode_input`], with the identities of the batch's records in `inputs` (to name kept
/// records by index in the output).
pub(crate) fn decode_input_noting<'b>(
    bytes: &'b [u8],
    inputs: &mut Inputs,
) -> Result<Input<'b>, DecodeError> {
    if let Some(input) = crate::fast::batch(bytes, Some(inputs)) {
        return Ok(input);
    }
    let input: Input<'b> = decode_all(bytes)?;
    inputs.fill(&input.batch);
    Ok(input)
}

/// Encodes an output, appending to `buf`; every record in full.
pub fn encode_output(output: &Output<'_>, buf: &mut Vec<u8>) {
    encode::output(output, None, buf)
}

/// Encodes an output, naming the records of `inputs` it keeps unchanged by their index.
pub(crate) fn encode_output_keeping(output: &Output<'_>, inputs: &mut Inputs, buf: &mut Vec<u8>) {
    encode::output(output, Some(inputs), buf)
}

/// Decodes an output, borrowing from `bytes`. The whole input must be one output.
pub fn decode_output(bytes: &[u8]) -> Result<DecodedOutput<'_>, DecodeError> {
    match crate::fast::output(bytes) {
        Some(output) => Ok(output),
        None => decode_all(bytes),
    }
}

/// The general decoders alone, without the fast path (for tests that compare the two).
#[cfg(test)]
pub(crate) fn decode_input_general(bytes: &[u8]) -> Result<Input<'_>, DecodeError> {
    decode_all(bytes)
}

#[cfg(test)]
pub(crate) fn decode_output_general(bytes: &[u8]) -> Result<DecodedOutput<'_>, DecodeError> {
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

fn headers<'b>(d: &mut Decoder<'b>) -> Result<Vec<Header<'b>>, DecodeError> {
    list(d, |d| Header::decode(d, &mut ()))
}

// Header = [name: tstr, value: bstr / null]

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

// Batch = [records: [* Record], ? state: bstr / null, ? kept-by-index: bool]

impl<'b, C> Decode<'b, C> for Input<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        let mut s = Seq::begin(d)?;
        let records = s.required(d, "batch: missing records", |d| {
            list(d, |d| Record::decode(d, &mut ()))
        })?;
        let state = s.nullable(d, bytes)?;
        let keeps_by_index = s.nullable(d, |d| d.bool())?.unwrap_or(false);
        s.finish(d)?;
        Ok(Input {
            batch: Batch { records, state },
            keeps_by_index,
        })
    }
}

// OutRecord = [topic / null, timestamp, key / null, value / null, headers]

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

impl<'b, C> Decode<'b, C> for RecordError<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        let mut s = Seq::begin(d)?;
        let index = s.required(d, "record error: missing index", |d| d.u32())?;
        let message = s.nullable(d, text)?.unwrap_or(Cow::Borrowed(""));
        s.finish(d)?;
        Ok(RecordError { index, message })
    }
}

// Output = [records: [* OutRecord / uint], errors: [* RecordError] / null, failure: tstr / null,
//           ? state: bstr / null]

// An output entry: an out-record, or the index of an input record kept unchanged.
impl<'b, C> Decode<'b, C> for Entry<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        match d.datatype()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u32().map(Entry::Input),
            _ => OutRecord::decode(d, &mut ()).map(Entry::Written),
        }
    }
}

impl<'b, C> Decode<'b, C> for DecodedOutput<'b> {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecodeError> {
        let mut s = Seq::begin(d)?;
        let mut out = DecodedOutput::default();
        let entries = s.required(d, "output: missing records", |d| {
            list(d, |d| Entry::decode(d, &mut ()))
        })?;
        for entry in entries {
            out.push(entry);
        }
        out.errors = s
            .nullable(d, |d| list(d, |d| RecordError::decode(d, &mut ())))?
            .unwrap_or_default();
        out.failure = s.nullable(d, text)?;
        out.state = s.nullable(d, bytes)?;
        s.finish(d)?;
        Ok(out)
    }
}
