//! Retained messages and wills end to end on the listener, with MQTT 3.1.1 (rumqttc's client and
//! raw packets) and MQTT 5 (raw packets, to see flags, properties and reason codes).

use rumqttc::mqttbytes::v4::{Connect as Connect4, LastWill};
use rumqttc::v5::mqttbytes::v5::{
    Disconnect, LastWill as Will5, LastWillProperties, PubAck as PubAck5, RetainForwardRule,
};

use super::*;

/// [`reopen`] with the default MQTT settings.
async fn restart(b: Broker) -> Broker {
    reopen(b, MqttSection::default()).await
}

async fn retain(c: &Client, topic: &str, qos: QoS, payload: &[u8]) {
    c.client
        .publish(topic, qos, true, payload.to_vec())
        .await
        .unwrap();
}

#[tokio::test]
async fn retained_messages_reach_new_subscribers_until_cleared_and_survive_a_restart() {
    let b = start(MqttSection::default()).await;
    let mut publisher = client(b.addr, "pub", false).await;
    retain(&publisher, "s/a", QoS::AtLeastOnce, b"on").await;
    publisher.expect(|p| matches!(p, Packet::PubAck(_))).await;
    retain(&publisher, "$SYS/up", QoS::AtLeastOnce, b"1").await;
    publisher.expect(|p| matches!(p, Packet::PubAck(_))).await;

    let mut sub = client(b.addr, "sub", false).await;
    sub.subscribe("#", QoS::ExactlyOnce).await;
    let p = sub.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain, p.qos),
        ("s/a", &b"on"[..], true, QoS::AtLeastOnce),
        "QoS is the lower of the published and the subscribed"
    );
    sub.quiet(Duration::from_millis(300)).await; // `#` does not match `$SYS/up`
                                                 // A live publish to a 3.1.1 subscriber carries retain = 0 (§3.3.1.3).
    publisher
        .publish_acked("s/a", QoS::AtLeastOnce, "live")
        .await;
    let p = sub.next_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"live"[..], false));

    let mut sys = client(b.addr, "sys", false).await;
    sys.subscribe("$SYS/#", QoS::AtMostOnce).await;
    assert_eq!(&sys.next_publish().await.payload[..], b"1");

    // An empty retained payload clears it; it is still appended to the log.
    retain(&publisher, "s/a", QoS::AtLeastOnce, b"").await;
    publisher.expect(|p| matches!(p, Packet::PubAck(_))).await;
    assert_eq!(records(&b.log, "s").len(), 3);
    let mut late = client(b.addr, "late", false).await;
    late.subscribe("s/#", QoS::AtLeastOnce).await;
    late.quiet(Duration::from_millis(300)).await;

    retain(&publisher, "s/b", QoS::ExactlyOnce, b"kept").await;
    publisher.expect(|p| matches!(p, Packet::PubComp(_))).await;
    drop((publisher, sub, sys, late));

    let b = restart(b).await;
    let mut after = client(b.addr, "after", false).await;
    after.subscribe("s/+", QoS::ExactlyOnce).await;
    let p = after.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain, p.qos),
        ("s/b", &b"kept"[..], true, QoS::ExactlyOnce)
    );
    after.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn retained_messages_keep_properties_and_expire() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw5::connected(b.addr, "pub5").await;
    let mut props = full_props();
    props.message_expiry_interval = Some(1);
    let mut p = Pub5::new("e/x", Q5::AtLeastOnce, b"soon".to_vec(), Some(props));
    p.pkid = 1;
    p.retain = true;
    raw.send(P5::Publish(p)).await;
    assert!(matches!(raw.recv().await, Some(P5::PubAck(_))));

    let mut sub = Raw5::connected(b.addr, "sub5").await;
    sub.subscribe(Filter::new("e/#", Q5::AtLeastOnce), Some(7))
        .await;
    let got = sub.next_publish().await;
    assert!(got.retain);
    let props = got.properties.expect("properties");
    assert_eq!(props.message_expiry_interval, Some(1));
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.subscription_identifiers, vec![7]);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut later = Raw5::connected(b.addr, "later").await;
    later
        .subscribe(Filter::new("e/#", Q5::AtLeastOnce), None)
        .await;
    later.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn retain_handling_0_1_and_2() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw5::connected(b.addr, "pub").await;
    let mut p = Pub5::new("h/x", Q5::AtMostOnce, b"r".to_vec(), None);
    p.retain = true;
    raw.send(P5::Publish(p)).await;
    // The QoS 0 append is done before the broker answers this SUBSCRIBE of the same client.
    raw.subscribe(Filter::new("nothing", Q5::AtMostOnce), None)
        .await;

    let filter = |path: &str, rule| {
        let mut f = Filter::new(path, Q5::AtMostOnce);
        f.retain_forward_rule = rule;
        f
    };
    let mut sub = Raw5::connected(b.addr, "sub").await;
    sub.subscribe(filter("h/x", RetainForwardRule::OnEverySubscribe), None)
        .await;
    assert!(sub.next_publish().await.retain);
    // 0 again on the same filter: sent again.
    sub.subscribe(filter("h/x", RetainForwardRule::OnEverySubscribe), None)
        .await;
    assert!(sub.next_publish().await.retain);
    // 1 on an existing subscription: not sent; on a new one: sent.
    sub.subscribe(filter("h/x", RetainForwardRule::OnNewSubscribe), None)
        .await;
    sub.quiet(Duration::from_millis(300)).await;
    sub.subscribe(filter("h/+", RetainForwardRule::OnNewSubscribe), None)
        .await;
    assert_eq!(&sub.next_publish().await.payload[..], b"r");
    // 2: never.
    sub.subscribe(filter("h/#", RetainForwardRule::Never), None)
        .await;
    sub.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn retained_messages_wait_for_the_clients_receive_maximum() {
    let b = start(MqttSection::default()).await;
    let mut publisher = client(b.addr, "pub", false).await;
    for i in 0..5 {
        retain(&publisher, &format!("w/{i}"), QoS::AtLeastOnce, b"x").await;
        publisher.expect(|p| matches!(p, Packet::PubAck(_))).await;
    }
    let mut props = ConnectProperties::new();
    props.receive_maximum = Some(2);
    let (mut sub, _) = Raw5::connect(b.addr, "slow", props).await;
    sub.subscribe(Filter::new("w/#", Q5::AtLeastOnce), None)
        .await;
    let first = sub.next_publish().await;
    let second = sub.next_publish().await;
    assert_eq!(
        (&first.topic[..], &second.topic[..]),
        (&b"w/0"[..], &b"w/1"[..])
    );
    sub.quiet(Duration::from_millis(300)).await;
    sub.send(P5::PubAck(PubAck5::new(first.pkid, None))).await;
    assert_eq!(&sub.next_publish().await.topic[..], b"w/2");
    sub.quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn wills_are_published_when_the_connection_drops_not_after_disconnect() {
    let b = start(MqttSection::default()).await;
    let mut sub = client(b.addr, "watcher", false).await;
    sub.subscribe("status/#", QoS::AtLeastOnce).await;

    let dev = Raw::connected_with_will(
        b.addr,
        "dev1",
        LastWill::new("status/dev1", "gone", QoS::AtLeastOnce, true),
    )
    .await;
    drop(dev); // no DISCONNECT
    let p = sub.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("status/dev1", &b"gone"[..])
    );
    let rec = records(&b.log, "status").pop().unwrap();
    assert_eq!(header(&rec, "mqtt.client_id"), Some(&b"dev1"[..]));
    assert_eq!(header(&rec, "mqtt.retain"), Some(&b"1"[..]));
    // The retained will is the topic's retained message.
    let mut late = client(b.addr, "late", false).await;
    late.subscribe("status/+", QoS::AtLeastOnce).await;
    let p = late.next_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"gone"[..], true));

    let mut polite = Raw::connected_with_will(
        b.addr,
        "dev2",
        LastWill::new("status/dev2", "gone", QoS::AtLeastOnce, false),
    )
    .await;
    polite.send(Packet::Disconnect).await;
    assert!(polite.recv().await.is_none());
    sub.quiet(Duration::from_millis(300)).await;

    // Keep-alive timeout publishes it too.
    let mut raw = Raw::open(b.addr).await;
    let mut c = Connect4::new("dev3");
    c.keep_alive = 1;
    c.last_will = Some(LastWill::new(
        "status/dev3",
        "silent",
        QoS::AtMostOnce,
        false,
    ));
    raw.send(Packet::Connect(c)).await;
    assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(&sub.next_publish().await.payload[..], b"silent");
}

