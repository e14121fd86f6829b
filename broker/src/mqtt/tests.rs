//! End-to-end tests of the MQTT listener: `run` on 127.0.0.1:0 over a real log in a temporary
//! directory, driven by rumqttc's client and by raw sockets for what a well-behaved client never
//! sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, LastWill, Packet, PubRel, Publish, Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::QoS;
use rumqttc::{AsyncClient, Event, MqttOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::codec::{Codec, Frame};
use super::{run, MqttContext};
use crate::config::{MqttSection, Route, RouteKey};
use crate::ingest::Ingest;
use crate::log::{Log, LogOptions, NewRecord, StoredRecord};
use crate::plugin::IngestPlugins;

#[path = "tests_v5.rs"]
mod v5;

#[path = "tests_sessions.rs"]
mod sessions;

#[path = "tests_auth.rs"]
mod auth;

#[path = "tests_shared.rs"]
mod shared;

#[path = "tests_parking.rs"]
mod parking;

const WAIT: Duration = Duration::from_secs(10);

struct Broker {
    addr: SocketAddr,
    log: Log,
    ctx: MqttContext,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// Saves share group positions, as the broker does.
    saver: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(section: MqttSection) -> Broker {
    start_with(section, 64 * 1024 * 1024).await
}

async fn start_with(section: MqttSection, max_disk_bytes: u64) -> Broker {
    serve(tempfile::tempdir().unwrap(), &section, max_disk_bytes).await
}

/// A broker on the log in `dir`.
async fn serve(dir: tempfile::TempDir, section: &MqttSection, max_disk_bytes: u64) -> Broker {
    let log = Log::open(&LogOptions::for_tests(dir.path(), max_disk_bytes)).unwrap();
    let ingest = Ingest::new(log.clone(), Arc::new(IngestPlugins::default()));
    let ctx = MqttContext::new(ingest, section).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let saver = tokio::spawn(ctx.clone().run_share_saver(shutdown.clone()));
    let task = tokio::spawn(run(listener, ctx.clone(), shutdown.clone()));
    Broker {
        addr,
        log,
        ctx,
        shutdown,
        task,
        saver,
        _dir: dir,
    }
}

/// Stops the broker, closes its log and starts a new broker on the same data directory.
async fn reopen(b: Broker, section: MqttSection) -> Broker {
    let Broker {
        log,
        ctx,
        shutdown,
        task,
        saver,
        _dir: dir,
        ..
    } = b;
    shutdown.cancel();
    task.await.unwrap();
    saver.await.unwrap();
    // The context holds the log too: both go before it is opened again.
    drop(ctx);
    log.close().await;
    serve(dir, &section, 64 * 1024 * 1024).await
}

fn records(log: &Log, topic: &str) -> Vec<StoredRecord> {
    let Some(t) = log.topic(topic) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for p in &t.partitions {
        let mut at = 0;
        while at < p.high_watermark() {
            let got = log.read_records(p, at, 1 << 20).unwrap();
            at = got.last().map_or(p.high_watermark(), |r| r.offset + 1);
            all.extend(got);
        }
    }
    all
}

fn header<'a>(r: &'a StoredRecord, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

/// A rumqttc client whose event loop runs in a task; events arrive on the channel.
struct Client {
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, String>>,
    /// Publishes that arrived while waiting for something else (a client's own publish can be
    /// delivered back before its PUBACK): `next_publish` takes these first.
    stash: std::collections::VecDeque<Publish>,
}

async fn client(addr: SocketAddr, id: &str, manual_acks: bool) -> Client {
    let mut options = MqttOptions::new(id, "127.0.0.1", addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_manual_acks(manual_acks);
    connect(options).await.0
}

/// Connects a rumqttc 3.1.1 client; returns it with its CONNACK.
async fn connect(options: MqttOptions) -> (Client, rumqttc::ConnAck) {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (tx, events) = mpsc::channel(1000);
    tokio::spawn(async move {
        loop {
            let event = eventloop.poll().await.map_err(|e| e.to_string());
            let failed = event.is_err();
            if tx.send(event).await.is_err() || failed {
                break;
            }
        }
    });
    let mut c = Client {
        client,
        events,
        stash: Default::default(),
    };
    match c.expect(|p| matches!(p, Packet::ConnAck(_))).await {
        Packet::ConnAck(ack) => (c, ack),
        other => unreachable!("expect returned {other:?}"),
    }
}

impl Client {
    /// The next incoming packet satisfying `want` (others are skipped).
    async fn expect(&mut self, want: impl Fn(&Packet) -> bool) -> Packet {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(Event::Incoming(p))) if want(&p) => return p,
                    Some(Ok(Event::Incoming(Packet::Publish(p)))) => self.stash.push_back(p),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("client failed: {e}"),
                    None => panic!("client event loop ended"),
                }
            }
        })
        .await;
        found.expect("timed out waiting for a packet")
    }

    async fn next_publish(&mut self) -> Publish {
        if let Some(p) = self.stash.pop_front() {
            return p;
        }
        match self.expect(|p| matches!(p, Packet::Publish(_))).await {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.client.subscribe(filter, qos).await.unwrap();
        match self.expect(|p| matches!(p, Packet::SubAck(_))).await {
            Packet::SubAck(s) => s.return_codes,
            _ => unreachable!(),
        }
    }

    async fn publish_acked(&mut self, topic: &str, qos: QoS, payload: &str) {
        self.client
            .publish(topic, qos, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.expect(|p| matches!(p, Packet::PubAck(_))).await;
            }
            QoS::ExactlyOnce => {
                self.expect(|p| matches!(p, Packet::PubComp(_))).await;
            }
        }
    }

    /// No publish arrives within `wait`.
    async fn quiet(&mut self, wait: Duration) {
        assert!(self.stash.is_empty(), "unexpected publish {:?}", self.stash);
        let got = tokio::time::timeout(wait, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(Event::Incoming(Packet::Publish(p)))) => return p,
                    Some(Ok(_)) => {}
                    other => panic!("client ended: {other:?}"),
                }
            }
        })
        .await;
        if let Ok(p) = got {
            panic!("unexpected publish {p:?}");
        }
    }
}

