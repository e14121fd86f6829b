//! Shared subscriptions (`$share/{group}/{filter}`) with rumqttc 3.1.1 clients: each message
//! to one member, a full window claims no more, what a leaving member did not acknowledge goes
//! to another member, and persistent sessions rejoin their group.

use std::collections::HashSet;

use rumqttc::mqttbytes::v4::{PubComp, PubRec, Unsubscribe};

use super::*;

/// Payloads of the next `n` publishes.
async fn payloads(c: &mut Client, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let p = c.next_publish().await;
        assert_eq!(p.topic, "plant/x");
        out.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    out
}

async fn publish_many(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut publisher = client(addr, "publisher", false).await;
    let sent: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    for m in &sent {
        publisher
            .publish_acked("plant/x", QoS::AtLeastOnce, m)
            .await;
    }
    sent
}

#[tokio::test]
async fn each_message_goes_to_one_member_and_unacked_ones_move_on_when_a_member_leaves() {
    let window = 8;
    let section = MqttSection {
        max_inflight: window,
        ..MqttSection::default()
    };
    let b = start(section).await;
    let mut plain = client(b.addr, "plain", false).await;
    plain.subscribe("plant/#", QoS::AtLeastOnce).await;
    // `slow` never acknowledges: it claims one window's worth and no more. (A raw socket:
    // dropping it surely closes the connection.)
    let mut slow = Raw::connected(b.addr, "slow", 0).await;
    let mut s = Subscribe::new("$share/g/plant/#", QoS::AtLeastOnce);
    s.pkid = 1;
    slow.send(Packet::Subscribe(s)).await;
    match slow.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(
            a.return_codes,
            [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        ),
        other => panic!("{other:?}"),
    }

    let sent = publish_many(b.addr, 50).await;
    let mut held = Vec::new();
    while held.len() < window {
        match slow.recv().await {
            Some(Packet::Publish(p)) => held.push(String::from_utf8(p.payload.to_vec()).unwrap()),
            other => panic!("{other:?}"),
        }
    }
    // The plain subscription is not affected by the group.
    assert_eq!(payloads(&mut plain, sent.len()).await, sent);

    // A member joining later takes what the group has not handed out, none of `slow`'s.
    let mut fast = client(b.addr, "fast", false).await;
    fast.subscribe("$share/g/plant/#", QoS::AtLeastOnce).await;
    let rest = payloads(&mut fast, sent.len() - window).await;
    let held_set: HashSet<&String> = held.iter().collect();
    assert!(
        rest.iter().all(|m| !held_set.contains(m)),
        "delivered twice"
    );

    // `slow` goes away without acknowledging: its messages go to `fast`.
    drop(slow);
    let mut moved = payloads(&mut fast, window).await;
    moved.sort();
    let mut expected = held.clone();
    expected.sort();
    assert_eq!(moved, expected);
    let all: HashSet<String> = rest.into_iter().chain(moved).collect();
    assert_eq!(all.len(), sent.len());
    fast.quiet(Duration::from_millis(200)).await;

    // Another group of the same filter gets its own copy of new messages.
    let mut other = client(b.addr, "other-group", false).await;
    other.subscribe("$share/h/plant/#", QoS::AtMostOnce).await;
    let mut publisher = client(b.addr, "publisher", false).await;
    publisher
        .publish_acked("plant/x", QoS::AtLeastOnce, "late")
        .await;
    assert_eq!(payloads(&mut other, 1).await, ["late"]);
    assert_eq!(payloads(&mut fast, 1).await, ["late"]);
    assert_eq!(payloads(&mut plain, 1).await, ["late"]);
}

#[tokio::test]
async fn unsubscribing_leaves_the_group_and_bad_share_names_are_refused() {
    let b = start(MqttSection::default()).await;
    let mut a = client(b.addr, "a", false).await;
    let mut c = client(b.addr, "c", false).await;
    for m in [&mut a, &mut c] {
        m.subscribe("$share/g/plant/#", QoS::AtLeastOnce).await;
    }
    a.client.unsubscribe("$share/g/plant/#").await.unwrap();
    a.expect(|p| matches!(p, Packet::UnsubAck(_))).await;
    let sent = publish_many(b.addr, 10).await;
    assert_eq!(payloads(&mut c, sent.len()).await, sent);
    a.quiet(Duration::from_millis(200)).await;

    // rumqttc will not send some of these, so they go raw.
    let mut raw = Raw::connected(b.addr, "bad-share", 0).await;
    let mut s = Subscribe::new("$share//plant/#", QoS::AtLeastOnce);
    s.pkid = 1;
    for bad in ["$share/g+/plant", "$share/g", "$share/g/a/#/b"] {
        s.add(bad.into(), QoS::AtMostOnce);
    }
    raw.send(Packet::Subscribe(s)).await;
    match raw.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(a.return_codes, [SubscribeReasonCode::Failure; 4]),
        other => panic!("{other:?}"),
    }
    // Retained messages are not sent to shared subscriptions (§4.8.2).
    a.client
        .publish("plant/r", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    a.expect(|p| matches!(p, Packet::PubAck(_))).await;
    assert_eq!(&c.next_publish().await.payload[..], b"kept");
    let mut late = client(b.addr, "late", false).await;
    late.subscribe("$share/x/plant/#", QoS::AtLeastOnce).await;
    late.quiet(Duration::from_millis(200)).await;
}

