//! Byte strings as JSON text. Two tiny encoders written here rather than a crate each: the
//! plugin ships to gateways, and these are a dozen lines checked against RFC 4648's vectors.

/// How byte strings are written (config `bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BytesAs {
    /// RFC 4648 §4: the standard alphabet (`+`, `/`), padded with `=`.
    Base64,
    /// Two lowercase hex digits per byte.
    Hex,
}

impl BytesAs {
    pub fn from_name(name: &str) -> Option<BytesAs> {
        match name {
            "base64" => Some(BytesAs::Base64),
            "hex" => Some(BytesAs::Hex),
            _ => None,
        }
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8; 16] = b"0123456789abcdef";

pub fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        // Indexing cannot panic: a chunk holds 1 to 3 bytes, a digit is 6 bits (< 64), a
        // nibble 4 bits (< 16).
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let n = (u32::from(group[0]) << 16) | (u32::from(group[1]) << 8) | u32::from(group[2]);
        let digit = |shift: u32| BASE64[((n >> shift) & 0x3f) as usize];
        out.push(digit(18));
        out.push(digit(12));
        out.push(if chunk.len() > 1 { digit(6) } else { b'=' });
        out.push(if chunk.len() > 2 { digit(0) } else { b'=' });
    }
}

pub fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(f: fn(&mut Vec<u8>, &[u8]), input: &[u8]) -> String {
        let mut out = Vec::new();
        f(&mut out, input);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in vectors {
            assert_eq!(encode(base64, input.as_bytes()), expected, "{input:?}");
        }
        // Both ends of the alphabet.
        assert_eq!(encode(base64, &[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(encode(base64, &[0, 0, 0]), "AAAA");
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(encode(hex, b""), "");
        assert_eq!(encode(hex, &[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(encode(hex, b"foobar"), "666f6f626172");
    }

    #[test]
    fn names_are_exact() {
        assert_eq!(BytesAs::from_name("base64"), Some(BytesAs::Base64));
        assert_eq!(BytesAs::from_name("hex"), Some(BytesAs::Hex));
        assert_eq!(BytesAs::from_name("Hex"), None);
    }
}
