//! `[mqtt.auth]` end to end on the listener: rumqttc 3.1.1 and 5 clients log in against a
//! password file written by Mosquitto's own `mosquitto_passwd`, and a Mosquitto ACL file
//! decides what they may publish, subscribe to and receive.

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode as Connect5Code, Filter, Login, Packet as P5, PubAckReason, PubRecReason,
    Publish as Pub5, Subscribe as Sub5, SubscribeReasonCode as Code5,
};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::{AsyncClient as Client5, MqttOptions as Options5};

use super::v5::Raw5;
use super::*;
use crate::config::MqttAuth;

/// alice:wonderland, bob:"bu ilder:$x" (PBKDF2), carol:sha512-old ($6$), from the real tool.
const PASSWORDS: &str = include_str!("auth/fixtures/mosquitto_passwd.txt");
const BOB: &str = "bu ilder:$x";

const ACL: &str = "\
# anonymous clients: nothing
user alice
topic readwrite sensors/#
topic deny sensors/secret/#
topic write cmd/alice

user bob
topic write #

user carol
topic read #
topic deny sensors/secret/#

pattern readwrite devices/%c/#
";

/// A broker with the fixture password file and ACL; the files live as long as the broker.
async fn start_auth(allow_anonymous: Option<bool>) -> (Broker, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    let pw = files.path().join("passwd");
    let acl = files.path().join("acl");
    std::fs::write(&pw, PASSWORDS).unwrap();
    std::fs::write(&acl, ACL).unwrap();
    let section = MqttSection {
        auth: Some(MqttAuth {
            password_file: Some(pw),
            acl_file: Some(acl),
            allow_anonymous,
            use_identity_as_username: false,
        }),
        ..MqttSection::default()
    };
    (start(section).await, files)
}

fn options4(addr: SocketAddr, id: &str, login: Option<(&str, &str)>) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((user, pass)) = login {
        o.set_credentials(user, pass);
    }
    o
}

async fn login4(addr: SocketAddr, id: &str, user: &str, pass: &str) -> Client {
    let (c, ack) = connect(options4(addr, id, Some((user, pass)))).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    c
}

/// The refusal a rumqttc 3.1.1 client gets.
async fn refused4(addr: SocketAddr, login: Option<(&str, &str)>) -> ConnectReturnCode {
    let (_client, mut events) = AsyncClient::new(options4(addr, "r4", login), 10);
    loop {
        match tokio::time::timeout(WAIT, events.poll()).await.unwrap() {
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
            Ok(Event::Incoming(p)) => panic!("expected a refusal, got {p:?}"),
            Ok(_) => {}
            Err(e) => panic!("expected a refusal, got {e}"),
        }
    }
}

/// The answer a rumqttc 5 client gets: `Ok` when accepted.
async fn connack5(addr: SocketAddr, login: Option<(&str, &str)>) -> Result<(), Connect5Code> {
    let mut o = Options5::new("r5", "127.0.0.1", addr.port());
    if let Some((user, pass)) = login {
        o.set_credentials(user, pass);
    }
    let (_client, mut events) = Client5::new(o, 10);
    loop {
        match tokio::time::timeout(WAIT, events.poll()).await.unwrap() {
            Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => return Err(code),
            Ok(rumqttc::v5::Event::Incoming(P5::ConnAck(_))) => return Ok(()),
            Ok(_) => {}
            Err(e) => panic!("v5 connect: {e}"),
        }
    }
}

