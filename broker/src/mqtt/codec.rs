//! MQTT 3.1.1 framing (MQTT 5: [`super::v5`]; the choice: [`super::wire`]) over `rumqttc::mqttbytes::v4`, with the checks a broker needs on top.
//!
//! No I/O: [`Codec::decode`] takes the bytes read so far and returns a frame, "need more bytes"
//! (`Ok(None)`) or an error that closes the connection. The packet size is checked against
//! `max_packet_bytes` from the fixed header alone, before the body is buffered. rumqttc's reader
//! is written for a client, so this wrapper adds what a server must reject: reserved fixed-header
//! flags (§2.2.2), the reserved CONNECT flag, reserved SUBSCRIBE option bits and UNSUBSCRIBE
//! without filters. CONNECTs asking for another protocol version are recognised *before* they are
//! parsed as 3.1.1 (an MQTT 5 CONNECT has properties a v4 parser would misread), so the
//! connection can answer them with "unacceptable protocol version".

use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::{self, v4::Packet};

/// Largest packet MQTT can express (remaining length 268 435 455 plus a 5-byte fixed header):
/// the bound for packets the broker writes, whose size it controls itself.
pub(crate) const MAX_ENCODED: usize = 268_435_455 + 5;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("packet of {size} bytes is larger than max_packet_bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("malformed packet: {0}")]
    Malformed(mqttbytes::Error),
    #[error("reserved fixed-header flags {flags:#06b} set on packet type {packet_type}")]
    ReservedFlags { packet_type: u8, flags: u8 },
    #[error("CONNECT with unknown protocol name {0:?}")]
    ProtocolName(String),
    #[error("CONNECT with the reserved flag bit set")]
    ReservedConnectFlag,
    #[error("SUBSCRIBE with reserved option bits set")]
    ReservedSubscribeOptions,
    #[error("UNSUBSCRIBE without topic filters")]
    EmptyUnsubscribe,
    #[error("cannot encode {packet}: {source}")]
    Encode {
        packet: &'static str,
        source: mqttbytes::Error,
    },
    #[error("malformed MQTT 5 packet: {0}")]
    MalformedV5(rumqttc::v5::mqttbytes::Error),
    #[error("MQTT 5 protocol error: {0}")]
    ProtocolV5(&'static str),
    #[error("{packet} of {size} bytes is larger than the client's maximum packet size ({max})")]
    TooLargeForClient {
        packet: &'static str,
        size: usize,
        max: u32,
    },
    #[error("cannot encode MQTT 5 {packet}: {source}")]
    EncodeV5 {
        packet: &'static str,
        source: rumqttc::v5::mqttbytes::Error,
    },
}

/// What one complete frame on the wire was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Packet(Packet),
    /// A CONNECT for a protocol this listener does not speak (MQTT 3.1 `MQIsdp`/3, MQTT 5).
    UnsupportedProtocol {
        name: String,
        level: u8,
    },
}

/// Frames MQTT 3.1.1 packets.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    /// Largest remaining length accepted from a client (`mqtt.max_packet_bytes`): also the most
    /// a single half-received packet can make the connection buffer.
    pub max_packet_bytes: usize,
}

impl Codec {
    pub fn new(max_packet_bytes: usize) -> Codec {
        Codec { max_packet_bytes }
    }

