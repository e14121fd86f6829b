//! paho-mqtt (Python) against Headwater: QoS 0/1/2, retained messages, wills, MQTT 5
//! properties, and a persistent session whose queued QoS 1 messages arrive after the broker
//! process restarted. `.ci/run` installs paho-mqtt from PyPI and sets HEADWATER_REQUIRE_CLIENTS,
//! so there a missing package is a failure, never a skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use headwater_tests::{python_paho, ChildBroker};

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");

/// Runs one phase of `tests/python/paho_clients.py` against `mqtt` and checks it printed "ok".
fn phase(python: &Path, name: &str, mqtt: SocketAddr) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/paho_clients.py");
    let output = Command::new(python)
        .arg(script)
        .arg(name)
        .arg(mqtt.port().to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("ok"),
        "paho phase {name} failed:\n{stdout}\n{stderr}"
    );
}

fn spawn(data: &Path) -> (ChildBroker, SocketAddr) {
    let broker = ChildBroker::spawn(BIN, data, "");
    let mqtt = broker.addrs.mqtt.expect("mqtt listener");
    (broker, mqtt)
}

#[test]
fn paho_mqtt_works_unchanged_and_its_session_survives_a_restart() {
    let Some(python): Option<PathBuf> = python_paho() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (broker, mqtt) = spawn(&data);
    phase(&python, "live", mqtt);
    phase(&python, "queue", mqtt);
    assert!(broker.terminate().success(), "broker exits 0 on SIGTERM");
    let (broker, mqtt) = spawn(&data);
    phase(&python, "resume", mqtt);
    assert!(broker.terminate().success());
}