/// A persistent 3.1.1 session in group `g` of `plant/#`, as `member`.
fn persistent(addr: SocketAddr) -> MqttOptions {
    let mut options = MqttOptions::new("member", "127.0.0.1", addr.port());
    options.set_clean_session(false);
    options
}

async fn leave(mut c: Client) {
    c.client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(WAIT, async { while c.events.recv().await.is_some() {} }).await;
}

#[tokio::test]
async fn a_group_keeps_its_place_for_an_offline_persistent_member_across_a_restart() {
    let b = start(MqttSection::default()).await;
    let (mut member, _) = connect(persistent(b.addr)).await;
    member.subscribe("$share/g/plant/#", QoS::AtLeastOnce).await;
    leave(member).await;

    // Published while the only member is away: kept for it.
    let sent = publish_many(b.addr, 5).await;
    let (mut member, ack) = connect(persistent(b.addr)).await;
    assert!(ack.session_present);
    assert_eq!(payloads(&mut member, sent.len()).await, sent);
    leave(member).await;

    // Again, with a broker restart while it is away.
    let more = publish_many(b.addr, 3).await;
    let b = reopen(b, MqttSection::default()).await;
    let (mut member, ack) = connect(persistent(b.addr)).await;
    assert!(ack.session_present);
    assert_eq!(payloads(&mut member, more.len()).await, more);
    // What it acknowledged before the restart is not sent again.
    member.quiet(Duration::from_millis(300)).await;
}

/// A raw 3.1.1 member of `$share/g/alarm/#` at QoS 2 (clean session or not); returns it and
/// CONNACK's session present.
async fn raw_member(addr: SocketAddr, id: &str, clean: bool) -> (Raw, bool) {
    let mut raw = Raw::open(addr).await;
    let mut c = Connect::new(id);
    c.clean_session = clean;
    raw.send(Packet::Connect(c)).await;
    let present = match raw.recv().await {
        Some(Packet::ConnAck(a)) => a.session_present,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    if !present {
        let mut s = Subscribe::new("$share/g/alarm/#", QoS::ExactlyOnce);
        s.pkid = 1;
        raw.send(Packet::Subscribe(s)).await;
        assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    }
    (raw, present)
}

/// The next packet, a QoS 2 PUBLISH: payload, packet id, DUP.
async fn qos2_delivery(raw: &mut Raw) -> (String, u16, bool) {
    match raw.recv().await {
        Some(Packet::Publish(p)) if p.qos == QoS::ExactlyOnce => (
            String::from_utf8(p.payload.to_vec()).unwrap(),
            p.pkid,
            p.dup,
        ),
        other => panic!("expected a QoS 2 PUBLISH, got {other:?}"),
    }
}

async fn publish_alarm(addr: SocketAddr, payload: &str) {
    let mut p = client(addr, "alarm-publisher", false).await;
    p.publish_acked("alarm/boiler", QoS::ExactlyOnce, payload)
        .await;
    leave(p).await;
}

#[tokio::test]
async fn a_qos2_shared_delivery_stays_with_its_persistent_member_across_a_disconnect_and_a_restart()
{
    let b = start(MqttSection::default()).await;
    let (mut a, _) = raw_member(b.addr, "member-a", false).await;
    publish_alarm(b.addr, "fire").await;
    let (payload, pkid, dup) = qos2_delivery(&mut a).await;
    assert_eq!((payload.as_str(), dup), ("fire", false));
    drop(a); // no PUBREC
    tokio::time::sleep(Duration::from_millis(200)).await; // its connection ends

    // Another member joins: the message is not its to take (MQTT-4.8.2-4).
    let (mut other, _) = raw_member(b.addr, "member-b", true).await;
    publish_alarm(b.addr, "smoke").await;
    assert_eq!(qos2_delivery(&mut other).await.0, "smoke");
    other.send(Packet::PubRec(PubRec::new(1))).await;
    drop(other);

    let (mut a, present) = raw_member(b.addr, "member-a", false).await;
    assert!(present);
    assert_eq!(
        qos2_delivery(&mut a).await,
        ("fire".to_string(), pkid, true),
        "completed with the member that had it, under its id"
    );
    drop(a);

    // Held across a restart too.
    let b = reopen(b, MqttSection::default()).await;
    let (mut other, _) = raw_member(b.addr, "member-c", true).await;
    publish_alarm(b.addr, "flood").await;
    assert_eq!(qos2_delivery(&mut other).await.0, "flood");
    drop(other);
    let (mut a, present) = raw_member(b.addr, "member-a", false).await;
    assert!(present);
    assert_eq!(
        qos2_delivery(&mut a).await,
        ("fire".to_string(), pkid, true)
    );
    a.send(Packet::PubRec(PubRec::new(pkid))).await;
    assert!(matches!(a.recv().await, Some(Packet::PubRel(r)) if r.pkid == pkid));
    drop(a); // no PUBCOMP

    // Released: the PUBREL comes again, not the message.
    let (mut a, _) = raw_member(b.addr, "member-a", false).await;
    assert!(matches!(a.recv().await, Some(Packet::PubRel(r)) if r.pkid == pkid));
    a.send(Packet::PubComp(PubComp::new(pkid))).await;
    publish_alarm(b.addr, "all clear").await;
    assert_eq!(qos2_delivery(&mut a).await.0, "all clear");
}

#[tokio::test]
async fn a_qos2_shared_delivery_ends_with_a_session_that_ends() {
    let b = start(MqttSection::default()).await;
    let (mut a, _) = raw_member(b.addr, "short-lived", true).await;
    publish_alarm(b.addr, "fire").await;
    assert_eq!(qos2_delivery(&mut a).await.0, "fire");
    drop(a); // no PUBREC, and its session ends with the connection
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Not sent to another member (MQTT-4.8.2-5): the next one is the next message.
    let (mut other, _) = raw_member(b.addr, "member-b", true).await;
    publish_alarm(b.addr, "smoke").await;
    let (smoke, pkid, _) = qos2_delivery(&mut other).await;
    assert_eq!(smoke, "smoke");
    other.send(Packet::PubRec(PubRec::new(pkid))).await;
    assert!(matches!(other.recv().await, Some(Packet::PubRel(_))));
    other.send(Packet::PubComp(PubComp::new(pkid))).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.recv())
            .await
            .is_err(),
        "nothing more, \"fire\" least of all"
    );
}

