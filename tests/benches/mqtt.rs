//! MQTT side by side (issue 4, item 7): Headwater (fsync'd and relaxed durability) against
//! Mosquitto and rumqttd on the same machine, in one run, with one load generator (rumqttc
//! clients in this process, 100-byte payloads):
//! - QoS 1 and QoS 0 publish throughput with 1 and 100 publishers, delivered to 1 subscriber;
//! - QoS 2 throughput with 10 publishers and 1 subscriber, with clean and with persistent
//!   sessions (Headwater then stores QoS 2 packet ids and delivery state before each ack and
//!   delivery, for exactly once across a crash);
//! - QoS 1 acks per second of one raw publisher that keeps its window full (no subscriber);
//! - fan-out: 1 publisher, 100 subscribers (QoS 0), in deliveries per second;
//! - publish-to-deliver latency (QoS 1) at half of Mosquitto's 1-publisher QoS 1 rate;
//! - resident memory with 1,000 and 10,000 idle connections;
//! - the one-publisher QoS 1 bound (in-flight window / a bare fsync'd LMDB commit of a window's
//!   bytes, measured here) against Headwater's rate, with the group commits Headwater made.
//!
//! Run: `cargo bench -p headwater-tests --bench mqtt` (prints Markdown tables). Needs
//! `mosquitto` (Debian package) and `rumqttd` (`cargo install rumqttd --version 0.20.0`, not
//! `--locked`: its lock file pins a `metrics` that Rust 1.95 refuses); a missing one is skipped
//! with a note. Scale with `HW_BENCH_SCALE` (default 1.0).
//! 10,000 connections need `ulimit -n` above 10,100. `HW_MQTT_BENCH=memory` (or `throughput`,
//! `latency`, comma-separated) runs only those parts; `HW_MQTT_BROKERS=mosquitto,fsync` (words
//! of the brokers' names, comma-separated) only those brokers; `HW_MQTT_SCENARIOS=fan-out` (words
//! of the throughput scenarios' names) only those scenarios.

#[path = "support/commit_stats.rs"]
mod commit_stats;
#[path = "support/mqtt_brokers.rs"]
mod mqtt_brokers;
#[path = "support/mqtt_load.rs"]
mod mqtt_load;
#[path = "support/procfs.rs"]
mod procfs;
#[path = "support/scale.rs"]
mod scale;
use scale::scale;
#[path = "support/raw_heed.rs"]
mod raw_heed;

use std::collections::BTreeMap;
use std::time::Duration;

use commit_stats::CommitCounts;
use mqtt_brokers::{Kind, Running, INFLIGHT};
use mqtt_load::Sessions;
use procfs::{cpu_seconds, rss_kib};
use raw_heed::{quantile, RawLog};
use rumqttc::QoS;

const BIN: &str = env!("CARGO_BIN_EXE_headwater-test-broker");
const KINDS: [Kind; 4] = [
    Kind::Mosquitto,
    Kind::Rumqttd,
    Kind::Headwater { relaxed: false },
    Kind::Headwater { relaxed: true },
];

/// One throughput scenario.
struct Scenario {
    name: &'static str,
    publishers: usize,
    per: usize,
    subscribers: usize,
    qos: QoS,
    /// Whether the load is one raw publisher keeping its window full ([`mqtt_load::windowed`])
    /// instead of rumqttc clients.
    windowed: bool,
    sessions: Sessions,
}

fn scenarios() -> Vec<Scenario> {
    let s = |name, publishers, per, subscribers, qos| Scenario {
        name,
        publishers,
        per: scale(per),
        subscribers,
        qos,
        windowed: false,
        sessions: Sessions::Clean,
    };
    vec![
        s("QoS 1, 1 publisher", 1, 100_000, 1, QoS::AtLeastOnce),
        Scenario {
            windowed: true,
            ..s(
                "QoS 1, 1 raw publisher keeping its window full, acks/s",
                1,
                100_000,
                0,
                QoS::AtLeastOnce,
            )
        },
        s("QoS 1, 100 publishers", 100, 2_000, 1, QoS::AtLeastOnce),
        s("QoS 2, 10 publishers", 10, 5_000, 1, QoS::ExactlyOnce),
        Scenario {
            sessions: Sessions::Persistent,
            ..s(
                "QoS 2, 10 publishers, persistent sessions",
                10,
                5_000,
                1,
                QoS::ExactlyOnce,
            )
        },
        s("QoS 0, 1 publisher", 1, 200_000, 1, QoS::AtMostOnce),
        s("QoS 0, 100 publishers", 100, 2_000, 1, QoS::AtMostOnce),
        s(
            "fan-out QoS 0, 1 publisher, 100 subscribers",
            1,
            5_000,
            100,
            QoS::AtMostOnce,
        ),
    ]
}

