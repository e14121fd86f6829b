//! The example plugins of `plugins/`, built with the SDK, run by the host: proof that the two
//! sides of the ABI agree. The modules must be built first; a missing one fails the test.

use super::*;
use crate::plugin::{HEADER_ERROR, HEADER_PLUGIN, HEADER_SOURCE_TOPIC};

/// The compiled example plugin `name`, or a failure that says how to build it.
fn example(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-unknown-unknown/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the example plugins first with\n  \
         cargo build --release --target wasm32-unknown-unknown --manifest-path plugins/Cargo.toml",
        path.display()
    );
    path
}

fn range_section(topics: &[&str]) -> PluginSection {
    let mut s = section("range", &example("json_range"), topics);
    s.config = toml::from_str("field = \"temp\"\nmin = -40\nmax = 125.0").unwrap();
    s
}

#[tokio::test]
async fn json_range_keeps_in_range_drops_the_rest_and_dead_letters_the_unparsable() {
    let plugins = IngestPlugins::from_config(&[range_section(&["sensors"])]).unwrap();
    let input = [
        r#"{"temp": 21.5, "id": "a"}"#,
        r#"{"temp": 300}"#,
        r#"{"temp": -40}"#,
        "not json at all",
        r#"{"humidity": 40}"#,
        r#"{"temp": "warm"}"#,
    ];
    let out = run(&plugins, "sensors", &input).await;
    let (kept, _) = split_output(&out, "sensors");
    let (_, dead) = split_output(&out, "dead-letters");
    assert_eq!(values(&kept), [input[0], input[2]]);
    assert_eq!(
        kept[0].key.as_deref(),
        Some(&b"device-0"[..]),
        "kept records are intact"
    );
    assert_eq!(kept[0].timestamp, 1_700_000_000_000);
    assert_eq!(header(&kept[0], "origin"), Some("test"));

    assert_eq!(values(&dead), [input[3], input[4], input[5]]);
    assert!(header(&dead[0], HEADER_ERROR)
        .unwrap()
        .starts_with("value is not JSON"));
    assert_eq!(
        header(&dead[1], HEADER_ERROR),
        Some("field `temp` is missing")
    );
    assert_eq!(
        header(&dead[2], HEADER_ERROR),
        Some("field `temp` is not a number (found text)")
    );
    assert_eq!(header(&dead[2], HEADER_PLUGIN), Some("range"));
    assert_eq!(header(&dead[2], HEADER_SOURCE_TOPIC), Some("sensors"));

    let stats = plugins.plugins()[0].stats().snapshot();
    assert_eq!(stats.calls, 1);
    assert_eq!(
        (stats.records_in, stats.records_out, stats.records_failed),
        (6, 2, 3)
    );
    assert_eq!(stats.failed_batches, 0);
}

#[tokio::test]
async fn json_range_refuses_a_bad_config_at_load() {
    let mut s = range_section(&["sensors"]);
    s.config = toml::from_str("field = \"temp\"\nminimum = 3").unwrap();
    let err = IngestPlugins::from_config(&[s]).err().unwrap().to_string();
    assert!(
        err.contains("plugin range: refused its config: unknown config key `minimum`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_large_request_is_split_into_calls_that_fit_the_memory_cap() {
    let mut s = range_section(&["sensors"]);
    s.max_memory_bytes = 4 * 1024 * 1024;
    let plugins = IngestPlugins::from_config(&[s]).unwrap();
    // ~4 MB of records through a plugin capped at 4 MiB (of which its stack takes 1).
    let padding = "x".repeat(4000);
    let value = format!(r#"{{"temp": 20, "pad": "{padding}"}}"#);
    let input: Vec<&str> = std::iter::repeat_n(value.as_str(), 1000).collect();
    let out = run(&plugins, "sensors", &input).await;
    assert_eq!(split_output(&out, "sensors").0.len(), 1000);
    assert!(out.dead_letters().is_empty());
    let stats = plugins.plugins()[0].stats().snapshot();
    assert!(stats.calls > 4, "{} calls", stats.calls);
}

#[tokio::test]
async fn passthrough_after_json_range_sees_only_what_range_kept() {
    let mut pass = section("pass", &example("passthrough"), &["sensors"]);
    pass.dead_letter_topic = "pass-dead".into();
    let plugins = IngestPlugins::from_config(&[range_section(&["sensors"]), pass]).unwrap();
    let out = run(
        &plugins,
        "sensors",
        &[r#"{"temp": 1}"#, r#"{"temp": 999}"#, "x"],
    )
    .await;
    assert_eq!(values(&split_output(&out, "sensors").0), [r#"{"temp": 1}"#]);
    assert_eq!(values(&split_output(&out, "dead-letters").1), ["x"]);
    let pass_stats = plugins.plugins()[1].stats().snapshot();
    assert_eq!((pass_stats.records_in, pass_stats.records_out), (1, 1));
}

#[tokio::test]
async fn upstream_plugins_see_partition_and_offset() {
    use crate::log::StoredRecord;
    let mut s = range_section(&["sensors"]);
    s.attach = Attach::Upstream;
    let (ingest, upstream) = crate::plugin::load(&[s]).unwrap();
    assert!(!ingest.has_plugins("sensors"));
    assert!(upstream.has_plugins("sensors"));
    let stored = records(&[r#"{"temp": 5}"#, "oops"])
        .into_iter()
        .enumerate()
        .map(|(i, r)| StoredRecord {
            offset: 40 + i as i64,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers,
        })
        .collect();
    let out = upstream.run("sensors", 3, stored).await.unwrap();
    assert_eq!(values(&split_output(&out, "sensors").0), [r#"{"temp": 5}"#]);
    let dead = split_output(&out, "dead-letters").1;
    assert_eq!(
        header(&dead[0], crate::plugin::HEADER_SOURCE_PARTITION),
        Some("3")
    );
    assert_eq!(
        header(&dead[0], crate::plugin::HEADER_SOURCE_OFFSET),
        Some("41")
    );
}

#[test]
fn example_modules_declare_the_abi_section_the_sdk_names() {
    for name in ["json_range", "passthrough"] {
        let bytes = std::fs::read(example(name)).unwrap();
        crate::plugin::abi::check_version(&bytes).unwrap();
    }
}
