//! Plugin state kept by the host (ABI.md, "State"), with the downsample example: held by the
//! worker for ingest plugins, given and taken back by the caller for upstream plugins.

use super::*;
use crate::log::StoredRecord;
use crate::plugin::PluginStates;

fn downsample(attach: Attach) -> PluginSection {
    let mut s = section("every-second", &examples::example("downsample"), &["t"]);
    s.attach = attach;
    s.config = toml::from_str("interval_ms = 1000").unwrap();
    s
}

/// Records of one key at these timestamps (ms); the value names the timestamp.
fn readings(at: &[i64]) -> Vec<NewRecord> {
    at.iter()
        .map(|t| NewRecord {
            timestamp: *t,
            key: Some(Bytes::from_static(b"dev")),
            value: Some(Bytes::from(t.to_string())),
            headers: vec![],
        })
        .collect()
}

fn kept(out: &ChainOutput) -> Vec<String> {
    values(&split_output(out, "t").0)
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn ingest_state_is_held_between_batches() {
    let plugins = IngestPlugins::from_config(&[downsample(Attach::Ingest)]).unwrap();
    let out = plugins.run("t", readings(&[0, 500])).await.unwrap();
    assert_eq!(kept(&out), ["0"]);
    let out = plugins.run("t", readings(&[900, 1000])).await.unwrap();
    assert_eq!(kept(&out), ["1000"], "the second batch remembers the first");
}

#[tokio::test]
async fn upstream_state_goes_back_to_the_caller_and_a_rerun_repeats_exactly() {
    let (_, upstream) = crate::plugin::load(&[downsample(Attach::Upstream)]).unwrap();
    let stored = |at: &[i64]| -> Vec<StoredRecord> {
        readings(at)
            .into_iter()
            .enumerate()
            .map(|(i, r)| StoredRecord {
                offset: i as i64,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            })
            .collect()
    };
    let committed = PluginStates::new();
    let mut states = committed.clone();
    let out = upstream
        .run("t", 0, stored(&[0, 500]), &mut states)
        .await
        .unwrap();
    assert_eq!(kept(&out), ["0"]);
    assert!(states.contains_key("every-second"));

    // The upstream did not ack, say: the same records again with the committed state give the
    // same output (nothing counted twice, nothing lost).
    let mut retry = committed.clone();
    let out = upstream
        .run("t", 0, stored(&[0, 500]), &mut retry)
        .await
        .unwrap();
    assert_eq!(kept(&out), ["0"]);
    assert_eq!(retry, states);

    // With the new state, the next records continue from it.
    let out = upstream
        .run("t", 0, stored(&[900, 1000]), &mut states)
        .await
        .unwrap();
    assert_eq!(kept(&out), ["1000"]);
}

/// The ingest path stores each changed state with the records it goes with (or alone when the
/// plugin keeps none of them); a log opened again gives the plugins the states back.
#[tokio::test]
async fn ingest_state_is_stored_with_the_records_and_restored_after_a_restart() {
    use crate::ingest::Ingest;
    use crate::log::{Log, LogOptions, TopicConfig};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let open = |restore: bool| {
        let log = Log::open(&LogOptions::for_tests(dir.path(), 64 << 20)).unwrap();
        let plugins = IngestPlugins::from_config(&[downsample(Attach::Ingest)]).unwrap();
        let restored = match restore {
            true => plugins.restore_held_states(&log).unwrap(),
            false => 0,
        };
        (Ingest::new(log.clone(), Arc::new(plugins)), log, restored)
    };
    let end = |log: &Log| log.topic("t").unwrap().partitions[0].high_watermark();

    let (ingest, log, restored) = open(true);
    assert_eq!(restored, 0);
    log.create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    ingest.publish("t", readings(&[0, 500])).await.unwrap();
    ingest.publish("t", readings(&[900])).await.unwrap();
    assert_eq!(end(&log), 1, "one reading kept in the first second");
    drop(ingest);
    log.close().await;

    let (ingest, log, restored) = open(true);
    assert_eq!(restored, 1);
    ingest.publish("t", readings(&[950])).await.unwrap();
    assert_eq!(
        end(&log),
        1,
        "the restored state still holds the reading at 0"
    );
    ingest.publish("t", readings(&[1000])).await.unwrap();
    assert_eq!(end(&log), 2);
    drop(ingest);
    log.close().await;

    // Not restoring makes the difference: a plugin starting afresh keeps the next reading.
    let (ingest, log, _) = open(false);
    ingest.publish("t", readings(&[1100])).await.unwrap();
    assert_eq!(end(&log), 3);
    drop(ingest);
    log.close().await;
}

/// A batch whose records do not reach the log leaves the plugins' states as they were: the
/// producer gets an error and may send the records again, which the plugins must see as new.
#[tokio::test]
async fn a_batch_that_is_not_stored_leaves_the_state_as_it_was() {
    use crate::ingest::Ingest;
    use crate::log::{Log, LogOptions, TopicConfig};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&LogOptions::for_tests(dir.path(), 64 << 20)).unwrap();
    let plugins = Arc::new(IngestPlugins::from_config(&[downsample(Attach::Ingest)]).unwrap());
    let ingest = Ingest::new(log.clone(), plugins.clone());
    log.create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    ingest.publish("t", readings(&[0])).await.unwrap();
    // The writer stops: the next batch runs through the plugin, and its append fails.
    log.close().await;
    assert!(ingest.publish("t", readings(&[1000])).await.is_err());
    let out = plugins.run("t", readings(&[1000])).await.unwrap();
    assert_eq!(
        kept(&out),
        ["1000"],
        "the failed batch left no trace in the state"
    );
}