    /// Takes one frame off the front of `buf`, or returns `Ok(None)` (and leaves `buf` alone)
    /// until a whole packet is there.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let header = match mqttbytes::check(buf.iter(), self.max_packet_bytes) {
            Ok(h) => h,
            Err(mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
            Err(mqttbytes::Error::PayloadSizeLimitExceeded(size)) => {
                return Err(CodecError::TooLarge {
                    size,
                    max: self.max_packet_bytes,
                })
            }
            Err(e) => return Err(CodecError::Malformed(e)),
        };
        let frame_len = header.frame_length();
        // `check` succeeded, so `buf` holds at least `frame_len >= 2` bytes.
        let frame = &buf[..frame_len];
        let byte1 = frame[0];
        let packet_type = byte1 >> 4;
        let flags = byte1 & 0x0F;
        let body_start = frame_len - remaining_len(frame);
        let expected = match packet_type {
            3 => None, // PUBLISH: dup/qos/retain, checked by the v4 reader
            6 | 8 | 10 => Some(0b0010),
            _ => Some(0),
        };
        if expected.is_some_and(|e| e != flags) {
            return Err(CodecError::ReservedFlags { packet_type, flags });
        }
        match packet_type {
            1 => {
                if let Some(unsupported) = connect_protocol(&frame[body_start..])? {
                    buf.advance(frame_len);
                    return Ok(Some(unsupported));
                }
            }
            8 => check_subscribe_options(&frame[body_start..])?,
            _ => {}
        }
        let packet = Packet::read(buf, self.max_packet_bytes).map_err(CodecError::Malformed)?;
        if let Packet::Unsubscribe(u) = &packet {
            if u.topics.is_empty() {
                return Err(CodecError::EmptyUnsubscribe);
            }
        }
        Ok(Some(Frame::Packet(packet)))
    }

    /// Appends `packet` to `out`. Outgoing packets are bounded by MQTT's own limit, not
    /// `max_packet_bytes` (that one protects the broker from clients).
    pub fn encode(&self, packet: &Packet, out: &mut BytesMut) -> Result<(), CodecError> {
        let error = |source| CodecError::Encode {
            packet: packet_name(packet),
            source,
        };
        if let Packet::Connect(_) = packet {
            // rumqttc's CONNECT writer patches its flags byte at an index that assumes an empty
            // buffer, so it gets one of its own.
            let mut own = BytesMut::new();
            packet.write(&mut own, MAX_ENCODED).map_err(error)?;
            out.extend_from_slice(&own);
            return Ok(());
        }
        packet.write(out, MAX_ENCODED).map(|_| ()).map_err(error)
    }
}

/// Length of the remaining-length field plus body, from a frame `check` accepted.
pub(crate) fn remaining_len(frame: &[u8]) -> usize {
    let mut len = 0usize;
    let mut shift = 0;
    for b in frame.iter().skip(1).take(4) {
        len += ((b & 0x7F) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    len
}

/// Looks at a CONNECT's protocol name and level. `Ok(None)`: MQTT 3.1.1, parse it.
fn connect_protocol(body: &[u8]) -> Result<Option<Frame>, CodecError> {
    let malformed = || CodecError::Malformed(mqttbytes::Error::MalformedPacket);
    let name_len = match body.get(..2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
        None => return Err(malformed()),
    };
    let name = body.get(2..2 + name_len).ok_or_else(malformed)?;
    let level = *body.get(2 + name_len).ok_or_else(malformed)?;
    let flags = *body.get(3 + name_len).ok_or_else(malformed)?;
    let name = String::from_utf8_lossy(name).into_owned();
    match (name.as_str(), level) {
        ("MQTT", 4) => {
            if flags & 1 != 0 {
                return Err(CodecError::ReservedConnectFlag);
            }
            Ok(None)
        }
        ("MQTT", _) | ("MQIsdp", _) => Ok(Some(Frame::UnsupportedProtocol { name, level })),
        _ => Err(CodecError::ProtocolName(name)),
    }
}

/// §3.8.3.1: the upper six bits of each requested-QoS byte are reserved and must be zero.
fn check_subscribe_options(body: &[u8]) -> Result<(), CodecError> {
    let mut rest = body.get(2..).unwrap_or_default();
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let Some(options) = rest.get(2 + len) else {
            // Truncated filter: the v4 reader reports it as malformed.
            return Ok(());
        };
        if options & 0xFC != 0 {
            return Err(CodecError::ReservedSubscribeOptions);
        }
        rest = &rest[3 + len..];
    }
    Ok(())
}

pub fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

/// Runs the decoder (and re-encodes what it decodes) over arbitrary bytes, as a fuzz target
/// does. Must never panic, whatever `data` is.
pub fn fuzz_decode(data: &[u8]) {
    let codec = Codec::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    let mut out = BytesMut::new();
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        if let Frame::Packet(packet) = frame {
            out.clear();
            let _ = codec.encode(&packet, &mut out);
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
