//! Parked connections (`super::parking`): quiet publish-only TCP clients wait without a task,
//! and come back for everything a connection in its own task would: packets, hang-ups,
//! keep-alive, takeover and shutdown.

use super::*;
use crate::metrics::{render, MetricSources};

/// The value of metric `name` (no labels) in a scrape.
fn metric(b: &Broker, name: &str) -> Option<f64> {
    let text = render(&MetricSources {
        log: b.log.clone(),
        upstream_lag: None,
        plugins: Vec::new(),
        mqtt: Some(b.ctx.clone()),
    });
    let line = text.lines().find(|l| l.split(' ').next() == Some(name))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Waits until `n` connections are parked.
async fn parked(b: &Broker, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.ctx.parked_connections() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connections parked, expected {n}",
            b.ctx.parked_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect_with_will(addr: SocketAddr, id: &str, topic: &str) -> Raw {
    let will = LastWill::new(topic, "gone", QoS::AtLeastOnce, false);
    Raw::connected_with_will(addr, id, will).await
}

#[tokio::test]
async fn quiet_publishers_park_and_come_back_for_each_packet() {
    let b = start(MqttSection::default()).await;
    let mut sensors = Vec::new();
    for i in 0..3 {
        sensors.push(Raw::connected(b.addr, &format!("sensor-{i}"), 0).await);
    }
    parked(&b, 3).await;
    // A subscriber waits for the log too: it stays in its task.
    let mut sub = client(b.addr, "dashboard", false).await;
    sub.subscribe("plant/#", QoS::AtLeastOnce).await;
    assert_eq!(metric(&b, "headwater_mqtt_parked_connections"), Some(3.0));
    assert_eq!(metric(&b, "headwater_mqtt_clients"), Some(4.0));

    for round in 0..2u8 {
        for (i, sensor) in sensors.iter_mut().enumerate() {
            let pkid = u16::from(round) + 1;
            sensor
                .send(publish(
                    "plant/temp",
                    QoS::AtLeastOnce,
                    pkid,
                    &[round, i as u8],
                ))
                .await;
            match sensor.recv().await {
                Some(Packet::PubAck(a)) => assert_eq!(a.pkid, pkid),
                other => panic!("expected PUBACK, got {other:?}"),
            }
            sensor.send(Packet::PingReq).await;
            assert_eq!(sensor.recv().await, Some(Packet::PingResp));
            let p = sub.next_publish().await;
            assert_eq!(&p.payload[..], &[round, i as u8]);
        }
        // Quiet again: all three park again, the subscriber does not.
        parked(&b, 3).await;
    }
    let stored: Vec<Vec<u8>> = records(&b.log, "plant")
        .into_iter()
        .map(|r| r.value.unwrap().to_vec())
        .collect();
    assert_eq!(stored, [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]);
}

#[tokio::test]
async fn a_parked_client_that_hangs_up_leaves_its_will_and_its_slot() {
    let b = start(MqttSection {
        max_connections: 2,
        ..MqttSection::default()
    })
    .await;
    let mut sub = client(b.addr, "watcher", false).await;
    sub.subscribe("status/#", QoS::AtLeastOnce).await;
    let dev = connect_with_will(b.addr, "dev", "status/dev").await;
    parked(&b, 1).await;
    drop(dev);
    let p = sub.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("status/dev", &b"gone"[..])
    );
    parked(&b, 0).await;
    // Its connection slot is free again (two at most: the watcher and this one).
    Raw::connected(b.addr, "next", 0).await;
}

#[tokio::test]
async fn a_silent_parked_client_is_closed_at_its_keep_alive() {
    let b = start(MqttSection::default()).await;
    let mut sleepy = Raw::connected(b.addr, "sleepy", 1).await;
    let started = std::time::Instant::now();
    parked(&b, 1).await;
    assert!(sleepy.recv().await.is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    parked(&b, 0).await;
}

#[tokio::test]
async fn a_parked_client_is_taken_over() {
    let b = start(MqttSection::default()).await;
    let mut first = Raw::connected(b.addr, "same", 0).await;
    parked(&b, 1).await;
    let mut second = Raw::connected(b.addr, "same", 0).await;
    // Without keep-alive, only the takeover can close the first.
    assert!(first.recv().await.is_none());
    second.send(Packet::PingReq).await;
    assert_eq!(second.recv().await, Some(Packet::PingResp));
}

#[tokio::test]
async fn shutdown_ends_parked_connections_and_publishes_their_wills() {
    let b = start(MqttSection::default()).await;
    let mut devs = Vec::new();
    for i in 0..3 {
        devs.push(connect_with_will(b.addr, &format!("dev-{i}"), &format!("status/{i}")).await);
    }
    parked(&b, 3).await;
    b.shutdown.cancel();
    for dev in &mut devs {
        assert!(dev.recv().await.is_none());
    }
    tokio::time::timeout(WAIT, b.task)
        .await
        .expect("the listener waits for parked connections, then returns")
        .unwrap();
    let mut wills: Vec<_> = records(&b.log, "status")
        .into_iter()
        .map(|r| header(&r, "mqtt.topic").map(<[u8]>::to_vec))
        .collect();
    wills.sort();
    let want: Vec<_> = (0..3)
        .map(|i| Some(format!("status/{i}").into_bytes()))
        .collect();
    assert_eq!(wills, want);
}
