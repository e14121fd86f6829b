//! Persistent sessions end to end on the listener, with rumqttc's 3.1.1 and 5 clients: resume
//! with session present, messages published meanwhile, a restart in between, clean start,
//! expiry, the session cap.

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode as Code5, Packet as P5};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

use rumqttc::mqttbytes::v4::{PubComp, PubRec};

use super::v5::{next5, pump5};
use super::*;
use crate::mqtt::receipts;

/// A 3.1.1 client with the given clean-session flag; returns it and CONNACK's session present.
async fn connect4(addr: SocketAddr, id: &str, clean: bool, manual_acks: bool) -> (Client, bool) {
    let mut options = MqttOptions::new(id, "127.0.0.1", addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(clean);
    options.set_manual_acks(manual_acks);
    let (c, ack) = connect(options).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    (c, ack.session_present)
}

/// Sends DISCONNECT and waits for the client's event loop to end.
async fn leave(mut c: Client) {
    c.client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(WAIT, async { while c.events.recv().await.is_some() {} }).await;
}

async fn publish_all(addr: SocketAddr, topic: &str, payloads: &[&str]) {
    let mut p = client(addr, "publisher", false).await;
    for payload in payloads {
        p.publish_acked(topic, QoS::AtLeastOnce, payload).await;
    }
    leave(p).await;
}

async fn payloads(c: &mut Client, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let p = c.next_publish().await;
        out.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    out
}

#[tokio::test]
async fn a_v311_persistent_session_resumes_with_what_was_published_meanwhile_across_a_restart() {
    let b = start(MqttSection::default()).await;
    let (mut s, present) = connect4(b.addr, "keeper", false, false).await;
    assert!(!present, "no session yet");
    s.subscribe("dev/#", QoS::AtLeastOnce).await;
    leave(s).await;

    publish_all(b.addr, "dev/1", &["a", "b", "c"]).await;
    let (mut s, present) = connect4(b.addr, "keeper", false, false).await;
    assert!(present);
    assert_eq!(payloads(&mut s, 3).await, ["a", "b", "c"]);
    leave(s).await;

    publish_all(b.addr, "dev/2", &["d", "e"]).await;
    let b = reopen(b, MqttSection::default()).await;
    publish_all(b.addr, "dev/3", &["f"]).await;
    let (mut s, present) = connect4(b.addr, "keeper", false, false).await;
    assert!(present, "the session survived the restart");
    assert_eq!(
        payloads(&mut s, 3).await,
        ["d", "e", "f"],
        "acknowledged messages are not delivered again"
    );
    s.quiet(Duration::from_millis(300)).await;
    // The resumed subscription is live.
    let mut p = client(b.addr, "live", false).await;
    p.publish_acked("dev/4", QoS::AtLeastOnce, "g").await;
    assert_eq!(payloads(&mut s, 1).await, ["g"]);
    leave(s).await;

    // A clean connect discards the session.
    let (c, present) = connect4(b.addr, "keeper", true, false).await;
    assert!(!present);
    leave(c).await;
    let (mut s, present) = connect4(b.addr, "keeper", false, false).await;
    assert!(!present);
    p.publish_acked("dev/5", QoS::AtLeastOnce, "h").await;
    s.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn unacknowledged_deliveries_are_sent_again_when_the_session_resumes() {
    let b = start(MqttSection::default()).await;
    let (mut s, _) = connect4(b.addr, "slow", false, true).await;
    s.subscribe("m/#", QoS::AtLeastOnce).await;
    publish_all(b.addr, "m/x", &["1", "2"]).await;
    let first = s.next_publish().await;
    s.client.ack(&first).await.unwrap();
    let second = s.next_publish().await; // never acknowledged
    assert!(!second.dup);
    tokio::time::sleep(Duration::from_millis(100)).await;
    leave(s).await;
    let (mut s, present) = connect4(b.addr, "slow", false, false).await;
    assert!(present);
    let again = s.next_publish().await;
    assert_eq!(&again.payload[..], b"2");
    assert!(again.dup, "a re-send has DUP = 1");
    assert_eq!(again.pkid, second.pkid, "with its original packet id");
    s.quiet(Duration::from_millis(300)).await;
    // A takeover resumes the session the same way.
    publish_all(b.addr, "m/x", &["3"]).await;
    assert_eq!(payloads(&mut s, 1).await, ["3"]);
    let (mut t, present) = connect4(b.addr, "slow", false, false).await;
    assert!(present);
    publish_all(b.addr, "m/x", &["4"]).await;
    assert_eq!(payloads(&mut t, 1).await, ["4"]);
}

#[tokio::test]
async fn the_number_of_stored_sessions_is_capped() {
    let section = MqttSection {
        max_sessions: 1,
        ..MqttSection::default()
    };
    let b = start(section).await;
    let (one, _) = connect4(b.addr, "one", false, false).await;
    leave(one).await;
    let mut options = MqttOptions::new("two", "127.0.0.1", b.addr.port());
    options.set_clean_session(false);
    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    let refused = eventloop.poll().await;
    assert!(
        format!("{refused:?}").contains("ServiceUnavailable"),
        "{refused:?}"
    );
    // Clean sessions are not counted; the stored one can still resume.
    let (c, _) = connect4(b.addr, "three", true, false).await;
    leave(c).await;
    let (_one, present) = connect4(b.addr, "one", false, false).await;
    assert!(present);
}

/// An MQTT 5 client with clean start off and a session expiry; returns its events and
/// CONNACK's session present.
async fn connect5(
    addr: SocketAddr,
    id: &str,
    expiry: u32,
) -> (Client5, mpsc::Receiver<Result<Event5, String>>, bool) {
    let mut options = Options5::new(id, "127.0.0.1", addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(expiry));
    let (c5, events) = Client5::new(options, 100);
    let mut rx = pump5(events);
    match next5(&mut rx).await {
        P5::ConnAck(a) => {
            assert_eq!(a.code, Code5::Success);
            (c5, rx, a.session_present)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn leave5(c: Client5, mut rx: mpsc::Receiver<Result<Event5, String>>) {
    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(WAIT, async { while rx.recv().await.is_some() {} }).await;
}

#[tokio::test]
async fn a_v5_session_keeps_subscription_ids_survives_a_restart_and_expires() {
    let b = start(MqttSection::default()).await;
    let (c, mut rx, present) = connect5(b.addr, "five", 3600).await;
    assert!(!present);
    let props = rumqttc::v5::mqttbytes::v5::SubscribeProperties {
        id: Some(42),
        user_properties: vec![],
    };
    c.subscribe_with_properties("v5/#", Q5::AtLeastOnce, props)
        .await
        .unwrap();
    while !matches!(next5(&mut rx).await, P5::SubAck(_)) {}
    leave5(c, rx).await;

    publish_all(b.addr, "v5/a", &["x"]).await;
    let b = reopen(b, MqttSection::default()).await;
    let (c, mut rx, present) = connect5(b.addr, "five", 1).await;
    assert!(present);
    let p = loop {
        if let P5::Publish(p) = next5(&mut rx).await {
            break p;
        }
    };
    assert_eq!(&p.payload[..], b"x");
    let ids = p.properties.map(|p| p.subscription_identifiers);
    assert_eq!(ids, Some(vec![42]), "the subscription id was kept");
    // Now with an expiry of 1 s: gone after it lapsed.
    leave5(c, rx).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (c, rx, present) = connect5(b.addr, "five", 1).await;
    assert!(!present, "the session expired");
    leave5(c, rx).await;
}

#[tokio::test]
async fn session_expiry_max_secs_caps_v5_expiry_and_expires_v311_sessions() {
    let section = MqttSection {
        session_expiry_max_secs: 1,
        ..MqttSection::default()
    };
    let b = start(section).await;
    let mut options = Options5::new("capped", "127.0.0.1", b.addr.port());
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(3600));
    let (c5, mut events) = Client5::new(options, 10);
    match events.poll().await {
        Ok(Event5::Incoming(P5::ConnAck(a))) => {
            let granted = a.properties.and_then(|p| p.session_expiry_interval);
            assert_eq!(granted, Some(1), "CONNACK says the expiry granted");
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    drop(c5);

    let (s, present) = connect4(b.addr, "old-311", false, false).await;
    assert!(!present);
    leave(s).await;
    let (s, present) = connect4(b.addr, "old-311", false, false).await;
    assert!(present, "within the cap");
    leave(s).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_s, present) = connect4(b.addr, "old-311", false, false).await;
    assert!(!present, "expired after mqtt.session_expiry_max_secs");
}

/// A raw 3.1.1 connection with `clean_session = false`; returns it and session present.
async fn raw_persistent(addr: SocketAddr, id: &str) -> (Raw, bool) {
    let mut raw = Raw::open(addr).await;
    let mut c = Connect::new(id);
    c.clean_session = false;
    raw.send(Packet::Connect(c)).await;
    match raw.recv().await {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.code, ConnectReturnCode::Success);
            (raw, a.session_present)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A raw persistent session subscribed to `filter` at QoS 2.
async fn qos2_subscriber(addr: SocketAddr, id: &str, filter: &str) -> Raw {
    let (mut raw, _) = raw_persistent(addr, id).await;
    let mut sub = Subscribe::new(filter, QoS::ExactlyOnce);
    sub.pkid = 1;
    raw.send(Packet::Subscribe(sub)).await;
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    raw
}

#[tokio::test]
async fn qos2_deliveries_resume_with_pubrel_or_dup_publish_under_their_ids_across_a_restart() {
    let b = start(MqttSection::default()).await;
    let mut raw = qos2_subscriber(b.addr, "q2", "q2/#").await;
    let mut p = client(b.addr, "q2-pub", false).await;
    p.publish_acked("q2/a", QoS::ExactlyOnce, "released").await;
    p.publish_acked("q2/a", QoS::ExactlyOnce, "unanswered")
        .await;
    let mut ids = Vec::new();
    for want in ["released", "unanswered"] {
        match raw.recv().await {
            Some(Packet::Publish(p)) => {
                assert_eq!((&p.payload[..], p.qos), (want.as_bytes(), QoS::ExactlyOnce));
                ids.push(p.pkid);
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    raw.send(Packet::PubRec(PubRec::new(ids[0]))).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRel(r)) if r.pkid == ids[0]));
    // No PUBCOMP for the first, no PUBREC for the second: the connection drops, the broker
    // restarts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(raw);
    let b = reopen(b, MqttSection::default()).await;

    let (mut raw, present) = raw_persistent(b.addr, "q2").await;
    assert!(present);
    assert!(
        matches!(raw.recv().await, Some(Packet::PubRel(r)) if r.pkid == ids[0]),
        "PUBREL again for the released one"
    );
    match raw.recv().await {
        Some(Packet::Publish(p)) => {
            assert_eq!(
                &p.payload[..],
                b"unanswered",
                "the released one is not sent again"
            );
            assert!(p.dup);
            assert_eq!(p.pkid, ids[1]);
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    raw.send(Packet::PubComp(PubComp::new(ids[0]))).await;
    raw.send(Packet::PubRec(PubRec::new(ids[1]))).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRel(r)) if r.pkid == ids[1]));
    raw.send(Packet::PubComp(PubComp::new(ids[1]))).await;
    // Both complete: the window is free and new messages flow.
    let mut p = client(b.addr, "q2-pub", false).await;
    p.publish_acked("q2/a", QoS::ExactlyOnce, "next").await;
    match raw.recv().await {
        Some(Packet::Publish(p)) => assert_eq!((&p.payload[..], p.dup), (&b"next"[..], false)),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// A QoS 2 PUBLISH sent again (DUP) with its packet id.
fn resent(topic: &str, pkid: u16, payload: &[u8]) -> Packet {
    let mut p = Publish::new(topic, QoS::ExactlyOnce, payload.to_vec());
    p.pkid = pkid;
    p.dup = true;
    Packet::Publish(p)
}

async fn expect_pubrec(raw: &mut Raw, pkid: u16) {
    match raw.recv().await {
        Some(Packet::PubRec(r)) if r.pkid == pkid => {}
        other => panic!("expected PUBREC {pkid}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_resent_qos2_publish_is_stored_once_across_a_reconnect_and_a_restart() {
    let b = start(MqttSection::default()).await;
    let (mut raw, _) = raw_persistent(b.addr, "q2-in").await;
    raw.send(publish("in/2", QoS::ExactlyOnce, 7, b"once"))
        .await;
    expect_pubrec(&mut raw, 7).await;
    assert_eq!(
        receipts::load(&b.log, "q2-in").unwrap(),
        vec![7],
        "the receipt is durable with its message once PUBREC is sent"
    );
    // The PUBREC was lost with the connection: the client resends on its next one.
    drop(raw);
    let (mut raw, present) = raw_persistent(b.addr, "q2-in").await;
    assert!(present);
    raw.send(resent("in/2", 7, b"once")).await;
    expect_pubrec(&mut raw, 7).await;
    assert_eq!(records(&b.log, "in").len(), 1, "not stored again");
    drop(raw);

    // And once more after a restart.
    let b = reopen(b, MqttSection::default()).await;
    let (mut raw, present) = raw_persistent(b.addr, "q2-in").await;
    assert!(present);
    raw.send(resent("in/2", 7, b"once")).await;
    expect_pubrec(&mut raw, 7).await;
    assert_eq!(records(&b.log, "in").len(), 1, "not stored again");

    // PUBCOMP comes once the receipt is gone, and the id then carries a new message.
    raw.send(Packet::PubRel(PubRel::new(7))).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubComp(c)) if c.pkid == 7));
    assert!(receipts::load(&b.log, "q2-in").unwrap().is_empty());
    raw.send(publish("in/2", QoS::ExactlyOnce, 7, b"second"))
        .await;
    expect_pubrec(&mut raw, 7).await;
    assert_eq!(records(&b.log, "in").len(), 2);

    // A clean start discards the receipts with the session.
    drop(raw);
    let mut c = Connect::new("q2-in");
    c.clean_session = true;
    let _clean = Raw::accepted(b.addr, c).await;
    assert!(receipts::load(&b.log, "q2-in").unwrap().is_empty());
}

/// The next PUBLISH: payload, packet id and DUP.
async fn next_qos2(raw: &mut Raw) -> (String, u16, bool) {
    match raw.recv().await {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.qos, QoS::ExactlyOnce);
            (
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.pkid,
                p.dup,
            )
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn a_qos2_delivery_completed_behind_an_open_one_is_not_sent_again_on_resume() {
    let b = start(MqttSection::default()).await;
    let mut raw = qos2_subscriber(b.addr, "q2-order-out", "oo/#").await;
    let mut p = client(b.addr, "oo-pub", false).await;
    for m in ["open", "done"] {
        p.publish_acked("oo/a", QoS::ExactlyOnce, m).await;
    }
    let (first, open_id, _) = next_qos2(&mut raw).await;
    let (second, done_id, _) = next_qos2(&mut raw).await;
    assert_eq!((first.as_str(), second.as_str()), ("open", "done"));
    // The second completes, the first stays open; then the connection drops.
    raw.send(Packet::PubRec(PubRec::new(done_id))).await;
    assert!(matches!(raw.recv().await, Some(Packet::PubRel(r)) if r.pkid == done_id));
    raw.send(Packet::PubComp(PubComp::new(done_id))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(raw);

    let (mut raw, present) = raw_persistent(b.addr, "q2-order-out").await;
    assert!(present);
    assert_eq!(
        next_qos2(&mut raw).await,
        ("open".to_string(), open_id, true),
        "the open one again, under its id"
    );
    p.publish_acked("oo/a", QoS::ExactlyOnce, "next").await;
    let (next, _, dup) = next_qos2(&mut raw).await;
    assert_eq!(
        (next.as_str(), dup),
        ("next", false),
        "the completed one is not delivered twice"
    );
}

/// A raw MQTT 5 persistent session with a Receive Maximum (our window towards it).
async fn raw5_window(addr: SocketAddr, id: &str, receive_maximum: u16) -> v5::Raw5 {
    raw5_with(addr, id, 3600, Some(receive_maximum)).await.0
}

/// The next PUBLISH of a raw MQTT 5 client: payload, packet id, DUP.
async fn next_pub5(raw: &mut v5::Raw5) -> (String, u16, bool) {
    match raw.recv().await {
        Some(P5::Publish(p)) => (
            String::from_utf8_lossy(&p.payload).into_owned(),
            p.pkid,
            p.dup,
        ),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Completes a QoS 2 delivery: PUBREC, PUBREL back, PUBCOMP.
async fn complete5(raw: &mut v5::Raw5, pkid: u16) {
    use rumqttc::v5::mqttbytes::v5::{PubComp as PubComp5, PubRec as PubRec5};
    raw.send(P5::PubRec(PubRec5::new(pkid, None))).await;
    assert!(matches!(raw.recv().await, Some(P5::PubRel(r)) if r.pkid == pkid));
    raw.send(P5::PubComp(PubComp5::new(pkid, None))).await;
}

#[tokio::test]
async fn a_completed_qos2_delivery_stays_skipped_when_a_resumed_window_is_smaller() {
    use rumqttc::v5::mqttbytes::v5::{Filter, PubAck as PubAck5, Subscribe as Subscribe5};
    let b = start(MqttSection::default()).await;
    let mut raw = raw5_window(b.addr, "q2-window", 3).await;
    raw.send(P5::Subscribe(Subscribe5::new(
        Filter::new("win/#", Q5::ExactlyOnce),
        None,
    )))
    .await;
    assert!(matches!(raw.recv().await, Some(P5::SubAck(_))));
    let mut p = client(b.addr, "win-pub", false).await;
    p.publish_acked("win/a", QoS::ExactlyOnce, "open").await;
    p.publish_acked("win/a", QoS::AtLeastOnce, "q1").await;
    p.publish_acked("win/a", QoS::ExactlyOnce, "done").await;
    let (_, open_id, _) = next_pub5(&mut raw).await;
    let (_, q1_id, _) = next_pub5(&mut raw).await;
    let (done, done_id, _) = next_pub5(&mut raw).await;
    assert_eq!(done, "done");
    raw.send(P5::PubAck(PubAck5::new(q1_id, None))).await;
    complete5(&mut raw, done_id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(raw);

    // Back with room for one delivery at a time: "open" again, then, once it completes, "q1"
    // (QoS 1: at least once) but never "done".
    let mut raw = raw5_window(b.addr, "q2-window", 1).await;
    assert_eq!(
        next_pub5(&mut raw).await,
        ("open".to_string(), open_id, true)
    );
    complete5(&mut raw, open_id).await;
    let (again, q1_again, _) = next_pub5(&mut raw).await;
    assert_eq!(again, "q1");
    raw.send(P5::PubAck(PubAck5::new(q1_again, None))).await;
    p.publish_acked("win/a", QoS::ExactlyOnce, "next").await;
    assert_eq!(
        next_pub5(&mut raw).await.0,
        "next",
        "not \"done\" a second time"
    );
}

#[tokio::test]
async fn pubcomps_keep_the_order_of_pubrels_in_a_persistent_session() {
    let b = start(MqttSection::default()).await;
    let (mut raw, _) = raw_persistent(b.addr, "q2-order").await;
    for pkid in [3, 4] {
        raw.send(publish("in/o", QoS::ExactlyOnce, pkid, b"m"))
            .await;
        expect_pubrec(&mut raw, pkid).await;
    }
    let mut stored = receipts::load(&b.log, "q2-order").unwrap();
    stored.sort();
    assert_eq!(stored, vec![3, 4], "stored with their messages");
    // 9 was never received: answered too, in its turn.
    for pkid in [4, 9, 3] {
        raw.send(Packet::PubRel(PubRel::new(pkid))).await;
    }
    for pkid in [4, 9, 3] {
        assert!(matches!(raw.recv().await, Some(Packet::PubComp(c)) if c.pkid == pkid));
    }
    assert!(receipts::load(&b.log, "q2-order").unwrap().is_empty());
}

#[tokio::test]
async fn a_resent_qos2_publish_is_acknowledged_as_stored_even_when_its_batch_fails() {
    use rumqttc::v5::mqttbytes::v5::{PubRecReason, PubRel as PubRel5};
    let b = start_with(MqttSection::default(), 2 * 1024 * 1024).await;
    let (mut raw, _) = raw5(b.addr, "q2-full", 3600).await;
    let pubrec = |p| match p {
        Some(P5::PubRec(r)) => (r.pkid, r.reason),
        other => panic!("expected PUBREC, got {other:?}"),
    };
    raw.send(v5::pub5("full/q2", Q5::ExactlyOnce, 7, b"stored", None))
        .await;
    assert_eq!(pubrec(raw.recv().await), (7, PubRecReason::Success));
    // Fill the log, with smaller and smaller messages, until a small one is refused too.
    let mut id = 100;
    for size in [200 * 1024, 16 * 1024, 1024] {
        loop {
            id += 1;
            let filler = v5::pub5("full/q2", Q5::ExactlyOnce, id, &vec![1u8; size], None);
            raw.send(filler).await;
            match pubrec(raw.recv().await) {
                (_, PubRecReason::Success) => {
                    raw.send(P5::PubRel(PubRel5::new(id, None))).await;
                    assert!(matches!(raw.recv().await, Some(P5::PubComp(_))));
                }
                (pkid, reason) => {
                    assert_eq!((pkid, reason), (id, PubRecReason::QuotaExceeded));
                    break;
                }
            }
        }
    }
    // The PUBREC of 7 was lost, say: 7 comes again, in one batch with a message that fails.
    let mut again =
        rumqttc::v5::mqttbytes::v5::Publish::new("full/q2", Q5::ExactlyOnce, &b"stored"[..], None);
    again.pkid = 7;
    again.dup = true;
    // Small, so both arrive in one read and make one batch; the log refuses it as it did the
    // last filler.
    let failing = v5::pub5("full/q2", Q5::ExactlyOnce, 8, &[1u8; 1024], None);
    raw.send_together(vec![P5::Publish(again), failing]).await;
    assert_eq!(
        pubrec(raw.recv().await),
        (7, PubRecReason::Success),
        "stored before: acknowledged as such, whatever became of the batch"
    );
    assert_eq!(pubrec(raw.recv().await), (8, PubRecReason::QuotaExceeded));
    assert_eq!(receipts::load(&b.log, "q2-full").unwrap(), vec![7]);
}

/// A raw MQTT 5 connection with clean start off and `expiry`; returns it and session present.
async fn raw5(addr: SocketAddr, id: &str, expiry: u32) -> (v5::Raw5, bool) {
    raw5_with(addr, id, expiry, None).await
}

/// [`raw5`] with a Receive Maximum, if given.
async fn raw5_with(
    addr: SocketAddr,
    id: &str,
    expiry: u32,
    receive_maximum: Option<u16>,
) -> (v5::Raw5, bool) {
    use rumqttc::v5::mqttbytes::v5::{Connect as Connect5, ConnectProperties};
    let mut raw = v5::Raw5::open(addr).await;
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(expiry);
    props.receive_maximum = receive_maximum;
    let connect = Connect5 {
        keep_alive: 0,
        client_id: id.into(),
        clean_start: false,
        properties: Some(props),
    };
    raw.send(P5::Connect(connect, None, None)).await;
    match raw.recv().await {
        Some(P5::ConnAck(a)) => {
            assert_eq!(a.code, Code5::Success);
            (raw, a.session_present)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn disconnect5(expiry: Option<u32>) -> P5 {
    use rumqttc::v5::mqttbytes::v5::{Disconnect, DisconnectProperties, DisconnectReasonCode};
    P5::Disconnect(Disconnect {
        reason_code: DisconnectReasonCode::NormalDisconnection,
        properties: Some(DisconnectProperties {
            session_expiry_interval: expiry,
            reason_string: None,
            user_properties: vec![],
            server_reference: None,
        }),
    })
}

#[tokio::test]
async fn a_v5_disconnect_can_end_the_session_but_not_start_one() {
    let b = start(MqttSection::default()).await;
    let (mut raw, _) = raw5(b.addr, "ender", 600).await;
    raw.send(disconnect5(Some(60))).await;
    assert!(raw.recv().await.is_none());
    let (mut raw, present) = raw5(b.addr, "ender", 600).await;
    assert!(present, "a new non-zero expiry keeps the session");
    raw.send(disconnect5(Some(0))).await;
    assert!(raw.recv().await.is_none());
    let (mut raw, present) = raw5(b.addr, "ender", 0).await;
    assert!(!present, "session expiry 0 in DISCONNECT ended it");
    // CONNECT without an expiry, DISCONNECT with one: a protocol error (§3.14.2.2.2).
    raw.send(disconnect5(Some(5))).await;
    assert_eq!(
        raw.expect_disconnect().await,
        rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::ProtocolError
    );
}

#[tokio::test]
async fn an_offline_session_keeps_at_most_max_queued_messages_the_newest() {
    let section = MqttSection {
        max_queued_messages: 3,
        ..MqttSection::default()
    };
    let b = start(section).await;
    let (mut s, _) = connect4(b.addr, "bounded", false, false).await;
    s.subscribe("dev/#", QoS::AtLeastOnce).await;
    leave(s).await;

    publish_all(b.addr, "dev/1", &["1", "2", "3", "4", "5"]).await;
    let (mut s, present) = connect4(b.addr, "bounded", false, false).await;
    assert!(present);
    assert_eq!(payloads(&mut s, 3).await, ["3", "4", "5"]);
    s.quiet(Duration::from_millis(200)).await;
}
