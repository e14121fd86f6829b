//! WebAssembly plugins (issue 5, item 8), side by side in one run on one machine:
//! - the ingest path (records in, fsync'd durable append) with no plugin, the pass-through
//!   plugin, the json-range filter and the (stateful) downsampler, 100-byte JSON records; the
//!   stateless two again with two instances of the plugin;
//! - the same path with small requests sent the way connections do, several queued at once
//!   (`window`), with no plugin and with the pass-through;
//! - the host/guest crossing: time per call of the pass-through plugin for batches of 1 to 1,000
//!   records, through the broker's real plugin runner (worker thread, CBOR both ways, copies);
//! - the json-range filter as a plugin against the same plugin code compiled natively: called
//!   directly on borrowed records, and through the same SDK code path (CBOR in, CBOR out);
//! - restarting an instance (drop, instantiation, `hw_init`: what the worker does after a failed
//!   batch) and the memory each live instance takes.
//!
//! Run: `cargo bench -p headwater-tests --bench plugins` (prints Markdown tables). Scale with
//! `HW_BENCH_SCALE` (default 1.0); `HW_PLUGIN_BENCH=calls` (or `ingest`, `window`, `native`,
//! `starts`, comma-separated) runs only those parts; `HW_PLUGIN_PRODUCERS` sets the ingest rows' concurrent
//! producers (default 4).

#[path = "support/bench_log.rs"]
mod bench_log;
#[path = "support/procfs.rs"]
mod procfs;
#[path = "support/scale.rs"]
mod scale;

// The json-range example plugin's own source, compiled natively for the comparison.
#[allow(dead_code)]
#[path = "../../plugins/json-range/src/lib.rs"]
mod json_range;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use headwater::config::{Attach, PluginSection};
use headwater::ingest::Ingest;
use headwater::log::{Log, NewRecord, TopicConfig};
use headwater::plugin::{measure_starts, IngestPlugins, PluginEngine};
use headwater_sdk::{wire, Batch, Plugin, Record};
use headwater_tests::plugin_wasm;
use scale::scale;

/// Whether `HW_PLUGIN_BENCH` (default: all) names `part`.
fn wanted(part: &str) -> bool {
    scale::wanted("HW_PLUGIN_BENCH", part)
}

const RECORD_BYTES: usize = 100;
const BATCH: usize = 1000;

