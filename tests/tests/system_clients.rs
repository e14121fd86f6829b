//! Debian's command-line clients against Headwater: kcat (librdkafka 2.0.2, which trips on
//! ApiVersions responses with default-valued tagged fields) and mosquitto_pub/mosquitto_sub
//! (plain, MQTT 5, and over TLS with a shared subscription).
//! `.ci/run` installs them and sets HEADWATER_REQUIRE_CLIENTS, so there they must run.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use headwater_tests::{system_client, InProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_produces_and_consumes() {
    let Some(kcat) = system_client("kcat") else {
        return;
    };
    let hw = InProcess::start().await;
    let kafka = hw.kafka();
    let output = tokio::task::spawn_blocking(move || {
        let mut producer = Command::new(&kcat)
            .args(["-b", &kafka, "-t", "kcat-topic", "-P", "-K:"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("kcat -P");
        producer
            .stdin
            .take()
            .unwrap()
            .write_all(b"k1:hello\nk2:world\n")
            .unwrap();
        assert!(producer.wait().unwrap().success(), "kcat -P exits 0");
        Command::new(&kcat)
            .args([
                "-b",
                &kafka,
                "-t",
                "kcat-topic",
                "-C",
                "-o",
                "beginning",
                "-c",
                "2",
                "-e",
                "-f",
                "%k=%s@%o\n",
            ])
            .output()
            .expect("kcat -C")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "kcat -C: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "k1=hello@0\nk2=world@1\n"
    );
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_reaches_mosquitto_sub_and_kafka() {
    let Some(sub_bin) = system_client("mosquitto_sub") else {
        return;
    };
    let Some(pub_bin) = system_client("mosquitto_pub") else {
        return;
    };
    let hw = InProcess::start().await;
    let port = hw.mqtt().port().to_string();
    let sub = Command::new(&sub_bin)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "plant/#",
            "-q",
            "1",
            "-C",
            "1",
            "-v",
            "-W",
            "20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    // Give the subscriber time to connect and subscribe before the publish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = Command::new(&pub_bin)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "plant/boiler/temp",
            "-q",
            "1",
            "-m",
            "88.2",
        ])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "plant/boiler/temp 88.2"
    );

    let kafka = hw.kafka();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "plant", 1, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value_str(), "88.2");
    hw.broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_speak_mqtt5_with_user_properties() {
    let Some(sub_bin) = system_client("mosquitto_sub") else {
        return;
    };
    let Some(pub_bin) = system_client("mosquitto_pub") else {
        return;
    };
    let hw = InProcess::start().await;
    let port = hw.mqtt().port().to_string();
    let common = ["-V", "mqttv5", "-h", "127.0.0.1", "-p", &port, "-q", "1"];
    let sub = Command::new(&sub_bin)
        .args(common)
        .args(["-t", "v5plant/#", "-C", "1", "-W", "20", "-F", "%t %p %P"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub -V mqttv5");
    // Give the subscriber time to connect and subscribe before the publish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = Command::new(&pub_bin)
        .args(common)
        .args(["-t", "v5plant/boiler/temp", "-m", "91.0"])
        .args(["-D", "publish", "user-property", "unit", "celsius"])
        .args(["-D", "publish", "content-type", "text/plain"])
        .status()
        .expect("mosquitto_pub -V mqttv5");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap())
        .await
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        line.starts_with("v5plant/boiler/temp 91.0"),
        "mosquitto_sub printed {line:?}"
    );
    assert!(
        line.contains("unit") && line.contains("celsius"),
        "{line:?}"
    );

    let kafka = hw.kafka();
    let records = tokio::task::spawn_blocking(move || {
        consume(&kafka, "v5plant", 1, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].header("mqtt.user.unit").as_deref(),
        Some("celsius")
    );
    assert_eq!(
        records[0].header("mqtt.content_type").as_deref(),
        Some("text/plain")
    );
    hw.broker.stop().await;
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert, key) paths.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
        .expect("self-signed certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_over_tls_with_a_shared_subscription() {
    let Some(sub_bin) = system_client("mosquitto_sub") else {
        return;
    };
    let Some(pub_bin) = system_client("mosquitto_pub") else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(files.path());
    let tls = headwater::config::TlsFiles {
        cert: cert.clone(),
        key,
        client_ca: None,
    };
    let hw = InProcess::start_with(|c| {
        c.listeners.mqtt_tls = headwater::config::Listen::At("127.0.0.1:0".parse().unwrap());
        c.mqtt.tls = Some(tls);
    })
    .await;
    let port = hw.broker.addrs.mqtt_tls.expect("TLS listener").port();
    let port = port.to_string();
    let cafile = cert.to_str().unwrap();
    let common = ["-V", "mqttv5", "-h", "127.0.0.1", "-p", &port, "-q", "1"];
    let sub = Command::new(&sub_bin)
        .args(common)
        .args([
            "--cafile",
            cafile,
            "-t",
            "$share/g/secure/#",
            "-C",
            "2",
            "-W",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub over TLS");
    // Time to connect, finish the TLS handshake and subscribe: the group starts at the end of
    // the log, so a message published before the SUBSCRIBE would not reach it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for m in ["one", "two"] {
        let out = Command::new(&pub_bin)
            .args(common)
            .args(["--cafile", cafile, "-t", "secure/x", "-m", m])
            .output()
            .expect("mosquitto_pub over TLS");
        assert!(
            out.status.success(),
            "mosquitto_pub over TLS: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "one\ntwo\n",
        "mosquitto_sub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hw.broker.stop().await;
}
