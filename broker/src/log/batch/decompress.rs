//! Bounded decompression of a batch's records section.
//!
//! A producer chooses how its batch is compressed and the broker stores it as sent, so a batch
//! of a few KiB that expands to gigabytes (a "decompression bomb": 1 GiB of zeros is about
//! 1 MiB of gzip and tens of KiB of zstd) can sit in the log. Fetch serves it untouched, but
//! whatever decodes records (MQTT delivery, plugins, the upstream replicator) must expand it,
//! and `kafka-protocol`'s decompressors read to the end into one growing buffer. Here each codec
//! is read through a reader that stops at a limit: output beyond it refuses the batch with
//! [`TooLarge`], having allocated at most the limit (plus the codec's own window, capped for
//! zstd below). Nothing is allocated from a size the data merely claims: snappy block
//! lengths are checked against what is left of the limit first.

use std::io::{self, Read};

use bytes::Bytes;
use kafka_protocol::records::Compression;

/// The decompressed records section would exceed the limit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("records decompress to more than {limit} bytes")]
pub struct TooLarge {
    pub limit: usize,
}

/// Largest zstd window accepted, as a power of two: 64 MiB, the size of
/// [`super::MAX_DECOMPRESSED_BYTES`]. zstd's own default (128 MiB) would let a frame header
/// alone make the decoder allocate that much; producers (librdkafka, the Java client) use
/// windows of a few MiB at their default levels.
const ZSTD_WINDOW_LOG_MAX: u32 = 26;
/// Bytes read from a decompressor at a time.
const CHUNK: usize = 64 * 1024;
/// The xerial framing Kafka's Java client wraps snappy blocks in: magic, version, compatible
/// version, then blocks of (u32 BE length, raw snappy block).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses `payload` with `codec`, refusing output beyond `limit` bytes.
pub fn decompress(payload: Bytes, codec: Compression, limit: usize) -> anyhow::Result<Bytes> {
    match codec {
        Compression::None => Ok(payload),
        Compression::Gzip => read_bounded(flate2::read::GzDecoder::new(&payload[..]), limit),
        Compression::Lz4 => read_bounded(lz4::Decoder::new(&payload[..])?, limit),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(&payload[..])?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            read_bounded(decoder, limit)
        }
        Compression::Snappy => snappy(&payload, limit),
    }
}

/// Reads `reader` to the end into a buffer that never grows past `limit`.
fn read_bounded(mut reader: impl Read, limit: usize) -> anyhow::Result<Bytes> {
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(Bytes::from(out)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n > limit - out.len() {
            return Err(TooLarge { limit }.into());
        }
        if out.capacity() - out.len() < n {
            // Double, but never past the limit: a legitimate batch just under it costs the
            // limit, not twice the limit.
            let want = (out.capacity() * 2).max(CHUNK).min(limit);
            out.reserve_exact(want.max(out.len() + n) - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Raw snappy, or Kafka's xerial framing of it; every block's stated length is checked
/// against the remaining budget before its buffer is allocated.
fn snappy(payload: &[u8], limit: usize) -> anyhow::Result<Bytes> {
    let mut decoder = snap::raw::Decoder::new();
    if payload.len() < XERIAL_HEADER_LEN || &payload[..XERIAL_MAGIC.len()] != XERIAL_MAGIC {
        let len = snap::raw::decompress_len(payload)?;
        if len > limit {
            return Err(TooLarge { limit }.into());
        }
        return Ok(Bytes::from(decoder.decompress_vec(payload)?));
    }
    let mut rest = &payload[XERIAL_HEADER_LEN..];
    let mut out: Vec<u8> = Vec::new();
    while !rest.is_empty() {
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| anyhow::anyhow!("snappy: truncated block length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if after.len() < len {
            anyhow::bail!("snappy: block of {len} bytes, only {} left", after.len());
        }
        let (block, after) = after.split_at(len);
        let plain = snap::raw::decompress_len(block)?;
        if plain > limit - out.len() {
            return Err(TooLarge { limit }.into());
        }
        let start = out.len();
        out.resize(start + plain, 0);
        let written = decoder.decompress(block, &mut out[start..])?;
        out.truncate(start + written);
        rest = after;
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const GIB: u64 = 1 << 30;

    /// Compresses `len` zero bytes by streaming them through `writer` in 1 MiB pieces, so the
    /// test never holds the plain data.
    fn zeros_into<W: Write>(mut writer: W, len: u64) -> W {
        let piece = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(piece.len() as u64) as usize;
            writer.write_all(&piece[..n]).unwrap();
            left -= n as u64;
        }
        writer
    }

    fn gzip_bomb(len: u64) -> Bytes {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        Bytes::from(zeros_into(gz, len).finish().unwrap())
    }

    fn zstd_bomb(len: u64) -> Bytes {
        let z = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        Bytes::from(zeros_into(z, len).finish().unwrap())
    }

    fn lz4_bomb(len: u64) -> Bytes {
        let e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        let (bytes, result) = zeros_into(e, len).finish();
        result.unwrap();
        Bytes::from(bytes)
    }

    fn too_large(result: anyhow::Result<Bytes>) -> bool {
        result
            .err()
            .is_some_and(|e| e.downcast_ref::<TooLarge>().is_some())
    }

    #[test]
    fn a_gigabyte_of_zeros_is_refused_by_every_streaming_codec() {
        let limit = 8 << 20;
        for (codec, bomb) in [
            (Compression::Gzip, gzip_bomb(GIB)),
            (Compression::Zstd, zstd_bomb(GIB)),
            (Compression::Lz4, lz4_bomb(GIB)),
        ] {
            assert!(
                bomb.len() < 8 << 20,
                "{codec:?} bomb is {} bytes",
                bomb.len()
            );
            assert!(too_large(decompress(bomb, codec, limit)), "{codec:?}");
        }
    }

    #[test]
    fn snappy_blocks_claiming_too_much_are_refused_before_allocating() {
        // xerial framing with blocks of 64 KiB zeros: 1 GiB would take 16384 of them; 200 are
        // enough to cross a 8 MiB limit.
        let block = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 64 * 1024])
            .unwrap();
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for _ in 0..200 {
            framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        let framed = Bytes::from(framed);
        assert!(too_large(decompress(
            framed.clone(),
            Compression::Snappy,
            8 << 20
        )));
        let fits = decompress(framed, Compression::Snappy, 16 << 20).unwrap();
        assert_eq!(fits.len(), 200 * 64 * 1024);
        // A raw block stating 4 GiB - 1 (varint ff ff ff ff 0f) is refused from its header.
        let lying = Bytes::from_static(b"\xff\xff\xff\xff\x0f\x00");
        assert!(too_large(decompress(lying, Compression::Snappy, 8 << 20)));
    }

    #[test]
    fn data_within_the_limit_comes_back_whole() {
        let len = 3 << 20;
        for (codec, packed) in [
            (Compression::Gzip, gzip_bomb(len)),
            (Compression::Zstd, zstd_bomb(len)),
            (Compression::Lz4, lz4_bomb(len)),
        ] {
            let plain = decompress(packed, codec, len as usize).unwrap();
            assert_eq!(plain.len() as u64, len, "{codec:?}");
            assert!(plain.iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn a_zstd_frame_asking_for_a_huge_window_is_refused() {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.window_log(30).unwrap();
        encoder.long_distance_matching(true).unwrap();
        let packed = zeros_into(encoder, 1 << 20).finish().unwrap();
        assert!(decompress(Bytes::from(packed), Compression::Zstd, 64 << 20).is_err());
    }
}
