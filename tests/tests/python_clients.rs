//! kafka-python and confluent-kafka (Python) against Headwater: produce, consumer groups,
//! commits, admin. `.ci/run` installs both from PyPI and sets HEADWATER_REQUIRE_CLIENTS, so there a
//! missing package is a failure, never a skip.

use std::process::Command;

use headwater_tests::{python_kafka_clients, InProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_and_confluent_kafka_work_unchanged() {
    let Some(python) = python_kafka_clients() else {
        return;
    };
    let hw = InProcess::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/kafka_clients.py");
    let kafka = hw.kafka();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(kafka)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python clients failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    hw.broker.stop().await;
}