/// A measured value and the broker's CPU use (cores) while it was measured.
#[derive(Clone, Copy)]
struct Measured {
    rate: f64,
    cores: f64,
    complete: bool,
    /// Headwater's group commits meanwhile.
    commits: Option<CommitCounts>,
}

async fn run_throughput(b: &Running, s: &Scenario) -> Measured {
    let pid = b.pid.to_string();
    let cpu0 = cpu_seconds(&pid);
    let before = match b.http {
        Some(http) => Some(commit_stats::read(http).await),
        None => None,
    };
    let d = if s.windowed {
        mqtt_load::windowed(b.addr, s.per, INFLIGHT).await
    } else {
        let load = (s.subscribers, s.qos, s.sessions);
        mqtt_load::throughput(b.addr, s.publishers, s.per, load).await
    };
    let cores = (cpu_seconds(&pid) - cpu0) / d.elapsed.as_secs_f64();
    let commits = match (b.http, before) {
        (Some(http), Some(before)) => Some(commit_stats::read(http).await.since(before)),
        _ => None,
    };
    if d.delivered < d.expected {
        eprintln!(
            "  {}: {}: {} of {} delivered",
            b.kind.name(),
            s.name,
            d.delivered,
            d.expected
        );
    }
    Measured {
        rate: d.rate(),
        cores,
        complete: d.delivered >= d.expected,
        commits,
    }
}

/// Whether `HW_MQTT_BENCH` (default: all) names `part`.
fn wanted(part: &str) -> bool {
    scale::wanted("HW_MQTT_BENCH", part)
}

/// Whether environment variable `var` (default: all) names a word of `name`, case aside.
fn named(var: &str, name: &str) -> bool {
    let name = name.to_lowercase();
    std::env::var(var).map_or(true, |v| {
        v.split(',')
            .any(|w| name.contains(w.trim().to_lowercase().as_str()))
    })
}

