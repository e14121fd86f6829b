//! The plugin ABI is language-neutral: plugins written in C with the header-only SDK
//! (`sdk/c/headwater.h`) are compiled here with clang, exactly as `plugins/c/prefix-filter/README.md`
//! says, and run by the broker's real plugin host: through the `headwater::plugin` API and
//! through a running broker that Kafka and MQTT clients produce to.
//!
//! clang and wasm-ld are system clients like kcat: missing, the tests say why they skip, or fail
//! when `HEADWATER_REQUIRE_CLIENTS` is set (as in CI).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use headwater::config::{Attach, PluginSection};
use headwater::log::{NewRecord, StoredRecord};
use headwater::plugin::{
    ChainOutput, IngestPlugins, Plugin, PluginEngine, UpstreamPlugins, HEADER_ERROR, HEADER_PLUGIN,
    HEADER_SOURCE_TOPIC,
};
use headwater_tests::system_client;
use rdkafka::producer::FutureRecord;
use rumqttc::{AsyncClient, QoS};

/// The build command of `plugins/c/prefix-filter/README.md`, without `-I`, `-o` and the source.
const BUILD_FLAGS: &[&str] = &[
    "--target=wasm32",
    "-Os",
    "-nostdlib",
    "-Wl,--no-entry",
    "-Wl,--strip-all",
];

/// Added for the tests: the SDK and the examples must compile without a warning.
const WARNING_FLAGS: &[&str] = &["-Wall", "-Wextra", "-Werror"];

const PREFIX_FILTER_SOURCE: &str = "plugins/c/prefix-filter/prefix_filter.c";
const SELFTEST_SOURCE: &str = "sdk/c/tests/selftest.c";

/// The config `sdk/c/tests/selftest.c` checks its config lookups against.
const SELFTEST_CONFIG: &str = r#"
text = "hé"
int = -5
float = 2.5
whole = 3
flag = true
nested = { list = [1, 2] }
"#;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// Compiles `source` (relative to the repository root) to a module in this test target's scratch
/// directory, or `None` when clang or wasm-ld is missing and the test should skip.
fn compile(source: &str) -> Option<PathBuf> {
    let clang = system_client("clang")?;
    // clang links wasm32 with wasm-ld (Debian: package lld); without it the error is obscure.
    system_client("wasm-ld")?;
    let root = repo_root();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-plugins");
    std::fs::create_dir_all(&out_dir).expect("create the output directory");
    let stem = Path::new(source)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("source file name");
    let module = out_dir.join(format!("{stem}.wasm"));
    let output = Command::new(clang)
        .current_dir(root)
        .args(BUILD_FLAGS)
        .args(WARNING_FLAGS)
        .arg("-I")
        .arg(root.join("sdk/c"))
        .arg("-o")
        .arg(&module)
        .arg(root.join(source))
        .output()
        .expect("run clang");
    assert!(
        output.status.success(),
        "clang failed on {source}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(module)
}

/// Each module is compiled once per test run, whichever test asks first.
fn prefix_filter() -> Option<PathBuf> {
    static MODULE: OnceLock<Option<PathBuf>> = OnceLock::new();
    MODULE.get_or_init(|| compile(PREFIX_FILTER_SOURCE)).clone()
}

fn selftest() -> Option<PathBuf> {
    static MODULE: OnceLock<Option<PathBuf>> = OnceLock::new();
    MODULE.get_or_init(|| compile(SELFTEST_SOURCE)).clone()
}

fn section(name: &str, module: PathBuf, config: &str) -> PluginSection {
    // The plugins' log lines (hw_log) show with RUST_LOG=info and --nocapture.
    headwater_tests::init_tracing();
    let config: BTreeMap<String, toml::Value> = toml::from_str(config).expect("config is TOML");
    PluginSection {
        name: name.into(),
        module,
        attach: Attach::Ingest,
        topics: vec!["sensors".into()],
        dead_letter_topic: "dead-letters".into(),
        config,
        max_memory_bytes: 16 * 1024 * 1024,
        timeout_ms: 1000,
        max_consecutive_failures: 10,
        instances: 1,
    }
}

/// A record with key `k<i>`, timestamp `1_700_000_000_000 + i` and the given headers; `None`
/// values are tombstones.
fn record(i: usize, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> NewRecord {
    NewRecord {
        timestamp: 1_700_000_000_000 + i as i64,
        key: Some(Bytes::from(format!("k{i}"))),
        value: value.map(Bytes::copy_from_slice),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), Some(Bytes::copy_from_slice(v))))
            .collect(),
    }
}

