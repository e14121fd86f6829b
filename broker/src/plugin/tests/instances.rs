//! `instances`: a busy plugin's batches run side by side on separate instances, one at a time
//! they all go to the first; a reload swaps every instance at the same point.

use std::sync::Arc;
use std::time::Duration;

use super::hostile::{keep_one, load, Wat, OUTPUT_AT};
use super::*;
use crate::plugin::Plugin;

/// A module that keeps one record, `call-N` after its instance's Nth call, and spins for a
/// while first (long enough for a second batch to arrive while it runs).
fn counting_module() -> Vec<u8> {
    spinning(counting("call-0"), 300_000_000).build()
}

/// A module that keeps one record valued `value` with its last byte (a digit) raised by one
/// on each call of the instance: `x-0` answers `x-1`, `x-2`, ...
pub(super) fn counting(value: &'static str) -> Wat<'static> {
    let mut wat = Wat::returning(&keep_one(value));
    let mut encoded = Vec::new();
    headwater_sdk::wire::encode_output(&keep_one(value), &mut encoded);
    let at = encoded
        .windows(value.len())
        .position(|w| w == value.as_bytes())
        .unwrap();
    let digit = OUTPUT_AT as usize + at + value.len() - 1;
    let count = format!(
        "(i32.store8 (i32.const {digit}) (i32.add (i32.load8_u (i32.const {digit})) (i32.const 1)))"
    );
    wat.process = format!("{count} {}", wat.process);
    wat
}

/// `wat` counting down from `iterations` at the start of each call (about a nanosecond each).
pub(super) fn spinning(mut wat: Wat<'_>, iterations: u32) -> Wat<'_> {
    wat.process = format!(
        "(local $spin i32)
         (local.set $spin (i32.const {iterations}))
         (block $done (loop $again
           (br_if $done (i32.eqz (local.get $spin)))
           (local.set $spin (i32.sub (local.get $spin) (i32.const 1)))
           (br $again)))
         {}",
        wat.process
    );
    wat
}

async fn answer(plugins: &IngestPlugins) -> String {
    let out = run(plugins, "t", &["in"]).await;
    let (kept, dead) = split_output(&out, "t");
    assert!(
        dead.is_empty() && out.dead_letters().is_empty(),
        "no failure"
    );
    values(&kept).concat()
}

fn plugin(plugins: &IngestPlugins) -> Arc<Plugin> {
    plugins.plugins()[0].clone()
}

/// Two batches one after the other, then one while another runs: their answers.
async fn answers(instances: u32) -> (Vec<String>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &counting_module());
    let mut s = section("p", &path, &["t"]);
    s.instances = instances;
    s.timeout_ms = 30_000;
    let plugins = Arc::new(load(vec![s]));
    let one_by_one = vec![answer(&plugins).await, answer(&plugins).await];
    let running = tokio::spawn({
        let plugins = plugins.clone();
        async move { answer(&plugins).await }
    });
    // The spinning batch has started (it is counted when its worker takes it).
    while plugin(&plugins).stats().snapshot().records_in < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let beside = answer(&plugins).await;
    (one_by_one, running.await.unwrap(), beside)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_arrives_while_another_runs_takes_a_free_instance() {
    let (one_by_one, running, beside) = answers(2).await;
    assert_eq!(one_by_one, ["call-1", "call-2"], "one at a time: the first");
    assert_eq!(running, "call-3");
    assert_eq!(beside, "call-1", "the second instance's first call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_instance_a_batch_waits_for_the_running_one() {
    let (one_by_one, running, beside) = answers(1).await;
    assert_eq!(one_by_one, ["call-1", "call-2"]);
    assert_eq!((running.as_str(), beside.as_str()), ("call-3", "call-4"));
}

#[tokio::test]
async fn instances_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", &Wat::returning(&keep_one("x")).build());
    for bad in [0, 65] {
        let mut s = section("p", &path, &["t"]);
        s.instances = bad;
        let err = IngestPlugins::from_config(&[s]).err().unwrap().to_string();
        assert!(err.contains("instances must be 1 to 64"), "{err}");
    }
}
