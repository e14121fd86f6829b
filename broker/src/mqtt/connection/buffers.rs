//! Buffer sizing for a connection: large while it is busy, next to nothing while it idles.
//!
//! Most MQTT connections of a gateway are idle sensors between two readings, so what an idle
//! connection holds is what 10,000 of them cost. A read buffer of [`READ_CHUNK`] for each
//! would be 80 MB; instead a connection whose last read was small waits for its next bytes with
//! [`IDLE_READ`] bytes reserved, and one whose last read filled the buffer (more is probably
//! waiting) reads in chunks. The write buffer is given back once it is empty.

use bytes::BytesMut;

/// Bytes reserved for a read while the connection is busy.
pub(super) const READ_CHUNK: usize = 8 * 1024;
/// Bytes reserved for a read after a small one: a PINGREQ, a PUBACK, a sensor's PUBLISH.
pub(super) const IDLE_READ: usize = 512;
/// An empty write buffer larger than this is released.
const IDLE_WRITE_KEEP: usize = 4 * 1024;

/// Makes room for the next read: `hint` bytes if the buffer holds nothing (a fresh small
/// buffer if the old one is much larger), [`READ_CHUNK`] if part of a packet is buffered.
pub(super) fn prepare_read(buf: &mut BytesMut, hint: usize) {
    if !buf.is_empty() {
        buf.reserve(READ_CHUNK);
    } else if buf.capacity() > 2 * hint {
        *buf = BytesMut::with_capacity(hint);
    } else {
        buf.reserve(hint);
    }
}

/// The reservation for the read after one of `n` bytes that had `hint` bytes of room.
pub(super) fn next_hint(n: usize, hint: usize) -> usize {
    if n >= hint {
        READ_CHUNK
    } else {
        IDLE_READ
    }
}

/// Releases an empty write buffer's memory.
pub(super) fn release_idle_write(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > IDLE_WRITE_KEEP {
        *buf = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_buffers_shrink_and_busy_ones_grow() {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        prepare_read(&mut buf, IDLE_READ);
        assert!(buf.capacity() < 2 * IDLE_READ, "an empty buffer shrinks");
        buf.extend_from_slice(b"\x30\x10");
        prepare_read(&mut buf, IDLE_READ);
        assert!(
            buf.capacity() >= READ_CHUNK,
            "a partial packet gets a whole chunk"
        );
        assert_eq!(next_hint(IDLE_READ, IDLE_READ), READ_CHUNK);
        assert_eq!(next_hint(100, READ_CHUNK), IDLE_READ);
        let mut out = BytesMut::with_capacity(64 * 1024);
        release_idle_write(&mut out);
        assert_eq!(out.capacity(), 0);
    }
}
