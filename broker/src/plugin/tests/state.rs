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
