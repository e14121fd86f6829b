//! Plugins that misbehave on purpose, written in WebAssembly text: each must fail its batch
//! (records to the dead-letter topic) or be refused at load, and never hurt the broker.

use std::time::{Duration, Instant};

use headwater_sdk::abi;
use headwater_sdk::{wire, OutRecord, Output};

use super::*;
use crate::plugin::{HEADER_ERROR, HEADER_PLUGIN, HEADER_SOURCE_TOPIC};

const V1: &str = r"\01\00\00\00";
/// Where hw_alloc puts every input.
const INPUT_AT: u32 = 1024;
/// Where constant outputs live (inputs in these tests are far smaller than the gap).
pub(super) const OUTPUT_AT: u32 = 60_000;

/// A module with the ABI exports; `process` is the body of `hw_process(ptr, len) -> i64`.
pub(super) struct Wat<'a> {
    pub(super) abi: Option<&'a str>,
    pub(super) imports: &'a str,
    pub(super) pages: u32,
    pub(super) items: String,
    pub(super) alloc: String,
    pub(super) init: String,
    pub(super) process: String,
}

impl<'a> Wat<'a> {
    pub(super) fn new(process: &str) -> Wat<'a> {
        Wat {
            abi: Some(V1),
            imports: "",
            pages: 1,
            items: String::new(),
            alloc: format!("(i32.const {INPUT_AT})"),
            init: "(i64.const 0)".into(),
            process: process.to_string(),
        }
    }

    /// `hw_process` returns `output`, stored as a data segment.
    pub(super) fn returning(output: &Output<'_>) -> Wat<'a> {
        let mut bytes = Vec::new();
        wire::encode_output(output, &mut bytes);
        Wat::returning_bytes(&bytes)
    }

    fn returning_bytes(bytes: &[u8]) -> Wat<'a> {
        let mut wat = Wat::new(&format!("(i64.const {})", packed(OUTPUT_AT, bytes.len())));
        wat.items = data(OUTPUT_AT, bytes);
        wat
    }

    pub(super) fn build(&self) -> Vec<u8> {
        let abi = self
            .abi
            .map(|v| format!(r#"(@custom "headwater:abi" "{v}")"#))
            .unwrap_or_default();
        let text = format!(
            r#"(module
                {abi}
                {imports}
                (memory (export "memory") {pages})
                {items}
                (func (export "hw_alloc") (param i32) (result i32) {alloc})
                (func (export "hw_init") (param i32 i32) (result i64) {init})
                (func (export "hw_process") (param i32 i32) (result i64) {process}))"#,
            imports = self.imports,
            pages = self.pages,
            items = self.items,
            alloc = self.alloc,
            init = self.init,
            process = self.process,
        );
        wat::parse_str(text).unwrap()
    }
}

fn packed(ptr: u32, len: usize) -> i64 {
    abi::pack(ptr, len as u32) as i64
}

