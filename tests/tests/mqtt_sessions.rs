//! Persistent MQTT sessions across restarts of the broker process: a subscriber with
//! `clean_session = false` (rumqttc, and `mosquitto_sub -c -i ID`) gets the QoS 1 messages
//! published while it was away after the broker was stopped with SIGTERM (and after `kill -9`)
//! and started again on the same data directory.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use headwater_tests::{system_client, ChildBroker};
use rumqttc::mqttbytes::v4;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");
const WAIT: Duration = Duration::from_secs(20);

/// A rumqttc client with `clean_session = false`: the client, CONNACK's session present, and
/// its incoming packets.
async fn persistent(addr: SocketAddr, id: &str) -> (AsyncClient, bool, mpsc::Receiver<Packet>) {
    let mut options = mqtt_options(id, addr);
    options.set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (tx, mut rx) = mpsc::channel(1000);
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(p) = event {
                if tx.send(p).await.is_err() {
                    break;
                }
            }
        }
    });
    let present = match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(Packet::ConnAck(a))) => a.session_present,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    (client, present, rx)
}

async fn next(rx: &mut mpsc::Receiver<Packet>, want: impl Fn(&Packet) -> bool) -> Packet {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Some(p) if want(&p) => return p,
                Some(_) => {}
                None => panic!("client event loop ended"),
            }
        }
    })
    .await
    .expect("timed out")
}