async fn connect5_with_will(addr: SocketAddr, id: &str, delay: u32) -> Raw5 {
    let mut raw = Raw5::open(addr).await;
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(60);
    let will_props = LastWillProperties {
        delay_interval: Some(delay),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: Some("text/plain".into()),
        response_topic: None,
        correlation_data: None,
        user_properties: vec![("why".into(), "lost".into())],
    };
    let will = Will5::new(
        format!("status/{id}"),
        "gone",
        Q5::AtLeastOnce,
        false,
        Some(will_props),
    );
    let connect = Connect {
        keep_alive: 0,
        client_id: id.into(),
        clean_start: true,
        properties: Some(props),
    };
    raw.send(P5::Connect(connect, Some(will), None)).await;
    match raw.recv().await {
        Some(P5::ConnAck(a)) => {
            assert_eq!(a.code, ConnectReturnCode::Success);
            assert_eq!(a.properties.and_then(|p| p.retain_available), Some(1));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    raw
}

#[tokio::test]
async fn v5_will_delay_is_honoured_and_cancelled_by_a_reconnect() {
    let b = start(MqttSection::default()).await;
    let mut sub = Raw5::connected(b.addr, "watcher").await;
    sub.subscribe(Filter::new("status/#", Q5::AtMostOnce), None)
        .await;

    // DISCONNECT 0x04 publishes the will, with its properties.
    let mut d = connect5_with_will(b.addr, "d", 0).await;
    d.send(P5::Disconnect(Disconnect::new(
        DisconnectReasonCode::DisconnectWithWillMessage,
    )))
    .await;
    let p = sub.next_publish().await;
    assert_eq!(&p.topic[..], b"status/d");
    let props = p.properties.expect("will properties");
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.user_properties, vec![("why".into(), "lost".into())]);
    // A normal DISCONNECT discards it.
    let mut n = connect5_with_will(b.addr, "n", 0).await;
    n.send(P5::Disconnect(Disconnect::new(
        DisconnectReasonCode::NormalDisconnection,
    )))
    .await;
    sub.quiet(Duration::from_millis(300)).await;

    // Delay 1 s: not at once, but after the delay.
    let dev = connect5_with_will(b.addr, "late", 1).await;
    drop(dev);
    sub.quiet(Duration::from_millis(600)).await;
    assert_eq!(&sub.next_publish().await.topic[..], b"status/late");

    // Reconnecting within the delay cancels it.
    let dev = connect5_with_will(b.addr, "back", 1).await;
    drop(dev);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _again = Raw5::connected(b.addr, "back").await;
    sub.quiet(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn shutdown_publishes_the_wills_of_connected_and_waiting_clients() {
    let b = start(MqttSection::default()).await;
    let _dev = Raw::connected_with_will(
        b.addr,
        "dev",
        LastWill::new("bye/dev", "down", QoS::AtLeastOnce, false),
    )
    .await;
    // A will waiting out a 30 s delay is published at once too.
    drop(connect5_with_will(b.addr, "waits", 30).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(records(&b.log, "status").is_empty());
    b.shutdown.cancel();
    b.task.await.unwrap();
    let bye = records(&b.log, "bye");
    assert_eq!(bye.len(), 1, "published before the listener returned");
    assert_eq!(bye[0].value.as_deref(), Some(&b"down"[..]));
    let deadline = tokio::time::Instant::now() + WAIT;
    while records(&b.log, "status").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delayed will not published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
