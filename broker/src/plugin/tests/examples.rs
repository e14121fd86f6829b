//! The example plugins of `plugins/`, built with the SDK, run by the host: proof that the two
//! sides of the ABI agree. The modules must be built first; a missing one fails the test.

use super::*;
use crate::plugin::{HEADER_ERROR, HEADER_PLUGIN, HEADER_SOURCE_TOPIC};

/// The compiled example plugin `name`, or a failure that says how to build it.
pub(super) fn example(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-unknown-unknown/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the example plugins first with\n  \
         (cd plugins && cargo build --release --target wasm32-unknown-unknown)",
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
    let mut states = crate::plugin::PluginStates::new();
    let out = upstream
        .run("sensors", 3, stored, &mut states)
        .await
        .unwrap();
    assert!(states.is_empty(), "json-range keeps no state");
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

fn redact_section(config: &str) -> PluginSection {
    let mut s = section("redact", &example("redact"), &["people"]);
    s.config = toml::from_str(config).unwrap();
    s
}

#[tokio::test]
async fn redact_masks_fields_and_headers_and_dead_letters_what_is_not_an_object() {
    let s = redact_section("fields = [\"owner.email\", \"ssn\"]\nheaders = [\"origin\"]");
    let plugins = IngestPlugins::from_config(&[s]).unwrap();
    let input = [
        r#"{"id": 1, "owner": {"email": "a@b.c", "name": "A"}, "ssn": "078-05-1120"}"#,
        r#"{"id": 2, "owner": {"name": "B"}}"#,
        "[1, 2]",
        "not json",
    ];
    let out = run(&plugins, "people", &input).await;
    let (kept, dead) = split_output(&out, "people");
    assert_eq!(
        values(&kept),
        [
            r#"{"id":1,"owner":{"email":"***","name":"A"},"ssn":"***"}"#,
            input[1],
        ]
    );
    assert_eq!(header(&kept[0], "origin"), Some("***"));
    assert_eq!(header(&kept[1], "origin"), Some("***"));
    assert_eq!(kept[1].key.as_deref(), Some(&b"device-1"[..]));
    assert_eq!(kept[1].timestamp, 1_700_000_000_001);
    assert!(dead.is_empty(), "dead letters go to their own topic");

    let dead = split_output(&out, "dead-letters").1;
    assert_eq!(values(&dead), [input[2], input[3]]);
    assert_eq!(
        header(&dead[0], HEADER_ERROR),
        Some("value is not a JSON object (found an array)")
    );
    assert!(header(&dead[1], HEADER_ERROR)
        .unwrap()
        .starts_with("value is not JSON: "));
    assert_eq!(header(&dead[0], HEADER_PLUGIN), Some("redact"));
    assert_eq!(header(&dead[0], HEADER_SOURCE_TOPIC), Some("people"));
    // A dead letter is the input record as it came: its headers are not redacted.
    assert_eq!(header(&dead[0], "origin"), Some("test"));
}

#[tokio::test]
async fn redact_remove_mode_deletes_keys_and_headers() {
    let s = redact_section(
        "fields = [\"owner\", \"gps.lat\"]\nmode = \"remove\"\nheaders = [\"origin\"]",
    );
    let plugins = IngestPlugins::from_config(&[s]).unwrap();
    let out = run(
        &plugins,
        "people",
        &[r#"{"owner": "A", "gps": {"lat": 1.5, "lon": 2.5}, "temp": 20}"#],
    )
    .await;
    let kept = split_output(&out, "people").0;
    assert_eq!(values(&kept), [r#"{"gps":{"lon":2.5},"temp":20}"#]);
    assert_eq!(header(&kept[0], "origin"), None);
    assert!(out.dead_letters().is_empty());
}

#[tokio::test]
async fn redact_refuses_a_bad_config_at_load() {
    for (config, reason) in [
        (
            "fields = []",
            "config key `fields` must name at least one field",
        ),
        ("mode = \"mask\"", "config key `fields` is missing"),
        (
            "fields = [\"a\"]\nmode = \"hide\"",
            "config key `mode` must be \"mask\" or \"remove\", found \"hide\"",
        ),
        (
            "fields = [\"a\"]\nfeilds = [\"b\"]",
            "unknown config key `feilds`",
        ),
    ] {
        let err = IngestPlugins::from_config(&[redact_section(config)])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("plugin redact: refused its config: {reason}")),
            "{config}: {err}"
        );
    }
}

fn cbor_section(config: &str) -> PluginSection {
    let mut s = section("cbor", &example("cbor_to_json"), &["sensors"]);
    s.config = toml::from_str(config).unwrap();
    s
}

/// Records with binary values; `None` is a tombstone.
fn binary_records(values: &[Option<&[u8]>]) -> Vec<NewRecord> {
    let mut out = records(&vec![""; values.len()]);
    for (record, value) in out.iter_mut().zip(values) {
        record.value = value.map(Bytes::copy_from_slice);
    }
    out
}

#[tokio::test]
async fn cbor_to_json_converts_payloads_and_dead_letters_the_undecodable() {
    let plugins = IngestPlugins::from_config(&[cbor_section("")]).unwrap();
    let input: [Option<&[u8]>; 6] = [
        // {"temp": 21.5 (a half float), "id": h'0102'}
        Some(b"\xa2\x64temp\xf9\x4d\x60\x62id\x42\x01\x02"),
        // [1, -1, 1(1363896240), NaN (double)]
        Some(b"\x84\x01\x20\xc1\x1a\x51\x4b\x67\xb0\xfb\x7f\xf8\0\0\0\0\0\0"),
        Some(br#"{"already": "json"}"#),
        None,
        // {h'01': 1}: a byte-string key
        Some(b"\xa1\x41\x01\x01"),
        // 1, then a stray byte
        Some(b"\x01\x02"),
    ];
    let out = plugins
        .run("sensors", binary_records(&input))
        .await
        .unwrap();
    let (kept, _) = split_output(&out, "sensors");
    assert_eq!(kept.len(), 3);
    assert_eq!(
        values(&kept[..2]),
        [r#"{"temp":21.5,"id":"AQI="}"#, "[1,-1,1363896240,null]"]
    );
    assert_eq!(header(&kept[0], "content-type"), Some("application/json"));
    assert_eq!(
        header(&kept[0], "origin"),
        Some("test"),
        "other headers stay"
    );
    assert_eq!(kept[0].key.as_deref(), Some(&b"device-0"[..]));
    assert_eq!(kept[2].value, None, "a tombstone passes unchanged");
    assert_eq!(header(&kept[2], "content-type"), None);

    let dead = split_output(&out, "dead-letters").1;
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0].value.as_deref(), input[2]);
    assert!(header(&dead[0], HEADER_ERROR)
        .unwrap()
        .starts_with("value is not valid CBOR: "));
    assert_eq!(
        header(&dead[1], HEADER_ERROR),
        Some("CBOR map key at byte 1 is a byte string: only text and integer keys convert to JSON")
    );
    assert_eq!(
        header(&dead[2], HEADER_ERROR),
        Some("value has 1 bytes after its CBOR item (which ends at byte 1)")
    );
    assert_eq!(header(&dead[2], HEADER_PLUGIN), Some("cbor"));
    assert_eq!(header(&dead[2], HEADER_SOURCE_TOPIC), Some("sensors"));

    let stats = plugins.plugins()[0].stats().snapshot();
    assert_eq!(
        (stats.records_in, stats.records_out, stats.records_failed),
        (6, 3, 3)
    );
    assert_eq!(stats.failed_batches, 0);
}

#[tokio::test]
async fn cbor_to_json_takes_hex_and_can_leave_headers_alone() {
    let s = cbor_section("bytes = \"hex\"\nset_content_type = false");
    let plugins = IngestPlugins::from_config(&[s]).unwrap();
    let out = plugins
        .run("sensors", binary_records(&[Some(b"\x42\xbe\xef")]))
        .await
        .unwrap();
    let kept = split_output(&out, "sensors").0;
    assert_eq!(values(&kept), [r#""beef""#]);
    assert_eq!(header(&kept[0], "content-type"), None);
}

#[tokio::test]
async fn cbor_to_json_refuses_a_bad_config_at_load() {
    for (config, reason) in [
        (
            "bytes = \"base32\"",
            "config key `bytes` must be \"base64\" or \"hex\", found \"base32\"",
        ),
        (
            "set_content_type = \"yes\"",
            "config key `set_content_type` must be a boolean, found text",
        ),
        ("content_type = true", "unknown config key `content_type`"),
    ] {
        let err = IngestPlugins::from_config(&[cbor_section(config)])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("plugin cbor: refused its config: {reason}")),
            "{config}: {err}"
        );
    }
}

#[tokio::test]
async fn cbor_to_json_feeds_the_json_plugins_of_a_chain() {
    // CBOR in; JSON out of the first plugin, redacted by the second, range-checked by the third.
    let mut redact = redact_section("fields = [\"owner\"]");
    redact.topics = vec!["sensors".into()];
    redact.dead_letter_topic = "redact-dead".into();
    let plugins =
        IngestPlugins::from_config(&[cbor_section(""), redact, range_section(&["sensors"])])
            .unwrap();
    let input: [Option<&[u8]>; 2] = [
        // {"owner": "ann", "temp": 20}
        Some(b"\xa2\x65owner\x63ann\x64temp\x14"),
        // {"owner": "bob", "temp": 500}
        Some(b"\xa2\x65owner\x63bob\x64temp\x19\x01\xf4"),
    ];
    let out = plugins
        .run("sensors", binary_records(&input))
        .await
        .unwrap();
    let kept = split_output(&out, "sensors").0;
    assert_eq!(values(&kept), [r#"{"owner":"***","temp":20}"#]);
    assert_eq!(header(&kept[0], "content-type"), Some("application/json"));
    assert!(out.dead_letters().is_empty());
}

#[tokio::test]
async fn deep_nesting_is_an_error_or_copied_never_a_stack_overflow_in_the_guest() {
    // cbor-to-json: 64 nested arrays convert; 100,000 are a per-record error, not a trap.
    let mut ok = vec![0x81; 64];
    ok.push(0x00);
    let mut deep = vec![0x81; 100_000];
    deep.push(0x00);
    let plugins = IngestPlugins::from_config(&[cbor_section("")]).unwrap();
    let out = plugins
        .run("sensors", binary_records(&[Some(&ok), Some(&deep)]))
        .await
        .unwrap();
    let expected = format!("{}0{}", "[".repeat(64), "]".repeat(64));
    assert_eq!(values(&split_output(&out, "sensors").0), [expected]);
    let dead = split_output(&out, "dead-letters").1;
    assert_eq!(
        header(&dead[0], HEADER_ERROR),
        Some("CBOR arrays and maps nest deeper than 64 levels (at byte 64)")
    );
    assert_eq!(plugins.plugins()[0].stats().snapshot().failed_batches, 0);

    // redact: a value off the configured paths is copied as text, however deep.
    let plugins = IngestPlugins::from_config(&[redact_section("fields = [\"b\"]")]).unwrap();
    let nested = format!("{}0{}", "[".repeat(20_000), "]".repeat(20_000));
    let input = format!(r#"{{"a": {nested}, "b": 1}}"#);
    let out = run(&plugins, "people", &[&input]).await;
    assert_eq!(
        values(&split_output(&out, "people").0),
        [format!(r#"{{"a":{nested},"b":"***"}}"#)]
    );
    assert_eq!(plugins.plugins()[0].stats().snapshot().failed_batches, 0);
}

#[test]
fn example_modules_declare_the_abi_section_the_sdk_names() {
    for name in [
        "json_range",
        "passthrough",
        "redact",
        "cbor_to_json",
        "downsample",
    ] {
        let bytes = std::fs::read(example(name)).unwrap();
        crate::plugin::abi::check_version(&bytes).unwrap();
    }
}
