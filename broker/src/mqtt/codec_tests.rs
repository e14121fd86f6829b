//! Codec tests: byte fixtures of what real clients send, and property-based round trips.

use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Login, PubAck, PubComp, PubRec, PubRel, Publish,
    SubAck, Subscribe, SubscribeFilter, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use rumqttc::mqttbytes::{Protocol, QoS};

fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, CodecError> {
    let codec = Codec::new(1024);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(&mut buf)? {
        out.push(frame);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(out)
}

fn one(bytes: &[u8]) -> Result<Frame, CodecError> {
    let mut frames = decode_all(bytes)?;
    assert_eq!(frames.len(), 1);
    Ok(frames.remove(0))
}

/// CONNECT as mosquitto_pub/rumqttc send it: "MQTT" level 4, clean session, keep-alive 60,
/// client id "hw".
const CONNECT_311: &[u8] = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02hw";
/// The same from an MQTT 5 client: properties length 0 before the client id.
const CONNECT_5: &[u8] = b"\x10\x0f\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x02hw";
/// The same from an MQTT 3.1 client.
const CONNECT_31: &[u8] = b"\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02hw";
/// PUBLISH QoS 1, topic "a/b", packet id 10, payload "hi".
const PUBLISH_QOS1: &[u8] = b"\x32\x09\x00\x03a/b\x00\x0ahi";
/// SUBSCRIBE packet id 1, filter "a/+" at QoS 1.
const SUBSCRIBE: &[u8] = b"\x82\x08\x00\x01\x00\x03a/+\x01";

#[test]
fn fixtures_from_clients_decode() {
    match one(CONNECT_311).unwrap() {
        Frame::Packet(Packet::Connect(c)) => {
            assert_eq!(c.client_id, "hw");
            assert_eq!(c.keep_alive, 60);
            assert!(c.clean_session);
            assert_eq!(c.protocol, Protocol::V4);
        }
        other => panic!("{other:?}"),
    }
    match one(PUBLISH_QOS1).unwrap() {
        Frame::Packet(Packet::Publish(p)) => {
            assert_eq!(p.topic, "a/b");
            assert_eq!(p.pkid, 10);
            assert_eq!(p.qos, QoS::AtLeastOnce);
            assert_eq!(&p.payload[..], b"hi");
        }
        other => panic!("{other:?}"),
    }
    match one(SUBSCRIBE).unwrap() {
        Frame::Packet(Packet::Subscribe(s)) => {
            assert_eq!(s.pkid, 1);
            assert_eq!(s.filters[0].path, "a/+");
            assert_eq!(s.filters[0].qos, QoS::AtLeastOnce);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decode_all(b"\xc0\x00\xe0\x00").unwrap(),
        vec![
            Frame::Packet(Packet::PingReq),
            Frame::Packet(Packet::Disconnect)
        ]
    );
}

#[test]
fn other_protocol_versions_are_recognised_not_misparsed() {
    assert_eq!(
        one(CONNECT_5).unwrap(),
        Frame::UnsupportedProtocol {
            name: "MQTT".into(),
            level: 5
        }
    );
    assert_eq!(
        one(CONNECT_31).unwrap(),
        Frame::UnsupportedProtocol {
            name: "MQIsdp".into(),
            level: 3
        }
    );
    assert!(matches!(
        one(b"\x10\x0e\x00\x04MQTX\x04\x02\x00\x3c\x00\x02hw"),
        Err(CodecError::ProtocolName(_))
    ));
    assert!(matches!(
        one(b"\x10\x0e\x00\x04MQTT\x04\x03\x00\x3c\x00\x02hw"),
        Err(CodecError::ReservedConnectFlag)
    ));
}

#[test]
fn half_packets_wait_for_the_rest() {
    let codec = Codec::new(1024);
    let mut buf = BytesMut::new();
    for (i, b) in PUBLISH_QOS1.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let got = codec.decode(&mut buf).unwrap();
        if i + 1 < PUBLISH_QOS1.len() {
            assert!(got.is_none(), "decoded after {} bytes", i + 1);
            assert_eq!(buf.len(), i + 1, "partial input must stay buffered");
        } else {
            assert!(matches!(got, Some(Frame::Packet(Packet::Publish(_)))));
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn oversized_packets_are_refused_from_the_header() {
    // Remaining length 268 435 455, only the fixed header present.
    assert!(matches!(
        Codec::new(1024).decode(&mut BytesMut::from(&b"\x30\xff\xff\xff\x7f"[..])),
        Err(CodecError::TooLarge {
            size: 268_435_455,
            max: 1024
        })
    ));
    let mut big = vec![0x30, 0x81, 0x08]; // remaining length 1025
    big.resize(3 + 1025, b'x');
    assert!(matches!(
        Codec::new(1024).decode(&mut BytesMut::from(&big[..])),
        Err(CodecError::TooLarge { .. })
    ));
    assert!(Codec::new(2048)
        .decode(&mut BytesMut::from(&big[..]))
        .is_err()); // body is junk
}

#[test]
fn garbage_and_violations_are_errors() {
    for bad in [
        &b"\x00\x00"[..],                   // packet type 0
        b"\xf0\x00",                        // packet type 15
        b"\x30\xff\xff\xff\xff\x01",        // five-byte remaining length
        b"\x80\x08\x00\x01\x00\x03a/+\x01", // SUBSCRIBE without its 0b0010 flags
        b"\x82\x08\x00\x01\x00\x03a/+\x05", // reserved SUBSCRIBE option bits
        b"\x82\x02\x00\x01",                // SUBSCRIBE without filters
        b"\xa2\x02\x00\x01",                // UNSUBSCRIBE without filters
        b"\x36\x09\x00\x03a/b\x00\x0ahi",   // PUBLISH QoS 3
        b"\x32\x09\x00\x03a/b\x00\x00hi",   // PUBLISH QoS 1 with packet id 0
        b"\x30\x05\x00\x09a/b",             // topic longer than the packet
        b"\x30\x05\x00\x03\xff\xfe\x00",    // topic not UTF-8
        b"\x40\x00",                        // PUBACK without packet id
        b"\xc1\x00",                        // PINGREQ with flags
    ] {
        assert!(decode_all(bad).is_err(), "accepted {bad:02x?}");
    }
}

#[test]
fn encode_writes_what_clients_expect() {
    let codec = Codec::new(1024);
    let mut out = BytesMut::new();
    codec
        .encode(
            &Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::RefusedProtocolVersion,
                false,
            )),
            &mut out,
        )
        .unwrap();
    codec
        .encode(
            &Packet::SubAck(SubAck::new(
                7,
                vec![
                    SubscribeReasonCode::Success(QoS::AtLeastOnce),
                    SubscribeReasonCode::Failure,
                ],
            )),
            &mut out,
        )
        .unwrap();
    assert_eq!(&out[..], b"\x20\x02\x00\x01\x90\x04\x00\x07\x01\x80");
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    let text = "[a-z/+#]{1,20}";
    prop_oneof![
        (
            "[a-z0-9-]{0,23}",
            any::<u16>(),
            any::<bool>(),
            proptest::option::of(("[a-z/]{1,10}", any::<Vec<u8>>(), qos(), any::<bool>())),
            proptest::option::of(("[a-z]{1,8}", "[a-z]{0,8}")),
        )
            .prop_map(|(id, keep_alive, clean, will, login)| {
                let mut c = Connect::new(id);
                c.keep_alive = keep_alive;
                c.clean_session = clean;
                c.last_will = will.map(|(t, m, q, r)| LastWill::new(t, m, q, r));
                c.login = login.map(|(u, p)| Login::new(u, p));
                Packet::Connect(c)
            }),
        (
            "[a-z/]{1,30}",
            qos(),
            1u16..,
            any::<bool>(),
            any::<bool>(),
            any::<Vec<u8>>()
        )
            .prop_map(|(topic, qos, pkid, dup, retain, payload)| {
                let mut p = Publish::new(topic, qos, payload);
                p.pkid = if qos == QoS::AtMostOnce { 0 } else { pkid };
                p.dup = dup;
                p.retain = retain;
                Packet::Publish(p)
            }),
        (any::<u16>(), prop::collection::vec((text, qos()), 1..5)).prop_map(|(pkid, f)| {
            let mut s = Subscribe::new_many(f.into_iter().map(|(p, q)| SubscribeFilter::new(p, q)));
            s.pkid = pkid;
            Packet::Subscribe(s)
        }),
        (any::<u16>(), prop::collection::vec(text, 1..5))
            .prop_map(|(pkid, topics)| { Packet::Unsubscribe(Unsubscribe { pkid, topics }) }),
        any::<u16>().prop_map(|id| Packet::PubAck(PubAck::new(id))),
        any::<u16>().prop_map(|id| Packet::PubRec(PubRec::new(id))),
        any::<u16>().prop_map(|id| Packet::PubRel(PubRel::new(id))),
        any::<u16>().prop_map(|id| Packet::PubComp(PubComp::new(id))),
        any::<u16>().prop_map(|id| Packet::UnsubAck(UnsubAck::new(id))),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

proptest! {
    #[test]
    fn packets_round_trip_through_any_chunking(
        packets in prop::collection::vec(packet(), 1..6),
        cuts in prop::collection::vec(1usize..40, 0..20),
    ) {
        let codec = Codec::new(64 * 1024);
        let mut wire = BytesMut::new();
        for p in &packets {
            codec.encode(p, &mut wire).unwrap();
        }
        let wire: Bytes = wire.freeze();
        // Feed the bytes in arbitrary pieces, as TCP may deliver them.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        let mut cuts = cuts.into_iter();
        while at < wire.len() {
            let n = cuts.next().unwrap_or(wire.len()).min(wire.len() - at);
            buf.extend_from_slice(&wire[at..at + n]);
            at += n;
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                got.push(frame);
            }
        }
        let expected: Vec<Frame> = packets.into_iter().map(Frame::Packet).collect();
        prop_assert_eq!(got, expected);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn fuzz_decode_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_decode(&data);
    }

    #[test]
    fn fuzz_decode_survives_mutated_packets(
        p in packet(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut wire = BytesMut::new();
        Codec::new(64 * 1024).encode(&p, &mut wire).unwrap();
        let mut bytes = wire.to_vec();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        fuzz_decode(&bytes);
    }
}
