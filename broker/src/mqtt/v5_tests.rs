//! The MQTT 5 layer against rumqttc's own v5 writer and reader: client packets written by it
//! decode to what was sent, server packets we write read back as what we meant, and arbitrary
//! bytes never panic.

use bytes::Bytes;
use proptest::prelude::*;
use rumqttc::v5::mqttbytes::v5::{
    Connect, ConnectProperties, DisconnectReasonCode, Filter, Packet as P5, PubAck,
    Publish as Pub5, PublishProperties, Subscribe as Sub5, SubscribeProperties, Unsubscribe,
};

use super::*;
use crate::mqtt::packet::{ConnAckOut, PublishOut};
use crate::mqtt::wire::{fuzz_decode, Incoming, Wire};

fn written(packet: P5) -> BytesMut {
    let mut out = BytesMut::new();
    packet.write(&mut out, None).unwrap();
    out
}

fn decode_one(bytes: &[u8]) -> Result<ClientPacket, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let got = decode(&mut buf, 64 * 1024)?.expect("a whole packet");
    assert!(buf.is_empty(), "exactly one packet consumed");
    Ok(got)
}

fn read_back(packet: &ServerPacket) -> P5 {
    let mut out = BytesMut::new();
    encode(packet, None, &mut out).unwrap();
    let got = P5::read(&mut out, None).unwrap();
    assert!(out.is_empty());
    got
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn publish_properties(p: &MessageProps, alias: Option<u16>) -> Option<PublishProperties> {
    let props = PublishProperties {
        payload_format_indicator: p.payload_format,
        message_expiry_interval: p.message_expiry,
        topic_alias: alias,
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user.clone(),
        subscription_identifiers: Vec::new(),
        content_type: p.content_type.clone(),
    };
    (props != PublishProperties::default()).then_some(props)
}

proptest! {
    #[test]
    fn client_publishes_decode_to_what_was_sent(
        topic in "[a-z/]{0,12}",
        q in qos(),
        retain: bool,
        pkid in 1u16..,
        payload in prop::collection::vec(any::<u8>(), 0..64),
        alias in prop::option::of(1u16..100),
        props in crate::mqtt::properties::tests::props(),
    ) {
        let mut p = Pub5::new(topic.clone(), v5_qos(q), payload.clone(), publish_properties(&props, alias));
        p.retain = retain;
        p.pkid = if q == QoS::AtMostOnce { 0 } else { pkid };
        let got = decode_one(&written(P5::Publish(p))).unwrap();
        prop_assert_eq!(got, ClientPacket::Publish(PublishIn {
            dup: false,
            qos: q,
            retain,
            topic,
            pkid: if q == QoS::AtMostOnce { 0 } else { pkid },
            payload: Bytes::from(payload),
            topic_alias: alias,
            props,
        }));
    }

    #[test]
    fn subscribes_keep_their_options_and_identifier(
        filters in prop::collection::vec(("[a-z/+#]{1,10}", qos(), any::<bool>(), any::<bool>()), 1..4),
        id in prop::option::of(1usize..268_435_455),
        pkid in 1u16..,
    ) {
        let wire_filters = filters.iter().map(|(path, q, nl, rap)| {
            let mut f = Filter::new(path.clone(), v5_qos(*q));
            f.nolocal = *nl;
            f.preserve_retain = *rap;
            f
        }).collect();
        let sub = Sub5 {
            pkid,
            filters: wire_filters,
            properties: id.map(|id| SubscribeProperties { id: Some(id), user_properties: Vec::new() }),
        };
        let got = decode_one(&written(P5::Subscribe(sub))).unwrap();
        let want = SubscribeIn {
            pkid,
            filters: filters.into_iter().map(|(path, qos, no_local, retain_as_published)| FilterIn {
                path, qos, no_local, retain_as_published, retain_handling: 0,
            }).collect(),
            id,
        };
        prop_assert_eq!(got, ClientPacket::Subscribe(want));
    }

    #[test]
    fn server_publishes_read_back_as_sent(
        topic in "[a-z/]{1,12}",
        q in qos(),
        retain: bool,
        pkid in 1u16..,
        payload in prop::collection::vec(any::<u8>(), 0..64),
        props in crate::mqtt::properties::tests::props(),
        sub_id in prop::option::of(1usize..268_435_455),
    ) {
        let out = PublishOut {
            qos: q,
            retain,
            topic: topic.clone(),
            pkid: if q == QoS::AtMostOnce { 0 } else { pkid },
            payload: Bytes::from(payload.clone()),
            props: props.clone(),
            subscription_ids: sub_id.into_iter().collect(),
            dup: false,
        };
        let P5::Publish(p) = read_back(&ServerPacket::Publish(out)) else {
            panic!("not a PUBLISH");
        };
        prop_assert_eq!(&p.topic[..], topic.as_bytes());
        prop_assert_eq!(&p.payload[..], &payload[..]);
        prop_assert_eq!(p.qos, v5_qos(q));
        prop_assert_eq!(p.retain, retain);
        let mut want = publish_properties(&props, None).unwrap_or_default();
        want.subscription_identifiers = sub_id.into_iter().collect();
        prop_assert_eq!(p.properties.unwrap_or_default(), want);
    }

    #[test]
    fn acks_carry_their_reason_codes(pkid in 1u16.., code in prop::sample::select(vec![
        reason::SUCCESS, reason::TOPIC_NAME_INVALID, reason::QUOTA_EXCEEDED, reason::UNSPECIFIED,
    ])) {
        let P5::PubAck(a) = read_back(&ServerPacket::PubAck { pkid, reason: code }) else {
            panic!("not a PUBACK");
        };
        prop_assert_eq!(a.pkid, pkid);
        prop_assert_eq!(ack_reason(code), a.reason);
        let P5::SubAck(s) = read_back(&ServerPacket::SubAck { pkid, codes: vec![0, 1, 2, reason::TOPIC_FILTER_INVALID] }) else {
            panic!("not a SUBACK");
        };
        prop_assert_eq!(s.return_codes.len(), 4);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        fuzz_decode(&data);
        let mut v5_connect = b"\x10\x20\x00\x04MQTT\x05\x02\x00\x3c".to_vec();
        v5_connect.extend_from_slice(&data);
        fuzz_decode(&v5_connect);
    }
}

/// Valid MQTT 5 client packets, for mutation.
fn seeds() -> Vec<BytesMut> {
    let mut props = ConnectProperties::new();
    props.receive_maximum = Some(5);
    props.user_properties = vec![("k".into(), "v".into())];
    let mut filter = Filter::new("a/+/c", rumqttc::v5::mqttbytes::QoS::ExactlyOnce);
    filter.nolocal = true;
    let mut publish = Pub5::new(
        "a/b",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        b"payload".to_vec(),
        publish_properties(
            &MessageProps {
                payload_format: Some(1),
                message_expiry: Some(9),
                content_type: Some("t".into()),
                response_topic: Some("r".into()),
                correlation_data: Some(Bytes::from_static(b"c")),
                user: vec![("k".into(), "v".into())],
            },
            Some(2),
        ),
    );
    publish.pkid = 7;
    vec![
        written(P5::Connect(
            Connect {
                keep_alive: 10,
                client_id: "id".into(),
                clean_start: true,
                properties: Some(props),
            },
            None,
            None,
        )),
        written(P5::Publish(publish)),
        written(P5::Subscribe(Sub5 {
            pkid: 3,
            filters: vec![filter],
            properties: Some(SubscribeProperties {
                id: Some(300),
                user_properties: vec![("k".into(), "v".into())],
            }),
        })),
        written(P5::PubAck(PubAck::new(4, None))),
    ]
}

#[test]
fn mutated_packets_never_panic() {
    use proptest::test_runner::{Config, TestRunner};
    let seeds = seeds();
    let mut runner = TestRunner::new(Config {
        cases: 4096,
        ..Config::default()
    });
    let strategy = (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        any::<prop::sample::Index>(),
    );
    runner
        .run(&strategy, |(seed, flips, cut)| {
            let mut bytes = seeds[seed].to_vec();
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1).max(1));
            fuzz_decode(&bytes);
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode(&mut buf, 64 * 1024);
            Ok(())
        })
        .unwrap();
}

