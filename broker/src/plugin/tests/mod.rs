//! Tests of the plugin host with real modules: hostile ones written in WebAssembly text
//! ([`hostile`]) and the example plugins of `plugins/` ([`examples`]); module swaps while
//! running ([`reload`]); several instances of one plugin ([`instances`]).

mod examples;
mod hostile;
mod instances;
mod metrics;
mod pipelined;
mod reload;
mod retries;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::config::{Attach, PluginSection};
use crate::log::NewRecord;

use super::{ChainOutput, IngestPlugins};

/// A plugin section with test-friendly limits.
fn section(name: &str, module: &Path, topics: &[&str]) -> PluginSection {
    PluginSection {
        name: name.to_string(),
        module: module.to_path_buf(),
        attach: Attach::Ingest,
        topics: topics.iter().map(|t| t.to_string()).collect(),
        dead_letter_topic: "dead-letters".to_string(),
        config: BTreeMap::new(),
        max_memory_bytes: 2 * 1024 * 1024,
        timeout_ms: 50,
        max_consecutive_failures: 10,
        instances: 1,
    }
}

/// A log in `dir` with topic `t` of one partition, and the door into it with `plugin`.
async fn ingest_with(
    dir: &Path,
    plugin: PluginSection,
) -> (crate::ingest::Ingest, crate::log::Log) {
    use crate::log::{Log, LogOptions, TopicConfig};
    let plugins = IngestPlugins::from_config(&[plugin]).unwrap();
    let log = Log::open(&LogOptions::for_tests(dir, 64 << 20)).unwrap();
    log.create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    let ingest = crate::ingest::Ingest::new(log.clone(), std::sync::Arc::new(plugins));
    (ingest, log)
}

/// Writes a module into `dir` and returns its path.
fn write_module(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn records(values: &[&str]) -> Vec<NewRecord> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| NewRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("device-{i}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![("origin".to_string(), Some(Bytes::from_static(b"test")))],
        })
        .collect()
}

fn header<'a>(record: &'a NewRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

fn values(records: &[NewRecord]) -> Vec<&str> {
    records
        .iter()
        .map(|r| std::str::from_utf8(r.value.as_deref().unwrap_or(b"")).unwrap())
        .collect()
}

/// Records kept in `topic`, and dead letters of `topic`.
fn split_output(out: &ChainOutput, topic: &str) -> (Vec<NewRecord>, Vec<NewRecord>) {
    let find = |list: &[(String, Vec<NewRecord>)]| {
        list.iter()
            .find(|(t, _)| t == topic)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    (find(out.kept()), find(out.dead_letters()))
}

async fn run(plugins: &IngestPlugins, topic: &str, values: &[&str]) -> ChainOutput {
    plugins.run(topic, records(values)).await.unwrap()
}

/// The host's futures must be spawnable on the multi-threaded runtime.
#[test]
fn chain_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let ingest = IngestPlugins::default();
    assert_send(&ingest.run("t", Vec::new()));
    let upstream = super::UpstreamPlugins::default();
    let mut states = super::PluginStates::new();
    assert_send(&upstream.run("t", 0, Vec::new(), &mut states));
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<IngestPlugins>();
    assert_sync::<super::UpstreamPlugins>();
}

#[tokio::test]
async fn without_plugins_records_pass_through_untouched() {
    let plugins = IngestPlugins::from_config(&[]).unwrap();
    assert!(!plugins.has_plugins("t"));
    let out = run(&plugins, "t", &["a", "b"]).await;
    assert_eq!(values(&split_output(&out, "t").0), ["a", "b"]);
    assert!(out.dead_letters().is_empty());
}