fn data(at: u32, bytes: &[u8]) -> String {
    let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    format!(r#"(data (i32.const {at}) "{escaped}")"#)
}

/// An output that keeps one record with value `value` in the source topic.
pub(super) fn keep_one(value: &'static str) -> Output<'static> {
    let mut out = Output::new();
    out.keep(OutRecord {
        topic: None,
        timestamp: 7,
        key: None,
        value: Some(value.as_bytes().into()),
        headers: vec![],
    });
    out
}

pub(super) fn load(sections: Vec<PluginSection>) -> IngestPlugins {
    IngestPlugins::from_config(&sections).unwrap()
}

fn load_err(dir: &Path, wat: &Wat<'_>) -> String {
    let path = write_module(dir, "refused", &wat.build());
    match IngestPlugins::from_config(&[section("refused", &path, &["t"])]) {
        Ok(_) => panic!("module was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Runs one batch through a single-plugin chain and returns its dead letters.
async fn dead_letters_of(wat: &Wat<'_>) -> Vec<NewRecord> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &wat.build());
    let plugins = load(vec![section("p", &path, &["t"])]);
    let out = run(&plugins, "t", &["a", "b"]).await;
    let (kept, dead) = split_output(&out, "dead-letters");
    assert!(kept.is_empty());
    assert!(
        split_output(&out, "t").0.is_empty(),
        "nothing is kept from a failed batch"
    );
    dead
}

#[tokio::test]
async fn an_infinite_loop_times_out_and_the_broker_carries_on() {
    infinite_loop_times_out().await;
}

// Multi-threaded, so the batch runs on the caller's thread (`turns`): the deadline must stop it
// there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_on_the_callers_thread_times_out_too() {
    infinite_loop_times_out().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_traps_on_the_callers_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut wat = Wat::new("(call $deeper (i64.const 1))");
    wat.items = "(func $deeper (param i64) (result i64) (i64.add (local.get 0) (call $deeper (local.get 0))))".into();
    let path = write_module(dir.path(), "deep", &wat.build());
    let plugins = load(vec![section("deep", &path, &["t"])]);
    let out = run(&plugins, "t", &["a"]).await;
    let (_, dead) = split_output(&out, "dead-letters");
    assert_eq!(values(&dead), ["a"]);
    let error = header(&dead[0], HEADER_ERROR).unwrap_or_default();
    assert!(error.contains("stack"), "{error}");
    // The broker goes on: the same plugin's next batch runs (and traps) again.
    let out = run(&plugins, "t", &["b"]).await;
    assert_eq!(values(&split_output(&out, "dead-letters").1), ["b"]);
}

async fn infinite_loop_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let looping = write_module(
        dir.path(),
        "loop",
        &Wat::new("(loop $spin (br $spin)) (i64.const 0)").build(),
    );
    let good = write_module(dir.path(), "good", &Wat::returning(&keep_one("ok")).build());
    let plugins = load(vec![
        section("spinner", &looping, &["hot"]),
        section("good", &good, &["cool"]),
    ]);

    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(10), run(&plugins, "hot", &["a", "b"]))
        .await
        .expect("the epoch deadline must stop the loop");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (kept, _) = split_output(&out, "hot");
    let (_, dead) = split_output(&out, "dead-letters");
    assert!(kept.is_empty());
    assert_eq!(values(&dead), ["a", "b"]);
    assert_eq!(
        header(&dead[0], HEADER_ERROR),
        Some("timed out after 50 ms")
    );
    assert_eq!(header(&dead[0], HEADER_PLUGIN), Some("spinner"));
    assert_eq!(header(&dead[0], HEADER_SOURCE_TOPIC), Some("hot"));
    assert_eq!(
        header(&dead[0], "origin"),
        Some("test"),
        "original headers are kept"
    );

    // Other plugins, and the same plugin's next batch, still run.
    let out = run(&plugins, "cool", &["x"]).await;
    assert_eq!(values(&split_output(&out, "cool").0), ["ok"]);
    let out = run(&plugins, "hot", &["c"]).await;
    assert_eq!(values(&split_output(&out, "dead-letters").1), ["c"]);
    let stats = plugins.plugins()[0].stats().snapshot();
    assert_eq!(
        (stats.calls, stats.failed_batches, stats.restarts),
        (2, 2, 1)
    );
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_cap() {
    // Grows one page at a time until memory.grow says no, then gives up with a trap.
    let bomb = Wat::new(
        "(block $refused
            (loop $grow
                (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
                (br $grow)))
         (if (i32.gt_u (memory.size) (i32.const 32)) (then (i64.const 0) (return)))
         unreachable",
    );
    let dead = dead_letters_of(&bomb).await;
    assert_eq!(values(&dead), ["a", "b"]);
    // 32 pages = the 2 MiB cap: had memory grown past it, the call would have returned 0 and
    // failed with a decode error instead.
    assert_eq!(
        header(&dead[0], HEADER_ERROR),
        Some(
            "reached its memory cap of 2097152 bytes, \
             then wasm trap: wasm `unreachable` instruction executed"
        )
    );
}

#[tokio::test]
async fn initial_memory_above_the_cap_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut wat = Wat::returning(&keep_one("x"));
    wat.pages = 64; // 4 MiB, twice the cap
    let err = load_err(dir.path(), &wat);
    assert!(err.contains("initial memory exceeds the cap"), "{err}");
}

#[tokio::test]
async fn a_trap_fails_the_batch_and_the_next_batch_gets_a_fresh_instance() {
    // A big input poisons the instance and traps; a poisoned instance traps on everything.
    let mut empty = Vec::new();
    wire::encode_output(&Output::new(), &mut empty);
    let mut wat = Wat::new(&format!(
        "(if (global.get $poisoned) (then unreachable))
         (if (i32.gt_u (local.get 1) (i32.const 200))
            (then (global.set $poisoned (i32.const 1)) unreachable))
         (i64.const {})",
        packed(OUTPUT_AT, empty.len())
    ));
    wat.items = format!(
        "(global $poisoned (mut i32) (i32.const 0)) {}",
        data(OUTPUT_AT, &empty)
    );

    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &wat.build());
    let plugins = load(vec![section("poison", &path, &["t"])]);
    let big = "x".repeat(300);
    let out = run(&plugins, "t", &[&big]).await;
    let dead = split_output(&out, "dead-letters").1;
    assert_eq!(
        header(&dead[0], HEADER_ERROR),
        Some("wasm trap: wasm `unreachable` instruction executed")
    );
    // Had the poisoned instance been reused, this would trap too.
    let out = run(&plugins, "t", &["small"]).await;
    assert!(out.dead_letters().is_empty(), "{:?}", out.dead_letters());
    let stats = plugins.plugins()[0].stats().snapshot();
    assert_eq!((stats.restarts, stats.failed_batches), (1, 1));
}

#[tokio::test]
async fn garbage_outputs_fail_the_batch() {
    let out_of_bounds = Wat::new(&format!("(i64.const {})", packed(0xffff_0000, 16)));
    let too_long = Wat::new(&format!("(i64.const {})", packed(0, u32::MAX as usize)));
    let not_cbor = Wat::returning_bytes(b"\xff\xfe garbage");
    // hw_alloc behaves for hw_init, then returns `bad`.
    let alloc_then = |bad: i32| {
        let mut wat = Wat::returning(&keep_one("x"));
        wat.items
            .push_str("(global $inited (mut i32) (i32.const 0))");
        wat.alloc = format!(
            "(if (result i32) (global.get $inited)
                (then (i32.const {bad}))
                (else (global.set $inited (i32.const 1)) (i32.const {INPUT_AT})))"
        );
        wat
    };
    let bad_alloc = alloc_then(-16);
    let no_alloc = alloc_then(0);
    let bad_index = Wat::returning(&Output {
        errors: vec![headwater_sdk::RecordError {
            index: 2,
            message: "x".into(),
        }],
        ..Output::new()
    });

    for (wat, expected) in [
        (out_of_bounds, "lies outside the plugin's 65536-byte memory"),
        (too_long, "exceeds the limit of 2097152 bytes"),
        (not_cbor, "bad output: cannot decode it"),
        (bad_alloc, "hw_alloc returned 0xfffffff0"),
        (no_alloc, "hw_alloc could not allocate"),
        (bad_index, "an error names record 2, but the batch had 2"),
        // [[0, 2], [], null]: kept input records by index, one beyond the batch.
        (
            Wat::returning_bytes(&[0x83, 0x82, 0x00, 0x02, 0x80, 0xf6]),
            "a kept record names input 2, but the batch had 2",
        ),
    ] {
        let dead = dead_letters_of(&wat).await;
        assert_eq!(values(&dead), ["a", "b"]);
        let error = header(&dead[0], HEADER_ERROR).unwrap();
        assert!(
            error.contains(expected),
            "{error:?} should contain {expected:?}"
        );
    }
}