fn v5_qos(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    qos_out(q)
}

#[test]
fn connect_properties_are_read() {
    let mut props = ConnectProperties::new();
    props.receive_maximum = Some(5);
    props.max_packet_size = Some(1000);
    props.topic_alias_max = Some(3);
    props.session_expiry_interval = Some(60);
    let connect = Connect {
        keep_alive: 30,
        client_id: "dev".into(),
        clean_start: false,
        properties: Some(props),
    };
    let got = decode_one(&written(P5::Connect(connect, None, None))).unwrap();
    assert_eq!(
        got,
        ClientPacket::Connect(ConnectIn {
            version: Version::V5,
            client_id: "dev".into(),
            clean_start: false,
            keep_alive: 30,
            will: None,
            session_expiry: Some(60),
            receive_maximum: Some(5),
            maximum_packet_size: Some(1000),
            topic_alias_maximum: Some(3),
            authentication_method: None,
            username: None,
            password: None,
        })
    );
}

#[test]
fn server_side_special_cases() {
    // DISCONNECT without a body is a normal disconnection; with a reason, that reason.
    assert_eq!(
        decode_one(b"\xe0\x00").unwrap(),
        ClientPacket::Disconnect {
            reason: 0,
            session_expiry: None
        }
    );
    assert_eq!(
        decode_one(b"\xe0\x01\x04").unwrap(),
        ClientPacket::Disconnect {
            reason: 0x04,
            session_expiry: None
        }
    );
    let mut d = BytesMut::new();
    encode(
        &ServerPacket::Disconnect {
            reason: 0x8e,
            reason_string: None,
        },
        None,
        &mut d,
    )
    .unwrap();
    let P5::Disconnect(back) = P5::read(&mut d, None).unwrap() else {
        panic!("not a DISCONNECT");
    };
    assert_eq!(back.reason_code, DisconnectReasonCode::SessionTakenOver);
    assert!(d.is_empty());
    // AUTH, which rumqttc's reader does not know.
    assert_eq!(decode_one(b"\xf0\x00").unwrap(), ClientPacket::Auth);
    assert!(matches!(
        decode_one(b"\xf1\x00"),
        Err(CodecError::ReservedFlags { .. })
    ));
    // Reserved subscription option bits (6 and 7).
    assert!(matches!(
        decode_one(b"\x82\x07\x00\x01\x00\x00\x01a\xc0"),
        Err(CodecError::ReservedSubscribeOptions)
    ));
    assert!(decode_one(b"\x82\x07\x00\x01\x00\x00\x01a\x2d").is_ok());
    // Clients do not send subscription identifiers in PUBLISH.
    let p = Pub5::new(
        "t",
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        b"x".to_vec(),
        Some(PublishProperties {
            subscription_identifiers: vec![3],
            ..Default::default()
        }),
    );
    assert!(matches!(
        decode_one(&written(P5::Publish(p))),
        Err(CodecError::ProtocolV5(_))
    ));
    // UNSUBSCRIBE needs a filter.
    let u = Unsubscribe {
        pkid: 1,
        filters: vec![],
        properties: None,
    };
    assert!(decode_one(&written(P5::Unsubscribe(u))).is_err());
}