/// A 100-byte JSON reading, as a sensor would send it.
fn reading(i: usize) -> Bytes {
    let mut text = format!(
        r#"{{"device":"dev-{:04}","temp":{:.1},"hum":{:.1},"seq":{i}"#,
        i % 1000,
        15.0 + (i % 200) as f64 / 10.0,
        40.0 + (i % 300) as f64 / 10.0,
    );
    // Pad with a string field to exactly RECORD_BYTES.
    let pad = RECORD_BYTES.saturating_sub(text.len() + r#","pad":""}"#.len());
    text.push_str(&format!(r#","pad":"{}"}}"#, "x".repeat(pad)));
    Bytes::from(text)
}

fn records(n: usize, from: usize) -> Vec<NewRecord> {
    (from..from + n)
        .map(|i| NewRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(reading(i)),
            headers: vec![],
        })
        .collect()
}

fn section(name: &str, module: &str, config: BTreeMap<String, toml::Value>) -> PluginSection {
    PluginSection {
        name: name.into(),
        module: plugin_wasm(module),
        attach: Attach::Ingest,
        topics: vec!["bench".into()],
        dead_letter_topic: "dead-letters".into(),
        config,
        max_memory_bytes: 16 << 20,
        timeout_ms: 1000,
        max_consecutive_failures: 10,
        instances: 1,
    }
}

fn instances(n: u32, section: PluginSection) -> PluginSection {
    PluginSection {
        instances: n,
        ..section
    }
}

/// json-range configured to keep every reading (so every variant appends the same records).
fn range_config() -> BTreeMap<String, toml::Value> {
    let mut config = BTreeMap::new();
    config.insert("field".into(), toml::Value::String("temp".into()));
    config.insert("min".into(), toml::Value::Float(-1000.0));
    config.insert("max".into(), toml::Value::Float(1000.0));
    config
}

/// The downsampler at one record per key per millisecond: every reading (one a millisecond,
/// no key) is kept, while the plugin keeps and returns its state with every batch.
fn every_ms() -> BTreeMap<String, toml::Value> {
    let mut config = BTreeMap::new();
    config.insert("interval_ms".into(), toml::Value::Integer(1));
    config
}

/// [`range_config`] as the CBOR map the host hands to `hw_init`.
fn range_config_cbor() -> Vec<u8> {
    let mut config = Vec::new();
    let mut e = minicbor::Encoder::new(&mut config);
    e.map(3).unwrap();
    e.str("field").unwrap().str("temp").unwrap();
    e.str("min").unwrap().f64(-1000.0).unwrap();
    e.str("max").unwrap().f64(1000.0).unwrap();
    config
}

/// The records as the SDK's input batch, borrowing their bytes.
fn sdk_batch(input: &[NewRecord]) -> Batch<'_> {
    Batch::new(
        input
            .iter()
            .map(|r| Record {
                topic: "bench".into(),
                partition: None,
                offset: None,
                timestamp: r.timestamp,
                key: r.key.as_deref().map(Into::into),
                value: r.value.as_deref().map(Into::into),
                headers: vec![],
            })
            .collect(),
    )
}

fn plugins(sections: &[PluginSection]) -> IngestPlugins {
    IngestPlugins::from_config(sections).expect("plugins load")
}

/// A fresh fsync'd log in `dir` with the one-partition topic `bench`, and the door into it.
async fn bench_ingest(dir: &std::path::Path, chain: Arc<IngestPlugins>) -> (Ingest, Log) {
    let log = bench_log::open_fsync(dir);
    log.create_topic("bench", 1, TopicConfig::default())
        .await
        .unwrap();
    (Ingest::new(log.clone(), chain), log)
}

/// Records/s through `Ingest::publish` (the path MQTT publishes take) into a fresh fsync'd log:
/// `producers` tasks each publishing `requests` requests of [`BATCH`] records.
/// Returns the rate and the CPU time the process used meanwhile (every thread: producers,
/// plugin worker, log writer), in seconds.
/// `keyed`: each producer's records carry its own key (the downsampler keeps records per key,
/// and the producers' timestamps interleave). `round`: later rounds get later timestamps (the
/// downsampler's state carries over from one round to the next).
async fn ingest_rate(
    chain: Arc<IngestPlugins>,
    (producers, requests): (usize, usize),
    round: usize,
    keyed: bool,
) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, log) = bench_ingest(dir.path(), chain).await;
    let prepared: Vec<Vec<Vec<NewRecord>>> = (0..producers)
        .map(|p| {
            (0..requests)
                .map(|r| {
                    let first = ((round * producers + p) * requests + r) * BATCH;
                    let mut batch = records(BATCH, first);
                    if keyed {
                        let key = Bytes::from(format!("producer-{p}"));
                        batch.iter_mut().for_each(|r| r.key = Some(key.clone()));
                    }
                    batch
                })
                .collect()
        })
        .collect();
    let cpu_before = procfs::cpu_seconds("self");
    let started = Instant::now();
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|batches| {
            let ingest = ingest.clone();
            tokio::spawn(async move {
                for batch in batches {
                    ingest.publish("bench", batch).await.expect("publish");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (producers * requests * BATCH) as f64 / started.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds("self") - cpu_before;
    let end = log.topic("bench").unwrap().partitions[0].high_watermark();
    let dead = log
        .topic("dead-letters")
        .map_or(0, |t| t.partitions[0].high_watermark());
    assert_eq!(
        end as usize,
        producers * requests * BATCH,
        "every record kept ({dead} dead letters)"
    );
    log.close().await;
    (rate, cpu)
}

/// Mean time of one chain run over `batch` records, `calls` times.
async fn per_call(chain: &IngestPlugins, batch: usize, calls: usize) -> Duration {
    let input = records(batch, 0);
    // Warm up: the first call may grow the instance's memory.
    chain.run("bench", input.clone()).await.expect("run");
    // Copies made and outputs dropped outside the timed loop: it times the plugin path alone.
    let inputs = vec![input; calls];
    let mut outputs = Vec::with_capacity(calls);
    let started = Instant::now();
    for input in inputs {
        outputs.push(chain.run("bench", input).await.expect("run"));
    }
    let elapsed = started.elapsed();
    assert!(outputs.iter().all(|out| out.kept()[0].1.len() == batch));
    elapsed / calls as u32
}

/// The same json-range code compiled natively, called through the SDK's entry points on the
/// same CBOR bytes the host would write (and the output decoded as the host would).
fn native_sdk_per_record(batches: usize) -> Duration {
    let state = headwater_sdk::__rt::State::<json_range::JsonRange>::new();
    // The SDK's std feature installs a panic hook for guests; keep the bench's own.
    let hook = std::panic::take_hook();
    state.init_bytes(&range_config_cbor()).expect("init");
    std::panic::set_hook(hook);
    let input = records(BATCH, 0);
    let started = Instant::now();
    for _ in 0..batches {
        let mut encoded = Vec::new();
        wire::encode_batch(&sdk_batch(&input), &mut encoded);
        let output = state.process_bytes(&encoded);
        let decoded = wire::decode_output(&output).expect("output");
        assert_eq!(decoded.entries.len(), BATCH);
    }
    started.elapsed() / (batches * BATCH) as u32
}

/// The same plugin value called directly with borrowed records: no CBOR, no WebAssembly.
fn native_direct_per_record(batches: usize) -> Duration {
    let config = headwater_sdk::Config::from_cbor(&range_config_cbor()).expect("config");
    let mut plugin = json_range::JsonRange::init(&config).expect("init");
    let input = records(BATCH, 0);
    let started = Instant::now();
    for _ in 0..batches {
        let out = plugin.process(sdk_batch(&input));
        assert_eq!(out.records.len(), BATCH);
    }
    started.elapsed() / (batches * BATCH) as u32
}

fn ns(d: Duration) -> String {
    format!("{:.0}", d.as_nanos())
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() {
    // `HW_PLUGIN_PRODUCERS`: concurrent producers on the ingest rows (default 4).
    let producers = std::env::var("HW_PLUGIN_PRODUCERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let requests = scale(100);
    let calls = scale(2000);

    if wanted("ingest") {
        ingest_rows(producers, requests).await;
    }
    if wanted("window") {
        window_rows(producers, requests).await;
    }
    if wanted("calls") {
        call_rows(calls).await;
    }
    if wanted("native") {
        native_rows().await;
    }
    if wanted("starts") {
        start_rows();
    }
}

/// Rounds of the ingest comparison: each runs every variant back to back, so a ratio
/// compares runs a second apart (this VM's speed drifts by tens of percent over minutes).
const INGEST_ROUNDS: usize = 5;

/// Records/s through `Ingest::submit_publish` (what MQTT and Kafka connections call) into a
/// fresh fsync'd log: `producers` tasks each sending `requests` requests of `batch` records,
/// with up to `window` requests queued and not yet durable (a connection's in-flight window).
async fn windowed_rate(
    chain: Arc<IngestPlugins>,
    (producers, requests, batch): (usize, usize, usize),
    window: usize,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, log) = bench_ingest(dir.path(), chain).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let ingest = ingest.clone();
            let prepared: Vec<_> = (0..requests)
                .map(|r| records(batch, (p * requests + r) * batch))
                .collect();
            tokio::spawn(async move {
                let mut in_flight = std::collections::VecDeque::new();
                for records in prepared {
                    if in_flight.len() == window {
                        let oldest: headwater::ingest::Submitted = in_flight.pop_front().unwrap();
                        oldest.outcome().await.expect("durable");
                    }
                    let mut submitted = ingest.submit_publish("bench", records).await;
                    submitted.commit_in_background();
                    in_flight.push_back(submitted);
                }
                for submitted in in_flight {
                    submitted.outcome().await.expect("durable");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (producers * requests * batch) as f64 / started.elapsed().as_secs_f64();
    let end = log.topic("bench").unwrap().partitions[0].high_watermark();
    assert_eq!(
        end as usize,
        producers * requests * batch,
        "every record kept"
    );
    log.close().await;
    rate
}

/// Records per request in the windowed rows: a small batch, as an MQTT publish or a lingering
/// Kafka producer sends, where waiting for each request's commit costs most.
const WINDOW_BATCH: usize = 10;

async fn window_rows(producers: usize, requests: usize) {
    let requests = requests * 10;
    println!("| submitted with a window, {RECORD_BYTES} B JSON records, {WINDOW_BATCH} per request, {producers} producers, fsync'd, median of {INGEST_ROUNDS} rounds | window 1, records/s | window 8, records/s | window 8 vs 1 |");
    println!("|---|---:|---:|---:|");
    for (name, chain) in no_plugin_and_pass_through() {
        let (mut one, mut eight) = (Vec::new(), Vec::new());
        for _ in 0..INGEST_ROUNDS {
            let load = (producers, requests, WINDOW_BATCH);
            one.push(windowed_rate(chain.clone(), load, 1).await);
            eight.push(windowed_rate(chain.clone(), load, 8).await);
        }
        let (one, eight) = (median(&one), median(&eight));
        println!("| {name} | {one:.0} | {eight:.0} | {:.2}x |", eight / one);
    }
    println!();
}

/// The first two rows of each ingest table.
fn no_plugin_and_pass_through() -> Vec<(&'static str, Arc<IngestPlugins>)> {
    vec![
        ("no plugin", Arc::new(IngestPlugins::default())),
        (
            "pass-through plugin",
            Arc::new(plugins(&[section("pass", "passthrough", BTreeMap::new())])),
        ),
    ]
}

const DOWNSAMPLE: &str = "downsample, stateful (keeps all; its state stored with every batch)";

async fn ingest_rows(producers: usize, requests: usize) {
    println!("| ingest path, {RECORD_BYTES} B JSON records, {BATCH} per request, {producers} producers, fsync'd, median of {INGEST_ROUNDS} rounds | records/s | vs no plugin (median of rounds) | range of rounds | CPU ns per record (all threads) |");
    println!("|---|---:|---:|---:|---:|");
    let mut variants = no_plugin_and_pass_through();
    variants.extend([
        (
            "json-range filter (keeps all)",
            Arc::new(plugins(&[section("range", "json_range", range_config())])),
        ),
        (
            "pass-through plugin, 2 instances",
            Arc::new(plugins(&[instances(
                2,
                section("pass", "passthrough", BTreeMap::new()),
            )])),
        ),
        (
            "json-range filter, 2 instances",
            Arc::new(plugins(&[instances(
                2,
                section("range", "json_range", range_config()),
            )])),
        ),
        (
            DOWNSAMPLE,
            Arc::new(plugins(&[section("every-ms", "downsample", every_ms())])),
        ),
    ]);
    let mut rates = vec![Vec::new(); variants.len()];
    let mut cpu = vec![0.0; variants.len()];
    for round in 0..INGEST_ROUNDS {
        for (i, (name, chain)) in variants.iter().enumerate() {
            let keyed = *name == DOWNSAMPLE;
            let load = (producers, requests);
            let (rate, seconds) = ingest_rate(chain.clone(), load, round, keyed).await;
            rates[i].push(rate);
            cpu[i] += seconds;
        }
    }
    let records = (INGEST_ROUNDS * producers * requests * BATCH) as f64;
    for (i, (name, _)) in variants.iter().enumerate() {
        let mut ratios: Vec<f64> = (0..INGEST_ROUNDS)
            .map(|r| rates[i][r] / rates[0][r])
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.0} | {:.0}% | {:.0}–{:.0}% | {:.0} |",
            median(&rates[i]),
            100.0 * ratios[INGEST_ROUNDS / 2],
            100.0 * ratios[0],
            100.0 * ratios[INGEST_ROUNDS - 1],
            cpu[i] * 1e9 / records
        );
    }
    println!();
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

async fn call_rows(calls: usize) {
    println!("| pass-through plugin, one call (host encode, copy in, guest decode/encode, copy out, host decode, worker hand-off) | µs per call | ns per record |");
    println!("|---|---:|---:|");
    let pass_chain = plugins(&[section("pass", "passthrough", BTreeMap::new())]);
    for batch in [1, 10, 100, 1000] {
        let n = (calls * 10 / batch).clamp(50, calls * 10);
        let t = per_call(&pass_chain, batch, n).await;
        println!(
            "| {batch} record(s) | {} | {} |",
            us(t),
            ns(t / batch as u32)
        );
    }
    println!();
    instance_rows(calls).await;
}

/// Concurrent callers of the json-range chain alone (no log): what more instances add.
const CALLERS: usize = 4;

async fn instance_rows(calls: usize) {
    println!("| json-range chain alone, {CALLERS} concurrent callers, {BATCH}-record batches | records/s | vs 1 instance |");
    println!("|---|---:|---:|");
    let mut one = 0.0;
    for n in [1, 2] {
        let chain = Arc::new(plugins(&[instances(
            n,
            section("range", "json_range", range_config()),
        )]));
        let input = records(BATCH, 0);
        chain.run("bench", input.clone()).await.expect("warm up");
        let per_caller = (calls / 10).max(10);
        let started = Instant::now();
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (chain, input) = (chain.clone(), input.clone());
                tokio::spawn(async move {
                    for _ in 0..per_caller {
                        let out = chain.run("bench", input.clone()).await.expect("run");
                        assert_eq!(out.kept()[0].1.len(), BATCH);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        let rate = (CALLERS * per_caller * BATCH) as f64 / started.elapsed().as_secs_f64();
        if n == 1 {
            one = rate;
        }
        println!("| {n} instance(s) | {rate:.0} | {:.2}x |", rate / one);
    }
    println!();
}

/// Rounds of the native/WebAssembly comparison, interleaved like the ingest rounds: the native
/// loop alone moves by a third from one run to the next on this VM, so one run of each says
/// little about their ratio.
const NATIVE_ROUNDS: usize = 7;

async fn native_rows() {
    println!("| json-range filter, {BATCH}-record batches, median of {NATIVE_ROUNDS} interleaved rounds | ns per record | vs native direct (median of the rounds' ratios, range) |");
    println!("|---|---:|---:|");
    let batches = scale(300);
    let range_chain = plugins(&[section("range", "json_range", range_config())]);
    let (mut direct, mut sdk, mut wasm) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..NATIVE_ROUNDS {
        direct.push(native_direct_per_record(batches).as_secs_f64());
        sdk.push(native_sdk_per_record(batches).as_secs_f64());
        let call = per_call(&range_chain, BATCH, batches).await;
        wasm.push(call.as_secs_f64() / BATCH as f64);
    }
    let ratio = |variant: &[f64]| {
        let ratios: Vec<f64> = variant.iter().zip(&direct).map(|(v, d)| v / d).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        format!("{:.2}x ({lo:.2}–{hi:.2})", median(&ratios))
    };
    let ns = |variant: &[f64]| format!("{:.0}", median(variant) * 1e9);
    println!(
        "| native Rust, the plugin called directly (no CBOR) | {} | 1.00x |",
        ns(&direct)
    );
    println!(
        "| native Rust, same SDK code path (CBOR in and out) | {} | {} |",
        ns(&sdk),
        ratio(&sdk)
    );
    println!(
        "| WebAssembly plugin through the broker's runner | {} | {} |",
        ns(&wasm),
        ratio(&wasm)
    );

    println!();
}

fn start_rows() {
    println!("| restarting an instance (drop, instantiate, hw_init), pooled as the broker does | ms compiling the module | µs per restart | µs instantiating | linear memory KiB | RSS KiB per live instance (100 alive) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let instances = 100;
    // Slots for the live instances, the one restarted and the spare the broker keeps.
    let engine = PluginEngine::pooled(instances + 2, 16 << 20).expect("engine");
    for (module, config) in [
        ("passthrough", BTreeMap::new()),
        ("json_range", range_config()),
    ] {
        let s = section(module, module, config);
        let bytes = std::fs::read(&s.module).unwrap();
        let before = procfs::rss_kib(std::process::id());
        let mut during = before;
        let cost = measure_starts(
            &engine,
            &s,
            &bytes,
            (scale(2000), instances as usize),
            || {
                during = procfs::rss_kib(std::process::id());
            },
        )
        .expect("starts");
        println!(
            "| {module} ({} KiB module) | {:.1} | {} | {} | {} | {:.1} |",
            bytes.len() / 1024,
            cost.compile.as_secs_f64() * 1e3,
            us(cost.per_start),
            us(cost.instantiate),
            cost.linear_memory_bytes / 1024,
            (during.saturating_sub(before)) as f64 / instances as f64
        );
    }
}
