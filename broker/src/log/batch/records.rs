//! The records section of a v2 batch (after decompression): varint-framed records.
//!
//! Written by hand because `kafka-protocol` 0.18 keeps a record's headers in a map, so a name
//! that repeats keeps only its last value, while Kafka allows repeated header names and MQTT 5
//! user properties (carried as headers) may repeat and must keep their order (MQTT 5 §3.3.2.3.7).
//! `kafka-protocol` stays the oracle in the tests below. The layout, per record: length
//! (varint), attributes (int8), timestamp delta (varlong), offset delta (varint), key and value
//! (varint length, -1 for null, then bytes), header count (varint), then per header a key
//! (varint length, UTF-8) and a value (varint length, -1 for null). Every varint is zigzag.

use bytes::{BufMut, Bytes, BytesMut};

use super::{BatchError, NewRecord, StoredRecord};

/// The smallest encoding of one record: seven one-byte fields (length, attributes, timestamp
/// delta, offset delta, key length, value length, header count).
pub const MIN_RECORD_BYTES: usize = 7;

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn put_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

/// Appends `records` to `out`; offsets count from 0, timestamps from `base_timestamp`.
pub fn encode(records: &[NewRecord], base_timestamp: i64, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    for (i, r) in records.iter().enumerate() {
        body.clear();
        body.put_i8(0); // attributes: unused in v2
        put_varlong(&mut body, r.timestamp.wrapping_sub(base_timestamp));
        put_varlong(&mut body, i as i64);
        put_bytes(&mut body, r.key.as_deref());
        put_bytes(&mut body, r.value.as_deref());
        put_varlong(&mut body, r.headers.len() as i64);
        for (name, value) in &r.headers {
            put_bytes(&mut body, Some(name.as_bytes()));
            put_bytes(&mut body, value.as_deref());
        }
        put_varlong(out, body.len() as i64);
        out.put_slice(&body);
    }
}

/// A cursor over a records section.
struct Reader<'a> {
    buf: &'a Bytes,
    at: usize,
}

fn malformed(what: &str) -> BatchError {
    BatchError::Decode(format!("malformed record: {what}"))
}

impl Reader<'_> {
    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.at)
                .ok_or_else(|| malformed("truncated varint"))?;
            self.at += 1;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        i32::try_from(self.varlong()?).map_err(|_| malformed("varint out of range"))
    }

    fn i8(&mut self) -> Result<i8, BatchError> {
        let b = *self
            .buf
            .get(self.at)
            .ok_or_else(|| malformed("truncated"))?;
        self.at += 1;
        Ok(b as i8)
    }

    /// Bytes of a length-prefixed field, `None` for length -1; shares the buffer.
    fn bytes(&mut self, end: usize) -> Result<Option<Bytes>, BatchError> {
        let Some(range) = self.field(end)? else {
            return Ok(None);
        };
        Ok(Some(self.buf.slice(range)))
    }

    /// Where a length-prefixed field's bytes are, `None` for length -1. For fields that are
    /// copied out (header names): a shared slice would cost two atomic updates of the buffer's
    /// reference count for nothing.
    fn field(&mut self, end: usize) -> Result<Option<std::ops::Range<usize>>, BatchError> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let stop = self
            .at
            .checked_add(len as usize)
            .filter(|&s| s <= end)
            .ok_or_else(|| malformed("field longer than its record"))?;
        let range = self.at..stop;
        self.at = stop;
        Ok(Some(range))
    }
}

/// What [`decode`] needs from the batch header.
pub struct Base {
    pub offset: i64,
    pub timestamp: i64,
    /// Log-append time: every record's timestamp is the batch's max timestamp.
    pub log_append_time: Option<i64>,
    pub count: usize,
}