#[test]
fn size_is_checked_from_the_fixed_header_alone() {
    // A PUBLISH announcing 1 MiB: refused with only 5 bytes buffered.
    let mut buf = BytesMut::from(&b"\x30\x80\x80\x40\x00"[..]);
    assert!(matches!(
        decode(&mut buf, 64 * 1024),
        Err(CodecError::TooLarge { .. })
    ));
    // Partial packets wait for more.
    let mut buf = BytesMut::from(&b"\x30\x0a\x00"[..]);
    assert!(decode(&mut buf, 1024).unwrap().is_none());
    assert_eq!(buf.len(), 3);
}

#[test]
fn packets_larger_than_the_client_accepts_are_not_written() {
    let big = ServerPacket::Publish(PublishOut {
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        pkid: 0,
        payload: Bytes::from(vec![0u8; 200]),
        props: MessageProps::default(),
        subscription_ids: Vec::new(),
        dup: false,
    });
    let mut out = BytesMut::new();
    assert!(matches!(
        encode(&big, Some(100), &mut out),
        Err(CodecError::TooLargeForClient { .. })
    ));
    assert!(out.is_empty());
    encode(&big, Some(300), &mut out).unwrap();
    assert!(!out.is_empty());
}

#[test]
fn the_wire_picks_the_version_from_the_first_connect() {
    let connect5 = written(P5::Connect(
        Connect {
            keep_alive: 0,
            client_id: "a".into(),
            clean_start: true,
            properties: None,
        },
        None,
        None,
    ));
    let mut wire = Wire::new(1024);
    let mut buf = connect5.clone();
    buf.extend_from_slice(&written(P5::PubAck(PubAck::new(4, None))));
    assert!(matches!(
        wire.decode(&mut buf).unwrap(),
        Some(Incoming::Packet(ClientPacket::Connect(ConnectIn {
            version: Version::V5,
            ..
        })))
    ));
    assert_eq!(wire.version, Version::V5);
    assert_eq!(
        wire.decode(&mut buf).unwrap(),
        Some(Incoming::Packet(ClientPacket::PubAck { pkid: 4 }))
    );
    // CONNACK properties reach a v5 client, not a 3.1.1 one.
    let mut ack = ConnAckOut::bare(ConnectCode::Success);
    ack.topic_alias_maximum = Some(9);
    let mut out = BytesMut::new();
    wire.encode(&ServerPacket::ConnAck(ack.clone()), &mut out)
        .unwrap();
    let P5::ConnAck(a) = P5::read(&mut out, None).unwrap() else {
        panic!("not a CONNACK");
    };
    assert_eq!(a.properties.unwrap().topic_alias_max, Some(9));

    // After a 3.1.1 CONNECT, a v5 CONNECT is not a version switch.
    let mut wire = Wire::new(1024);
    let mut buf = BytesMut::from(&b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02hw"[..]);
    buf.extend_from_slice(&connect5);
    assert!(matches!(
        wire.decode(&mut buf).unwrap(),
        Some(Incoming::Packet(ClientPacket::Connect(ConnectIn {
            version: Version::V311,
            ..
        })))
    ));
    assert!(matches!(
        wire.decode(&mut buf).unwrap(),
        Some(Incoming::UnsupportedProtocol { level: 5, .. })
    ));
    assert_eq!(wire.version, Version::V311);
    let mut out = BytesMut::new();
    wire.encode(
        &ServerPacket::Disconnect {
            reason: 0x82,
            reason_string: None,
        },
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty(), "3.1.1 has no server DISCONNECT");
}
