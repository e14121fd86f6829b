//! The version-specific packet layer of one connection: picks MQTT 3.1.1 or 5.0 from the first
//! CONNECT and translates between the wire and the broker's own [`packet`](super::packet) types
//! from then on. No I/O.
//!
//! Until a CONNECT has been seen the connection speaks 3.1.1 (so a refusing CONNACK to an MQTT
//! 3.1 client is in a format it reads); a CONNECT with protocol name "MQTT" and level 5 switches
//! it to MQTT 5 before it is parsed. Later CONNECTs never change the version (a second CONNECT
//! is a protocol error either way).

use std::cell::RefCell;

use bytes::BytesMut;

use super::codec::{remaining_len, Codec, CodecError, Frame};
use super::out_alias::OutAliases;
use super::packet::{ClientPacket, ServerPacket, Version};
use super::{v4, v5};

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Packet(ClientPacket),
    /// A CONNECT for a protocol the broker does not speak (MQTT 3.1 or an unknown level).
    UnsupportedProtocol {
        name: String,
        level: u8,
    },
}

#[derive(Debug, Clone)]
pub struct Wire {
    pub version: Version,
    /// The MQTT 5 client's Maximum Packet Size: larger packets are not sent to it.
    pub peer_max: Option<u32>,
    /// Topic aliases towards an MQTT 5 client. In a cell because encoding takes `&self`
    /// (every delivery path holds the wire shared) and only this changes as packets go out.
    pub out_aliases: RefCell<OutAliases>,
    /// Set by the first frame: the version can no longer change.
    negotiated: bool,
    v4: Codec,
}

impl Wire {
    pub fn new(max_packet_bytes: usize) -> Wire {
        Wire {
            version: Version::V311,
            peer_max: None,
            out_aliases: RefCell::default(),
            negotiated: false,
            v4: Codec::new(max_packet_bytes),
        }
    }

    pub fn max_packet_bytes(&self) -> usize {
        self.v4.max_packet_bytes
    }

    /// Takes one frame off the front of `buf`, or returns `Ok(None)` until a whole packet is
    /// there.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, CodecError> {
        if !self.negotiated && is_v5_connect(buf, self.max_packet_bytes()) {
            self.version = Version::V5;
        }
        let frame = match self.version {
            Version::V5 => v5::decode(buf, self.max_packet_bytes())?.map(Incoming::Packet),
            Version::V311 => self.v4.decode(buf)?.map(|f| match f {
                Frame::Packet(p) => Incoming::Packet(v4::from_v4(p)),
                Frame::UnsupportedProtocol { name, level } => {
                    Incoming::UnsupportedProtocol { name, level }
                }
            }),
        };
        if frame.is_some() {
            self.negotiated = true;
        }
        Ok(frame)
    }

    /// Appends `packet` in this connection's version to `out`. Packets the version has no form
    /// for (a server DISCONNECT in 3.1.1) are left out.
    pub fn encode(&self, packet: &ServerPacket, out: &mut BytesMut) -> Result<(), CodecError> {
        match self.version {
            Version::V311 => match v4::to_v4(packet) {
                Some(p) => self.v4.encode(&p, out),
                None => Ok(()),
            },
            Version::V5 => {
                let mut aliases = self.out_aliases.borrow_mut();
                v5::encode_aliased(packet, self.peer_max, &mut aliases, out)
            }
        }
    }
}

/// Whether `buf` starts with a complete CONNECT for MQTT 5 (name "MQTT", level 5).
fn is_v5_connect(buf: &[u8], max_packet_bytes: usize) -> bool {
    if buf.first().map(|b| b >> 4) != Some(1) {
        return false;
    }
    let Ok(header) = rumqttc::mqttbytes::check(buf.iter(), max_packet_bytes) else {
        return false;
    };
    let frame = &buf[..header.frame_length()];
    let body = &frame[frame.len() - remaining_len(frame)..];
    body.get(..7) == Some(&b"\x00\x04MQTT\x05"[..])
}

/// Runs the decoder of both versions (and re-encodes what the broker itself would send back)
/// over arbitrary bytes, as a fuzz target does. Must never panic, whatever `data` is.
pub fn fuzz_decode(data: &[u8]) {
    for version in [Version::V311, Version::V5] {
        let mut wire = Wire::new(64 * 1024);
        wire.version = version;
        wire.negotiated = version == Version::V5;
        let mut buf = BytesMut::from(data);
        let mut out = BytesMut::new();
        while let Ok(Some(frame)) = wire.decode(&mut buf) {
            out.clear();
            if let Incoming::Packet(ClientPacket::Publish(p)) = frame {
                let echo = ServerPacket::Publish(super::packet::PublishOut {
                    qos: p.qos,
                    retain: p.retain,
                    topic: p.topic,
                    pkid: p.pkid.max(1),
                    payload: p.payload,
                    props: p.props,
                    subscription_ids: vec![1],
                    dup: false,
                });
                let _ = wire.encode(&echo, &mut out);
            }
        }
    }
    // And the sniffing path: a fresh connection that may be a v5 CONNECT.
    super::codec::fuzz_decode(data);
    let mut wire = Wire::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = wire.decode(&mut buf) {}
}
