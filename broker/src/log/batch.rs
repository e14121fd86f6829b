//! Kafka v2 record batches: the unit the log stores.
//!
//! A batch as a producer sent it is stored byte for byte; the broker only rewrites the base offset
//! (and the partition leader epoch), which the CRC-32C does not cover. The fixed 61-byte header is
//! read and written by hand here because `kafka-protocol` exposes neither `lastOffsetDelta` nor
//! `maxTimestamp` and offers no way to patch the base offset in place; the records section is
//! too (see `records`: `kafka-protocol` drops repeated header names). Compression uses
//! `kafka-protocol`'s compressors; decompression is bounded (see `decompress`).

mod decompress;
mod records;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as cmpr, Compressor};
use kafka_protocol::records::Compression;

/// Size of the v2 batch header, up to and including `recordsCount`.
pub const HEADER_LEN: usize = 61;
/// Bytes before the `batchLength` field's coverage starts (baseOffset + batchLength).
const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const MAGIC: i8 = 2;
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 1 << 3;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;
/// Most bytes one batch's records may decompress to in [`decode`]: 64 MiB, four times the
/// default `kafka.max_frame_bytes` (the largest batch a producer can send). Compressed
/// telemetry rarely shrinks more than 10x, so real batches stay well below it, while a
/// decompression bomb (a small batch expanding to gigabytes) costs at most this much memory
/// and is refused as [`BatchError::TooLarge`]. Fetch serves stored batches without
/// decompressing them, so Kafka consumers are not limited by it.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("record batch magic {0} is not supported (only v2 batches, Kafka 0.11+)")]
    Magic(i8),
    #[error("record batch CRC mismatch: header says {stated:#010x}, data gives {actual:#010x}")]
    Crc { stated: u32, actual: u32 },
    #[error("record batch is inconsistent: {0}")]
    Invalid(&'static str),
    #[error("record batch could not be decoded: {0}")]
    Decode(String),
    #[error("record batch could not be encoded: {0}")]
    Encode(String),
    #[error("record batch decompresses to more than {limit} bytes (a decompression bomb?)")]
    TooLarge { limit: usize },
}

/// A view of one v2 batch header. Field names follow the Kafka protocol documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `batch_length + 12` bytes.
    pub batch_length: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Reads the header at the start of `buf` without checking the CRC.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let magic = buf[16] as i8;
        if magic != MAGIC {
            return Err(BatchError::Magic(magic));
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if (header.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Invalid("batch length shorter than its header"));
        }
        if header.records_count < 0 || header.last_offset_delta < 0 {
            return Err(BatchError::Invalid("negative record count or offset delta"));
        }
        Ok(header)
    }

    /// Total size of the batch in bytes, header included.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Number of offsets the batch occupies in the log.
    pub fn offset_count(&self) -> u64 {
        self.last_offset_delta as u64 + 1
    }

    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// The newest timestamp in the batch (log-append time when the batch says so).
    pub fn newest_timestamp(&self) -> i64 {
        self.max_timestamp.max(self.base_timestamp)
    }
}

/// Checks one batch at the start of `buf` (header, length, CRC) and returns its header.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_len();
    if buf.len() < total {
        return Err(BatchError::Truncated {
            need: total,
            have: buf.len(),
        });
    }
    // Producers number records 0..count-1; a batch claiming more offsets than records would
    // burn offsets (and, on decode, memory). Compaction, the one legitimate source of gaps, does
    // not exist here.
    if header.records_count == 0 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::Invalid(
            "lastOffsetDelta must be recordsCount - 1 (and the batch not empty)",
        ));
    }
    let stated = be_i32(buf, 17) as u32;
    let actual = crc32c::crc32c(&buf[CRC_START..total]);
    if stated != actual {
        return Err(BatchError::Crc { stated, actual });
    }
    Ok(header)
}

/// Splits a produce request's `records` field into validated batches.
pub fn split(mut buf: Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let header = validate(&buf)?;
        let batch = buf.split_to(header.total_len());
        out.push((header, batch));
    }
    Ok(out)
}