/// Batches of a chain share their topic's turn only once every plugin of it has shown it keeps
/// no state, and a module swap makes them take it alone again until the new module has shown
/// the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_chains_known_to_be_stateless_share_the_turn() {
    use crate::plugin::Turn;
    use std::sync::Arc;
    use std::time::Duration;
    let shared = |turn: Option<Turn>| matches!(turn, Some(Turn::Shared(_)));
    let pass = section("pass", &examples::example("passthrough"), &["p"]);
    let plugins = IngestPlugins::from_config(&[pass, downsample(Attach::Ingest)]).unwrap();
    assert!(!shared(plugins.turn("p").await), "not known before a batch");
    plugins.run("p", readings(&[0])).await.unwrap();
    assert!(shared(plugins.turn("p").await), "stateless: shared");
    plugins.run("t", readings(&[0])).await.unwrap();
    assert!(!shared(plugins.turn("t").await), "stateful: alone");

    // A swap waits for the batches holding the turn; a batch arriving meanwhile has it alone
    // (the new module may keep state), as do batches after it until the new module has run one.
    let plugins = Arc::new(plugins);
    let pass_plugin = plugins.plugins()[0].clone();
    let holder = plugins.turn("p").await;
    let reload = tokio::spawn(async move { pass_plugin.reload().await });
    // Until the swap waits for the turn (the module compiles first), a batch gets it at once.
    let wait = Duration::from_millis(20);
    while let Ok(turn) = tokio::time::timeout(wait, plugins.turn("p")).await {
        drop(turn);
        assert!(
            !reload.is_finished(),
            "the reload ended without waiting for the turn"
        );
        tokio::time::sleep(wait).await;
    }
    let during = {
        let plugins = plugins.clone();
        tokio::spawn(async move { shared(plugins.turn("p").await) })
    };
    tokio::time::sleep(wait).await;
    assert!(
        !reload.is_finished(),
        "the swap waits for the batch holding the turn"
    );
    drop(holder);
    reload.await.unwrap().unwrap();
    assert!(
        !during.await.unwrap(),
        "a batch waiting through the swap has the turn alone"
    );
    assert!(
        !shared(plugins.turn("p").await),
        "a new module is not known"
    );
    plugins.run("p", readings(&[1])).await.unwrap();
    assert!(shared(plugins.turn("p").await));
    assert!(plugins.turn("no-chain").await.is_none());
}

/// A batch the chain keeps nothing of still stores the state it changed (alone, with an empty
/// append to the partition), so a restart does not lose it.
#[tokio::test]
async fn a_state_changed_by_a_batch_that_keeps_nothing_is_stored_too() {
    use crate::ingest::Ingest;
    use crate::log::{Log, LogOptions, TopicConfig};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let mut dropping = headwater_sdk::Output::new();
    dropping.state = Some(b"seen".as_slice().into());
    let wasm = super::hostile::Wat::returning(&dropping).build();
    let module = write_module(dir.path(), "drop-all", &wasm);
    let plugins = IngestPlugins::from_config(&[section("drop-all", &module, &["t"])]).unwrap();
    let log = Log::open(&LogOptions::for_tests(&dir.path().join("log"), 64 << 20)).unwrap();
    let ingest = Ingest::new(log.clone(), Arc::new(plugins));
    log.create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    let appended = ingest.publish("t", readings(&[0, 1])).await.unwrap();
    assert_eq!(appended.base_offset, 0);
    assert_eq!(log.topic("t").unwrap().partitions[0].high_watermark(), 0);
    let stored = crate::plugin::held_state::load(&log).unwrap();
    assert_eq!(stored, [("t".into(), "drop-all".into(), b"seen".to_vec())]);
    drop(ingest);
    log.close().await;
}

/// Deleting a topic drops the states its plugins hold for it, as it deletes the stored ones: a
/// topic created again under the same name starts afresh.
#[tokio::test]
async fn deleting_a_topic_drops_the_states_its_plugins_hold() {
    use crate::log::{Log, TopicConfig};
    let dir = tempfile::tempdir().unwrap();
    let (ingest, log) = ingest_with(dir.path(), downsample(Attach::Ingest)).await;
    let end = |log: &Log| log.topic("t").unwrap().partitions[0].high_watermark();
    ingest.publish("t", readings(&[0])).await.unwrap();
    ingest.publish("t", readings(&[500])).await.unwrap();
    assert_eq!(end(&log), 1, "the state holds the reading at 0");

    ingest.delete_topic("t").await.unwrap();
    assert!(ingest.delete_topic("t").await.is_err(), "gone");
    log.create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    ingest.publish("t", readings(&[600])).await.unwrap();
    assert_eq!(end(&log), 1, "kept: the new topic's state starts afresh");
    drop(ingest);
    log.close().await;
}
