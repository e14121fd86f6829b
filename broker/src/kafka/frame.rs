//! Kafka framing: every request and response is a 4-byte big-endian length followed by that
//! many bytes.
//!
//! Pure functions over buffers, no I/O, so the read loop in [`super::connection`] and the fuzz
//! entry point share exactly the same code. The length read off the wire is checked against the
//! configured maximum *before* the caller reserves anything for the body, and [`decode`] reports
//! how many bytes are still missing so that the reader can grow its buffer in bounded steps
//! instead of trusting the peer's length (a slow peer announcing 16 MiB costs only what it
//! actually sent).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the length prefix in front of every frame.
pub const PREFIX_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes (kafka.max_frame_bytes)")]
    TooLarge { len: usize, max: usize },
    #[error("frame length {0} is negative")]
    Negative(i32),
    #[error("empty frame: a request needs at least a header")]
    Empty,
    #[error("response of {0} bytes does not fit a Kafka frame (at most 2^31-1 bytes)")]
    ResponseTooLarge(usize),
}

/// What [`decode`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// One complete frame (without its length prefix), removed from the buffer.
    Frame(Bytes),
    /// The next frame is incomplete; at least this many more bytes must arrive.
    NeedMore(usize),
}

/// Takes one frame off the front of `buf` if it is complete.
///
/// Errors are final for the connection: after one, the stream cannot be re-synchronised.
pub fn decode(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Progress, FrameError> {
    if buf.len() < PREFIX_LEN {
        return Ok(Progress::NeedMore(PREFIX_LEN - buf.len()));
    }
    let declared = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = usize::try_from(declared).map_err(|_| FrameError::Negative(declared))?;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    let have = buf.len() - PREFIX_LEN;
    if have < len {
        return Ok(Progress::NeedMore(len - have));
    }
    buf.advance(PREFIX_LEN);
    Ok(Progress::Frame(buf.split_to(len).freeze()))
}

/// Reserves room for a length prefix at the end of `out`; returns where it is, for [`finish`].
pub fn start(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_i32(0);
    at
}

/// Writes the length of everything appended since [`start`] into the prefix at `at`.
pub fn finish(out: &mut BytesMut, at: usize) -> Result<(), FrameError> {
    let len = out.len() - at - PREFIX_LEN;
    let declared = i32::try_from(len).map_err(|_| FrameError::ResponseTooLarge(len))?;
    out[at..at + PREFIX_LEN].copy_from_slice(&declared.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        let at = start(&mut out);
        out.extend_from_slice(payload);
        finish(&mut out, at).unwrap();
        out
    }

    #[test]
    fn oversized_length_is_refused_from_the_prefix_alone() {
        let mut buf = BytesMut::from(&1_000_001i32.to_be_bytes()[..]);
        assert_eq!(
            decode(&mut buf, 1_000_000),
            Err(FrameError::TooLarge {
                len: 1_000_001,
                max: 1_000_000
            })
        );
    }

    #[test]
    fn negative_and_empty_frames_are_errors() {
        let mut buf = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert_eq!(decode(&mut buf, 100), Err(FrameError::Negative(-5)));
        let mut buf = BytesMut::from(&0i32.to_be_bytes()[..]);
        assert_eq!(decode(&mut buf, 100), Err(FrameError::Empty));
    }

    proptest! {
        #[test]
        fn frames_round_trip_whole_or_byte_by_byte(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..5),
            split in any::<bool>(),
        ) {
            let mut wire = BytesMut::new();
            for p in &payloads {
                wire.extend_from_slice(&framed(p));
            }
            let mut got = Vec::new();
            let mut buf = BytesMut::new();
            if split {
                for byte in wire.iter() {
                    buf.put_u8(*byte);
                    while let Progress::Frame(f) = decode(&mut buf, 300).unwrap() {
                        got.push(f.to_vec());
                    }
                }
            } else {
                buf = wire;
                while let Progress::Frame(f) = decode(&mut buf, 300).unwrap() {
                    got.push(f.to_vec());
                }
            }
            prop_assert_eq!(got, payloads);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn need_more_counts_exactly_the_missing_bytes(
            payload in proptest::collection::vec(any::<u8>(), 1..200),
            cut in 0usize..204,
        ) {
            let wire = framed(&payload);
            let cut = cut.min(wire.len() - 1);
            let mut buf = BytesMut::from(&wire[..cut]);
            match decode(&mut buf, 1 << 20).unwrap() {
                Progress::NeedMore(n) if cut < PREFIX_LEN => prop_assert_eq!(n, PREFIX_LEN - cut),
                Progress::NeedMore(n) => prop_assert_eq!(n, wire.len() - cut),
                Progress::Frame(_) => prop_assert!(false, "an incomplete frame was returned"),
            }
            prop_assert_eq!(buf.len(), cut, "nothing is consumed until a frame is complete");
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..100) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Progress::Frame(f)) = decode(&mut buf, max) {
                prop_assert!(!f.is_empty() && f.len() <= max);
            }
        }
    }
}