/// Decodes the `base.count` records of a (decompressed) records section into `out`.
pub fn decode(section: &Bytes, base: &Base, out: &mut Vec<StoredRecord>) -> Result<(), BatchError> {
    if base.count.saturating_mul(MIN_RECORD_BYTES) > section.len() {
        return Err(BatchError::Decode(format!(
            "batch claims {} records in {} bytes of records",
            base.count,
            section.len()
        )));
    }
    out.reserve(base.count);
    let mut r = Reader {
        buf: section,
        at: 0,
    };
    for _ in 0..base.count {
        let len = r.varint()?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| r.at.checked_add(l))
            .filter(|&e| e <= section.len())
            .ok_or_else(|| malformed("length past the end of the batch"))?;
        r.i8()?; // attributes
        let timestamp_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        let key = r.bytes(end)?;
        let value = r.bytes(end)?;
        let count = r.varint()?;
        // Each header takes at least two bytes: bounds the allocation by the record's size.
        if count < 0 || count as usize > end.saturating_sub(r.at) / 2 {
            return Err(malformed("header count does not fit the record"));
        }
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name = r.field(end)?.ok_or_else(|| malformed("null header name"))?;
            let name = std::str::from_utf8(&section[name])
                .map_err(|_| malformed("header name is not UTF-8"))?
                .to_owned();
            headers.push((name, r.bytes(end)?));
        }
        if r.at != end {
            return Err(malformed("record length does not match its fields"));
        }
        out.push(StoredRecord {
            offset: base.offset + i64::from(offset_delta),
            timestamp: base
                .log_append_time
                .unwrap_or(base.timestamp.wrapping_add(timestamp_delta)),
            key,
            value,
            headers,
        });
    }
    if r.at != section.len() {
        return Err(malformed("bytes after the last record"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from))
    }

    fn arb_record() -> impl Strategy<Value = NewRecord> {
        (
            -1_000_000i64..1_000_000,
            arb_bytes(),
            arb_bytes(),
            // Few distinct names, so repeats are common.
            proptest::collection::vec(("[ab]{1,2}", arb_bytes()), 0..6),
        )
            .prop_map(|(ts, key, value, headers)| NewRecord {
                timestamp: 1_700_000_000_000 + ts,
                key,
                value,
                headers,
            })
    }

    fn base(records: &[NewRecord]) -> Base {
        Base {
            offset: 100,
            timestamp: records.iter().map(|r| r.timestamp).min().unwrap_or(0),
            log_append_time: None,
            count: records.len(),
        }
    }

    proptest! {
        #[test]
        fn records_round_trip_with_repeated_header_names(
            records in proptest::collection::vec(arb_record(), 1..20)
        ) {
            let b = base(&records);
            let mut section = BytesMut::new();
            encode(&records, b.timestamp, &mut section);
            let mut out = Vec::new();
            decode(&section.freeze(), &b, &mut out).unwrap();
            prop_assert_eq!(out.len(), records.len());
            for (i, (got, want)) in out.iter().zip(&records).enumerate() {
                prop_assert_eq!(got.offset, 100 + i as i64);
                prop_assert_eq!(got.timestamp, want.timestamp);
                prop_assert_eq!(&got.key, &want.key);
                prop_assert_eq!(&got.value, &want.value);
                prop_assert_eq!(&got.headers, &want.headers);
            }
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(
            section in proptest::collection::vec(any::<u8>(), 0..200),
            count in 0usize..50,
        ) {
            let b = Base { offset: 0, timestamp: 0, log_append_time: None, count };
            let _ = decode(&Bytes::from(section), &b, &mut Vec::new());
        }
    }

    #[test]
    fn varints_match_kafkas_zigzag_encoding() {
        for (v, bytes) in [
            (0i64, &[0x00][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = BytesMut::new();
            put_varlong(&mut out, v);
            assert_eq!(&out[..], bytes, "{v}");
            let buf = out.freeze();
            assert_eq!(Reader { buf: &buf, at: 0 }.varlong().unwrap(), v);
        }
    }
}