/// The next `n` publishes `raw` receives: payload, packet id, DUP.
async fn publishes(raw: &mut Raw, n: usize) -> Vec<(String, u16, bool)> {
    let mut out = Vec::new();
    while out.len() < n {
        match raw.recv().await {
            Some(Packet::Publish(p)) => out.push((
                String::from_utf8(p.payload.to_vec()).unwrap(),
                p.pkid,
                p.dup,
            )),
            Some(_) => {}
            None => panic!("connection closed after {out:?}"),
        }
    }
    out
}

#[tokio::test]
async fn a_held_delivery_keeps_its_packet_id_when_plain_deliveries_resume_with_it() {
    let b = start(MqttSection::default()).await;
    let (mut a, _) = raw_member(b.addr, "mixed", false).await;
    let mut s = Subscribe::new("plain/#", QoS::ExactlyOnce);
    s.pkid = 2;
    a.send(Packet::Subscribe(s)).await;
    assert!(matches!(a.recv().await, Some(Packet::SubAck(_))));
    publish_alarm(b.addr, "fire").await;
    let (_, pkid, _) = qos2_delivery(&mut a).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A backlog on the plain subscription while it is away.
    let mut p = client(b.addr, "plain-pub", false).await;
    for i in 0..5 {
        p.publish_acked("plain/x", QoS::ExactlyOnce, &format!("p{i}"))
            .await;
    }
    let (mut a, present) = raw_member(b.addr, "mixed", false).await;
    assert!(present);
    let got = publishes(&mut a, 6).await;
    assert!(
        got.contains(&("fire".to_string(), pkid, true)),
        "the held one under its id: {got:?}"
    );
    let ids = got.iter().filter(|(_, id, _)| *id == pkid).count();
    assert_eq!(ids, 1, "no other delivery took its id: {got:?}");
}

#[tokio::test]
async fn a_held_delivery_is_completed_after_its_subscription_is_gone() {
    let b = start(MqttSection::default()).await;
    let (mut a, _) = raw_member(b.addr, "leaver", false).await;
    publish_alarm(b.addr, "fire").await;
    let (_, pkid, _) = qos2_delivery(&mut a).await;
    a.send(Packet::Unsubscribe(Unsubscribe::new("$share/g/alarm/#")))
        .await;
    assert!(matches!(a.recv().await, Some(Packet::UnsubAck(_))));
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut a, present) = raw_member(b.addr, "leaver", false).await;
    assert!(present);
    assert_eq!(
        qos2_delivery(&mut a).await,
        ("fire".to_string(), pkid, true)
    );
}