/// Rewrites the base offset of a batch in place; the CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Makes a stored batch anonymous: producer id, epoch and base sequence set to -1 (the CRC
/// recomputed), so it can be produced to another cluster that never issued that producer id.
pub fn clear_producer(batch: &mut [u8]) {
    const PRODUCER: std::ops::Range<usize> = 43..57;
    if batch.len() < HEADER_LEN {
        return; // not a batch; validate() refuses such input before it is stored
    }
    batch[PRODUCER].copy_from_slice(&[0xff; 14]);
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// A record to be written: what every ingress protocol produces before the log assigns offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A record read back from the log, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Encodes records into one uncompressed v2 batch with base offset 0 (the log sets the real one).
pub fn encode(records: &[NewRecord]) -> Result<Bytes, BatchError> {
    encode_with(records, Compression::None)
}

/// Encodes records into one v2 batch with the given compression.
pub fn encode_with(records: &[NewRecord], compression: Compression) -> Result<Bytes, BatchError> {
    encode_as(records, Producer::NONE, compression)
}

/// The producer fields of a batch: an idempotent producer's id and epoch, and the sequence of
/// the batch's first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

impl Producer {
    /// No producer: a batch from a non-idempotent writer.
    pub const NONE: Producer = Producer {
        id: -1,
        epoch: -1,
        base_sequence: -1,
    };
}

/// Encodes records into one v2 batch written by `producer`.
pub fn encode_as(
    records: &[NewRecord],
    producer: Producer,
    compression: Compression,
) -> Result<Bytes, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Invalid("a batch needs at least one record"));
    }
    let count = i32::try_from(records.len())
        .map_err(|_| BatchError::Encode("more than 2^31 records in one batch".into()))?;
    let min_timestamp = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let mut buf = BytesMut::with_capacity(HEADER_LEN + 64 * records.len());
    buf.put_i64(0); // base offset: set by the log
    buf.put_i32(0); // batch length, patched below
    buf.put_i32(0); // partition leader epoch
    buf.put_i8(MAGIC);
    buf.put_u32(0); // CRC, patched below
    buf.put_i16(compression as i16);
    buf.put_i32(count - 1);
    buf.put_i64(min_timestamp);
    buf.put_i64(max_timestamp);
    buf.put_i64(producer.id);
    buf.put_i16(producer.epoch);
    buf.put_i32(producer.base_sequence);
    buf.put_i32(count);
    let section = |out: &mut BytesMut| -> anyhow::Result<()> {
        records::encode(records, min_timestamp, out);
        Ok(())
    };
    let compressed = match compression {
        Compression::None => cmpr::None::compress(&mut buf, section),
        Compression::Gzip => cmpr::Gzip::compress(&mut buf, section),
        Compression::Snappy => cmpr::Snappy::compress(&mut buf, section),
        Compression::Lz4 => cmpr::Lz4::compress(&mut buf, section),
        Compression::Zstd => cmpr::Zstd::compress(&mut buf, section),
    };
    compressed.map_err(|e| BatchError::Encode(e.to_string()))?;
    let batch_length = i32::try_from(buf.len() - LOG_OVERHEAD)
        .map_err(|_| BatchError::Encode("batch larger than 2 GiB".into()))?;
    buf[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..CRC_START].copy_from_slice(&crc.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes every record of the batches in `buf`, skipping control batches.
///
/// A batch's stated record count is checked against its (decompressed) size before anything is
/// allocated for it, and its records decompress to at most [`MAX_DECOMPRESSED_BYTES`] (see
/// `decompress`); a batch over it is [`BatchError::TooLarge`], which callers report with its
/// topic, partition and offset.
pub fn decode(buf: &Bytes) -> Result<Vec<StoredRecord>, BatchError> {
    decode_with_limit(buf, MAX_DECOMPRESSED_BYTES)
}

/// [`decode`] with another cap on each batch's decompressed records.
pub fn decode_with_limit(buf: &Bytes, limit: usize) -> Result<Vec<StoredRecord>, BatchError> {
    let mut rest = buf.clone();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let header = BatchHeader::parse(&rest)?;
        if rest.len() < header.total_len() {
            return Err(BatchError::Truncated {
                need: header.total_len(),
                have: rest.len(),
            });
        }
        let one = rest.split_to(header.total_len());
        if header.is_control() {
            continue;
        }
        let codec = match header.compression() {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return Err(BatchError::Invalid("unknown compression codec")),
        };
        let section =
            decompress::decompress(one.slice(HEADER_LEN..), codec, limit).map_err(|e| {
                match e.downcast_ref::<decompress::TooLarge>() {
                    Some(too_large) => BatchError::TooLarge {
                        limit: too_large.limit,
                    },
                    None => BatchError::Decode(e.to_string()),
                }
            })?;
        let base = records::Base {
            offset: header.base_offset,
            timestamp: header.base_timestamp,
            log_append_time: is_log_append_time(&header).then_some(header.max_timestamp),
            count: header.records_count as usize,
        };
        records::decode(&section, &base, &mut out)?;
    }
    Ok(out)
}