/// A raw MQTT socket, for what rumqttc will not send.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn open(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn connected(addr: SocketAddr, id: &str, keep_alive: u16) -> Raw {
        let mut c = Connect::new(id);
        c.keep_alive = keep_alive;
        Raw::accepted(addr, c).await
    }

    /// A 3.1.1 client with a will (no keep-alive).
    async fn connected_with_will(addr: SocketAddr, id: &str, will: LastWill) -> Raw {
        let mut c = Connect::new(id);
        c.last_will = Some(will);
        Raw::accepted(addr, c).await
    }

    /// Connects with `connect` and expects a successful CONNACK.
    async fn accepted(addr: SocketAddr, connect: Connect) -> Raw {
        let mut raw = Raw::open(addr).await;
        raw.send(Packet::Connect(connect)).await;
        match raw.recv().await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        raw
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        Codec::new(1 << 20).encode(&packet, &mut out).unwrap();
        self.send_bytes(&out).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        // The broker may already have closed: a failed write shows up as EOF in `recv`.
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next packet, or `None` once the broker closed the connection.
    async fn recv(&mut self) -> Option<Packet> {
        let codec = Codec::new(1 << 24);
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(Frame::Packet(p)) = codec.decode(&mut self.buf).unwrap() {
                    return Some(p);
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

    async fn expect_closed(&mut self) {
        while let Some(p) = self.recv().await {
            assert!(
                !matches!(p, Packet::PubAck(_) | Packet::PubRec(_)),
                "unexpected ack {p:?}"
            );
        }
    }
}

fn publish(topic: &str, qos: QoS, pkid: u16, payload: &[u8]) -> Packet {
    let mut p = Publish::new(topic, qos, payload.to_vec());
    p.pkid = pkid;
    Packet::Publish(p)
}

#[tokio::test]
async fn publishes_land_in_the_right_log_topic_with_key_and_headers() {
    let section = MqttSection {
        routes: vec![Route {
            filter: "plant/+/temp".into(),
            topic: "temps".into(),
            key: RouteKey::Level(2),
        }],
        ..MqttSection::default()
    };
    let b = start(section).await;
    let mut c = client(b.addr, "pub1", false).await;
    c.publish_acked("sensors/dev2/hum", QoS::AtMostOnce, "40")
        .await;
    c.publish_acked("sensors/dev1/temp", QoS::AtLeastOnce, "21.5")
        .await;
    c.publish_acked("plant/a/temp", QoS::AtLeastOnce, "30")
        .await;
    c.publish_acked("caf\u{e9} 1/x", QoS::ExactlyOnce, "q2")
        .await;

    // The QoS 0 publish was sent before the acked one, and the log keeps the client's order.
    let sensors = records(&b.log, "sensors");
    assert_eq!(sensors.len(), 2);
    let temp = sensors
        .iter()
        .find(|r| r.key.as_deref() == Some(&b"sensors/dev1/temp"[..]))
        .expect("record keyed by its MQTT topic");
    assert_eq!(temp.value.as_deref(), Some(&b"21.5"[..]));
    assert_eq!(header(temp, "mqtt.topic"), Some(&b"sensors/dev1/temp"[..]));
    assert_eq!(header(temp, "mqtt.qos"), Some(&b"1"[..]));
    let hum = sensors
        .iter()
        .find(|r| r.key.as_deref() == Some(&b"sensors/dev2/hum"[..]))
        .unwrap();
    assert_eq!(header(hum, "mqtt.qos"), Some(&b"0"[..]));

    let routed = records(&b.log, "temps");
    assert_eq!(routed.len(), 1);
    assert_eq!(header(&routed[0], "mqtt.topic"), Some(&b"plant/a/temp"[..]));
    assert_eq!(
        routed[0].key.as_deref(),
        Some(&b"a"[..]),
        "the route's key: level 2"
    );
    assert!(
        b.log.topic("plant").is_none(),
        "a routed topic is not also written by level"
    );

    let odd = records(&b.log, "caf__1");
    assert_eq!(odd.len(), 1);
    assert_eq!(header(&odd[0], "mqtt.qos"), Some(&b"2"[..]));
}

#[tokio::test]
async fn wildcard_subscribers_receive_others_publishes_once_at_the_best_qos() {
    let b = start(MqttSection::default()).await;
    let mut plus = client(b.addr, "sub-plus", false).await;
    let mut all = client(b.addr, "sub-all", false).await;
    assert_eq!(
        plus.subscribe("sensors/+/temp", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // Overlapping filters: each message still arrives once, at the higher QoS.
    all.subscribe("#", QoS::AtMostOnce).await;
    all.subscribe("sensors/#", QoS::ExactlyOnce).await;

    let mut p = client(b.addr, "pub", false).await;
    p.publish_acked("sensors/d1/temp", QoS::AtLeastOnce, "1")
        .await;
    p.publish_acked("sensors/d1/hum", QoS::ExactlyOnce, "2")
        .await;
    p.publish_acked("other/x", QoS::AtMostOnce, "3").await;
    p.publish_acked("sensors/d2/temp", QoS::AtMostOnce, "4")
        .await;

    let got = plus.next_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("sensors/d1/temp", &b"1"[..])
    );
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let got = plus.next_publish().await;
    assert_eq!(got.topic, "sensors/d2/temp");
    assert_eq!(got.qos, QoS::AtMostOnce, "capped by the publish QoS");

    let mut seen = Vec::new();
    for _ in 0..4 {
        let m = all.next_publish().await;
        seen.push((m.topic.clone(), m.qos));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            ("other/x".to_string(), QoS::AtMostOnce),
            ("sensors/d1/hum".to_string(), QoS::ExactlyOnce),
            ("sensors/d1/temp".to_string(), QoS::AtLeastOnce),
            ("sensors/d2/temp".to_string(), QoS::AtMostOnce),
        ]
    );
    all.quiet(Duration::from_millis(300)).await;
    plus.quiet(Duration::from_millis(100)).await;

    // After UNSUBSCRIBE nothing more arrives for that filter.
    plus.client.unsubscribe("sensors/+/temp").await.unwrap();
    plus.expect(|p| matches!(p, Packet::UnsubAck(_))).await;
    p.publish_acked("sensors/d3/temp", QoS::AtLeastOnce, "5")
        .await;
    assert_eq!(all.next_publish().await.topic, "sensors/d3/temp");
    plus.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn invalid_filters_get_a_failure_code_in_suback() {
    let b = start(MqttSection::default()).await;
    // rumqttc will not send an invalid filter, so this one is raw.
    let mut raw = Raw::connected(b.addr, "bad-filter", 0).await;
    let mut s = Subscribe::new("a/#/b", QoS::AtLeastOnce);
    s.pkid = 3;
    s.add("ok/+".into(), QoS::ExactlyOnce);
    s.add("sport+".into(), QoS::AtMostOnce);
    raw.send(Packet::Subscribe(s)).await;
    match raw.recv().await {
        Some(Packet::SubAck(a)) => {
            assert_eq!(a.pkid, 3);
            assert_eq!(
                a.return_codes,
                vec![
                    SubscribeReasonCode::Failure,
                    SubscribeReasonCode::Success(QoS::ExactlyOnce),
                    SubscribeReasonCode::Failure
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    // The valid filter works.
    let mut p = client(b.addr, "pub", false).await;
    p.publish_acked("ok/1", QoS::AtMostOnce, "v").await;
    match raw.recv().await {
        Some(Packet::Publish(m)) => assert_eq!(m.topic, "ok/1"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn subscribers_see_only_what_is_appended_after_they_subscribe() {
    let b = start(MqttSection::default()).await;
    let mut p = client(b.addr, "pub", false).await;
    p.publish_acked("early/x", QoS::AtLeastOnce, "before").await;
    let mut s = client(b.addr, "sub", false).await;
    s.subscribe("early/#", QoS::AtLeastOnce).await;
    p.publish_acked("early/x", QoS::AtLeastOnce, "after").await;
    assert_eq!(&s.next_publish().await.payload[..], b"after");
}

#[tokio::test]
async fn records_written_like_a_kafka_producer_reach_subscribers_of_the_log_topic() {
    let b = start(MqttSection::default()).await;
    let mut exact = client(b.addr, "exact", false).await;
    let mut plus = client(b.addr, "plus", false).await;
    let mut below = client(b.addr, "below", false).await;
    exact.subscribe("alerts", QoS::ExactlyOnce).await;
    plus.subscribe("+", QoS::AtMostOnce).await;
    below.subscribe("alerts/#", QoS::AtLeastOnce).await;

    // The topic does not exist yet when they subscribe: it is created by this append.
    let topic = b.log.topic_for_write("alerts").await.unwrap();
    let record = NewRecord {
        timestamp: 1,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"fire")),
        headers: vec![],
    };
    b.log
        .append_records(&topic.partitions[1], &[record])
        .await
        .unwrap();

    let m = exact.next_publish().await;
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("alerts", &b"fire"[..]));
    assert_eq!(m.qos, QoS::AtLeastOnce, "Kafka records count as QoS 1");
    assert_eq!(plus.next_publish().await.qos, QoS::AtMostOnce);
    assert_eq!(below.next_publish().await.topic, "alerts");
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let b = start(MqttSection::default()).await;
    let mut good = client(b.addr, "good", false).await;
    good.subscribe("t/#", QoS::AtLeastOnce).await;

    let mut garbage = Raw::open(b.addr).await;
    garbage
        .send_bytes(b"\xff\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n")
        .await;
    garbage.expect_closed().await;

    let mut not_connect = Raw::open(b.addr).await;
    not_connect.send(Packet::PingReq).await;
    not_connect.expect_closed().await;

    let mut half = Raw::connected(b.addr, "half", 0).await;
    half.send_bytes(b"\x32\x09\x00\x03t/b").await; // half a PUBLISH, completed by junk:
    half.send_bytes(b"\x00\x00\x00\x00\x00\x00\x00").await; // packet id 0, then type 0
    half.expect_closed().await;

    let mut wildcard = Raw::connected(b.addr, "wild", 0).await;
    wildcard
        .send(publish("t/+", QoS::AtLeastOnce, 1, b"x"))
        .await;
    wildcard.expect_closed().await;

    let mut server_packet = Raw::connected(b.addr, "srv", 0).await;
    server_packet.send(Packet::PingResp).await;
    server_packet.expect_closed().await;

    // A SUBSCRIBE without its reserved 0b0010 fixed-header flags.
    let mut flags = Raw::connected(b.addr, "flags", 0).await;
    flags.send_bytes(b"\x80\x08\x00\x01\x00\x03a/+\x01").await;
    flags.expect_closed().await;

    let mut p = client(b.addr, "pub", false).await;
    p.publish_acked("t/ok", QoS::AtLeastOnce, "still fine")
        .await;
    assert_eq!(&good.next_publish().await.payload[..], b"still fine");
}

#[tokio::test]
async fn oversized_packets_close_the_connection() {
    let b = start(MqttSection {
        max_packet_bytes: 1024,
        ..MqttSection::default()
    })
    .await;
    let mut raw = Raw::connected(b.addr, "big", 0).await;
    raw.send(publish("t", QoS::AtLeastOnce, 1, &[7u8; 2000]))
        .await;
    raw.expect_closed().await;
    assert!(records(&b.log, "t").is_empty());
    let mut ok = Raw::connected(b.addr, "small", 0).await;
    ok.send(publish("t", QoS::AtLeastOnce, 1, &[7u8; 900]))
        .await;
    assert!(matches!(ok.recv().await, Some(Packet::PubAck(_))));
}

#[tokio::test]
async fn other_protocol_versions_get_a_refusing_connack() {
    let b = start(MqttSection::default()).await;
    for connect in [
        &b"\x10\x0e\x00\x04MQTT\x06\x02\x00\x3c\x00\x02hw"[..], // unknown level
        b"\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02hw",    // MQTT 3.1
    ] {
        let mut raw = Raw::open(b.addr).await;
        raw.send_bytes(connect).await;
        match raw.recv().await {
            Some(Packet::ConnAck(a)) => {
                assert_eq!(a.code, ConnectReturnCode::RefusedProtocolVersion)
            }
            other => panic!("expected a refusing CONNACK, got {other:?}"),
        }
        assert!(raw.recv().await.is_none(), "connection must close");
    }
}

#[tokio::test]
async fn empty_client_ids_are_generated_only_for_clean_sessions() {
    let b = start(MqttSection::default()).await;
    let mut ok = Raw::connected(b.addr, "", 0).await;
    ok.send(Packet::PingReq).await;
    assert_eq!(ok.recv().await, Some(Packet::PingResp));

    let mut raw = Raw::open(b.addr).await;
    let mut c = Connect::new("");
    c.clean_session = false;
    raw.send(Packet::Connect(c)).await;
    match raw.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::BadClientId),
        other => panic!("{other:?}"),
    }
    assert!(raw.recv().await.is_none());
}

#[tokio::test]
async fn qos2_is_stored_once_per_packet_id_until_pubrel() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw::connected(b.addr, "q2", 0).await;
    raw.send(publish("q/2", QoS::ExactlyOnce, 7, b"once")).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    // A resend (no PUBREL yet) is acknowledged, not stored again.
    let mut again = Publish::new("q/2", QoS::ExactlyOnce, b"once".to_vec());
    again.pkid = 7;
    again.dup = true;
    raw.send(Packet::Publish(again)).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    raw.send(Packet::PubRel(PubRel::new(7))).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubComp(c)) if c.pkid == 7));
    assert_eq!(records(&b.log, "q").len(), 1);
    // After PUBREL the id is free for a new message.
    raw.send(publish("q/2", QoS::ExactlyOnce, 7, b"second"))
        .await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRec(_))));
    assert_eq!(records(&b.log, "q").len(), 2);
}