/// Runs `input` through a plugin on topic `t` whose every output is the CBOR `output`.
async fn run_returning(output: &[u8], input: &[NewRecord]) -> ChainOutput {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &Wat::returning_bytes(output).build());
    let plugins = load(vec![section("p", &path, &["t"])]);
    plugins.run("t", input.to_vec()).await.unwrap()
}

#[tokio::test]
async fn records_kept_by_index_are_the_inputs_even_when_kept_twice_or_also_failed() {
    // [[1, 0, 1], [[1, "odd"]], null]: input 1 kept twice and reported failed, input 0 once.
    let output = b"\x83\x83\x01\x00\x01\x81\x82\x01\x63odd\xf6";
    let input = records(&["a", "b"]);
    let out = run_returning(output, &input).await;
    let (kept, dead) = split_output(&out, "t");
    assert_eq!(
        kept,
        vec![input[1].clone(), input[0].clone(), input[1].clone()]
    );
    assert!(dead.is_empty());
    let (_, dead) = split_output(&out, "dead-letters");
    assert_eq!(values(&dead), ["b"]);
    assert_eq!(header(&dead[0], HEADER_ERROR), Some("odd"));
}

#[tokio::test]
async fn a_filter_keeping_records_in_order_by_index_keeps_exactly_those() {
    // [[0, 2], [[1, "bad"], [2, "odd"]], null]: inputs 0 and 2 kept, 1 and 2 reported failed.
    let output = b"\x83\x82\x00\x02\x82\x82\x01\x63bad\x82\x02\x63odd\xf6";
    let input = records(&["a", "b", "c"]);
    let out = run_returning(output, &input).await;
    let (kept, _) = split_output(&out, "t");
    assert_eq!(kept, vec![input[0].clone(), input[2].clone()]);
    let (_, dead) = split_output(&out, "dead-letters");
    assert_eq!(values(&dead), ["b", "c"]);
}

