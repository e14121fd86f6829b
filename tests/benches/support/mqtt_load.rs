//! One MQTT load generator for every broker (rumqttc 3.1.1 clients in this process): publish
//! throughput delivered to subscribers, publish-to-deliver latency at a fixed rate, and idle
//! connections for memory.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use headwater::mqtt::codec::{Codec, Frame};
use rumqttc::mqttbytes::v4::{Connect, Packet as RawPacket, Publish};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::mqtt_brokers::INFLIGHT;

/// Payload bytes of every message.
pub const PAYLOAD: usize = 100;
/// A run ends early when deliveries make no progress for this long (a broker that drops).
const STALL: Duration = Duration::from_secs(10);

/// Client ids are unique across the whole bench run, so no client takes over another's session.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// Clean sessions, or persistent ones (`clean_session = false`: a broker keeps their state,
/// Headwater on disk).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    Clean,
    Persistent,
}

fn options(addr: SocketAddr, role: &str, sessions: Sessions) -> MqttOptions {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut o = MqttOptions::new(format!("{role}-{id}"), addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_clean_session(sessions == Sessions::Clean);
    o.set_inflight(INFLIGHT as u16);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// Subscribes `n` clients to `filter` and counts what they receive; returns once every SUBACK
/// is in. Each publish's first 8 bytes, read as nanoseconds since `base`, give a latency
/// sample when `samples` is set.
async fn subscribers(
    addr: SocketAddr,
    (n, qos, sessions): (usize, QoS, Sessions),
    received: Arc<AtomicU64>,
    samples: Option<(Instant, Arc<Mutex<Vec<Duration>>>)>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, mut eventloop) = AsyncClient::new(options(addr, "sub", sessions), 100);
        client.subscribe("bench/#", qos).await.expect("subscribe");
        loop {
            match eventloop.poll().await.expect("subscriber connects") {
                Event::Incoming(Packet::SubAck(_)) => break,
                _ => continue,
            }
        }
        let (received, samples) = (received.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let _client = client; // dropping it would end the event loop
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    if let Some((base, samples)) = &samples {
                        let sent = u64::from_be_bytes(p.payload[..8].try_into().unwrap_or([0; 8]));
                        let now = base.elapsed().as_nanos() as u64;
                        let latency = Duration::from_nanos(now.saturating_sub(sent));
                        samples.lock().expect("samples").push(latency);
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tasks
}

/// A publisher whose event loop runs in a task (which ends with the connection).
async fn publisher(addr: SocketAddr, sessions: Sessions) -> (AsyncClient, JoinHandle<()>) {
    let (client, mut eventloop) = AsyncClient::new(options(addr, "pub", sessions), INFLIGHT);
    let task = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    (client, task)
}

/// What a throughput run delivered and how long it took.
pub struct Delivered {
    pub delivered: u64,
    pub expected: u64,
    pub elapsed: Duration,
}

impl Delivered {
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }
}

/// `publishers` clients each publish `per` messages at `qos` to their own topic under `bench/`;
/// `subs` clients subscribed to `bench/#` at `qos` receive them. Timed from the first publish
/// to the last delivery.
pub async fn throughput(
    addr: SocketAddr,
    publishers: usize,
    per: usize,
    (subs, qos, sessions): (usize, QoS, Sessions),
) -> Delivered {
    let received = Arc::new(AtomicU64::new(0));
    let sub_tasks = subscribers(addr, (subs, qos, sessions), received.clone(), None).await;
    let mut pubs = Vec::new();
    for _ in 0..publishers {
        pubs.push(publisher(addr, sessions).await);
    }
    let expected = (publishers * per * subs) as u64;
    let start = Instant::now();
    let mut senders = Vec::new();
    for (p, (client, _)) in pubs.iter().enumerate() {
        let client = client.clone();
        senders.push(tokio::spawn(async move {
            let topic = format!("bench/{p}");
            for _ in 0..per {
                if client
                    .publish(&topic, qos, false, vec![b'x'; PAYLOAD])
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    let elapsed = wait_for(&received, expected, start).await;
    for t in senders.into_iter().chain(sub_tasks) {
        t.abort();
    }
    for (_, t) in pubs {
        t.abort();
    }
    Delivered {
        delivered: received.load(Ordering::Relaxed),
        expected,
        elapsed,
    }
}

/// Waits until `count` reaches `expected` or stalls; the time from `start` to the last
/// progress.
async fn wait_for(count: &AtomicU64, expected: u64, start: Instant) -> Duration {
    let (mut last, mut last_at) = (0, Instant::now());
    loop {
        let now = count.load(Ordering::Relaxed);
        if now >= expected {
            return start.elapsed();
        }
        if now != last {
            (last, last_at) = (now, Instant::now());
        } else if last_at.elapsed() > STALL {
            eprintln!("  stalled at {now} of {expected} deliveries");
            return last_at - start;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Publish-to-deliver latencies of QoS 1 messages published at `rate` per second for
/// `duration` by one publisher to one subscriber (the first fifth is warm-up, not sampled).
pub async fn latency(addr: SocketAddr, rate: u64, duration: Duration) -> Vec<Duration> {
    let base = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(AtomicU64::new(0));
    let sink = Some((base, samples.clone()));
    let load = (1, QoS::AtLeastOnce, Sessions::Clean);
    let sub_tasks = subscribers(addr, load, received.clone(), sink).await;
    let (client, pub_task) = publisher(addr, Sessions::Clean).await;
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let warmup = total / 5;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_micros(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            let mut payload = vec![b'x'; PAYLOAD];
            let now = base.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&now.to_be_bytes());
            if client
                .publish("bench/latency", QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                break;
            }
            sent += 1;
            if sent == warmup {
                samples.lock().expect("samples").clear();
                received.store(0, Ordering::Relaxed);
            }
        }
    }
    wait_for(&received, total - warmup, Instant::now()).await;
    for t in sub_tasks {
        t.abort();
    }
    pub_task.abort();
    let mut out = samples.lock().expect("samples").clone();
    out.sort_unstable();
    out
}

/// Opens `n` more idle MQTT 3.1.1 connections (CONNECT answered by CONNACK, keep-alive 10
/// minutes) and keeps them in `held`.
pub async fn idle_connections(addr: SocketAddr, n: usize, held: &mut Vec<TcpStream>) {
    let mut pending = tokio::task::JoinSet::new();
    let mut opened = 0;
    while opened < n || !pending.is_empty() {
        // At most 200 handshakes at a time: the listen backlogs are not the subject here.
        while opened < n && pending.len() < 200 {
            opened += 1;
            let id = format!("idle-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
            pending.spawn(async move { connect_idle(addr, &id).await });
        }
        if let Some(joined) = pending.join_next().await {
            match joined.expect("idle connection task") {
                Some(stream) => held.push(stream),
                None => eprintln!("  an idle connection was refused 5 times; going on without it"),
            }
        }
    }
}

/// One idle connection; a broker that resets it (rumqttd does under a burst of connects) is
/// tried again, up to 5 times.
async fn connect_idle(addr: SocketAddr, id: &str) -> Option<TcpStream> {
    for _ in 0..5 {
        match raw_connect(addr, id).await {
            Ok(stream) => return Some(stream),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    None
}

/// A raw MQTT 3.1.1 connection, CONNECT (keep-alive 10 minutes) answered by CONNACK.
async fn raw_connect(addr: SocketAddr, id: &str) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut connect = Connect::new(id);
    connect.keep_alive = 600;
    let mut bytes = BytesMut::new();
    Codec::new(1 << 16)
        .encode(&RawPacket::Connect(connect), &mut bytes)
        .expect("encode CONNECT");
    stream.write_all(&bytes).await?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await?;
    assert_eq!(connack[0], 0x20, "CONNACK expected");
    Ok(stream)
}

/// One QoS 1 publisher that keeps `window` messages in flight with no client of its own in the
/// way: a raw MQTT 3.1.1 connection that writes every free slot's PUBLISH in one write as soon
/// as PUBACKs free them. rumqttc refills its window one message per event-loop turn, which on
/// this machine takes about as long as an fsync, so it cannot show what a broker does with a
/// full window. Counts acknowledged messages (no subscriber): the rate the window bound is about.
pub async fn windowed(addr: SocketAddr, total: usize, window: usize) -> Delivered {
    let codec = Codec::new(1 << 20);
    let id = format!("window-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let mut stream = raw_connect(addr, &id).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut out = BytesMut::new();

    // Packet ids 1..=window, reused as their PUBACKs come back.
    let mut free: Vec<u16> = (1..=window as u16).rev().collect();
    let (mut sent, mut acked) = (0usize, 0usize);
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let start = Instant::now();
    while acked < total {
        out.clear();
        while sent < total {
            let Some(pkid) = free.pop() else { break };
            let mut publish = Publish::new("bench/window", QoS::AtLeastOnce, vec![b'x'; PAYLOAD]);
            publish.pkid = pkid;
            codec
                .encode(&RawPacket::Publish(publish), &mut out)
                .expect("encode PUBLISH");
            sent += 1;
        }
        if !out.is_empty() {
            stream.write_all(&out).await.expect("send PUBLISH");
        }
        if stream.read_buf(&mut inbuf).await.expect("read PUBACK") == 0 {
            eprintln!("  the broker closed the windowed publisher's connection");
            break;
        }
        while let Some(frame) = codec.decode(&mut inbuf).expect("decode") {
            if let Frame::Packet(RawPacket::PubAck(ack)) = frame {
                free.push(ack.pkid);
                acked += 1;
            }
        }
    }
    Delivered {
        delivered: acked as u64,
        expected: total as u64,
        elapsed: start.elapsed(),
    }
}
