//! MQTT 5 end to end on the listener: rumqttc's v5 client for what a client does, raw v5
//! packets for what it would not send and to see the exact reason codes and properties.

use bytes::{Bytes, BytesMut};
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectProperties, ConnectReturnCode, DisconnectReasonCode, Filter,
    Packet as P5, PubAck, PubAckReason, Publish as Pub5, PublishProperties, Subscribe as Sub5,
    SubscribeProperties, SubscribeReasonCode as Code5,
};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

use super::*;
use crate::mqtt::connection::{RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM};

#[path = "tests_retained_wills.rs"]
mod retained_wills;

/// A raw MQTT 5 socket.
pub(super) struct Raw5 {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw5 {
    pub(super) async fn open(addr: SocketAddr) -> Raw5 {
        Raw5 {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn connect(addr: SocketAddr, id: &str, props: ConnectProperties) -> (Raw5, ConnAck) {
        let mut raw = Raw5::open(addr).await;
        let connect = Connect {
            keep_alive: 0,
            client_id: id.into(),
            clean_start: true,
            properties: Some(props),
        };
        raw.send(P5::Connect(connect, None, None)).await;
        match raw.recv().await {
            Some(P5::ConnAck(a)) => (raw, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn connected(addr: SocketAddr, id: &str) -> Raw5 {
        let (raw, ack) = Raw5::connect(addr, id, ConnectProperties::new()).await;
        assert_eq!(ack.code, ConnectReturnCode::Success);
        raw
    }

    pub(super) async fn send(&mut self, packet: P5) {
        // A buffer per packet: rumqttc's CONNECT writer assumes an empty one.
        let mut out = BytesMut::new();
        packet.write(&mut out, None).unwrap();
        let _ = self.stream.write_all(&out).await;
    }

    /// Sends `packets` in one write, so the broker reads them together.
    pub(super) async fn send_together(&mut self, packets: Vec<P5>) {
        let mut out = BytesMut::new();
        for packet in packets {
            packet.write(&mut out, None).unwrap();
        }
        let _ = self.stream.write_all(&out).await;
    }

    pub(super) async fn recv(&mut self) -> Option<P5> {
        tokio::time::timeout(WAIT, async {
            loop {
                if !self.buf.is_empty() {
                    match P5::read(&mut self.buf, None) {
                        Ok(p) => return Some(p),
                        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                        Err(e) => panic!("broker sent a bad packet: {e}"),
                    }
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("timed out waiting for the broker")
    }

    /// The server's DISCONNECT reason, then the end of the connection.
    pub(super) async fn expect_disconnect(&mut self) -> DisconnectReasonCode {
        let reason = loop {
            match self.recv().await {
                Some(P5::Disconnect(d)) => break d.reason_code,
                Some(_) => {}
                None => panic!("closed without DISCONNECT"),
            }
        };
        assert!(self.recv().await.is_none(), "connection must close");
        reason
    }

    async fn subscribe(&mut self, filter: Filter, id: Option<usize>) -> Code5 {
        let properties = id.map(|id| SubscribeProperties {
            id: Some(id),
            user_properties: Vec::new(),
        });
        self.send(P5::Subscribe(Sub5 {
            pkid: 1,
            filters: vec![filter],
            properties,
        }))
        .await;
        match self.recv().await {
            Some(P5::SubAck(s)) => s.return_codes[0],
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn next_publish(&mut self) -> Pub5 {
        loop {
            match self.recv().await {
                Some(P5::Publish(p)) => return p,
                Some(_) => {}
                None => panic!("closed while waiting for a publish"),
            }
        }
    }

    /// No packet arrives within `wait`.
    async fn quiet(&mut self, wait: Duration) {
        let mut chunk = [0u8; 1];
        match tokio::time::timeout(wait, self.stream.peek(&mut chunk)).await {
            Err(_) => {}
            Ok(n) => panic!("unexpected bytes from the broker ({n:?})"),
        }
        assert!(self.buf.is_empty());
    }
}

pub(super) fn pub5(
    topic: &str,
    qos: Q5,
    pkid: u16,
    payload: &[u8],
    props: Option<PublishProperties>,
) -> P5 {
    let mut p = Pub5::new(topic, qos, payload.to_vec(), props);
    p.pkid = pkid;
    P5::Publish(p)
}

fn alias(a: u16) -> Option<PublishProperties> {
    Some(PublishProperties {
        topic_alias: Some(a),
        ..Default::default()
    })
}

fn full_props() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        topic_alias: None,
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00corr")),
        // A repeated name keeps every value, in order (§3.3.2.3.7).
        user_properties: vec![
            ("unit".into(), "C".into()),
            ("site".into(), "north".into()),
            ("unit".into(), "F".into()),
        ],
        subscription_identifiers: Vec::new(),
        content_type: Some("application/json".into()),
    }
}

#[tokio::test]
async fn connack_tells_v5_clients_what_the_broker_offers() {
    let b = start(MqttSection::default()).await;
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(300);
    let (_raw, ack) = Raw5::connect(b.addr, "", props).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present);
    let p = ack.properties.expect("CONNACK properties");
    assert!(p
        .assigned_client_identifier
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(
        p.session_expiry_interval, None,
        "the session expiry asked for is granted"
    );
    assert_eq!(p.receive_max, Some(RECEIVE_MAXIMUM));
    assert_eq!(p.topic_alias_max, Some(TOPIC_ALIAS_MAXIMUM));
    let max = MqttSection::default().max_packet_bytes;
    assert!(p
        .max_packet_size
        .is_some_and(|m| m as usize > max && m as usize <= max + 5));
    assert_eq!(p.retain_available, Some(1));
    assert_eq!(p.wildcard_subscription_available, Some(1));
    assert_eq!(p.subscription_identifiers_available, Some(1));
    assert_eq!(p.shared_subscription_available, Some(1));

    // Enhanced authentication is refused in CONNACK.
    let mut props = ConnectProperties::new();
    props.authentication_method = Some("SCRAM-SHA-1".into());
    let (mut raw, ack) = Raw5::connect(b.addr, "auth", props).await;
    assert_eq!(ack.code, ConnectReturnCode::BadAuthenticationMethod);
    assert!(raw.recv().await.is_none());
}

#[tokio::test]
async fn v5_properties_are_stored_as_headers_and_come_back_to_v5_subscribers() {
    let b = start(MqttSection::default()).await;
    let mut sub = Raw5::connected(b.addr, "sub5").await;
    assert_eq!(
        sub.subscribe(Filter::new("sensors/#", Q5::AtLeastOnce), Some(7))
            .await,
        Code5::Success(Q5::AtLeastOnce)
    );
    let mut sub4 = client(b.addr, "sub4", false).await;
    sub4.subscribe("sensors/#", QoS::AtLeastOnce).await;

    let mut publisher = Raw5::connected(b.addr, "pub5").await;
    publisher
        .send(pub5(
            "sensors/t1",
            Q5::AtLeastOnce,
            9,
            b"21.5",
            Some(full_props()),
        ))
        .await;
    match publisher.recv().await {
        Some(P5::PubAck(PubAck {
            pkid: 9, reason, ..
        })) => {
            assert_eq!(reason, PubAckReason::Success)
        }
        other => panic!("{other:?}"),
    }

    let stored = records(&b.log, "sensors");
    assert_eq!(stored.len(), 1);
    let r = &stored[0];
    assert_eq!(header(r, "mqtt.client_id"), Some(&b"pub5"[..]));
    assert_eq!(
        header(r, "mqtt.content_type"),
        Some(&b"application/json"[..])
    );
    assert_eq!(header(r, "mqtt.payload_format"), Some(&b"1"[..]));
    assert_eq!(header(r, "mqtt.message_expiry"), Some(&b"3600"[..]));
    assert_eq!(header(r, "mqtt.response_topic"), Some(&b"reply/here"[..]));
    assert_eq!(header(r, "mqtt.correlation_data"), Some(&b"\x00corr"[..]));
    let user: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("mqtt.user."))
        .map(|(k, v)| (k.as_str(), v.as_deref().unwrap()))
        .collect();
    assert_eq!(
        user,
        vec![
            ("mqtt.user.unit", &b"C"[..]),
            ("mqtt.user.site", &b"north"[..]),
            ("mqtt.user.unit", &b"F"[..])
        ]
    );

    let got = sub.next_publish().await;
    assert_eq!(&got.topic[..], b"sensors/t1");
    assert_eq!(&got.payload[..], b"21.5");
    let props = got.properties.expect("properties delivered");
    let mut want = full_props();
    want.subscription_identifiers = vec![7];
    let expiry = props.message_expiry_interval.expect("expiry");
    assert!((3598..=3600).contains(&expiry), "expiry {expiry}");
    want.message_expiry_interval = props.message_expiry_interval;
    assert_eq!(props, want);

    let got4 = sub4.next_publish().await;
    assert_eq!(got4.topic, "sensors/t1");
    assert_eq!(&got4.payload[..], b"21.5");
}

/// Runs a rumqttc v5 event loop in a task, forwarding its events until the first error.
pub(super) fn pump5(mut events: rumqttc::v5::EventLoop) -> mpsc::Receiver<Result<Event5, String>> {
    let (tx, rx) = mpsc::channel(100);
    tokio::spawn(async move {
        loop {
            let event = events.poll().await.map_err(|e| e.to_string());
            let failed = event.is_err();
            if tx.send(event).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// The next incoming packet of a rumqttc v5 client.
pub(super) async fn next5(rx: &mut mpsc::Receiver<Result<Event5, String>>) -> P5 {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(Ok(Event5::Incoming(p)))) => return p,
            Ok(Some(Ok(_))) => {}
            other => panic!("v5 client: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_rumqttc_v5_client_and_a_v311_client_interoperate() {
    let b = start(MqttSection::default()).await;
    let mut options = Options5::new("v5-client", "127.0.0.1", b.addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (c5, events) = Client5::new(options, 100);
    let mut rx = pump5(events);
    assert!(matches!(next5(&mut rx).await, P5::ConnAck(_)));
    c5.subscribe("from/v3/#", Q5::ExactlyOnce).await.unwrap();
    loop {
        if let P5::SubAck(s) = next5(&mut rx).await {
            assert_eq!(s.return_codes, vec![Code5::Success(Q5::ExactlyOnce)]);
            break;
        }
    }
    let mut c4 = client(b.addr, "v3-client", false).await;
    c4.subscribe("from/v5/#", QoS::ExactlyOnce).await;

    c4.publish_acked("from/v3/a", QoS::ExactlyOnce, "hello v5")
        .await;
    loop {
        if let P5::Publish(p) = next5(&mut rx).await {
            assert_eq!(&p.topic[..], b"from/v3/a");
            assert_eq!(&p.payload[..], b"hello v5");
            assert_eq!(p.qos, Q5::ExactlyOnce);
            break;
        }
    }
    c5.publish_with_properties(
        "from/v5/b",
        Q5::AtLeastOnce,
        false,
        "hello v3",
        full_props(),
    )
    .await
    .unwrap();
    let p = c4.next_publish().await;
    assert_eq!(p.topic, "from/v5/b");
    assert_eq!(&p.payload[..], b"hello v3");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn topic_aliases_are_resolved_and_misuse_is_refused() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw5::connected(b.addr, "aliaser").await;
    raw.send(pub5("dev/1/temp", Q5::AtLeastOnce, 1, b"a", alias(3)))
        .await;
    raw.send(pub5("", Q5::AtLeastOnce, 2, b"b", alias(3))).await;
    raw.send(pub5("dev/2/temp", Q5::AtLeastOnce, 3, b"c", alias(3)))
        .await;
    raw.send(pub5("", Q5::AtLeastOnce, 4, b"d", alias(3))).await;
    for id in 1..=4 {
        match raw.recv().await {
            Some(P5::PubAck(a)) => {
                assert_eq!((a.pkid, a.reason), (id, PubAckReason::Success))
            }
            other => panic!("{other:?}"),
        }
    }
    let stored: Vec<_> = records(&b.log, "dev")
        .iter()
        .map(|r| {
            (
                header(r, "mqtt.topic").unwrap().to_vec(),
                r.value.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(stored.len(), 4);
    for (topic, payload) in [
        (&b"dev/1/temp"[..], &b"a"[..]),
        (b"dev/1/temp", b"b"),
        (b"dev/2/temp", b"c"),
        (b"dev/2/temp", b"d"),
    ] {
        assert!(
            stored.iter().any(|(t, p)| t == topic && p == payload),
            "{topic:?} {payload:?} in {stored:?}"
        );
    }

    // Above the maximum the broker granted: 0x94.
    raw.send(pub5(
        "x",
        Q5::AtMostOnce,
        0,
        b"",
        alias(TOPIC_ALIAS_MAXIMUM + 1),
    ))
    .await;
    assert_eq!(
        raw.expect_disconnect().await,
        DisconnectReasonCode::TopicAliasInvalid
    );
    // An alias never set: protocol error.
    let mut raw = Raw5::connected(b.addr, "aliaser2").await;
    raw.send(pub5("", Q5::AtMostOnce, 0, b"", alias(5))).await;
    assert_eq!(
        raw.expect_disconnect().await,
        DisconnectReasonCode::ProtocolError
    );
}

#[tokio::test]
async fn no_local_subscriptions_skip_the_clients_own_publishes() {
    let b = start(MqttSection::default()).await;
    let mut me = Raw5::connected(b.addr, "me").await;
    let mut filter = Filter::new("chat/#", Q5::AtMostOnce);
    filter.nolocal = true;
    me.subscribe(filter, None).await;
    let mut other = Raw5::connected(b.addr, "other").await;
    other
        .subscribe(Filter::new("chat/#", Q5::AtMostOnce), None)
        .await;

    me.send(pub5("chat/mine", Q5::AtLeastOnce, 1, b"mine", None))
        .await;
    assert!(matches!(me.recv().await, Some(P5::PubAck(_))));
    assert_eq!(&other.next_publish().await.payload[..], b"mine");
    other
        .send(pub5("chat/theirs", Q5::AtLeastOnce, 1, b"theirs", None))
        .await;
    let got = me.next_publish().await;
    assert_eq!(&got.payload[..], b"theirs", "own publish must be skipped");
}

#[tokio::test]
async fn the_clients_receive_maximum_bounds_deliveries_in_flight() {
    let b = start(MqttSection::default()).await;
    let mut props = ConnectProperties::new();
    props.receive_maximum = Some(2);
    let (mut sub, _) = Raw5::connect(b.addr, "slow", props).await;
    sub.subscribe(Filter::new("q/#", Q5::AtLeastOnce), None)
        .await;
    let mut publisher = client(b.addr, "fast", false).await;
    for i in 0..5 {
        publisher
            .publish_acked("q/x", QoS::AtLeastOnce, &format!("m{i}"))
            .await;
    }
    let first = sub.next_publish().await;
    let second = sub.next_publish().await;
    assert_eq!(&first.payload[..], b"m0");
    assert_eq!(&second.payload[..], b"m1");
    sub.quiet(Duration::from_millis(300)).await;
    sub.send(P5::PubAck(PubAck::new(first.pkid, None))).await;
    assert_eq!(&sub.next_publish().await.payload[..], b"m2");
    sub.quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn deliveries_larger_than_the_clients_maximum_packet_size_are_skipped() {
    let b = start(MqttSection::default()).await;
    let mut props = ConnectProperties::new();
    props.max_packet_size = Some(100);
    let (mut sub, _) = Raw5::connect(b.addr, "small", props).await;
    sub.subscribe(Filter::new("big/#", Q5::AtLeastOnce), None)
        .await;
    let mut publisher = client(b.addr, "pub", false).await;
    publisher
        .publish_acked("big/x", QoS::AtLeastOnce, &"x".repeat(200))
        .await;
    publisher
        .publish_acked("big/x", QoS::AtLeastOnce, "ok")
        .await;
    let got = sub.next_publish().await;
    assert_eq!(&got.payload[..], b"ok");
}

#[tokio::test]
async fn expired_messages_are_not_delivered_and_expiry_counts_down() {
    let b = start(MqttSection::default()).await;
    let mut sub = Raw5::connected(b.addr, "sub").await;
    sub.subscribe(Filter::new("exp/#", Q5::AtMostOnce), None)
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let record = |expiry: &str, payload: &'static str| NewRecord {
        timestamp: now - 5_000,
        key: Some(Bytes::from_static(b"exp/a")),
        value: Some(Bytes::from_static(payload.as_bytes())),
        headers: vec![
            ("mqtt.topic".into(), Some(Bytes::from_static(b"exp/a"))),
            ("mqtt.qos".into(), Some(Bytes::from_static(b"0"))),
            (
                "mqtt.message_expiry".into(),
                Some(Bytes::copy_from_slice(expiry.as_bytes())),
            ),
        ],
    };
    let topic = b.log.topic_for_write("exp").await.unwrap();
    let p = topic.partition(0).unwrap();
    b.log
        .append_records(p, &[record("3", "expired"), record("100", "fresh")])
        .await
        .unwrap();
    let got = sub.next_publish().await;
    assert_eq!(&got.payload[..], b"fresh");
    let expiry = got.properties.unwrap().message_expiry_interval.unwrap();
    assert!((94..=95).contains(&expiry), "expiry {expiry}");
}

#[tokio::test]
async fn protocol_violations_get_a_disconnect_with_the_reason() {
    let b = start(MqttSection::default()).await;
    // AUTH without an authentication method.
    let mut raw = Raw5::connected(b.addr, "auth").await;
    raw.stream.write_all(b"\xf0\x00").await.unwrap();
    assert_eq!(
        raw.expect_disconnect().await,
        DisconnectReasonCode::ProtocolError
    );
    // An invalid topic name: a negative PUBACK in order for QoS 1, DISCONNECT 0x90 for QoS 0.
    let mut raw = Raw5::connected(b.addr, "topics").await;
    raw.send(pub5("ok/1", Q5::AtLeastOnce, 1, b"a", None)).await;
    raw.send(pub5("bad/+", Q5::AtLeastOnce, 2, b"b", None))
        .await;
    raw.send(pub5("ok/1", Q5::AtLeastOnce, 3, b"c", None)).await;
    for (id, want) in [
        (1, PubAckReason::Success),
        (2, PubAckReason::TopicNameInvalid),
        (3, PubAckReason::Success),
    ] {
        match raw.recv().await {
            Some(P5::PubAck(a)) => assert_eq!((a.pkid, a.reason), (id, want)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(records(&b.log, "ok").len(), 2);
    raw.send(pub5("bad/#", Q5::AtMostOnce, 0, b"d", None)).await;
    assert_eq!(
        raw.expect_disconnect().await,
        DisconnectReasonCode::TopicNameInvalid
    );
    // Too large.
    let section = MqttSection {
        max_packet_bytes: 1024,
        ..MqttSection::default()
    };
    let small = start(section).await;
    let mut raw = Raw5::connected(small.addr, "big").await;
    raw.send(pub5("b/x", Q5::AtMostOnce, 0, &[0u8; 2048], None))
        .await;
    assert_eq!(
        raw.expect_disconnect().await,
        DisconnectReasonCode::PacketTooLarge
    );
    // A bad filter is refused in SUBACK, the connection stays.
    let mut raw = Raw5::connected(b.addr, "shared").await;
    assert_eq!(
        raw.subscribe(Filter::new("a/#/b", Q5::AtMostOnce), None)
            .await,
        Code5::TopicFilterInvalid
    );
    assert_eq!(
        raw.subscribe(Filter::new("$share/g/t", Q5::AtMostOnce), None)
            .await,
        Code5::Success(Q5::AtMostOnce)
    );
    // No-local on a shared subscription is a protocol error (§3.8.3.1).
    let mut no_local = Filter::new("$share/g/t", Q5::AtLeastOnce);
    no_local.nolocal = true;
    raw.send(P5::Subscribe(Sub5 {
        pkid: 2,
        filters: vec![no_local],
        properties: None,
    }))
    .await;
    assert_eq!(
        raw.expect_disconnect().await,
        DisconnectReasonCode::ProtocolError
    );
}

#[tokio::test]
async fn takeover_keep_alive_and_shutdown_are_announced() {
    let b = start(MqttSection::default()).await;
    let mut first = Raw5::connected(b.addr, "twin").await;
    let _second = Raw5::connected(b.addr, "twin").await;
    assert_eq!(
        first.expect_disconnect().await,
        DisconnectReasonCode::SessionTakenOver
    );

    let mut raw = Raw5::open(b.addr).await;
    raw.send(P5::Connect(
        Connect {
            keep_alive: 1,
            client_id: "sleepy".into(),
            clean_start: true,
            properties: None,
        },
        None,
        None,
    ))
    .await;
    assert!(matches!(raw.recv().await, Some(P5::ConnAck(_))));
    assert_eq!(
        raw.expect_disconnect().await,
        DisconnectReasonCode::KeepAliveTimeout
    );

    let mut raw = Raw5::connected(b.addr, "last").await;
    b.shutdown.cancel();
    assert_eq!(
        raw.expect_disconnect().await,
        DisconnectReasonCode::ServerShuttingDown
    );
}

#[tokio::test]
async fn a_full_log_gets_quota_exceeded_acks_and_the_connection_stays() {
    let b = start_with(MqttSection::default(), 2 * 1024 * 1024).await;
    let mut raw = Raw5::connected(b.addr, "filler").await;
    let mut refused = false;
    for id in 1..=100u16 {
        raw.send(pub5(
            "fill/x",
            Q5::AtLeastOnce,
            id,
            &[1u8; 200 * 1024],
            None,
        ))
        .await;
        match raw.recv().await {
            Some(P5::PubAck(a)) if a.reason == PubAckReason::Success => {}
            Some(P5::PubAck(a)) => {
                assert_eq!((a.pkid, a.reason), (id, PubAckReason::QuotaExceeded));
                refused = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(refused, "the log never filled");
    raw.send(P5::PingReq(rumqttc::v5::mqttbytes::v5::PingReq))
        .await;
    assert!(matches!(raw.recv().await, Some(P5::PingResp(_))));
}

#[tokio::test]
async fn retain_as_published_keeps_the_flag_of_a_311_retained_publish() {
    let b = start(MqttSection::default()).await;
    let mut keeps = Raw5::connected(b.addr, "keeps").await;
    let mut filter = Filter::new("r/#", Q5::AtMostOnce);
    filter.preserve_retain = true;
    keeps.subscribe(filter, None).await;
    let mut clears = Raw5::connected(b.addr, "clears").await;
    clears
        .subscribe(Filter::new("r/#", Q5::AtMostOnce), None)
        .await;
    // MQTT 3.1.1 clients may still publish with retain (stored as `mqtt.retain`).
    let mut old = Raw::connected(b.addr, "old", 0).await;
    let mut p = Publish::new("r/x", QoS::AtLeastOnce, b"kept".to_vec());
    p.pkid = 1;
    p.retain = true;
    old.send(Packet::Publish(p)).await;
    assert!(matches!(old.recv().await, Some(Packet::PubAck(_))));
    assert_eq!(
        header(&records(&b.log, "r")[0], "mqtt.retain"),
        Some(&b"1"[..])
    );
    assert!(keeps.next_publish().await.retain);
    assert!(!clears.next_publish().await.retain);
}

#[tokio::test]
async fn connect_with_a_receive_maximum_of_zero_is_a_protocol_error() {
    let b = start(MqttSection::default()).await;
    let mut props = ConnectProperties::new();
    props.receive_maximum = Some(0);
    let (mut raw, ack) = Raw5::connect(b.addr, "zero", props).await;
    assert_eq!(ack.code, ConnectReturnCode::ProtocolError);
    assert!(raw.recv().await.is_none());
}

#[tokio::test]
async fn topics_go_out_by_alias_to_clients_that_accept_aliases() {
    let b = start(MqttSection::default()).await;
    let mut props = ConnectProperties::new();
    props.topic_alias_max = Some(1);
    let (mut sub, ack) = Raw5::connect(b.addr, "aliased", props).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert_eq!(
        sub.subscribe(Filter::new("al/#", Q5::AtMostOnce), None)
            .await,
        Code5::Success(Q5::AtMostOnce)
    );
    let mut p = client(b.addr, "pub", false).await;
    for topic in ["al/x", "al/x", "al/y", "al/x"] {
        p.publish_acked(topic, QoS::AtLeastOnce, topic).await;
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let m = sub.next_publish().await;
        let alias = m.properties.and_then(|p| p.topic_alias);
        seen.push((String::from_utf8(m.topic.to_vec()).unwrap(), alias));
        assert_eq!(m.payload.len(), 4, "payload intact");
    }
    let named = |t: &str, a| (t.to_string(), a);
    assert_eq!(
        seen,
        [
            named("al/x", Some(1)), // established
            named("", Some(1)),     // by alias alone
            named("al/y", None),    // the client's maximum of one is taken
            named("", Some(1)),
        ]
    );
}
