//! Retained messages and wills with third-party clients: mosquitto_pub/mosquitto_sub (Debian's
//! libmosquitto) for retained messages, across a restart of the broker process, and rumqttc for
//! a will published when a client drops its connection, seen by mosquitto_sub and a Kafka
//! consumer alike.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use headwater_tests::{system_client, ChildBroker, InProcess};

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");

/// `mosquitto_sub` for one message on `filter`, printed as "<retain> <topic> <payload>";
/// the empty string when none arrives within `wait_s` seconds.
fn sub_one(bin: &std::path::Path, port: u16, filter: &str, wait_s: u32, v5: bool) -> String {
    let mut cmd = Command::new(bin);
    if v5 {
        cmd.args(["-V", "mqttv5"]);
    }
    let out = cmd
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", filter])
        .args(["-q", "1", "-C", "1", "-W", &wait_s.to_string()])
        .args(["-F", "%r %t %p"])
        .output()
        .expect("mosquitto_sub");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn pub_retained(bin: &std::path::Path, port: u16, topic: &str, message: Option<&str>) {
    let mut cmd = Command::new(bin);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-q", "1", "-r"]);
    match message {
        Some(m) => cmd.args(["-m", m]),
        None => cmd.arg("-n"),
    };
    assert!(cmd.status().expect("mosquitto_pub").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_retained_messages_survive_a_broker_restart() {
    let Some(sub_bin) = system_client("mosquitto_sub") else {
        return;
    };
    let Some(pub_bin) = system_client("mosquitto_pub") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = ChildBroker::spawn(BIN, &data, "");
    let port = broker.addrs.mqtt.expect("mqtt listener").port();
    let (p, s) = (pub_bin.clone(), sub_bin.clone());
    let (before, cleared) = tokio::task::spawn_blocking(move || {
        pub_retained(&p, port, "home/door", Some("open"));
        pub_retained(&p, port, "home/light", Some("on"));
        pub_retained(&p, port, "home/light", None); // cleared
        let before = sub_one(&s, port, "home/door", 10, false);
        let cleared = sub_one(&s, port, "home/light", 1, true);
        (before, cleared)
    })
    .await
    .unwrap();
    assert_eq!(before, "1 home/door open");
    assert_eq!(cleared, "", "an empty retained payload clears the topic");
    // Every retained publish is in the log too.
    let kafka = broker.kafka();
    let records =
        tokio::task::spawn_blocking(move || consume(&kafka, "home", 1, 3, Duration::from_secs(20)))
            .await
            .unwrap();
    assert_eq!(records.len(), 3);
    assert!(broker.terminate().success());

    let broker = ChildBroker::spawn(BIN, &data, "");
    let port = broker.addrs.mqtt.expect("mqtt listener").port();
    let after = tokio::task::spawn_blocking(move || sub_one(&sub_bin, port, "home/#", 10, true))
        .await
        .unwrap();
    assert_eq!(after, "1 home/door open");
    assert!(broker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_rumqttc_client_s_will_reaches_mosquitto_sub_and_kafka() {
    let Some(sub_bin) = system_client("mosquitto_sub") else {
        return;
    };
    let hw = InProcess::start().await;
    let mqtt = hw.mqtt();
    let sub = tokio::task::spawn_blocking(move || {
        // Without -R: the will is retained, and must arrive either live or as retained.
        sub_one(&sub_bin, mqtt.port(), "fleet/+/status", 20, false)
    });
    // Give the subscriber time to connect and subscribe.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut options = mqtt_options("truck-7", mqtt);
    options.set_last_will(rumqttc::LastWill::new(
        "fleet/truck-7/status",
        "offline",
        rumqttc::QoS::AtLeastOnce,
        true,
    ));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let (acked_tx, acked) = tokio::sync::oneshot::channel();
    let driver = tokio::spawn(async move {
        let mut acked_tx = Some(acked_tx);
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    if let Some(tx) = acked_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("truck-7 event loop failed: {e}"),
            }
        }
    });
    client
        .publish(
            "fleet/truck-7/hello",
            rumqttc::QoS::AtLeastOnce,
            false,
            "online",
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(15), acked)
        .await
        .expect("PUBACK in time")
        .unwrap();
    // Aborting the task drops the event loop and its socket: the TCP connection closes
    // without DISCONNECT, as when a device loses power.
    driver.abort();

    let line = sub.await.unwrap();
    assert!(
        line == "0 fleet/truck-7/status offline" || line == "1 fleet/truck-7/status offline",
        "mosquitto_sub printed {line:?}"
    );
    let kafka = hw.kafka();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "fleet", 1, 2, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let values: Vec<String> = records.iter().map(|r| r.value_str()).collect();
    assert_eq!(values, vec!["online", "offline"]);
    assert_eq!(records[1].header("mqtt.retain").as_deref(), Some("1"));
    hw.broker.stop().await;
}