fn values(values: &[Option<&str>]) -> Vec<NewRecord> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| record(i, v.map(str::as_bytes), &[("origin", b"test")]))
        .collect()
}

fn in_topic<'a>(list: &'a [(String, Vec<NewRecord>)], topic: &str) -> &'a [NewRecord] {
    list.iter()
        .find(|(t, _)| t == topic)
        .map(|(_, r)| r.as_slice())
        .unwrap_or_default()
}

fn kept<'a>(out: &'a ChainOutput, topic: &str) -> &'a [NewRecord] {
    in_topic(out.kept(), topic)
}

fn dead(out: &ChainOutput) -> &[NewRecord] {
    in_topic(out.dead_letters(), "dead-letters")
}

fn value_strs(records: &[NewRecord]) -> Vec<Option<String>> {
    records
        .iter()
        .map(|r| {
            r.value
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .collect()
}

fn header(record: &NewRecord, name: &str) -> Option<String> {
    record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The custom sections of a core module, in order: (name, payload, byte range of the section).
fn custom_sections(module: &[u8]) -> Vec<(String, Vec<u8>, std::ops::Range<usize>)> {
    fn leb(bytes: &[u8], at: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            value |= usize::from(b & 0x7f) << shift;
            if b < 0x80 {
                return value;
            }
            shift += 7;
        }
    }
    assert_eq!(&module[..8], b"\0asm\x01\0\0\0", "a core module, version 1");
    let mut sections = Vec::new();
    let mut at = 8;
    while at < module.len() {
        let start = at;
        let id = module[at];
        at += 1;
        let len = leb(module, &mut at);
        let end = at + len;
        if id == 0 {
            let name_len = leb(module, &mut at);
            let name = String::from_utf8_lossy(&module[at..at + name_len]).into_owned();
            sections.push((name, module[at + name_len..end].to_vec(), start..end));
        }
        at = end;
    }
    sections
}

#[test]
fn the_c_module_declares_abi_v1_and_the_host_checks_it() {
    let Some(path) = prefix_filter() else { return };
    let bytes = std::fs::read(&path).unwrap();
    println!("{PREFIX_FILTER_SOURCE} compiles to {} bytes", bytes.len());
    let sections = custom_sections(&bytes);
    let abi: Vec<_> = sections
        .iter()
        .filter(|(name, _, _)| name == "headwater:abi")
        .collect();
    assert_eq!(abi.len(), 1, "one ABI section: {sections:?}");
    assert_eq!(abi[0].1, [1, 0, 0, 0], "ABI version 1, little-endian u32");

    let engine = PluginEngine::new().unwrap();
    let s = section("prefix", path, r#"prefix = "temp:""#);
    Plugin::from_bytes(&engine, &s, &bytes).expect("the host loads the C module");

    // Without the section the same module is refused, so the section is what the host read.
    let range = abi[0].2.clone();
    let mut stripped = bytes[..range.start].to_vec();
    stripped.extend_from_slice(&bytes[range.end..]);
    let err = Plugin::from_bytes(&engine, &s, &stripped)
        .err()
        .expect("refused without the section")
        .to_string();
    assert!(
        err.contains("has no `headwater:abi` custom section"),
        "{err}"
    );
}

#[test]
fn a_bad_config_is_refused_with_the_plugins_own_message() {
    let Some(path) = prefix_filter() else { return };
    let cases = [
        (
            r#"prefx = "temp:""#,
            "unknown config key `prefx` (known keys: prefix, strip, rejected_topic)",
        ),
        ("", "config key `prefix` is missing"),
        (
            "prefix = 5",
            "config key `prefix` must be text, found an integer",
        ),
        (
            "prefix = \"a\"\nstrip = \"yes\"",
            "config key `strip` must be a boolean, found text",
        ),
        (
            "prefix = \"a\"\nrejected_topic = \"no spaces\"",
            "config key `rejected_topic` is not a valid topic name: \"no spaces\"",
        ),
    ];
    for (config, message) in cases {
        let s = section("prefix", path.clone(), config);
        let err = IngestPlugins::from_config(&[s])
            .err()
            .unwrap_or_else(|| panic!("config {config:?} should be refused"))
            .to_string();
        assert!(
            err.contains(&format!("plugin prefix: refused its config: {message}")),
            "config {config:?}: {err}"
        );
    }
}

#[tokio::test]
async fn matching_records_are_kept_others_dropped_tombstones_dead_lettered() {
    let Some(path) = prefix_filter() else { return };
    let plugins =
        IngestPlugins::from_config(&[section("prefix", path, r#"prefix = "temp:""#)]).unwrap();
    let input = values(&[
        Some("temp:21.5"),
        Some("hum:40"),
        None,
        Some("temp:"),
        Some("tem"),
        Some(""),
    ]);
    let out = plugins.run("sensors", input.clone()).await.unwrap();

    let kept = kept(&out, "sensors");
    assert_eq!(
        value_strs(kept),
        [Some("temp:21.5".into()), Some("temp:".into())]
    );
    assert_eq!(kept[0], input[0], "a kept record is unchanged");
    assert_eq!(kept[1], input[3]);

    let dead = dead(&out);
    assert_eq!(dead.len(), 1, "only the tombstone is dead-lettered");
    assert_eq!(dead[0].value, None);
    assert_eq!(dead[0].key, input[2].key);
    assert_eq!(
        header(&dead[0], HEADER_ERROR).as_deref(),
        Some("value is null (a tombstone): no prefix to match")
    );
    assert_eq!(header(&dead[0], HEADER_PLUGIN).as_deref(), Some("prefix"));
    assert_eq!(
        header(&dead[0], HEADER_SOURCE_TOPIC).as_deref(),
        Some("sensors")
    );
    assert_eq!(header(&dead[0], "origin").as_deref(), Some("test"));
    assert_eq!(plugins.plugins()[0].stats().snapshot().failed_batches, 0);
}

#[tokio::test]
async fn prefixes_are_stripped_and_rejects_routed_when_configured() {
    let Some(path) = prefix_filter() else { return };
    let config = "prefix = \"temp:\"\nstrip = true\nrejected_topic = \"rejected\"";
    let plugins = IngestPlugins::from_config(&[section("prefix", path, config)]).unwrap();
    let input = values(&[Some("temp:21.5"), Some("hum:40"), None, Some("temp:")]);
    let out = plugins.run("sensors", input.clone()).await.unwrap();

    let kept_here = kept(&out, "sensors");
    assert_eq!(
        value_strs(kept_here),
        [Some("21.5".into()), Some("".into())]
    );
    assert_eq!(kept_here[0].key, input[0].key);
    assert_eq!(kept_here[0].timestamp, input[0].timestamp);
    assert_eq!(kept_here[0].headers, input[0].headers);
    assert_eq!(kept(&out, "rejected"), &input[1..2], "routed unchanged");
    assert_eq!(dead(&out).len(), 1);
}

#[tokio::test]
async fn the_sdk_selftest_passes_in_the_host_and_every_output_path_works() {
    let Some(path) = selftest() else { return };
    // Loading runs hw_init, which runs the SDK's checks and refuses its config if one fails.
    let plugins =
        match IngestPlugins::from_config(&[section("selftest", path.clone(), SELFTEST_CONFIG)]) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };

    let actions: &[(&str, &[u8])] = &[
        ("keep", b""),
        ("value", b"new"),
        ("tombstone", b""),
        ("route", b"elsewhere"),
        ("error", b"bad \xff"),
        ("describe", b""),
        ("add-header", b"x"),
        ("dup", b""),
        ("", b""),
        ("hog", b""),
    ];
    let input: Vec<NewRecord> = actions
        .iter()
        .enumerate()
        .map(|(i, (action, arg))| {
            let value = format!("v{i}");
            if action.is_empty() {
                record(i, Some(value.as_bytes()), &[])
            } else {
                record(
                    i,
                    Some(value.as_bytes()),
                    &[("action", action.as_bytes()), ("arg", arg)],
                )
            }
        })
        .collect();
    let out = plugins.run("sensors", input.clone()).await.unwrap();

    let here = kept(&out, "sensors");
    assert_eq!(
        value_strs(here),
        [
            Some("v0".into()),
            Some("new".into()),
            None,
            Some(
                "topic=sensors partition=- offset=- ts=1700000000005 key=k5 \
                 headers=action:describe,arg:"
                    .into()
            ),
            Some("v6".into()),
            Some("v7".into()),
            Some("v7".into()),
        ]
    );
    assert_eq!(here[0], input[0]);
    assert_eq!(here[1].key, input[1].key);
    assert_eq!(here[1].headers, input[1].headers);
    let added = &here[4];
    assert_eq!(added.key.as_deref(), Some(&b"new-key"[..]));
    assert_eq!(added.timestamp, input[6].timestamp + 1);
    assert_eq!(
        added.headers.last(),
        Some(&("added".to_string(), Some(Bytes::from_static(b"x"))))
    );
    assert_eq!(added.headers.len(), 3);
    assert_eq!(kept(&out, "elsewhere"), &input[3..4]);

    let failed = dead(&out);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0].value, input[4].value);
    assert_eq!(
        header(&failed[0], HEADER_ERROR).as_deref(),
        Some("bad \u{fffd}"),
        "invalid UTF-8 in a message is replaced, not a bad output"
    );
    let hog = header(&failed[1], HEADER_ERROR).unwrap();
    let mib: u32 = hog
        .strip_prefix("allocation failed after ")
        .and_then(|s| s.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected message {hog:?}"));
    assert!(
        (1..16).contains(&mib),
        "the 16 MiB memory cap stops hw_malloc: {mib}"
    );

    // A failure the plugin reports fails the whole batch; the next batch runs normally.
    let failing = vec![
        record(0, Some(b"a"), &[("action", b"keep")]),
        record(1, Some(b"b"), &[("action", b"fail"), ("arg", b"nope")]),
    ];
    let out = plugins.run("sensors", failing).await.unwrap();
    assert!(kept(&out, "sensors").is_empty());
    let failed = dead(&out);
    assert_eq!(failed.len(), 2);
    assert_eq!(
        header(&failed[0], HEADER_ERROR).as_deref(),
        Some("failed the batch: nope")
    );

    // 300 records: the output's record count takes a two-byte CBOR head.
    let many: Vec<NewRecord> = (0..300)
        .map(|i| record(i, Some(b"m"), &[("action", b"keep")]))
        .collect();
    let out = plugins.run("sensors", many.clone()).await.unwrap();
    assert_eq!(kept(&out, "sensors"), many.as_slice());
    assert!(out.dead_letters().is_empty());
    assert_eq!(plugins.plugins()[0].stats().snapshot().failed_batches, 1);

    // Upstream plugins see partition and offset.
    let mut s = section("selftest", path, SELFTEST_CONFIG);
    s.attach = Attach::Upstream;
    let upstream = UpstreamPlugins::from_config(&[s]).unwrap();
    let stored = StoredRecord {
        offset: 7,
        timestamp: -3,
        key: None,
        value: Some(Bytes::from_static(b"x")),
        headers: vec![("action".into(), Some(Bytes::from_static(b"describe")))],
    };
    let mut states = headwater::plugin::PluginStates::new();
    let out = upstream
        .run("sensors", 2, vec![stored], &mut states)
        .await
        .unwrap();
    assert_eq!(
        value_strs(kept(&out, "sensors")),
        [Some(
            "topic=sensors partition=2 offset=7 ts=-3 key=- headers=action:describe".into()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_produced_through_the_broker_are_filtered_in_the_log() {
    let Some(path) = prefix_filter() else { return };
    let hw = headwater_tests::InProcess::start_with(|c| {
        c.plugins
            .push(section("prefix", path.clone(), r#"prefix = "temp:""#))
    })
    .await;

    let producer = producer(&hw.kafka(), &[]);
    send(&producer, "sensors", "dev1", "temp:21.5").await;
    send(&producer, "sensors", "dev1", "hum:40").await;
    producer
        .send(
            FutureRecord::<str, [u8]>::to("sensors").key("dev1"),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("producing a tombstone failed: {e}"));
    let (client, eventloop) = AsyncClient::new(mqtt_options("c-plugin", hw.mqtt()), 16);
    let (_incoming, mut acks) = spawn_event_loop(eventloop);
    for payload in ["temp:-3", "pressure:1013"] {
        client
            .publish("sensors/dev2", QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    wait_for_count(&mut acks, 2).await;

    let kafka = hw.kafka();
    let kept = tokio::task::spawn_blocking(move || {
        consume(&kafka, "sensors", 1, 2, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let kept: Vec<String> = kept.iter().map(Consumed::value_str).collect();
    assert_eq!(kept, ["temp:21.5", "temp:-3"]);

    let kafka = hw.kafka();
    let dead = tokio::task::spawn_blocking(move || {
        consume(&kafka, "dead-letters", 1, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].value, None,
        "the tombstone is dead-lettered as it was"
    );
    assert_eq!(
        dead[0].header(HEADER_ERROR).as_deref(),
        Some("value is null (a tombstone): no prefix to match")
    );
    hw.broker.stop().await;
}