#[tokio::test]
async fn a_slow_subscriber_stops_at_max_inflight() {
    let b = start(MqttSection {
        max_inflight: 5,
        ..MqttSection::default()
    })
    .await;
    let mut slow = client(b.addr, "slow", true).await;
    slow.subscribe("load/#", QoS::AtLeastOnce).await;
    let mut p = client(b.addr, "pub", false).await;
    for i in 0..20 {
        p.publish_acked("load/x", QoS::AtLeastOnce, &i.to_string())
            .await;
    }
    let mut held = Vec::new();
    for i in 0..5 {
        let m = slow.next_publish().await;
        assert_eq!(&m.payload[..], i.to_string().as_bytes());
        held.push(m);
    }
    slow.quiet(Duration::from_millis(500)).await;
    // Each ack opens the window by one.
    slow.client.ack(&held[0]).await.unwrap();
    assert_eq!(&slow.next_publish().await.payload[..], b"5");
    slow.quiet(Duration::from_millis(300)).await;
    for m in &held[1..] {
        slow.client.ack(m).await.unwrap();
    }
    for i in 6..10 {
        assert_eq!(
            &slow.next_publish().await.payload[..],
            i.to_string().as_bytes()
        );
    }
}

#[tokio::test]
async fn silent_clients_are_closed_after_one_and_a_half_keep_alives() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw::connected(b.addr, "sleepy", 1).await;
    let started = std::time::Instant::now();
    assert!(raw.recv().await.is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_second_connection_with_the_same_id_takes_over() {
    let b = start(MqttSection::default()).await;
    let mut first = Raw::connected(b.addr, "same", 0).await;
    let mut second = Raw::connected(b.addr, "same", 0).await;
    assert!(first.recv().await.is_none());
    second.send(Packet::PingReq).await;
    assert_eq!(second.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn a_full_log_closes_the_connection_without_acking() {
    // A tiny data directory fills after a few publishes.
    let b = start_with(MqttSection::default(), 2 * 1024 * 1024).await;
    let mut raw = Raw::connected(b.addr, "filler", 0).await;
    let mut acked = 0;
    let mut closed = false;
    for id in 1..=100u16 {
        raw.send(publish("fill/x", QoS::AtLeastOnce, id, &[1u8; 200 * 1024]))
            .await;
        match raw.recv().await {
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.pkid, id);
                acked += 1;
            }
            None => {
                closed = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(closed, "the log never filled");
    assert_eq!(
        records(&b.log, "fill").len(),
        acked,
        "every ack is a stored record"
    );
    // The broker itself keeps serving.
    let mut other = Raw::connected(b.addr, "other", 0).await;
    other.send(Packet::PingReq).await;
    assert_eq!(other.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn pipelined_publishes_are_acked_in_order_and_stored_in_order() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw::connected(b.addr, "burst", 0).await;
    let mut wire = BytesMut::new();
    let codec = Codec::new(1 << 20);
    for id in 1..=300u16 {
        let topic = if id % 50 == 0 {
            "burst/other"
        } else {
            "burst/x"
        };
        codec
            .encode(
                &publish(topic, QoS::AtLeastOnce, id, id.to_string().as_bytes()),
                &mut wire,
            )
            .unwrap();
    }
    raw.send_bytes(&wire).await;
    for id in 1..=300u16 {
        match raw.recv().await {
            Some(Packet::PubAck(a)) => assert_eq!(a.pkid, id),
            other => panic!("{other:?}"),
        }
    }
    let stored = records(&b.log, "burst");
    assert_eq!(stored.len(), 300);
    let mut x: Vec<(i64, u16)> = stored
        .iter()
        .filter(|r| r.key.as_deref() == Some(&b"burst/x"[..]))
        .map(|r| {
            let v = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
            (r.offset, v.parse().unwrap())
        })
        .collect();
    x.sort();
    let values: Vec<u16> = x.iter().map(|(_, v)| *v).collect();
    let mut sorted = values.clone();
    sorted.sort();
    assert_eq!(
        values, sorted,
        "one topic's records keep the client's order"
    );
}

#[tokio::test]
async fn shutdown_stops_the_listener_and_closes_connections() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw::connected(b.addr, "stay", 0).await;
    raw.send(Packet::Subscribe(Subscribe::new("x", QoS::AtMostOnce)))
        .await;
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    b.shutdown.cancel();
    assert!(raw.recv().await.is_none());
    tokio::time::timeout(WAIT, b.task)
        .await
        .expect("run returns after shutdown")
        .unwrap();
    assert!(TcpStream::connect(b.addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_a_slot_frees() {
    let b = start(MqttSection {
        max_connections: 1,
        ..MqttSection::default()
    })
    .await;
    let first = Raw::connected(b.addr, "first", 0).await;
    // The kernel completes the TCP handshake, but the broker does not accept it yet.
    let mut second = Raw::open(b.addr).await;
    second.send(Packet::Connect(Connect::new("second"))).await;
    let early = tokio::time::timeout(Duration::from_millis(300), second.recv()).await;
    assert!(early.is_err(), "served beyond max_connections: {early:?}");
    drop(first);
    match second.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn qos0_publishes_followed_by_disconnect_are_all_stored() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw::connected(b.addr, "fire-and-forget", 0).await;
    let mut wire = BytesMut::new();
    let codec = Codec::new(1 << 20);
    for i in 0..500u32 {
        codec
            .encode(
                &publish("ff/x", QoS::AtMostOnce, 0, &i.to_be_bytes()),
                &mut wire,
            )
            .unwrap();
    }
    codec.encode(&Packet::Disconnect, &mut wire).unwrap();
    raw.send_bytes(&wire).await;
    drop(raw);
    let deadline = tokio::time::Instant::now() + WAIT;
    while records(&b.log, "ff").len() < 500 {
        let n = records(&b.log, "ff").len();
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes lost on DISCONNECT: {n} of 500 stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(records(&b.log, "ff").len(), 500);
}

/// A quiet connection reads its next bytes through a small buffer on its stack (see
/// `connection::idle`): a large publish arriving in pieces after a quiet stretch, and a
/// publish after another quiet stretch, are still stored whole and acked.
#[tokio::test]
async fn a_quiet_connection_takes_a_large_publish_in_pieces() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw::connected(b.addr, "quiet", 0).await;
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut bytes = BytesMut::new();
    Codec::new(1 << 20)
        .encode(
            &publish("quiet/big", QoS::AtLeastOnce, 7, &payload),
            &mut bytes,
        )
        .unwrap();
    for piece in [&bytes[..3], &bytes[3..50], &bytes[50..5000], &bytes[5000..]] {
        tokio::time::sleep(Duration::from_millis(30)).await;
        raw.send_bytes(piece).await;
    }
    match raw.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.pkid, 7),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // Past the quiet stretch before idling (200 ms), so this one is read while idle too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw.send(publish("quiet/big", QoS::AtLeastOnce, 8, b"small"))
        .await;
    match raw.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.pkid, 8),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let stored = records(&b.log, "quiet");
    let payloads: Vec<&[u8]> = stored.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(payloads, [&payload[..], b"small"]);
}

/// QoS 0 batches are not held to the few appends in flight that owe acks (they need not wait
/// for each other's commits): mixed with QoS 1 ones they still land in the client's order, and
/// the QoS 1 ones are acked in order.
#[tokio::test]
async fn qos0_and_qos1_publishes_in_a_burst_keep_their_order() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw::connected(b.addr, "mixed", 0).await;
    let codec = Codec::new(1 << 20);
    let mut wire = BytesMut::new();
    let mut acked = Vec::new();
    for i in 1..=2000u16 {
        // Runs of QoS 0 with a QoS 1 publish now and then, some large enough to split batches.
        let (qos, pkid) = if i % 97 == 0 {
            acked.push(i);
            (QoS::AtLeastOnce, i)
        } else {
            (QoS::AtMostOnce, 0)
        };
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(if i % 13 == 0 { 40_000 } else { 2 }, 0);
        codec
            .encode(&publish("mixed/x", qos, pkid, &payload), &mut wire)
            .unwrap();
    }
    raw.send_bytes(&wire).await;
    for id in &acked {
        match raw.recv().await {
            Some(Packet::PubAck(a)) => assert_eq!(a.pkid, *id),
            other => panic!("{other:?}"),
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while records(&b.log, "mixed").len() < 2000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "QoS 0 publishes lost"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let order: Vec<u16> = records(&b.log, "mixed")
        .iter()
        .map(|r| {
            let v = r.value.as_deref().unwrap();
            u16::from_be_bytes([v[0], v[1]])
        })
        .collect();
    assert_eq!(order, (1..=2000).collect::<Vec<u16>>());
}

/// A window of QoS 1 publishes that the client sent in one go is made durable by one commit,
/// not one per socket read: the connection reads what is waiting before it commits (without
/// that, 200 publishes took 3 commits, the first one for the 512 bytes of an idle read).
#[tokio::test]
async fn a_window_sent_at_once_is_committed_together() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw::connected(b.addr, "window", 0).await;
    // The first publish creates the log topic (its own commits).
    raw.send(publish("window/x", QoS::AtLeastOnce, 1, b"first"))
        .await;
    assert!(matches!(raw.recv().await, Some(Packet::PubAck(_))));
    let before = b.log.commit_counts();
    let codec = Codec::new(1 << 20);
    let mut wire = BytesMut::new();
    for pkid in 2..=201u16 {
        let payload = [b'x'; 100];
        codec
            .encode(
                &publish("window/x", QoS::AtLeastOnce, pkid, &payload),
                &mut wire,
            )
            .unwrap();
    }
    raw.send_bytes(&wire).await;
    for pkid in 2..=201u16 {
        match raw.recv().await {
            Some(Packet::PubAck(a)) => assert_eq!(a.pkid, pkid),
            other => panic!("expected PUBACK {pkid}, got {other:?}"),
        }
    }
    let after = b.log.commit_counts();
    assert_eq!(after.records - before.records, 200);
    // One commit; two if the 22 KB arrived in two parts.
    assert!(
        after.commits - before.commits <= 2,
        "{} commits for one window",
        after.commits - before.commits
    );
}

/// Twenty QoS 0 publishes to `topic`, encoded.
fn twenty_publishes(topic: &str) -> BytesMut {
    let codec = Codec::new(1 << 20);
    let mut wire = BytesMut::new();
    for i in 0..20u8 {
        codec
            .encode(&publish(topic, QoS::AtMostOnce, 0, &[i]), &mut wire)
            .unwrap();
    }
    wire
}

/// Waits until `topic` holds `n` records; fails after [`WAIT`].
async fn wait_for_records(log: &Log, topic: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = records(log, topic).len();
        if stored == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stored} of {n} publishes read before the connection failed were stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes the broker has read reach the log even when the connection fails right after
/// them: here the client resets it (RST) behind its last publishes, and the read that would
/// have taken more fails instead.
#[tokio::test]
async fn publishes_read_before_a_reset_are_stored() {
    let b = start(MqttSection::default()).await;
    let mut stream = Raw::connected(b.addr, "reset", 0).await.stream;
    stream
        .write_all(&twenty_publishes("reset/x"))
        .await
        .unwrap();
    stream.set_zero_linger().unwrap();
    drop(stream);
    wait_for_records(&b.log, "reset", 20).await;
}

/// The same when a malformed packet follows them: it closes the connection, after them.
#[tokio::test]
async fn publishes_before_a_malformed_packet_are_stored() {
    let b = start(MqttSection::default()).await;
    let mut raw = Raw::connected(b.addr, "garbled", 0).await;
    let mut wire = twenty_publishes("garbled/x");
    // Packet type 0 is reserved.
    wire.extend_from_slice(&[0x00, 0x00]);
    raw.send_bytes(&wire).await;
    assert!(raw.recv().await.is_none(), "the connection is closed");
    wait_for_records(&b.log, "garbled", 20).await;
}

#[tokio::test]
async fn qos0_records_reach_every_311_subscriber_as_the_same_plain_publish() {
    let b = start(MqttSection::default()).await;
    let mut subs = Vec::new();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let mut raw = Raw::connected(b.addr, &format!("fan-{i}"), 0).await;
        let mut s = Subscribe::new("fan/#", qos);
        s.pkid = 1;
        raw.send(Packet::Subscribe(s)).await;
        assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
        subs.push(raw);
    }
    let mut publisher = Raw::connected(b.addr, "fan-pub", 0).await;
    let mut retained = Publish::new("fan/a", QoS::AtMostOnce, b"one".to_vec());
    retained.retain = true;
    publisher.send(Packet::Publish(retained)).await;
    publisher
        .send(publish("fan/b", QoS::AtMostOnce, 0, b"two"))
        .await;
    for sub in &mut subs {
        for (topic, payload) in [("fan/a", &b"one"[..]), ("fan/b", &b"two"[..])] {
            match sub.recv().await {
                Some(Packet::Publish(p)) => {
                    assert_eq!((p.topic.as_str(), &p.payload[..]), (topic, payload));
                    // Live deliveries to 3.1.1 clients carry no retain flag (§3.3.1.3).
                    assert_eq!(
                        (p.qos, p.retain, p.pkid, p.dup),
                        (QoS::AtMostOnce, false, 0, false)
                    );
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }
}