async fn payloads(rx: &mut mpsc::Receiver<Packet>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        if let Packet::Publish(p) = next(rx, |p| matches!(p, Packet::Publish(_))).await {
            assert_eq!(p.qos, QoS::AtLeastOnce);
            out.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    out
}

/// Publishes QoS 1 messages from a fresh client and waits for their PUBACKs.
async fn publish(addr: SocketAddr, topic: &str, messages: &[&str]) {
    let (client, eventloop) = AsyncClient::new(mqtt_options("publisher", addr), 100);
    let (mut rx, mut acked) = spawn_event_loop(eventloop);
    for m in messages {
        client
            .publish(topic, QoS::AtLeastOnce, false, m.as_bytes().to_vec())
            .await
            .unwrap();
    }
    wait_for_count(&mut acked, messages.len()).await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
}

async fn leave(client: AsyncClient, mut rx: mpsc::Receiver<Packet>) {
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(WAIT, async { while rx.recv().await.is_some() {} }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_qos1_messages_of_a_persistent_session_survive_a_restart_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let addr = broker.addrs.mqtt.expect("mqtt listener");
    let (client, present, mut rx) = persistent(addr, "gateway-7").await;
    assert!(!present);
    client.subscribe("plant/#", QoS::AtLeastOnce).await.unwrap();
    next(&mut rx, |p| matches!(p, Packet::SubAck(_))).await;
    leave(client, rx).await;

    publish(addr, "plant/line1/temp", &["20.5", "20.7", "21.0"]).await;
    assert!(broker.terminate().success());

    let broker = ChildBroker::spawn(BIN, &data, "");
    let addr = broker.addrs.mqtt.expect("mqtt listener");
    let (client, present, mut rx) = persistent(addr, "gateway-7").await;
    assert!(present, "the session survived the restart");
    assert_eq!(payloads(&mut rx, 3).await, ["20.5", "20.7", "21.0"]);
    leave(client, rx).await;

    // kill -9 while the session is offline with messages queued: nothing is lost (what was
    // acknowledged before may come again: at least once).
    publish(addr, "plant/line2/temp", &["30.1", "30.2"]).await;
    broker.kill9();
    let broker = ChildBroker::spawn(BIN, &data, "");
    let addr = broker.addrs.mqtt.expect("mqtt listener");
    let (client, present, mut rx) = persistent(addr, "gateway-7").await;
    assert!(present);
    let got = payloads(&mut rx, 2).await;
    assert_eq!(
        got,
        ["30.1", "30.2"],
        "acked before the clean disconnect: not again"
    );

    // kill -9 while the session is connected: its cursors were saved within the save interval
    // after the acks, so what it acknowledged then is not delivered again, and what is
    // published after the restart arrives.
    publish(addr, "plant/line3/temp", &["40.0"]).await;
    assert_eq!(payloads(&mut rx, 1).await, ["40.0"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.kill9();
    drop((client, rx));
    let broker = ChildBroker::spawn(BIN, &data, "");
    let addr = broker.addrs.mqtt.expect("mqtt listener");
    publish(addr, "plant/line3/temp", &["41.0"]).await;
    let (client, present, mut rx) = persistent(addr, "gateway-7").await;
    assert!(present, "a session connected at the crash is kept");
    assert_eq!(payloads(&mut rx, 1).await, ["41.0"]);
    leave(client, rx).await;
    assert!(broker.terminate().success());
}

/// `mosquitto_sub -c -i mosq-keeper` on `farm/#` at QoS 1 with `extra` arguments; its output.
fn mosquitto_sub(bin: &std::path::Path, port: u16, extra: &[&str]) -> String {
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "-i", "mosq-keeper", "-t", "farm/#", "-q", "1"])
        .args(extra)
        .output()
        .expect("mosquitto_sub");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_with_a_persistent_session_gets_what_was_queued_across_a_restart() {
    let Some(sub_bin) = system_client("mosquitto_sub") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let port = broker.addrs.mqtt.expect("mqtt listener").port();
    // Subscribe and leave (-E: exit once subscribed).
    let bin = sub_bin.clone();
    tokio::task::spawn_blocking(move || mosquitto_sub(&bin, port, &["-E"]))
        .await
        .unwrap();
    publish(
        broker.addrs.mqtt.expect("mqtt listener"),
        "farm/barn",
        &["hay", "oats"],
    )
    .await;
    assert!(broker.terminate().success());

    let broker = ChildBroker::spawn(BIN, &data, "");
    let port = broker.addrs.mqtt.expect("mqtt listener").port();
    let got = tokio::task::spawn_blocking(move || {
        mosquitto_sub(&sub_bin, port, &["-C", "2", "-W", "20"])
    })
    .await
    .unwrap();
    assert_eq!(got.lines().collect::<Vec<_>>(), ["hay", "oats"]);
    assert!(broker.terminate().success());
}

/// A bare MQTT 3.1.1 socket (rumqttc's codec, no client logic): for sending a QoS 2 PUBLISH
/// again with the same packet id, or a PUBREL at a chosen moment, as a client does after a
/// reconnect.
struct RawMqtt {
    stream: tokio::net::TcpStream,
    buf: bytes::BytesMut,
}

impl RawMqtt {
    /// Connects with `clean_session = false` and returns CONNACK's session present.
    async fn persistent(addr: SocketAddr, id: &str) -> (RawMqtt, bool) {
        let mut raw = RawMqtt {
            stream: tokio::net::TcpStream::connect(addr).await.unwrap(),
            buf: bytes::BytesMut::new(),
        };
        let mut connect = v4::Connect::new(id);
        connect.clean_session = false;
        raw.send(v4::Packet::Connect(connect)).await;
        match raw.recv().await {
            v4::Packet::ConnAck(a) => {
                assert_eq!(a.code, v4::ConnectReturnCode::Success);
                (raw, a.session_present)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: v4::Packet) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        packet.write(&mut out, 1 << 20).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> v4::Packet {
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(WAIT, async {
            loop {
                match v4::Packet::read(&mut self.buf, 1 << 20) {
                    Ok(p) => return p,
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("bad packet from the broker: {e:?}"),
                }
                let n = self.stream.read_buf(&mut self.buf).await.unwrap();
                assert!(n > 0, "the broker closed the connection");
            }
        })
        .await
        .expect("timed out")
    }

    /// Sends a QoS 2 PUBLISH and expects its PUBREC.
    async fn publish_qos2(&mut self, topic: &str, pkid: u16, payload: &str, dup: bool) {
        let mut p = v4::Publish::new(topic, QoS::ExactlyOnce, payload.as_bytes().to_vec());
        p.pkid = pkid;
        p.dup = dup;
        self.send(v4::Packet::Publish(p)).await;
        match self.recv().await {
            v4::Packet::PubRec(r) if r.pkid == pkid => {}
            other => panic!("expected PUBREC {pkid}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_publish_is_stored_exactly_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let (mut raw, _) = RawMqtt::persistent(broker.addrs.mqtt.unwrap(), "q2-sensor").await;
    raw.publish_qos2("meter/1", 7, "first", false).await;
    // Killed before the PUBREL: the client has not seen the PUBREC as far as it knows, and
    // sends the message again on its next connection.
    broker.kill9();

    let broker = ChildBroker::spawn(BIN, &data, "");
    let (mut raw, present) = RawMqtt::persistent(broker.addrs.mqtt.unwrap(), "q2-sensor").await;
    assert!(present);
    raw.publish_qos2("meter/1", 7, "first", true).await;
    raw.send(v4::Packet::PubRel(v4::PubRel::new(7))).await;
    assert!(matches!(raw.recv().await, v4::Packet::PubComp(c) if c.pkid == 7));
    // Killed right after PUBCOMP: the client may now use id 7 for a new message, which must
    // not be taken for a resend of the first.
    broker.kill9();

    let broker = ChildBroker::spawn(BIN, &data, "");
    let (mut raw, _) = RawMqtt::persistent(broker.addrs.mqtt.unwrap(), "q2-sensor").await;
    raw.publish_qos2("meter/1", 7, "second", false).await;
    let kafka = broker.kafka();
    let got =
        tokio::task::spawn_blocking(move || consume(&kafka, "meter", 1, 3, Duration::from_secs(5)))
            .await
            .unwrap();
    let values: Vec<String> = got.iter().map(Consumed::value_str).collect();
    assert_eq!(values, ["first", "second"], "each message once");
    assert!(broker.terminate().success());
}

impl RawMqtt {
    async fn subscribe_qos2(&mut self, filter: &str) {
        let mut sub = v4::Subscribe::new(filter, QoS::ExactlyOnce);
        sub.pkid = 1;
        self.send(v4::Packet::Subscribe(sub)).await;
        assert!(matches!(self.recv().await, v4::Packet::SubAck(_)));
    }

    /// The next packet, which must be a QoS 2 PUBLISH: payload, packet id, DUP.
    async fn delivery(&mut self) -> (String, u16, bool) {
        match self.recv().await {
            v4::Packet::Publish(p) if p.qos == QoS::ExactlyOnce => (
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.pkid,
                p.dup,
            ),
            other => panic!("expected a QoS 2 PUBLISH, got {other:?}"),
        }
    }
}

/// Publishes one QoS 2 message from a fresh client (clean session) and waits for PUBCOMP.
async fn publish_qos2(addr: SocketAddr, topic: &str, payload: &str) {
    let (client, mut eventloop) = AsyncClient::new(mqtt_options("q2-publisher", addr), 10);
    client
        .publish(topic, QoS::ExactlyOnce, false, payload.as_bytes().to_vec())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Incoming(Packet::PubComp(_)) = eventloop.poll().await.unwrap() {
                return;
            }
        }
    })
    .await
    .expect("PUBCOMP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_delivery_reaches_a_persistent_subscriber_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let addr = broker.addrs.mqtt.unwrap();
    let (mut sub, _) = RawMqtt::persistent(addr, "q2-display").await;
    sub.subscribe_qos2("alarm/#").await;
    publish_qos2(addr, "alarm/boiler", "overheat").await;
    let (payload, pkid, dup) = sub.delivery().await;
    assert_eq!((payload.as_str(), dup), ("overheat", false));
    // Killed right after the PUBLISH went out (well within the session's save interval): the
    // delivery was saved before it was sent, so the resumed session sends it again under the
    // same id with DUP, which the client recognises.
    broker.kill9();

    let broker = ChildBroker::spawn(BIN, &data, "");
    let addr = broker.addrs.mqtt.unwrap();
    let (mut sub, present) = RawMqtt::persistent(addr, "q2-display").await;
    assert!(present);
    assert_eq!(sub.delivery().await, ("overheat".to_string(), pkid, true));
    sub.send(v4::Packet::PubRec(v4::PubRec::new(pkid))).await;
    assert!(matches!(sub.recv().await, v4::Packet::PubRel(r) if r.pkid == pkid));
    // Killed after the PUBREL: the client may complete and forget the id, so after the
    // restart only the PUBREL may come again, never the message.
    broker.kill9();

    let broker = ChildBroker::spawn(BIN, &data, "");
    let addr = broker.addrs.mqtt.unwrap();
    let (mut sub, _) = RawMqtt::persistent(addr, "q2-display").await;
    assert!(matches!(sub.recv().await, v4::Packet::PubRel(r) if r.pkid == pkid));
    sub.send(v4::Packet::PubComp(v4::PubComp::new(pkid))).await;
    publish_qos2(addr, "alarm/boiler", "normal").await;
    let (payload, _, dup) = sub.delivery().await;
    assert_eq!(
        (payload.as_str(), dup),
        ("normal", false),
        "the next message, not the old one"
    );
    assert!(broker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_qos2_delivery_stays_with_its_member_across_kill_9() {
    // The group's last save before the kill is from before the claim, or after it.
    shared_qos2_across_kill_9(false).await;
    shared_qos2_across_kill_9(true).await;
}

async fn shared_qos2_across_kill_9(group_saved_the_claim: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let addr = broker.addrs.mqtt.unwrap();
    let (mut a, _) = RawMqtt::persistent(addr, "panel-a").await;
    a.subscribe_qos2("$share/panels/alarm/#").await;
    publish_qos2(addr, "alarm/boiler", "warm-up").await;
    let (_, warm_up, _) = a.delivery().await;
    a.send(v4::Packet::PubRec(v4::PubRec::new(warm_up))).await;
    assert!(matches!(a.recv().await, v4::Packet::PubRel(_)));
    a.send(v4::Packet::PubComp(v4::PubComp::new(warm_up))).await;
    // The group saves its place (every 0.5 s) past the warm-up.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    publish_qos2(addr, "alarm/boiler", "overheat").await;
    let (payload, pkid, _) = a.delivery().await;
    assert_eq!(payload, "overheat");
    if group_saved_the_claim {
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    // The session saved the delivery before its PUBLISH went out.
    broker.kill9();

    let broker = ChildBroker::spawn(BIN, &data, "");
    let addr = broker.addrs.mqtt.unwrap();
    let (mut a, present) = RawMqtt::persistent(addr, "panel-a").await;
    assert!(present);
    assert_eq!(a.delivery().await, ("overheat".to_string(), pkid, true));
    a.send(v4::Packet::PubRec(v4::PubRec::new(pkid))).await;
    assert!(matches!(a.recv().await, v4::Packet::PubRel(r) if r.pkid == pkid));
    a.send(v4::Packet::PubComp(v4::PubComp::new(pkid))).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Completed by panel-a: another member joining now gets the next message, not this one.
    let (mut b, _) = RawMqtt::persistent(addr, "panel-b").await;
    b.subscribe_qos2("$share/panels/alarm/#").await;
    publish_qos2(addr, "alarm/boiler", "normal").await;
    assert_eq!(b.delivery().await.0, "normal");
    assert!(broker.terminate().success());
}