/// True when a batch's timestamps mean log-append time.
pub fn is_log_append_time(header: &BatchHeader) -> bool {
    header.attributes & ATTR_TIMESTAMP_TYPE != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u8) -> NewRecord {
        NewRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(vec![b'k', i])),
            value: Some(Bytes::from(vec![i; 10])),
            headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
        }
    }

    #[test]
    fn encoded_batch_validates_and_round_trips() {
        let records: Vec<_> = (0..5).map(record).collect();
        let bytes = encode(&records).unwrap();
        let header = validate(&bytes).unwrap();
        assert_eq!(header.records_count, 5);
        assert_eq!(header.last_offset_delta, 4);
        assert_eq!(header.total_len(), bytes.len());
        let mut patched = bytes.to_vec();
        set_base_offset(&mut patched, 42);
        let header = validate(&patched).unwrap();
        assert_eq!(header.base_offset, 42);
        let decoded = decode(&Bytes::from(patched)).unwrap();
        assert_eq!(decoded.len(), 5);
        assert_eq!(decoded[3].offset, 45);
        assert_eq!(decoded[3].value, records[3].value);
        assert_eq!(decoded[3].headers, records[3].headers);
    }

    #[test]
    fn corrupted_batch_is_refused() {
        let bytes = encode(&[record(1)]).unwrap();
        let mut bad = bytes.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(validate(&bad), Err(BatchError::Crc { .. })));
        assert!(matches!(
            validate(&bytes[..30]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn compressed_batches_decode() {
        let records: Vec<_> = (0..50).map(record).collect();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = encode_with(&records, codec).unwrap();
            let header = validate(&bytes).unwrap();
            assert_eq!(header.compression(), codec as i16);
            let decoded = decode(&bytes).unwrap();
            assert_eq!(decoded.len(), 50, "{codec:?}");
            assert_eq!(decoded[49].value, records[49].value, "{codec:?}");
        }
    }

    #[test]
    fn absurd_record_count_is_refused_before_allocating() {
        let mut bytes = encode(&[record(1)]).unwrap().to_vec();
        // Claim a billion records, then fix the CRC so only the count is wrong.
        bytes[57..61].copy_from_slice(&1_000_000_000i32.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[CRC_START..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = decode(&Bytes::from(bytes)).unwrap_err();
        assert!(
            matches!(err, BatchError::Decode(ref m) if m.contains("claims")),
            "{err}"
        );
    }

    #[test]
    fn clear_producer_leaves_a_valid_anonymous_batch() {
        let records: Vec<_> = (0..3).map(record).collect();
        let producer = Producer {
            id: 42,
            epoch: 3,
            base_sequence: 7,
        };
        let mut bytes = encode_as(&records, producer, Compression::Zstd)
            .unwrap()
            .to_vec();
        assert_eq!(validate(&bytes).unwrap().producer_id, 42);
        clear_producer(&mut bytes);
        let header = validate(&bytes).expect("CRC recomputed");
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (-1, -1, -1)
        );
        let decoded = decode(&Bytes::from(bytes)).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[2].value, records[2].value);
    }

    /// A gzip batch whose records section is `section` (header fields and CRC made to match).
    fn gzip_batch_with_section(section: &[u8]) -> Bytes {
        let template = encode_with(&[record(1)], Compression::Gzip).unwrap();
        let mut bytes = template[..HEADER_LEN].to_vec();
        bytes.extend_from_slice(section);
        let batch_length = (bytes.len() - LOG_OVERHEAD) as i32;
        bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[CRC_START..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(bytes)
    }

    #[test]
    fn a_decompression_bomb_is_an_error_for_its_batch_not_an_allocation() {
        // 1 GiB of zeros, gzipped while streaming (about 1 MiB), as a producer could send it.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let piece = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            std::io::Write::write_all(&mut gz, &piece).unwrap();
        }
        let bomb = gzip_batch_with_section(&gz.finish().unwrap());
        assert!(bomb.len() < 2 << 20, "bomb batch is {} bytes", bomb.len());
        validate(&bomb).expect("the bomb is a well-formed batch: CRC and header check out");
        assert_eq!(
            decode(&bomb),
            Err(BatchError::TooLarge {
                limit: MAX_DECOMPRESSED_BYTES
            })
        );
    }

    #[test]
    fn the_limit_applies_per_batch_and_spares_batches_below_it() {
        let big = NewRecord {
            value: Some(Bytes::from(vec![0u8; 512 * 1024])),
            ..record(1)
        };
        let bytes = encode_with(&[big.clone(), big], Compression::Zstd).unwrap();
        assert!(matches!(
            decode_with_limit(&bytes, 1 << 20),
            Err(BatchError::TooLarge { limit }) if limit == 1 << 20
        ));
        assert_eq!(decode_with_limit(&bytes, 2 << 20).unwrap().len(), 2);
    }

    #[test]
    fn split_separates_concatenated_batches() {
        let a = encode(&[record(1)]).unwrap();
        let b = encode(&[record(2), record(3)]).unwrap();
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        let parts = split(Bytes::from(both)).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0.records_count, 2);
    }

    proptest::proptest! {
        #[test]
        fn header_parse_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = validate(&data);
        }

        #[test]
        fn records_round_trip(values in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 1..20)) {
            let records: Vec<NewRecord> = values.iter().map(|v| NewRecord {
                timestamp: 1, key: None, value: Some(Bytes::from(v.clone())), headers: vec![],
            }).collect();
            let bytes = encode(&records).unwrap();
            let decoded = decode(&bytes).unwrap();
            proptest::prop_assert_eq!(decoded.len(), records.len());
            for (d, r) in decoded.iter().zip(records.iter()) {
                proptest::prop_assert_eq!(&d.value, &r.value);
            }
        }

        /// `kafka-protocol`'s codec is the independent oracle: each side reads what the other
        /// writes, for every compression codec (header names distinct: its map keeps one each).
        #[test]
        fn agrees_with_kafka_protocol_both_ways(
            specs in proptest::collection::vec(
                (0i64..100_000, proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..20)),
                 proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0usize..4),
                1..10),
            codec in 0usize..5,
        ) {
            use kafka_protocol::records::{RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
            let codec = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd][codec];
            let records: Vec<NewRecord> = specs.iter().map(|(ts, key, value, headers)| NewRecord {
                timestamp: 1_700_000_000_000 + ts,
                key: key.clone().map(Bytes::from),
                value: Some(Bytes::from(value.clone())),
                headers: (0..*headers).map(|h| (format!("h{h}"), Some(Bytes::from(vec![h as u8; h])))).collect(),
            }).collect();
            let same = |got: &[StoredRecord]| {
                got.len() == records.len() && got.iter().zip(&records).enumerate().all(|(i, (g, r))| {
                    g.offset == i as i64 && g.timestamp == r.timestamp && g.key == r.key
                        && g.value == r.value && g.headers == r.headers
                })
            };
            // Ours → kafka-protocol.
            let ours = encode_with(&records, codec).unwrap();
            let theirs = RecordBatchDecoder::decode(&mut ours.clone()).unwrap();
            let as_stored: Vec<StoredRecord> = theirs.records.into_iter().map(|r| StoredRecord {
                offset: r.offset, timestamp: r.timestamp, key: r.key, value: r.value,
                headers: r.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            }).collect();
            proptest::prop_assert!(same(&as_stored));
            // kafka-protocol → ours.
            let kp: Vec<kafka_protocol::records::Record> = records.iter().enumerate().map(|(i, r)| kafka_protocol::records::Record {
                transactional: false, control: false, delete_horizon: false, partition_leader_epoch: 0,
                producer_id: -1, producer_epoch: -1,
                timestamp_type: kafka_protocol::records::TimestampType::Creation,
                offset: i as i64, sequence: -1, timestamp: r.timestamp, key: r.key.clone(), value: r.value.clone(),
                headers: r.headers.iter().map(|(k, v)| (kafka_protocol::protocol::StrBytes::from_string(k.clone()), v.clone())).collect(),
            }).collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(&mut buf, &kp, &RecordEncodeOptions { version: 2, compression: codec }).unwrap();
            let buf = buf.freeze();
            validate(&buf).unwrap();
            proptest::prop_assert!(same(&decode(&buf).unwrap()));
        }
    }

    #[test]
    fn repeated_header_names_keep_every_value_in_order() {
        let mut r = record(1);
        r.headers = vec![
            ("user".into(), Some(Bytes::from_static(b"a"))),
            ("other".into(), None),
            ("user".into(), Some(Bytes::from_static(b"b"))),
        ];
        let decoded = decode(&encode_with(&[r.clone()], Compression::Lz4).unwrap()).unwrap();
        assert_eq!(decoded[0].headers, r.headers);
    }
}
