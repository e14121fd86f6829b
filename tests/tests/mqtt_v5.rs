//! MQTT 5 end to end with real clients: rumqttc's v5 client, rumqttc's 3.1.1 client and a Kafka
//! consumer (the rdkafka crate, librdkafka) on the same broker.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use headwater_tests::InProcess;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// A rumqttc v5 client whose event loop runs in a task; incoming packets arrive on the channel.
struct V5 {
    client: AsyncClient,
    incoming: mpsc::Receiver<Packet>,
}

async fn v5(id: &str, hw: &InProcess, configure: impl FnOnce(&mut MqttOptions)) -> V5 {
    let mut options = MqttOptions::new(id, "127.0.0.1", hw.mqtt().port());
    options.set_keep_alive(Duration::from_secs(30));
    configure(&mut options);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let (tx, incoming) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(p).await.is_err() {
                        break;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    eprintln!("v5 event loop ended: {e}");
                    break;
                }
            }
        }
    });
    let mut c = V5 { client, incoming };
    c.expect(|p| matches!(p, Packet::ConnAck(_))).await;
    c
}

impl V5 {
    async fn expect(&mut self, want: impl Fn(&Packet) -> bool) -> Packet {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.incoming.recv().await {
                    Some(p) if want(&p) => return p,
                    Some(_) => {}
                    None => panic!("v5 client ended"),
                }
            }
        })
        .await
        .expect("timed out waiting for a packet")
    }

    async fn next_publish(&mut self) -> Publish {
        match self.expect(|p| matches!(p, Packet::Publish(_))).await {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    async fn subscribe(&mut self, filter: Filter) {
        self.client.subscribe_many([filter]).await.unwrap();
        self.expect(|p| matches!(p, Packet::SubAck(_))).await;
    }

    /// No publish arrives within `wait`.
    async fn quiet(&mut self, wait: Duration) {
        let got = tokio::time::timeout(wait, async {
            loop {
                match self.incoming.recv().await {
                    Some(Packet::Publish(p)) => return p,
                    Some(_) => {}
                    None => std::future::pending().await,
                }
            }
        })
        .await;
        if let Ok(p) = got {
            panic!("unexpected publish {p:?}");
        }
    }
}

fn properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(600),
        response_topic: Some("cmd/reply".into()),
        correlation_data: Some(Bytes::from_static(b"req-42")),
        user_properties: vec![
            ("unit".into(), "celsius".into()),
            ("site".into(), "north".into()),
        ],
        content_type: Some("application/json".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_user_properties_reach_a_kafka_consumer_as_headers() {
    let hw = InProcess::start().await;
    let mut c = v5("probe-1", &hw, |_| {}).await;
    c.client
        .publish_with_properties(
            "sensors/probe-1/temp",
            QoS::AtLeastOnce,
            false,
            "{\"t\":21.5}",
            properties(),
        )
        .await
        .unwrap();
    c.expect(|p| matches!(p, Packet::PubAck(_))).await;

    let kafka = hw.kafka();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "sensors", 1, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.value_str(), "{\"t\":21.5}");
    assert_eq!(r.key.as_deref(), Some(&b"sensors/probe-1/temp"[..]));
    assert_eq!(
        r.header("mqtt.topic").as_deref(),
        Some("sensors/probe-1/temp")
    );
    assert_eq!(r.header("mqtt.user.unit").as_deref(), Some("celsius"));
    assert_eq!(r.header("mqtt.user.site").as_deref(), Some("north"));
    assert_eq!(
        r.header("mqtt.content_type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        r.header("mqtt.response_topic").as_deref(),
        Some("cmd/reply")
    );
    assert_eq!(r.header("mqtt.correlation_data").as_deref(), Some("req-42"));
    assert_eq!(r.header("mqtt.payload_format").as_deref(), Some("1"));
    assert_eq!(r.header("mqtt.message_expiry").as_deref(), Some("600"));
    assert_eq!(r.header("mqtt.client_id").as_deref(), Some("probe-1"));
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_subscribers_get_the_properties_and_their_subscription_id_back() {
    let hw = InProcess::start().await;
    let mut sub = v5("dashboard", &hw, |_| {}).await;
    sub.client
        .subscribe_with_properties(
            "sensors/#",
            QoS::AtLeastOnce,
            rumqttc::v5::mqttbytes::v5::SubscribeProperties {
                id: Some(11),
                user_properties: Vec::new(),
            },
        )
        .await
        .unwrap();
    sub.expect(|p| matches!(p, Packet::SubAck(_))).await;

    let publisher = v5("probe-2", &hw, |_| {}).await;
    publisher
        .client
        .publish_with_properties(
            "sensors/probe-2/temp",
            QoS::AtLeastOnce,
            false,
            "22",
            properties(),
        )
        .await
        .unwrap();
    let got = sub.next_publish().await;
    assert_eq!(&got.topic[..], b"sensors/probe-2/temp");
    assert_eq!(&got.payload[..], b"22");
    let props = got.properties.expect("properties");
    assert_eq!(props.user_properties, properties().user_properties);
    assert_eq!(props.content_type, properties().content_type);
    assert_eq!(props.response_topic, properties().response_topic);
    assert_eq!(props.correlation_data, properties().correlation_data);
    assert_eq!(props.payload_format_indicator, Some(1));
    assert!(props
        .message_expiry_interval
        .is_some_and(|e| (598..=600).contains(&e)));
    assert_eq!(props.subscription_identifiers, vec![11]);

    // A record written by a Kafka producer reaches the v5 subscriber too.
    let producer = producer(&hw.kafka(), &[]);
    send(&producer, "sensors", "k", "from-kafka").await;
    let got = sub.next_publish().await;
    assert_eq!(&got.topic[..], b"sensors");
    assert_eq!(&got.payload[..], b"from-kafka");
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_and_v5_clients_interoperate() {
    let hw = InProcess::start().await;
    let (c4, loop4) = rumqttc::AsyncClient::new(mqtt_options("old-device", hw.mqtt()), 16);
    let (mut incoming4, mut acks4) = spawn_event_loop(loop4);
    c4.subscribe("to-old/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    wait_for_count(&mut acks4, 1).await;
    let mut c5 = v5("new-device", &hw, |_| {}).await;
    c5.subscribe(Filter::new("to-new/#", QoS::ExactlyOnce))
        .await;

    c5.client
        .publish_with_properties("to-old/x", QoS::AtLeastOnce, false, "hi old", properties())
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, incoming4.recv())
        .await
        .expect("delivery in time")
        .expect("event loop alive");
    assert_eq!(got.topic, "to-old/x");
    assert_eq!(&got.payload[..], b"hi old");

    c4.publish("to-new/y", rumqttc::QoS::ExactlyOnce, false, "hi new")
        .await
        .unwrap();
    let got = c5.next_publish().await;
    assert_eq!(&got.topic[..], b"to-new/y");
    assert_eq!(&got.payload[..], b"hi new");
    assert_eq!(got.qos, QoS::ExactlyOnce);
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_aliases_from_a_v5_client_are_resolved() {
    let hw = InProcess::start().await;
    let mut sub = v5("watcher", &hw, |_| {}).await;
    sub.subscribe(Filter::new("plant/#", QoS::AtLeastOnce))
        .await;
    let mut publisher = v5("aliaser", &hw, |_| {}).await;
    let alias = PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties(
            "plant/line-1/speed",
            QoS::AtLeastOnce,
            false,
            "1",
            alias.clone(),
        )
        .await
        .unwrap();
    publisher
        .client
        .publish_with_properties("", QoS::AtLeastOnce, false, "2", alias)
        .await
        .unwrap();
    for _ in 0..2 {
        publisher.expect(|p| matches!(p, Packet::PubAck(_))).await;
    }
    for want in ["1", "2"] {
        let got = sub.next_publish().await;
        assert_eq!(&got.topic[..], b"plant/line-1/speed");
        assert_eq!(&got.payload[..], want.as_bytes());
    }
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_subscriptions_do_not_echo_the_clients_own_publishes() {
    let hw = InProcess::start().await;
    let mut me = v5("chatter", &hw, |_| {}).await;
    let mut filter = Filter::new("room/#", QoS::AtLeastOnce);
    filter.nolocal = true;
    me.subscribe(filter).await;
    me.client
        .publish("room/1", QoS::AtLeastOnce, false, "mine")
        .await
        .unwrap();
    me.expect(|p| matches!(p, Packet::PubAck(_))).await;
    let other = v5("other", &hw, |_| {}).await;
    other
        .client
        .publish("room/1", QoS::AtLeastOnce, false, "theirs")
        .await
        .unwrap();
    let got = me.next_publish().await;
    assert_eq!(
        &got.payload[..],
        b"theirs",
        "the own publish is not delivered"
    );
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_receive_maximum_is_respected() {
    let hw = InProcess::start().await;
    let mut slow = v5("slow-reader", &hw, |o| {
        o.set_receive_maximum(Some(3));
        o.set_manual_acks(true);
    })
    .await;
    slow.subscribe(Filter::new("burst/#", QoS::AtLeastOnce))
        .await;
    let publisher = v5("burster", &hw, |_| {}).await;
    for i in 0..10 {
        publisher
            .client
            .publish("burst/x", QoS::AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
    let mut held = Vec::new();
    for i in 0..3 {
        let p = slow.next_publish().await;
        assert_eq!(p.payload, format!("m{i}").as_bytes());
        held.push(p);
    }
    slow.quiet(Duration::from_millis(500)).await;
    slow.client.ack(&held[0]).await.unwrap();
    assert_eq!(&slow.next_publish().await.payload[..], b"m3");
    slow.quiet(Duration::from_millis(300)).await;
    hw.broker.stop().await;
}