fn cell(m: Option<&Measured>) -> String {
    match m {
        None => "-".into(),
        Some(m) => format!(
            "{:.0}{} ({:.2})",
            m.rate,
            if m.complete { "" } else { " (incomplete)" },
            m.cores
        ),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scenarios = scenarios();
    let mut results: BTreeMap<(usize, &'static str), Measured> = BTreeMap::new();
    let mut latencies: BTreeMap<&str, (Duration, Duration)> = BTreeMap::new();
    let mut memory: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    let mut present = Vec::new();
    let mut latency_rate = 10_000u64;

    for kind in KINDS
        .into_iter()
        .filter(|k| named("HW_MQTT_BROKERS", k.name()))
    {
        let Some(broker) = mqtt_brokers::start(kind, BIN) else {
            continue;
        };
        present.push(kind);
        eprintln!("== {}", kind.name());
        for (i, s) in scenarios
            .iter()
            .enumerate()
            .filter(|(_, s)| wanted("throughput") && named("HW_MQTT_SCENARIOS", s.name))
        {
            let m = run_throughput(&broker, s).await;
            eprintln!("  {}: {:.0}/s ({:.2} cores)", s.name, m.rate, m.cores);
            results.insert((i, kind.name()), m);
        }
        if kind == Kind::Mosquitto {
            if let Some(m) = results.get(&(0, kind.name())) {
                latency_rate = (m.rate / 2.0) as u64;
            }
        }
        drop(broker);

        // Latency and memory on a fresh broker, so earlier load does not weigh on them.
        if wanted("latency") {
            let broker = mqtt_brokers::start(kind, BIN).expect("started before");
            latencies.insert(kind.name(), run_latency(&broker, latency_rate).await);
        }
        if wanted("memory") {
            let broker = mqtt_brokers::start(kind, BIN).expect("started before");
            memory.insert(kind.name(), run_memory(&broker).await);
        }
    }

    print_tables(
        &scenarios,
        &present,
        &results,
        &latencies,
        &memory,
        latency_rate,
    );
    let fsync = Kind::Headwater { relaxed: false }.name();
    let windowed = scenarios.iter().position(|s| s.windowed);
    let windowed = windowed.and_then(|i| results.get(&(i, fsync)));
    let rumqttc = results.get(&(0, fsync));
    if rumqttc.is_some() || windowed.is_some() {
        print_window_bound(rumqttc, windowed);
    }
}

/// The bound for one QoS 1 publisher: its in-flight window over the latency of the
/// commit that makes a window's worth durable, measured here as bare fsync'd LMDB commits of
/// one value the size of 100 stored records (Headwater stores a batch per put).
fn print_window_bound(rumqttc: Option<&Measured>, windowed: Option<&Measured>) {
    let window_batch = vec![b'x'; INFLIGHT * 120];
    let mut commits = RawLog::open().commit_latencies(&window_batch, scale(300));
    let p50 = quantile(&mut commits, 0.5);
    let bound = INFLIGHT as f64 / p50.as_secs_f64();
    println!(
        "\nQoS 1, 1 publisher, fsync: window bound {INFLIGHT} / bare commit p50 {:.3} ms = {bound:.0} msgs/s",
        p50.as_secs_f64() * 1e3,
    );
    for (load, m) in [("rumqttc", rumqttc), ("raw windowed publisher", windowed)] {
        let Some(m) = m else { continue };
        print!(
            "- {load}: Headwater {:.0} = {:.0}% of it",
            m.rate,
            100.0 * m.rate / bound
        );
        match m.commits {
            Some(c) => println!(
                "; {} commits of {:.1} records on average, {:.3} ms each on average",
                c.commits,
                c.records as f64 / c.commits.max(1) as f64,
                1e3 * c.seconds / c.commits.max(1) as f64
            ),
            None => println!(),
        }
    }
}

/// p50 and p99 publish-to-deliver latency at `rate`.
async fn run_latency(broker: &Running, rate: u64) -> (Duration, Duration) {
    let secs = Duration::from_secs_f64(10.0 * scale(100) as f64 / 100.0);
    let mut samples = mqtt_load::latency(broker.addr, rate, secs).await;
    let p50 = quantile(&mut samples, 0.5);
    let p99 = quantile(&mut samples, 0.99);
    eprintln!("  latency at {rate}/s: p50 {p50:?} p99 {p99:?}");
    (p50, p99)
}

/// RSS (KiB) with no connections, 1,000 and 10,000 idle ones.
async fn run_memory(broker: &Running) -> [u64; 3] {
    let mut held = Vec::new();
    let idle = rss_kib(broker.pid);
    mqtt_load::idle_connections(broker.addr, 1_000, &mut held).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let thousand = rss_kib(broker.pid);
    mqtt_load::idle_connections(broker.addr, 9_000, &mut held).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ten_thousand = rss_kib(broker.pid);
    eprintln!("  RSS KiB: idle {idle}, 1k {thousand}, 10k {ten_thousand}");
    drop(held);
    [idle, thousand, ten_thousand]
}

fn print_tables(
    scenarios: &[Scenario],
    present: &[Kind],
    results: &BTreeMap<(usize, &'static str), Measured>,
    latencies: &BTreeMap<&str, (Duration, Duration)>,
    memory: &BTreeMap<&str, [u64; 3]>,
    latency_rate: u64,
) {
    let hw = Kind::Headwater { relaxed: false }.name();
    let relaxed = Kind::Headwater { relaxed: true }.name();
    let names: Vec<&'static str> = present.iter().map(|k| k.name()).collect();
    println!("\nmessages (deliveries) per second, broker CPU cores in parentheses");
    println!(
        "| scenario | {} | fsync / Mosquitto | fsync / rumqttd | relaxed / rumqttd |",
        names.join(" | ")
    );
    println!("|---|{}---:|---:|---:|", "---:|".repeat(names.len()));
    for (i, s) in scenarios.iter().enumerate() {
        let get = |name: &'static str| results.get(&(i, name));
        let rate = |name: &'static str| get(name).map(|m| m.rate);
        let cells: Vec<String> = names.iter().map(|n| cell(get(n))).collect();
        println!(
            "| {} | {} | {} | {} | {} |",
            s.name,
            cells.join(" | "),
            ratio(rate(hw), rate("Mosquitto")),
            ratio(rate(hw), rate("rumqttd")),
            ratio(rate(relaxed), rate("rumqttd")),
        );
    }
    println!("\npublish-to-deliver latency, QoS 1, {latency_rate} msgs/s (half of Mosquitto's 1-publisher QoS 1 rate)");
    println!("| broker | p50 ms | p99 ms |\n|---|---:|---:|");
    for n in &names {
        if let Some((p50, p99)) = latencies.get(n) {
            let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
            println!("| {n} | {:.3} | {:.3} |", ms(p50), ms(p99));
        }
    }
    println!("\nresident memory (VmRSS, KiB) with idle MQTT connections");
    println!("| broker | no connections | 1,000 | 10,000 | 10,000 vs Mosquitto |\n|---|---:|---:|---:|---:|");
    let mosquitto_10k = memory.get("Mosquitto").map(|m| m[2] as f64);
    for n in &names {
        if let Some([idle, k1, k10]) = memory.get(n) {
            println!(
                "| {n} | {idle} | {k1} | {k10} | {} |",
                ratio(Some(*k10 as f64), mosquitto_10k)
            );
        }
    }
}