#[tokio::test]
async fn modules_that_do_not_speak_abi_v1_are_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut missing = Wat::returning(&keep_one("x"));
    missing.abi = None;
    let err = load_err(dir.path(), &missing);
    assert!(
        err.contains("has no `headwater:abi` custom section"),
        "{err}"
    );

    let mut v2 = Wat::returning(&keep_one("x"));
    v2.abi = Some(r"\02\00\00\00");
    let err = load_err(dir.path(), &v2);
    assert!(
        err.contains("declares Headwater plugin ABI version 2; this broker supports version 1"),
        "{err}"
    );

    let mut short = Wat::returning(&keep_one("x"));
    short.abi = Some(r"\01");
    assert!(load_err(dir.path(), &short).contains("malformed"));

    let path = write_module(dir.path(), "junk", b"\0asm but not really");
    let err = IngestPlugins::from_config(&[section("junk", &path, &["t"])])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a valid WebAssembly module"), "{err}");
}

#[tokio::test]
async fn imports_other_than_log_and_wrong_export_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut wasi = Wat::returning(&keep_one("x"));
    wasi.imports = r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#;
    let err = load_err(dir.path(), &wasi);
    assert!(
        err.contains("imports `wasi_snapshot_preview1.fd_write`"),
        "{err}"
    );

    let bytes = wat::parse_str(format!(
        r#"(module (@custom "headwater:abi" "{V1}") (memory (export "memory") 1)
            (func (export "hw_alloc") (param i32) (result i32) (i32.const 0))
            (func (export "hw_init") (param i32 i32) (result i64) (i64.const 0))
            (func (export "hw_process") (param i32 i32) (result i32) (i32.const 0)))"#
    ))
    .unwrap();
    let path = write_module(dir.path(), "wrong", &bytes);
    let err = IngestPlugins::from_config(&[section("wrong", &path, &["t"])])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("export `hw_process` has the wrong type"),
        "{err}"
    );
}

#[tokio::test]
async fn an_init_refusal_stops_the_load_with_the_plugins_message() {
    let dir = tempfile::tempdir().unwrap();
    let message = b"config key `field` is missing";
    let mut wat = Wat::returning(&keep_one("x"));
    wat.items.push_str(&data(50_000, message));
    wat.init = format!("(i64.const {})", packed(50_000, message.len()));
    let err = load_err(dir.path(), &wat);
    assert!(
        err.contains("refused its config: config key `field` is missing"),
        "{err}"
    );
}

#[tokio::test]
async fn an_init_that_never_returns_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut wat = Wat::returning(&keep_one("x"));
    wat.init = "(loop $spin (br $spin)) (i64.const 0)".into();
    let started = Instant::now();
    let err = load_err(dir.path(), &wat);
    assert!(err.contains("timed out after 1000 ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_plugin_that_keeps_failing_is_disabled_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "trap", &Wat::new("unreachable").build());
    let mut s = section("trapper", &path, &["t"]);
    s.max_consecutive_failures = 3;
    let plugins = load(vec![s]);
    for _ in 0..3 {
        let dead = split_output(&run(&plugins, "t", &["a"]).await, "dead-letters").1;
        assert_eq!(
            header(&dead[0], HEADER_ERROR),
            Some("wasm trap: wasm `unreachable` instruction executed")
        );
    }
    assert!(plugins.plugins()[0].is_disabled());
    let dead = split_output(&run(&plugins, "t", &["b", "c"]).await, "dead-letters").1;
    assert_eq!(values(&dead), ["b", "c"]);
    assert_eq!(header(&dead[0], HEADER_ERROR), Some("plugin disabled"));
    let stats = plugins.plugins()[0].stats().snapshot();
    assert_eq!(stats.calls, 3, "a disabled plugin is not called");
    assert_eq!((stats.records_in, stats.records_failed), (5, 5));
}

#[tokio::test]
async fn per_record_errors_dead_letter_only_those_records() {
    let mut out = keep_one("kept");
    out.error(1, "value 1 is not valid");
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &Wat::returning(&out).build());
    let plugins = load(vec![section("checker", &path, &["t"])]);
    let out = run(&plugins, "t", &["a", "b", "c"]).await;
    let (kept, _) = split_output(&out, "t");
    let (_, dead) = split_output(&out, "dead-letters");
    assert_eq!(values(&kept), ["kept"]);
    assert_eq!(values(&dead), ["b"]);
    assert_eq!(header(&dead[0], HEADER_ERROR), Some("value 1 is not valid"));
    assert_eq!(header(&dead[0], HEADER_PLUGIN), Some("checker"));
    assert_eq!(dead[0].key.as_deref(), Some(&b"device-1"[..]));
    let stats = plugins.plugins()[0].stats().snapshot();
    assert_eq!(
        (
            stats.failed_batches,
            stats.records_out,
            stats.records_failed
        ),
        (0, 1, 1)
    );
}