/// A raw MQTT 5 connection logged in as `user`.
async fn raw5(addr: SocketAddr, id: &str, user: &str, pass: &str) -> Raw5 {
    let mut raw = Raw5::open(addr).await;
    let connect = rumqttc::v5::mqttbytes::v5::Connect {
        keep_alive: 0,
        client_id: id.into(),
        clean_start: true,
        properties: None,
    };
    raw.send(P5::Connect(connect, None, Some(Login::new(user, pass))))
        .await;
    match raw.recv().await {
        Some(P5::ConnAck(a)) => assert_eq!(a.code, Connect5Code::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    raw
}

fn mqtt_topics(log: &Log, log_topic: &str) -> Vec<String> {
    records(log, log_topic)
        .iter()
        .map(|r| String::from_utf8_lossy(header(r, "mqtt.topic").unwrap_or_default()).into())
        .collect()
}

#[tokio::test]
async fn logins_get_the_right_connack_codes() {
    let (b, _files) = start_auth(None).await;
    let mut alice = login4(b.addr, "a4", "alice", "wonderland").await;
    alice
        .publish_acked("sensors/t", QoS::AtLeastOnce, "x")
        .await;
    login4(b.addr, "b4", "bob", BOB).await;
    login4(b.addr, "c4", "carol", "sha512-old").await;
    let bad = ConnectReturnCode::BadUserNamePassword;
    assert_eq!(refused4(b.addr, Some(("alice", "wonderlan"))).await, bad);
    assert_eq!(refused4(b.addr, Some(("mallory", "wonderland"))).await, bad);
    assert_eq!(
        refused4(b.addr, None).await,
        ConnectReturnCode::NotAuthorized
    );

    assert_eq!(
        connack5(b.addr, Some(("alice", "wonderland"))).await,
        Ok(())
    );
    let bad5 = Err(Connect5Code::BadUserNamePassword);
    assert_eq!(connack5(b.addr, Some(("alice", "nope"))).await, bad5);
    assert_eq!(connack5(b.addr, Some(("nobody", "x"))).await, bad5);
    assert_eq!(
        connack5(b.addr, None).await,
        Err(Connect5Code::NotAuthorized)
    );

    // A refused login closes the connection and does not take over the client id.
    let mut raw = Raw::open(b.addr).await;
    let mut c = Connect::new("a4");
    c.set_login("alice", "wrong");
    raw.send(Packet::Connect(c)).await;
    match raw.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, bad),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(raw.recv().await.is_none(), "closed after the refusal");
    alice
        .publish_acked("sensors/t", QoS::AtLeastOnce, "y")
        .await;
}

#[tokio::test]
async fn anonymous_clients_may_be_allowed_and_get_the_anonymous_rules() {
    let (b, _files) = start_auth(Some(true)).await;
    let (mut anon, ack) = connect(options4(b.addr, "anon", None)).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    // No anonymous rules in the file: only the %c pattern applies.
    assert_eq!(
        anon.subscribe("sensors/#", QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    anon.publish_acked("devices/anon/t", QoS::AtLeastOnce, "mine")
        .await;
    assert_eq!(mqtt_topics(&b.log, "devices"), vec!["devices/anon/t"]);
    // Passwords are still checked for clients that send a username.
    let bad = ConnectReturnCode::BadUserNamePassword;
    assert_eq!(refused4(b.addr, Some(("alice", "x"))).await, bad);
}

#[tokio::test]
async fn publishes_without_write_access_are_never_stored() {
    let (b, _files) = start_auth(None).await;
    // 3.1.1 cannot refuse a publish: acked as usual (as Mosquitto), dropped.
    let mut alice = login4(b.addr, "a", "alice", "wonderland").await;
    alice.publish_acked("cmd/bob", QoS::AtLeastOnce, "no").await;
    alice
        .publish_acked("sensors/secret/x", QoS::ExactlyOnce, "no")
        .await;
    alice.publish_acked("other/x", QoS::AtMostOnce, "no").await;
    alice
        .publish_acked("cmd/alice", QoS::AtLeastOnce, "yes")
        .await;
    alice
        .publish_acked("sensors/a", QoS::ExactlyOnce, "yes")
        .await;

    // MQTT 5: negative acks with "not authorized".
    let mut raw = raw5(b.addr, "a5", "alice", "wonderland").await;
    let mut p = Pub5::new("cmd/bob", Q5::AtLeastOnce, "no", None);
    p.pkid = 1;
    raw.send(P5::Publish(p)).await;
    match raw.recv().await {
        Some(P5::PubAck(a)) => assert_eq!(a.reason, PubAckReason::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let mut p = Pub5::new("sensors/secret/y", Q5::ExactlyOnce, "no", None);
    p.pkid = 2;
    raw.send(P5::Publish(p)).await;
    match raw.recv().await {
        Some(P5::PubRec(r)) => assert_eq!(r.reason, PubRecReason::NotAuthorized),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    raw.send(P5::Publish(Pub5::new(
        "other/y",
        Q5::AtMostOnce,
        "no",
        None,
    )))
    .await;
    let mut p = Pub5::new("sensors/b", Q5::AtLeastOnce, "yes", None);
    p.pkid = 3;
    raw.send(P5::Publish(p)).await;
    match raw.recv().await {
        Some(P5::PubAck(a)) => assert_eq!((a.pkid, a.reason), (3, PubAckReason::Success)),
        other => panic!("expected PUBACK, got {other:?}"),
    }

    assert_eq!(
        mqtt_topics(&b.log, "sensors"),
        vec!["sensors/a", "sensors/b"]
    );
    assert_eq!(mqtt_topics(&b.log, "cmd"), vec!["cmd/alice"]);
    assert!(records(&b.log, "other").is_empty());
}

#[tokio::test]
async fn subscriptions_without_read_access_get_the_failure_code() {
    let (b, _files) = start_auth(None).await;
    let mut alice = login4(b.addr, "a", "alice", "wonderland").await;
    assert_eq!(
        alice.subscribe("cmd/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(
        alice.subscribe("sensors/secret/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(
        alice.subscribe("sensors/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut raw = raw5(b.addr, "a5", "alice", "wonderland").await;
    raw.send(P5::Subscribe(Sub5 {
        pkid: 1,
        filters: vec![
            Filter::new("cmd/+", Q5::AtMostOnce),
            Filter::new("sensors/+", Q5::AtMostOnce),
        ],
        properties: None,
    }))
    .await;
    match raw.recv().await {
        Some(P5::SubAck(s)) => assert_eq!(
            s.return_codes,
            vec![Code5::NotAuthorized, Code5::Success(Q5::AtMostOnce)]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wildcard_subscriber_receives_only_what_it_may_read() {
    let (b, _files) = start_auth(None).await;
    let mut carol = login4(b.addr, "c", "carol", "sha512-old").await;
    assert_eq!(
        carol.subscribe("#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut bob = login4(b.addr, "b", "bob", BOB).await;
    bob.publish_acked("sensors/secret/x", QoS::AtLeastOnce, "hidden")
        .await;
    bob.publish_acked("sensors/a", QoS::AtLeastOnce, "1").await;
    bob.publish_acked("sensors/secret", QoS::AtLeastOnce, "hidden")
        .await;
    bob.publish_acked("sensors/b", QoS::AtLeastOnce, "2").await;
    let got = [carol.next_publish().await, carol.next_publish().await];
    let got: Vec<_> = got
        .iter()
        .map(|p| (p.topic.as_str(), &p.payload[..]))
        .collect();
    assert_eq!(
        got,
        vec![("sensors/a", &b"1"[..]), ("sensors/b", &b"2"[..])]
    );
    carol.quiet(Duration::from_millis(300)).await;
    // The denied records are in the log (bob may write them); only delivery skipped them.
    assert_eq!(records(&b.log, "sensors").len(), 4);
}

#[tokio::test]
async fn client_id_patterns_grant_each_device_its_own_topics() {
    let (b, _files) = start_auth(None).await;
    let mut dev = login4(b.addr, "dev1", "alice", "wonderland").await;
    assert_eq!(
        dev.subscribe("devices/dev2/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(
        dev.subscribe("devices/dev1/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    dev.publish_acked("devices/dev2/t", QoS::AtLeastOnce, "not mine")
        .await;
    dev.publish_acked("devices/dev1/t", QoS::AtLeastOnce, "mine")
        .await;
    let p = dev.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("devices/dev1/t", &b"mine"[..])
    );
    assert_eq!(mqtt_topics(&b.log, "devices"), vec!["devices/dev1/t"]);
}

#[tokio::test]
async fn a_will_the_client_may_not_write_is_dropped() {
    let (b, _files) = start_auth(None).await;
    for (id, topic) in [("w1", "cmd/bob"), ("w2", "cmd/alice")] {
        let mut raw = Raw::open(b.addr).await;
        let mut c = Connect::new(id);
        c.set_login("alice", "wonderland");
        c.last_will = Some(rumqttc::mqttbytes::v4::LastWill::new(
            topic,
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
        raw.send(Packet::Connect(c)).await;
        match raw.recv().await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        drop(raw); // no DISCONNECT: the will is due
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while records(&b.log, "cmd").is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give the refused one as long again to show up, were it published.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mqtt_topics(&b.log, "cmd"), vec!["cmd/alice"]);
}
