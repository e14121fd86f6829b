//! Hot reload of a plugin module in a running broker, through the admin API and SIGHUP: the new
//! module serves the next records, a module that does not load is refused with its reason while
//! the running one carries on, and the swaps show in `/plugins` and `/metrics`.

mod common;

use std::time::Duration;

use common::*;
use headwater_tests::{http, plugin_wasm, ChildBroker};
use rumqttc::{AsyncClient, QoS};

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");

/// `{"temp": 21.5}` in CBOR: a map of one entry, text key, 64-bit float.
fn cbor_reading() -> Vec<u8> {
    let mut bytes = vec![0xa1, 0x64];
    bytes.extend_from_slice(b"temp");
    bytes.push(0xfb);
    bytes.extend_from_slice(&21.5f64.to_be_bytes());
    bytes
}

fn reloads(http_addr: std::net::SocketAddr) -> u64 {
    let (status, body) = http(http_addr, "GET", "/plugins");
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    list[0]["reloads"].as_u64().expect("reloads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_swapped_at_runtime_serves_the_next_records() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("decode.wasm");
    std::fs::copy(plugin_wasm("passthrough"), &module).unwrap();
    let broker = ChildBroker::spawn(
        BIN,
        &dir.path().join("data"),
        &format!(
            "[[plugins]]\nname = \"decode\"\nmodule = {:?}\nattach = \"ingest\"\ntopics = [\"sensors\"]\n",
            module.display().to_string()
        ),
    );
    let admin = broker.addrs.http.expect("http listener");
    let (client, eventloop) =
        AsyncClient::new(mqtt_options("probe", broker.addrs.mqtt.unwrap()), 16);
    let (_incoming, mut acks) = spawn_event_loop(eventloop);
    let mut published = 0;
    let mut publish = || {
        published += 1;
        let client = client.clone();
        let n = published;
        async move {
            client
                .publish("sensors/dev1", QoS::AtLeastOnce, false, cbor_reading())
                .await
                .unwrap();
            n
        }
    };

    let n = publish().await;
    wait_for_count(&mut acks, n).await;
    // Swap in the CBOR-to-JSON decoder (it takes the same, empty, config).
    std::fs::copy(plugin_wasm("cbor_to_json"), &module).unwrap();
    let (status, body) = http(admin, "POST", "/plugins/decode/reload");
    assert_eq!(status, 200, "{body}");
    let n = publish().await;
    wait_for_count(&mut acks, n).await;

    // A broken module is refused with the reason; the decoder keeps running.
    std::fs::write(&module, b"not a module").unwrap();
    let (status, body) = http(admin, "POST", "/plugins/decode/reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("decode"), "{body}");
    let (status, _) = http(admin, "POST", "/plugins/nope/reload");
    assert_eq!(status, 404);
    let n = publish().await;
    wait_for_count(&mut acks, n).await;

    let kafka = broker.kafka();
    let stored = tokio::task::spawn_blocking(move || {
        consume(&kafka, "sensors", 1, 3, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0].value.as_deref(), Some(&cbor_reading()[..]), "raw");
    for decoded in &stored[1..] {
        let json: serde_json::Value =
            serde_json::from_slice(decoded.value.as_deref().unwrap()).expect("JSON");
        assert_eq!(json, serde_json::json!({"temp": 21.5}));
    }

    // SIGHUP reloads every plugin from its path, as Mosquitto reloads on SIGHUP.
    assert_eq!(reloads(admin), 1);
    std::fs::copy(plugin_wasm("cbor_to_json"), &module).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &broker.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloaded = headwater_tests::eventually(Duration::from_secs(10), || {
        (reloads(admin) == 2).then_some(())
    })
    .await;
    assert!(reloaded.is_some(), "SIGHUP reloaded the plugin");
    let (_, metrics) = http(admin, "GET", "/metrics");
    assert!(
        metrics.contains(r#"headwater_plugin_reloads_total{plugin="decode",attach="ingest"} 2"#),
        "{metrics}"
    );
    assert!(broker.terminate().success());
}