#[tokio::test]
async fn log_spam_and_bad_log_pointers_do_not_hurt() {
    let mut wat = Wat::returning(&keep_one("ok"));
    wat.imports = r#"(import "headwater" "log" (func $log (param i32 i32 i32)))"#;
    wat.items.push_str(&data(40_000, b"hello from a plugin"));
    let ret = std::mem::take(&mut wat.process);
    wat.process = format!(
        "(local $i i32)
         (call $log (i32.const 2) (i32.const 40000) (i32.const 19))
         (call $log (i32.const 0) (i32.const -100) (i32.const 1000))
         (loop $spam
            (call $log (i32.const 4) (i32.const 40000) (i32.const 5))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $spam (i32.lt_u (local.get $i) (i32.const 1000))))
         {ret}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &wat.build());
    let plugins = load(vec![section("chatty", &path, &["t"])]);
    let out = run(&plugins, "t", &["a"]).await;
    assert_eq!(values(&split_output(&out, "t").0), ["ok"]);
    assert!(out.dead_letters().is_empty());
}

#[tokio::test]
async fn a_chain_runs_in_config_order_and_rerouted_records_leave_it() {
    // First plugin: keeps "stay" in the topic and routes "moved" to another topic.
    let mut first = keep_one("stay");
    first.keep(OutRecord {
        topic: Some("elsewhere".into()),
        timestamp: 8,
        key: None,
        value: Some(b"moved".as_slice().into()),
        headers: vec![],
    });
    // Second plugin: fails its record 0, which must be "stay" (the only one it is given).
    let mut second = Output::new();
    second.error(0, "second saw it");

    let dir = tempfile::tempdir().unwrap();
    let p1 = write_module(dir.path(), "first", &Wat::returning(&first).build());
    let p2 = write_module(dir.path(), "second", &Wat::returning(&second).build());
    let mut s2 = section("second", &p2, &["t"]);
    s2.dead_letter_topic = "second-dead".into();
    let plugins = load(vec![section("first", &p1, &["t"]), s2]);
    assert!(plugins.has_plugins("t"));
    assert!(!plugins.has_plugins("elsewhere"));

    let out = run(&plugins, "t", &["in"]).await;
    let topics: Vec<&str> = out.kept().iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, ["t", "elsewhere"], "the source topic comes first");
    assert!(split_output(&out, "t").0.is_empty());
    assert_eq!(values(&split_output(&out, "elsewhere").0), ["moved"]);
    let dead = split_output(&out, "second-dead").1;
    assert_eq!(values(&dead), ["stay"]);
    assert_eq!(header(&dead[0], HEADER_PLUGIN), Some("second"));
    let by_topic: Vec<String> = out.by_topic().into_iter().map(|(t, _)| t).collect();
    assert_eq!(by_topic, ["t", "elsewhere", "second-dead"]);
}

#[tokio::test]
async fn a_dead_letter_topic_inside_the_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &Wat::returning(&keep_one("x")).build());
    let mut s = section("looper", &path, &["t", "dead-letters"]);
    s.dead_letter_topic = "dead-letters".into();
    let err = IngestPlugins::from_config(&[s]).err().unwrap().to_string();
    assert!(err.contains("would loop"), "{err}");
}
